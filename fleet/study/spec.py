"""The study file: a base scenario, the points to run on it, the seeds and what to report.

A study file is YAML with ``version: 1``::

    version: 1
    name: learners-by-network
    scenario: thermostats-small-v1      # a shipped scenario, or a file relative to this one
    set: {horizon: 2d}                  # overrides of every point
    variants:                           # an explicit list: name -> overrides
      rule-based: {learner.name: rule-based-v1}
      diffusion: {learner.name: diffusion-v1, learner.params.lr: 0.06}
    axes:                               # crossed with each other and with the variants
      topology.degree: [2, 4]           # a field and its values (labels: degree2, degree4)
      network:                          # a named axis: label -> overrides
        wifi: {fleet.sites[0].network: {wifi: 1.0}}
        nb-iot: {fleet.sites[0].network: {nb-iot: 1.0}}
    seeds: 0-4                          # or a list: [0, 1, 2]
    report: {reference: rule-based, tail: 0.5, metrics: [reward, bytes_sent, tail.cost]}

Overrides name scenario fields by the dotted paths of ``fleet run --set`` (``learner.params.lr``,
``fleet.sites[0].devices``), each with a YAML value. A point is one variant with one label of
each axis, in that order (``diffusion_degree2_wifi``); its scenario is the base scenario, then
``set``, then the variant's and the axes' overrides; every seed of ``seeds`` is one run of it.
Two sources of one point that set the same field are an error, and so are two points that make
the same scenario. Every point is validated as a scenario before anything runs, and every
failing point is named.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from fleet.config import StrictModel, format_validation_error
from fleet.errors import ConfigError
from fleet.scenario import NAME, Scenario, parse_scenario, read_yaml, resolve_scenario_path, set_path
from fleet.tradeoff import DEFAULT_TAIL

Overrides = dict[str, Any]
"""Dotted scenario path -> value."""
CUMULATIVE_KPIS = ("energy_kwh", "cost", "discomfort_degh", "feeder_overload_kwh")
"""KPIs that metrics.csv accumulates, so that a window of a run has its own value."""
DERIVED_FIGURES = ("reward", "bytes_sent")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SEEDS = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class BootstrapConfig(StrictModel):
    """The percentile bootstrap (:mod:`fleet.study.stats`)."""

    resamples: Annotated[int, Field(ge=100, le=1_000_000)] = 10_000
    """Resampled means per interval."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seed of the resampling: the same seed gives the same intervals."""


class ReportConfig(StrictModel):
    """What the study's tables, plots and exports hold (:mod:`fleet.study.tables`)."""

    reference: NAME | None = None
    """A variant (or a label of one axis) that the others are paired with, seed by seed: each point
    with the point that has this label instead of its own and the same other labels."""
    pairs: tuple[tuple[NAME, NAME], ...] = ()
    """Further differences, seed by seed: ``[a, b]`` (two labels of the variants or of one axis, as
    ``reference``) pairs each point labelled ``a`` with the point that has ``b`` instead and the same
    other labels, and tabulates the first minus the second (``[[diffusion, independent]]``)."""
    tail: Annotated[float, Field(gt=0, le=1)] = DEFAULT_TAIL
    """Fraction of each run, at its end, that ``reward`` and the ``tail.<kpi>`` figures are taken over."""
    metrics: Annotated[tuple[str, ...], Field(min_length=1)] = ("reward", "bytes_sent")
    """Figures of each run to tabulate: ``reward`` (per device-day over the tail, as in fleet report
    --comm-vs-reward), ``bytes_sent`` (per device-day, whole run), ``tail.<kpi>`` and
    ``per_device_day.<kpi>`` (a cumulative KPI per device-day over the tail or the whole run), or
    a dotted path to a number in summary.json (``kpis.peak_kw``, ``kpis_vs_baseline.cost``)."""
    curves: tuple[str, ...] = ("reward",)
    """Learning curves, averaged over seeds: ``reward`` (per device-day in each metrics interval)
    or metrics.csv columns (``charts/mean_reward``, ``learner/param_disagreement``)."""
    interval: Literal["t", "bootstrap"] = "t"
    """The interval that the tables and curves show (the JSON table holds both)."""
    bootstrap: BootstrapConfig = BootstrapConfig()
    comm_vs_reward: bool = True
    """fleet report's communication-versus-reward plot and KPI comparison of all runs."""
    marl_eval: bool = True
    """marl_eval.json: the curves and figures in marl-eval's layout (:mod:`fleet.study.export`)."""
    tensorboard: bool = False
    """tensorboard/: each run's curves and figures as TensorBoard scalars (needs tensorboard)."""

    @field_validator("metrics")
    @classmethod
    def _known_figures(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            kind, _, kpi = name.partition(".")
            if kind in ("tail", "per_device_day") and kpi not in CUMULATIVE_KPIS:
                raise ValueError(f"{name!r}: {kind}.<kpi> takes a cumulative KPI: {', '.join(CUMULATIVE_KPIS)}")
            if name not in DERIVED_FIGURES and not kpi:
                raise ValueError(
                    f"{name!r} is neither {' nor '.join(DERIVED_FIGURES)} "
                    f"nor a dotted path into summary.json such as kpis.cost"
                )
        if len(set(names)) < len(names):
            raise ValueError("a figure is listed twice")
        return names

    @field_validator("pairs")
    @classmethod
    def _distinct_labels(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        for a, b in pairs:
            if a == b:
                raise ValueError(f"[{a}, {b}]: a pair takes two different labels")
        if len(set(pairs)) < len(pairs):
            raise ValueError("a pair is listed twice")
        return pairs

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, on: bool) -> bool:
        import importlib.util

        if on and importlib.util.find_spec("tensorboard") is None:
            raise ValueError("needs the tensorboard package: pip install 'fleet-sim[tensorboard]', or set it false")
        return on


class StudyFile(StrictModel):
    """A study file as written (see the module docstring)."""

    version: Literal[1]
    name: NAME
    description: str = ""
    scenario: str
    """The base scenario: a shipped name or a YAML file (relative to the study file)."""
    set: Overrides = {}
    variants: dict[NAME, Overrides] = {}
    axes: dict[str, list[Any] | dict[NAME, Overrides]] = {}
    """Axis -> its values: a field's values (``topology.degree: [2, 4]``), or a named axis's
    labelled overrides (``network: {wifi: {...}, nb-iot: {...}}``)."""
    seeds: Annotated[tuple[Annotated[int, Field(ge=0, lt=2**63)], ...], Field(min_length=1)]
    """Root seeds of the runs of every point: a list, or ``FIRST-LAST``."""
    report: ReportConfig = ReportConfig()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_range(cls, value: Any) -> Any:
        match = _SEEDS.match(value) if isinstance(value, str) else None
        if isinstance(value, str) and not match:
            raise ValueError(f"write a list of seeds or FIRST-LAST, e.g. 0-4; got {value!r}")
        return list(range(int(match.group(1)), int(match.group(2)) + 1)) if match else value

    @field_validator("seeds")
    @classmethod
    def _unique(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(seeds)) < len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes: dict) -> dict:
        for name, values in axes.items():
            if not values:
                raise ValueError(f"{name}: an axis needs at least one value")
        return axes


@dataclass(frozen=True)
class Point:
    """A combination of a variant and a label of each axis."""

    name: str
    labels: tuple[str, ...]
    """Its variant's label ("" in a study without variants), then its label on each axis."""
    overrides: tuple[tuple[str, Any, str], ...]
    """(path, value, where it comes from) in the order they apply."""


@dataclass(frozen=True)
class Run:
    """One seed of one point, its scenario validated."""

    point: str
    seed: int
    scenario: Scenario

    @property
    def name(self) -> str:
        return f"{self.point}-seed{self.seed}"


@dataclass(frozen=True)
class Study:
    """A loaded, validated study: its file, its points and their runs (point by point, seed by seed)."""

    path: Path
    spec: StudyFile
    points: tuple[Point, ...]
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    def runs_of(self, point: str) -> list[Run]:
        return [r for r in self.runs if r.point == point]

    def counterparts(self) -> dict[str, str]:
        """Point -> the point it is paired with: ``report.reference`` in place of its own label
        (points that hold the reference label have none)."""
        reference = self.spec.report.reference
        if reference is None:
            return {}
        swapped = self._with_label(reference)
        return {point: other for point, other in swapped.items() if other != point}

    def pairs(self) -> list[tuple[str, str]]:
        """(point, other) of each pair ``[a, b]`` of ``report.pairs``: every point labelled ``a`` and
        the point with ``b`` in place of it and the same other labels."""
        out = []
        for a, b in self.spec.report.pairs:
            dim, swapped = _dimension(self.points, a), self._with_label(b)
            out += [(p.name, swapped[p.name]) for p in self.points if p.labels[dim] == a]
        return out

    def _with_label(self, label: str) -> dict[str, str]:
        """Point -> the point with ``label`` in place of its own on ``label``'s dimension, the same other labels."""
        dim = _dimension(self.points, label)
        by_labels = {p.labels: p.name for p in self.points}
        return {p.name: by_labels[(*p.labels[:dim], label, *p.labels[dim + 1 :])] for p in self.points}


def _dimension(points: tuple[Point, ...] | list[Point], label: str) -> int:
    """The first dimension (0: the variant, then each axis) on which some point has ``label``."""
    return next(d for d in range(len(points[0].labels)) if any(p.labels[d] == label for p in points))


# --- points ----------------------------------------------------------------------------------


def _value_label(path: str, value: Any) -> str:
    """``diffusion-v1`` for a string value, ``lr0.3`` or ``frozentrue`` for another scalar."""
    label = value if isinstance(value, str) else path.rsplit(".", 1)[-1].rsplit("]", 1)[-1] + json.dumps(value)
    if isinstance(value, (dict, list)) or not _LABEL.match(label):
        raise ConfigError(
            f"axes.{path}: the value {value!r} makes no usable label (letters, digits, '.', '_', '-'); "
            f"give the axis a name and label its values: {{name: {{label: {{{path}: value}}}}}}"
        )
    return label


def _axis_options(name: str, values: list[Any] | dict[str, Overrides]) -> list[tuple[str, Overrides, str]]:
    """(label, overrides, source) of each value of an axis."""
    if isinstance(values, dict):
        return [(label, overrides, f"axes.{name}.{label}") for label, overrides in values.items()]
    return [(_value_label(name, v), {name: v}, f"axes.{name}") for v in values]


def expand(spec: StudyFile) -> list[Point]:
    """The points of a study: its variants (or one unnamed) crossed with every axis, in order."""
    variants = [(label, overrides, f"variants.{label}") for label, overrides in spec.variants.items()] or [("", {}, "")]
    choices = [variants, *(_axis_options(name, values) for name, values in spec.axes.items())]
    points: dict[str, Point] = {}
    for combo in itertools.product(*choices):
        name = "_".join(label for label, _, _ in combo if label) or spec.name
        setters: dict[str, str] = {}
        for _, overrides, source in combo:
            for path in overrides:
                if path in setters:
                    raise ConfigError(
                        f"point {name}: {path} is set by both {setters[path]} and {source}; set each field in one place"
                    )
                setters[path] = source
        if name in points:
            raise ConfigError(f"two points are named {name}; rename a variant or an axis label")
        overrides = tuple((p, v, src) for _, changes, src in combo for p, v in changes.items())
        points[name] = Point(name, tuple(label for label, _, _ in combo), overrides)
    return list(points.values())


# --- loading ---------------------------------------------------------------------------------


def _base_scenario(spec: StudyFile, study_path: Path) -> Path:
    """The base scenario's file: relative to the study file, or a shipped name."""
    beside = study_path.parent / spec.scenario
    return beside if beside.is_file() else resolve_scenario_path(spec.scenario)


def _scenario(base: dict[str, Any], spec: StudyFile, point: Point, seed: int, source: str, base_dir: Path) -> Scenario:
    raw = copy.deepcopy(base)
    for path, value in [*((p, v) for p, v in spec.set.items()), *((p, v) for p, v, _ in point.overrides)]:
        set_path(raw, path, copy.deepcopy(value))
    raw["seed"] = seed
    return parse_scenario(raw, source, base_dir)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file and every point's scenario; ConfigError naming every
    failing point (nothing runs unless all are valid)."""
    path = Path(path)
    try:
        spec = StudyFile.model_validate(read_yaml(path))
    except ValidationError as e:
        raise format_validation_error(e, str(path)) from None
    base_file = _base_scenario(spec, path)
    base = read_yaml(base_file)
    points = expand(spec)
    failures: list[str] = []
    scenarios: dict[str, Scenario] = {}
    for point in points:
        try:
            scenarios[point.name] = _scenario(base, spec, point, spec.seeds[0], f"point {point.name}", base_file.parent)
        except ConfigError as e:
            failures.append(f"  - {str(e).replace(chr(10), chr(10) + '    ')}")
    if failures:
        raise ConfigError(
            f"{path}: {len(failures)} of {len(points)} points are not valid scenarios; nothing was run:\n"
            + "\n".join(failures)
        )
    _check_distinct(scenarios, path)
    _check_report(spec, points, path)
    runs = [
        Run(p.name, seed, scenarios[p.name].model_copy(update={"seed": seed})) for p in points for seed in spec.seeds
    ]
    return Study(path, spec, tuple(points), tuple(runs))


def _check_distinct(scenarios: dict[str, Scenario], path: Path) -> None:
    seen: dict[str, str] = {}
    for name, scenario in scenarios.items():
        key = json.dumps(scenario.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            raise ConfigError(
                f"{path}: points {seen[key]} and {name} make the same scenario; drop one, "
                f"or set a field that tells them apart"
            )
        seen[key] = name


def _check_report(spec: StudyFile, points: list[Point], path: Path) -> None:
    names = [p.name for p in points]
    if spec.report.reference is not None:
        _check_label(spec.report.reference, "report.reference", points, path)
    for a, b in spec.report.pairs:
        if _check_label(a, "report.pairs", points, path) != _check_label(b, "report.pairs", points, path):
            raise ConfigError(f"{path}: report.pairs: {a} and {b} are labels of different axes; pair labels of one")
    lowered = [n.lower() for n in names]
    clash = sorted({n for n in lowered if lowered.count(n) > 1})
    if spec.report.marl_eval and clash:
        raise ConfigError(
            f"{path}: points {', '.join(clash)} differ only in case, which marl-eval ignores; "
            f"rename one or set report.marl_eval: false"
        )


def _check_label(label: str, field: str, points: list[Point], path: Path) -> int:
    """The one dimension (variant or axis) that ``label`` is a label of, or a ConfigError naming ``field``."""
    dims = {d for p in points for d, own in enumerate(p.labels) if own == label}
    if len(dims) != 1:
        labels = sorted({own for p in points for own in p.labels if own})
        why = "is not a variant nor an axis label" if not dims else "is a label of several axes"
        raise ConfigError(f"{path}: {field}: {label!r} {why} of the study; its labels are {', '.join(labels)}")
    return dims.pop()
