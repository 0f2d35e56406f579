"""Typed configs document themselves: every field with its type, default and docstring."""

from typing import Annotated, Literal

from pydantic import Field

from fleet.config import REQUIRED, FieldDoc, PositiveDuration, StrictModel, describe_fields


class Inner(StrictModel):
    period: Annotated[int, Field(ge=1)] = 1
    """Every period-th update."""


class Outer(StrictModel):
    size: Annotated[int, Field(ge=1, le=8)]
    """How many,
    over two lines."""
    rate: Annotated[float, Field(gt=0, lt=1)] = 0.5
    kind: Literal["a", "b"] = "a"
    """Which kind."""
    until: PositiveDuration | None = None
    inner: Inner = Inner(period=3)
    """Not listed itself: its fields are."""


def test_every_field_with_type_default_and_docstring():
    assert describe_fields(Outer) == [
        FieldDoc("size", "int in [1, 8]", REQUIRED, "How many, over two lines."),
        FieldDoc("rate", "float in (0, 1)", 0.5, ""),
        FieldDoc("kind", "'a' | 'b'", "a", "Which kind."),
        FieldDoc("until", "duration > 0 | None", None, ""),
        FieldDoc("inner.period", "int >= 1", 3, "Every period-th update."),  # the default the parent gives
    ]
