"""Building blocks for strict, typed configuration models.

Every configuration section in the project derives from :class:`StrictModel`: unknown keys,
wrong types and out-of-range values are errors. This module also defines

- :data:`Duration`: seconds, written as a number or a string with a unit
  (``"90s"``, ``"15min"``, ``"1.5h"``, ``"2d"``);
- per-device parameter distributions (:class:`Uniform`, :class:`Normal`, :class:`Constant`)
  and :func:`dist_in`, which checks that a distribution's support lies in the physical range
  of the parameter it describes (so a capacitance can never be drawn negative);
- :func:`format_validation_error`, which turns pydantic's errors into one paragraph that
  names each field path.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from fleet.errors import ConfigError


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


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
            raise ValueError(f"a duration is written in at most {_DURATION_MAX_CHARS} characters, e.g. '15min'; "
                             f"got {len(value)}")
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
    def _ordered(self) -> "Uniform":
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
    def _ordered(self) -> "Normal":
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
    Union[Uniform, Normal, Constant],
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
            raise ValueError(f"every draw must lie in {bound}, but this {d.dist} distribution reaches [{lo}, {hi}]{hint}")
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
