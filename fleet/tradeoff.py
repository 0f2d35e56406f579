"""Communication versus reward across runs: one point per scenario variant, its seeds pooled.

Per run, two numbers, both per device per day so that fleets and horizons of different sizes
compare:

- **final reward**: the reward over the last ``tail`` fraction of the run, from the cumulative
  KPI columns of metrics.csv and the scenario's reward weights,
  ``-(Δcost + reward.discomfort_per_degh · Δdiscomfort_degh + reward.overload_per_kwh ·
  Δfeeder_overload_kwh) / (N · Δdays)``.
  This is the sum of the per-tick rewards the learners are trained on (a feeder's overload
  penalty is shared among its devices by their load, so the shares add up to the feeder's
  overload), so learners and the rule-based thermostat, which logs no reward of its own,
  compare on one scale. The window starts at the last metrics row at or before
  ``(1 - tail)`` of the run (the default, 0.5: the last half).
- **bytes sent**: summary.json's ``comm_per_device_day.bytes_sent``, what the devices' radios
  sent over the whole run (on the air: codec payload, link overhead and retransmissions, of
  every workload: learner messages, telemetry, consensus; not what they received), the price
  paid to reach that reward, learning included.

Runs whose scenarios are equal except for ``seed`` form one point; ``description`` and the
``outputs`` section, which change only what is recorded, are ignored too, and learner
parameters are compared with their defaults filled in. A point is the mean over its seeds with
a two-sided 95% Student t confidence interval, ``t(0.975, n - 1) · s / √n`` (s: the sample
standard deviation); a single seed has no interval.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleet.errors import ConfigError, RunDirError
from fleet.kpis import per_device_day

CONFIDENCE = 0.95
DEFAULT_TAIL = 0.5
IGNORED = ("seed", "description", "outputs")
"""Top-level scenario keys that do not make runs different points."""
REWARD_KPIS = ("cost", "discomfort_degh", "feeder_overload_kwh")
_SITE_NETWORK = re.compile(r"^fleet\.sites\[\d+\]\.network$")


@dataclass(frozen=True)
class RunValues:
    """One run's coordinates."""

    path: str
    seed: int
    bytes_sent_per_device_per_day: float
    reward_per_device_per_day: float


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and the half-width of its confidence interval (None for one seed)."""

    mean: float
    ci95_half_width: float | None


@dataclass(frozen=True)
class Point:
    """Runs that differ only in their seed."""

    label: str
    """The learner and the fields at other than their usual value (:func:`unlabelled`)."""
    learner: str
    fields: dict[str, Any]
    """The scenario fields (dotted paths) that set this point apart from the others."""
    runs: tuple[RunValues, ...]
    bytes_sent_per_device_per_day: Estimate
    reward_per_device_per_day: Estimate


# --- confidence intervals ----------------------------------------------------------------


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for k in range(2, df, 2):
            term *= (k - 1) / k * c2
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(3, df - 1, 2):
        term *= (k - 1) / k * c2
        total += term
    return 2 / math.pi * (theta + s * total)


def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value t with P(|T| <= t) = ``confidence``, ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < confidence:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central(mid, df) < confidence else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2


def estimate(values: list[float]) -> Estimate:
    """Mean and 95% t-interval half-width ``t(0.975, n - 1) · s / √n`` of ``values``."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return Estimate(float(x.mean()), None)
    return Estimate(float(x.mean()), t_critical(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x)))


# --- one run -----------------------------------------------------------------------------


def _accounted_s(t: float, end: float, dt: float) -> float:
    """Simulated time a metrics row accounts for: control runs before metrics at a common time,
    so the row at ``t`` holds the control ticks at or before ``t`` (each covers ``dt``), and the
    last row, written when the run stops at ``end``, holds the ticks before ``end``."""
    if t >= end:
        return math.ceil(end / dt - 1e-9) * dt
    return (math.floor(t / dt + 1e-9) + 1) * dt


def _require(metrics: dict[str, np.ndarray], kpis: tuple[str, ...]) -> None:
    missing = [k for k in ("time_s", *(f"kpi/{k}" for k in kpis)) if k not in metrics]
    if missing:
        raise RunDirError(f"metrics.csv lacks the column(s) {', '.join(missing)}")


def tail_start(metrics: dict[str, np.ndarray], tail: float) -> int:
    """The metrics row a window over the last ``tail`` of a run starts at: the last row at or
    before ``(1 - tail)`` of the run (the first row, that is from the very start, for tail 1)."""
    t = metrics["time_s"]
    return int(np.flatnonzero(t <= float(t[-1]) * (1 - tail) + 1e-9)[-1])


def kpi_rates(
    scenario: dict,
    metrics: dict[str, np.ndarray],
    n_devices: int,
    kpis: tuple[str, ...],
    start: int = 0,
    stop: int = -1,
) -> dict[str, float]:
    """The increase of each cumulative ``kpi/<name>`` column of ``kpis`` from metrics row ``start``
    to row ``stop`` (from the very start when ``start`` is 0), per device per day of the control
    ticks the rows between them account for."""
    _require(metrics, kpis)
    t, dt = metrics["time_s"], float(scenario["control_period"])
    end = float(t[-1])
    stop = stop % len(t)
    seconds = _accounted_s(float(t[stop]), end, dt) - (0.0 if start == 0 else _accounted_s(float(t[start]), end, dt))
    if seconds <= 0:
        raise RunDirError("metrics.csv has no control tick between those rows")
    days = seconds / 86400.0
    before = {k: 0.0 if start == 0 else float(metrics[f"kpi/{k}"][start]) for k in kpis}
    return {k: (float(metrics[f"kpi/{k}"][stop]) - before[k]) / n_devices / days for k in kpis}


def reward_of(scenario: dict, rates: dict[str, float]) -> float:
    """The reward of the REWARD_KPIS' ``rates`` under the scenario's reward weights."""
    weights = scenario["reward"]
    return -(
        rates["cost"]
        + weights["discomfort_per_degh"] * rates["discomfort_degh"]
        + weights["overload_per_kwh"] * rates["feeder_overload_kwh"]
    )


def final_reward(scenario: dict, metrics: dict[str, np.ndarray], n_devices: int, tail: float = DEFAULT_TAIL) -> float:
    """Reward per device per day over the last ``tail`` of a run (see the module docstring).

    The window runs from the last metrics row at or before ``(1 - tail)`` of the run (from the
    very start when that is the first row) to the last row, and is as long as the control
    ticks it holds.
    """
    _require(metrics, REWARD_KPIS)
    return reward_of(scenario, kpi_rates(scenario, metrics, n_devices, REWARD_KPIS, tail_start(metrics, tail)))


def reward_curve(scenario: dict, metrics: dict[str, np.ndarray], n_devices: int) -> np.ndarray:
    """The reward per device per day over each metrics interval (R - 1,) of a run of R rows: from
    the start to row 1, then from each row to the next (NaN for an interval without a tick)."""
    _require(metrics, REWARD_KPIS)
    t, dt = metrics["time_s"], float(scenario["control_period"])
    accounted = np.array([0.0, *(_accounted_s(float(x), float(t[-1]), dt) for x in t[1:])])
    days = np.diff(accounted) / 86400.0
    rates = {}
    for k in REWARD_KPIS:
        increase = np.diff(np.concatenate([[0.0], metrics[f"kpi/{k}"][1:]]))
        rates[k] = np.divide(increase, n_devices * days, out=np.full(len(days), np.nan), where=days > 0)
    return reward_of(scenario, rates)


def bytes_sent_per_device_per_day(summary: dict) -> float:
    """Bytes the devices' radios sent over the whole run, per device per day: summary.json's
    ``comm_per_device_day.bytes_sent``, from ``comm.bytes_sent`` by the same definition."""
    run = summary["run"]
    return per_device_day(summary["comm"]["bytes_sent"], run["n_devices"], run["simulated_s"])


def run_values(
    path: Path, scenario: dict, metrics: dict[str, np.ndarray], summary: dict, tail: float = DEFAULT_TAIL
) -> RunValues:
    """A completed run's coordinates; an interrupted run is refused (its window would differ)."""
    run = summary["run"]
    if run["status"] != "completed":
        raise RunDirError(
            f"{path}: the run is {run['status']} at {run['simulated_s'] / 3600:g} h of {run['horizon_s'] / 3600:g} h; "
            f"finish it with fleet resume {path}, or leave it out of the comparison"
        )
    try:
        reward = final_reward(scenario, metrics, run["n_devices"], tail)
    except RunDirError as e:
        raise RunDirError(f"{path}: {e}") from None
    return RunValues(str(path), int(scenario["seed"]), bytes_sent_per_device_per_day(summary), reward)


# --- grouping and labels -----------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; a site's network mix (``{wifi: 0.7, lte-m: 0.3}``) is one leaf."""
    if isinstance(value, dict) and not _SITE_NETWORK.match(prefix):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def scenario_fields(scenario: dict) -> dict[str, Any]:
    """The fields that make a run a different point: every scenario leaf but the ignored ones,
    with the learner's parameters as its config resolves them (defaults filled in)."""
    from pydantic import ValidationError

    from fleet.learners import REGISTRY

    learner = scenario["learner"]
    entry = REGISTRY.get(learner["name"])
    if entry is None:
        raise ConfigError(
            f"learner {learner['name']!r} is not registered in this version of fleet; known: "
            f"{', '.join(sorted(REGISTRY))}"
        )
    try:
        params = entry.config_cls.model_validate(learner.get("params") or {}).model_dump(mode="json")
    except ValidationError:
        raise ConfigError(f"learner.params of {learner['name']!r} are not valid for this version of fleet") from None
    kept = {k: v for k, v in scenario.items() if k not in IGNORED}
    return _flatten({**kept, "learner": {"name": learner["name"], "params": params}})


def _differing(groups: list[dict[str, Any]]) -> list[str]:
    """Keys whose values differ between groups: learner first, then in scenario order. A learner
    parameter counts only where it differs between groups of the same learner."""

    def differs(key: str, members: list[dict[str, Any]]) -> bool:
        return len({json.dumps(g.get(key, "<absent>"), sort_keys=True) for g in members}) > 1

    keys = list(dict.fromkeys(k for g in groups for k in g))
    keys = [k for k in keys if k.startswith("learner.")] + [k for k in keys if not k.startswith("learner.")]
    out = []
    for key in keys:
        if key.startswith("learner.params."):
            same_learner = [
                [g for g in groups if g["learner.name"] == name]
                for name in dict.fromkeys(g["learner.name"] for g in groups)
            ]
            if any(differs(key, members) for members in same_learner):
                out.append(key)
        elif differs(key, groups):
            out.append(key)
    return out


def _show(value: Any) -> str:
    if isinstance(value, dict):  # a network mix
        return "+".join(k if v == 1 else f"{k} {v:g}" for k, v in value.items())
    return f"{value:g}" if isinstance(value, float) else str(value)


def _usual(groups: list[dict[str, Any]], varying: list[str]) -> dict[tuple[str | None, str], Any]:
    """The most common value of each varying field over ``groups`` (the first seen on a tie),
    keyed ``(None, field)``, or ``(learner, field)`` for a learner parameter, which counts among
    the groups of its learner. A label leaves these out, so that a field most points share does
    not fill every line of a legend."""
    usual: dict[tuple[str | None, str], Any] = {}
    for key in varying:
        param = key.startswith("learner.params.")
        for name in dict.fromkeys(g["learner.name"] for g in groups) if param else [None]:
            values = [g[key] for g in groups if key in g and name in (None, g["learner.name"])]
            if values:
                usual[(name, key)] = max(values, key=values.count)
    return usual


def _unusual(fields: dict[str, Any], learner: str, usual: dict[tuple[str | None, str], Any]) -> dict[str, Any]:
    """``fields`` less those at their usual value; the learner's name is always kept."""
    missing = object()

    def usual_value(key: str) -> Any:
        return usual.get((learner if key.startswith("learner.params.") else None, key), missing)

    return {k: v for k, v in fields.items() if k == "learner.name" or v != usual_value(k)}


def _label(fields: dict[str, Any], learner: str, n_sites: int) -> str:
    """``diffusion-v1, comm.dtype=int8, network=nb-iot`` from the fields that set a point apart;
    when the network mixes of all ``n_sites`` sites are among them they make one part
    (``network=wifi 0.8+lte-m 0.2 / wifi`` when the sites differ)."""
    if not fields:
        return learner
    nets = [_show(v) for k, v in fields.items() if _SITE_NETWORK.match(k)]
    whole_fleet = len(nets) == n_sites
    parts = []
    for key, value in fields.items():
        if _SITE_NETWORK.match(key) and whole_fleet:
            if nets:
                parts.append(f"network={nets[0] if len(set(nets)) == 1 else ' / '.join(nets)}")
                nets = []
        elif key in ("learner.name", "name"):
            parts.append(_show(value))
        else:
            parts.append(f"{key.removeprefix('learner.params.')}={_show(value)}")
    return ", ".join(parts)


def unlabelled(points: list[Point]) -> str:
    """What the labels of ``points`` leave out, the usual value of each field that sets points
    apart: ``network=wifi 0.8+lte-m 0.2; diffusion-v1: comm.dtype=float32`` ("" when none). A
    learner's parameter is named only where its points differ in it."""
    groups = [{"learner.name": p.learner} | p.fields for p in points]
    usual = _usual(groups, list(dict.fromkeys(k for g in groups for k in g if k != "learner.name")))
    parts = []
    for learner in [None, *dict.fromkeys(p.learner for p in points)]:
        members = [g for g in groups if learner in (None, g["learner.name"])]
        own = {k: v for (name, k), v in usual.items() if name == learner and any(g.get(k) != v for g in members)}
        if own:
            label = _label(own, "", n_sites=0)  # the fleet's size is not known here: each site by name
            parts.append(label if learner is None else f"{learner}: {label}")
    return "; ".join(parts)


def comm_vs_reward(
    runs: list[tuple[Path, dict, dict[str, np.ndarray], dict]], tail: float = DEFAULT_TAIL
) -> list[Point]:
    """One point per group of runs that differ only in their seed, in the order the groups first
    appear; ``runs`` are ``(path, scenario, metrics, summary)`` as :func:`fleet.results.load_run` reads them."""
    if not 0 < tail <= 1:
        raise ConfigError(
            f"tail must be in (0, 1], the fraction of each run the final reward is taken over; got {tail:g}"
        )
    groups: dict[str, tuple[dict[str, Any], list[RunValues]]] = {}
    for path, scenario, metrics, summary in runs:
        fields = scenario_fields(scenario)
        values = run_values(path, scenario, metrics, summary, tail)
        _, members = groups.setdefault(json.dumps(fields, sort_keys=True), (fields, []))
        twin = next((r for r in members if r.seed == values.seed), None)
        if twin is not None:
            raise ConfigError(
                f"{twin.path} and {path} are the same scenario with the same seed ({values.seed}); "
                f"a point's confidence interval needs runs with different seeds, so leave one of them out"
            )
        members.append(values)
    all_fields = [f for f, _ in groups.values()]
    varying = _differing(all_fields)
    usual = _usual(all_fields, varying)
    points = []
    for fields, members in groups.values():
        own = {k: fields[k] for k in varying if k in fields}
        n_sites = sum(1 for k in fields if _SITE_NETWORK.match(k))
        points.append(
            Point(
                label=_label(_unusual(own, fields["learner.name"], usual), fields["learner.name"], n_sites),
                learner=fields["learner.name"],
                fields=own,
                runs=tuple(members),
                bytes_sent_per_device_per_day=estimate([r.bytes_sent_per_device_per_day for r in members]),
                reward_per_device_per_day=estimate([r.reward_per_device_per_day for r in members]),
            )
        )
    return points


# --- the numbers behind the plot ---------------------------------------------------------


def points_csv(points: list[Point]) -> str:
    """A row per point: label, seeds, means and 95% CI half-widths (empty for one seed), runs."""
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(
        [
            "label",
            "n_seeds",
            "seeds",
            "bytes_sent_per_device_per_day",
            "bytes_sent_ci95_half_width",
            "reward_per_device_per_day",
            "reward_ci95_half_width",
            "runs",
        ]
    )
    for p in points:
        b, r = p.bytes_sent_per_device_per_day, p.reward_per_device_per_day
        w.writerow(
            [
                p.label,
                len(p.runs),
                " ".join(str(x.seed) for x in p.runs),
                repr(b.mean),
                _opt(b.ci95_half_width),
                repr(r.mean),
                _opt(r.ci95_half_width),
                " ".join(x.path for x in p.runs),
            ]
        )
    return text.getvalue()


def points_json(points: list[Point], tail: float) -> str:
    """The points with their definitions, the fields that set each apart and every run's values."""
    doc = {
        "reward_per_device_per_day": (
            "-(cost + discomfort_per_degh * discomfort_degh + overload_per_kwh * feeder_overload_kwh) "
            f"per device per day over the last {tail:g} of each run"
        ),
        "bytes_sent_per_device_per_day": (
            "bytes sent by the device radios (on the air, all workloads) per device per day over the whole run"
        ),
        "tail": tail,
        "confidence": CONFIDENCE,
        "points": [{**asdict(p), "n_seeds": len(p.runs)} for p in points],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _opt(x: float | None) -> str:
    return "" if x is None else repr(x)
