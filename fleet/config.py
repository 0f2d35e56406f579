"""Building blocks for strict, typed configuration models.

Every configuration section in the project derives from :class:`StrictModel`: unknown keys,
wrong types and out-of-range values are errors. This module also defines

- :data:`Duration`: seconds, written as a number or a string with a unit
  (``"90s"``, ``"15min"``, ``"1.5h"``, ``"2d"``);
- per-device parameter distributions (:class:`Uniform`, :class:`Normal`, :class:`Constant`)
  and :func:`dist_in`, which checks that a distribution's support lies in the physical range
  of the parameter it describes (so a capacitance can never be drawn negative);
- :func:`format_validation_error`, which turns pydantic's errors into one paragraph that
  names each field path;
- :func:`describe_fields`, every field of a model with its type, default and docstring (what
  ``fleet learners NAME`` prints).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from annotated_types import Ge, Gt, Le, Lt
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from fleet.errors import ConfigError


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys. The docstring under a field becomes its
    description (``model_fields[name].description``), which :func:`describe_fields` lists."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True)


# --- durations ---------------------------------------------------------------------------

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]+)?\s*$")
_DURATION_MAX_CHARS = 64  # the pattern backtracks in time quadratic in the length of a string that does not match


def parse_duration(value: Any) -> float:
    """Seconds from ``value``: a number (seconds) or a string such as ``"15min"`` or ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '15min', not a boolean")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise ValueError("must be a finite number") from None
    if isinstance(value, str):
        if len(value) > _DURATION_MAX_CHARS:
            raise ValueError(
                f"a duration is written in at most {_DURATION_MAX_CHARS} characters, e.g. '15min'; got {len(value)}"
            )
        match = _DURATION.match(value)
        if match and (match.group(2) or "s") in _UNITS:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
        raise ValueError(f"cannot read {value!r} as a duration; write e.g. '90s', '15min', '1.5h' or '2d'")
    raise ValueError(f"a duration is a number of seconds or a string like '15min', got {type(value).__name__}")


def _finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    return x


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_finite), Field(ge=0)]
"""A non-negative duration in seconds."""

PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_finite), Field(gt=0)]
"""A strictly positive duration in seconds."""

FiniteFloat = Annotated[float, AfterValidator(_finite)]


# --- per-device parameter distributions ---------------------------------------------------


class Uniform(StrictModel):
    """Uniform on ``[low, high]``."""

    dist: Literal["uniform"] = "uniform"
    low: FiniteFloat
    high: FiniteFloat

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self

    @property
    def support(self) -> tuple[float, float]:
        return (self.low, self.high)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape (n,)."""
        return rng.uniform(self.low, self.high, size=n)


class Normal(StrictModel):
    """Normal with mean and standard deviation, clipped to ``[low, high]`` when given."""

    dist: Literal["normal"] = "normal"
    mean: FiniteFloat
    std: Annotated[float, Field(ge=0)]
    low: float = -math.inf
    high: float = math.inf

    @model_validator(mode="after")
    def _ordered(self) -> Normal:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if not self.low <= self.mean <= self.high:
            raise ValueError(f"mean ({self.mean}) must lie in [low, high] = [{self.low}, {self.high}]")
        return self

    @property
    def support(self) -> tuple[float, float]:
        return (self.low, self.high) if self.std > 0 else (self.mean, self.mean)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape (n,), clipped to ``[low, high]``."""
        return np.clip(rng.normal(self.mean, self.std, size=n), self.low, self.high)


class Constant(StrictModel):
    """The same value for every device (a bare number in YAML means this)."""

    dist: Literal["constant"] = "constant"
    value: FiniteFloat

    @property
    def support(self) -> tuple[float, float]:
        return (self.value, self.value)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` copies, shape (n,); draws nothing from ``rng``."""
        return np.full(n, self.value, dtype=float)


def _number_is_constant(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"dist": "constant", "value": value}
    return value


Dist = Annotated[
    Uniform | Normal | Constant,
    BeforeValidator(_number_is_constant),
    Field(discriminator="dist"),
]
"""A per-device parameter: a number, or ``{dist: uniform|normal|constant, ...}``."""


def dist_in(low: float = -math.inf, high: float = math.inf, *, strict_low: bool = False) -> Any:
    """A :data:`Dist` whose every possible draw lies in ``[low, high]`` (``(low, high]`` if strict).

    Usage: ``capacitance: dist_in(0, strict_low=True) = Uniform(low=3, high=8)``.
    """

    def check(d: Uniform | Normal | Constant) -> Uniform | Normal | Constant:
        lo, hi = d.support
        lo_ok = lo > low if strict_low else lo >= low
        if not (lo_ok and hi <= high):
            bound = f"({low}, {high}]" if strict_low else f"[{low}, {high}]"
            hint = " (give a normal distribution 'low' and 'high' clip bounds)" if d.dist == "normal" else ""
            raise ValueError(
                f"every draw must lie in {bound}, but this {d.dist} distribution reaches [{lo}, {hi}]{hint}"
            )
        return d

    return Annotated[Dist, AfterValidator(check)]


# --- errors --------------------------------------------------------------------------------


_UNION_TAGS = {"uniform", "normal", "constant", "synthetic", "epw", "flat", "tou", "independent", "gilbert-elliott"}
"""Tags of the discriminated unions (distributions, weather, tariff, loss), which pydantic puts into paths."""


def field_path(loc: tuple[Any, ...]) -> str:
    """``('network', 'profiles', 'wifi', 'up_bps')`` -> ``network.profiles.wifi.up_bps``.

    Discriminated-union tags that pydantic puts into paths (``uniform``, ``function-after``...)
    are dropped so the path matches what the user wrote.
    """
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _UNION_TAGS or "[" in str(item) or str(item).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> ConfigError:
    """One readable paragraph per problem, each naming the field path, as a :class:`ConfigError`."""
    lines = [f"{source}: invalid configuration:"]
    for e in err.errors(include_url=False):
        path = field_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the shipped scenarios for the allowed keys)"
        elif e["type"] == "missing":
            msg = "required but missing"
        elif "input" in e and e["type"] not in {"union_tag_invalid"}:
            msg += f" (got {e['input']!r})" if not isinstance(e["input"], (dict, list)) else ""
        # cross-field checks of a whole model start their message with the field path themselves
        lines.append(f"  - {path}: {msg}" if e["loc"] else f"  - {msg}")
    return ConfigError("\n".join(lines))


# --- documentation -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDoc:
    """One field of a config model, as ``fleet learners NAME`` shows it."""

    path: str
    """Dotted path below the model, as ``--set`` writes it: ``comm.period``."""
    type: str
    """The accepted values: ``int in [1, 1024]``, ``'adam' | 'sgd'``, ``duration > 0 | None``."""
    default: Any
    """The default as YAML would hold it (durations in seconds), or :data:`REQUIRED`."""
    doc: str
    """The field's docstring, or ``""``."""


REQUIRED = "(required)"
"""The :attr:`FieldDoc.default` of a field without a default."""


def describe_fields(model: type[StrictModel], defaults: StrictModel | None = None, prefix: str = "") -> list[FieldDoc]:
    """Every field of ``model`` in declaration order; a field that is itself a model is
    replaced by its own fields (``comm.period``, ...), with ``defaults`` (the parent's default
    of it) giving their defaults."""
    out: list[FieldDoc] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        default = getattr(defaults, name) if defaults is not None else info.get_default(call_default_factory=True)
        if isinstance(info.annotation, type) and issubclass(info.annotation, StrictModel):
            out += describe_fields(info.annotation, default if isinstance(default, StrictModel) else None, f"{path}.")
            continue
        shown = REQUIRED if info.is_required() else default
        doc = " ".join((info.description or "").split())
        out.append(FieldDoc(path, _type_text(info.annotation, info.metadata), shown, doc))
    return out


def _type_text(annotation: Any, metadata: list[Any]) -> str:
    """``int in [1, 1024]``, ``'adam' | 'sgd'``, ``duration > 0 | None``... from a field's type."""
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if origin in (Union, UnionType):
        return " | ".join(_type_text(a, []) for a in get_args(annotation))
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _type_text(base, [*metadata, *extra])
    if annotation is NoneType:
        return "None"
    meta = [m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
    duration = any(getattr(m, "func", None) is parse_duration for m in meta)
    name = "duration" if duration else getattr(annotation, "__name__", str(annotation))
    return name + _bounds(meta)


def _bounds(meta: list[Any]) -> str:
    """`` in [lo, hi)``, `` >= lo``, `` < hi``... from annotated-types constraints, or ``""``."""
    low = next(((m.ge, "[") if isinstance(m, Ge) else (m.gt, "(") for m in meta if isinstance(m, (Ge, Gt))), None)
    high = next(((m.le, "]") if isinstance(m, Le) else (m.lt, ")") for m in meta if isinstance(m, (Le, Lt))), None)
    if low and high:
        return f" in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f" {'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""
