"""A finished study's results: per-run figures, a table over seeds, learning curves, fleet report.

Into ``DIR/results/``:

- ``table.json`` and ``table.md``: for every point and every figure of ``report.metrics``, the
  mean over seeds with its 95 % intervals (t and bootstrap in the JSON, ``report.interval`` in
  Markdown) and each seed's value; with ``report.reference``, the same for each point's
  differences from the reference, seed by seed (:mod:`fleet.study.stats`), and with
  ``report.pairs`` for each pair's difference;
- ``curves.png``: each curve of ``report.curves``, mean over seeds and its interval at every
  metrics row, a line per point;
- ``report/``: ``fleet report --comm-vs-reward --no-per-run`` of all runs (comm_vs_reward.png
  with its .csv and .json, compare.png), with ``report.comm_vs_reward``;
- ``marl_eval.json`` and ``tensorboard/`` (:mod:`fleet.study.export`).

A run's figures (per device per day, so that fleets and horizons compare):

- ``reward``: :func:`fleet.tradeoff.final_reward` over the last ``report.tail`` of the run;
- ``bytes_sent``: :func:`fleet.tradeoff.bytes_sent_per_device_per_day`, whole run;
- ``tail.<kpi>``, ``per_device_day.<kpi>``: a cumulative KPI over the tail, or the whole run;
- anything else: the number at that dotted path of summary.json.

The ``reward`` curve is the same reward over each metrics interval
(:func:`fleet.tradeoff.reward_curve`); other curves are metrics.csv columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleet.errors import RunDirError
from fleet.results import load_run
from fleet.study.folder import StudyFolder
from fleet.study.spec import ReportConfig, Run, Study
from fleet.study.stats import bootstrap_bounds, bootstrap_interval, t_interval
from fleet.tradeoff import (
    CONFIDENCE,
    bytes_sent_per_device_per_day,
    final_reward,
    kpi_rates,
    reward_curve,
    t_critical,
    tail_start,
)

Curves = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
"""curve -> point -> (time_s (T,), values (T, n seeds)) at metrics rows 1..T."""
PerRun = dict[str, dict[int, dict[str, float]]]
"""point -> seed -> name -> value."""

FIGURES = {
    "reward": "-(cost + discomfort_per_degh * discomfort_degh + overload_per_kwh * feeder_overload_kwh) "
    "per device per day over the last report.tail of the run",
    "bytes_sent": "bytes sent by the device radios (on the air, all workloads) per device per day, whole run",
    "tail": "the KPI's increase per device per day over the last report.tail of the run",
    "per_device_day": "the KPI per device per day, whole run",
}


@dataclass(frozen=True)
class LoadedRun:
    """A finished run of the study, as :func:`fleet.results.load_run` reads it."""

    run: Run
    path: Path
    scenario: dict
    metrics: dict[str, np.ndarray]
    summary: dict

    @property
    def n_devices(self) -> int:
        return int(self.summary["run"]["n_devices"])


def load_runs(study: Study, folder: StudyFolder) -> list[LoadedRun]:
    return [LoadedRun(run, folder.run_path(run), *load_run(folder.run_path(run))) for run in study.runs]


# --- per run ---------------------------------------------------------------------------------


def figure(name: str, r: LoadedRun, tail: float) -> float:
    """One figure of one run (see the module docstring)."""
    if name == "reward":
        return final_reward(r.scenario, r.metrics, r.n_devices, tail)
    if name == "bytes_sent":
        return bytes_sent_per_device_per_day(r.summary)
    kind, _, kpi = name.partition(".")
    if kind in ("tail", "per_device_day"):
        start = tail_start(r.metrics, tail) if kind == "tail" else 0
        return kpi_rates(r.scenario, r.metrics, r.n_devices, (kpi,), start)[kpi]
    node = r.summary
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise RunDirError(f"{r.path / 'summary.json'}: report.metrics names {name!r}, which is not a number there")
    return float(node)


def curve(key: str, r: LoadedRun) -> np.ndarray | None:
    """A curve of one run at metrics rows 1..R-1 (R - 1,): the reward of each interval, or a
    column (None where the run has no such column)."""
    if key == "reward":
        return reward_curve(r.scenario, r.metrics, r.n_devices)
    return r.metrics[key][1:] if key in r.metrics else None


# --- over seeds ------------------------------------------------------------------------------


def _stats(values: list[float], report: ReportConfig) -> dict:
    t = t_interval(values)
    b = bootstrap_interval(values, report.bootstrap.resamples, report.bootstrap.seed)
    return {
        "mean": t.mean,
        "n": t.n,
        "t": None if t.low is None else [t.low, t.high],
        "bootstrap": None if b.low is None else [b.low, b.high],
    }


def figures(study: Study, runs: list[LoadedRun]) -> PerRun:
    """point -> seed -> figure -> value of every run, for ``report.metrics``."""
    report = study.spec.report
    out: dict[str, dict[int, dict[str, float]]] = {p.name: {} for p in study.points}
    for r in runs:
        out[r.run.point][r.run.seed] = {name: figure(name, r, report.tail) for name in report.metrics}
    return out


def table(study: Study, values: PerRun) -> dict:
    """The study's table (see the module docstring) of the runs' :func:`figures`, as written into table.json."""
    report = study.spec.report
    seeds = study.spec.seeds
    per_point = {
        point: {name: [by_seed[k][name] for k in seeds] for name in report.metrics} for point, by_seed in values.items()
    }
    out = {
        "study": study.name,
        "study_file": str(study.path),
        "seeds": list(seeds),
        "confidence": CONFIDENCE,
        "interval": report.interval,
        "bootstrap": {"method": "percentile", **report.bootstrap.model_dump()},
        "tail": report.tail,
        "figures": {
            name: FIGURES.get(name, FIGURES.get(name.partition(".")[0], "the number at this path of summary.json"))
            for name in report.metrics
        },
        "points": {
            point: {
                name: {**_stats(v, report), "per_seed": dict(zip(map(str, seeds), v))} for name, v in by_name.items()
            }
            for point, by_name in per_point.items()
        },
        "reference": report.reference,
    }
    counterparts = study.counterparts()
    if counterparts:
        out["paired"] = {point: _difference(per_point, point, other, report) for point, other in counterparts.items()}
    if report.pairs:
        out["pairs"] = [{"point": a, **_difference(per_point, a, b, report)} for a, b in study.pairs()]
    return out


def _difference(per_point: dict[str, dict[str, list[float]]], point: str, other: str, report: ReportConfig) -> dict:
    """``point - other`` of every figure, seed by seed, over seeds: ``{"minus": other, figure: stats}``."""
    return {
        "minus": other,
        **{
            name: _stats([a - b for a, b in zip(v, per_point[other][name])], report)
            for name, v in per_point[point].items()
        },
    }


def _decimals(mean: float, bounds: list[float] | None) -> int:
    scale = max([abs(mean), *(abs(b - mean) for b in bounds or [])]) or 1.0
    return int(min(6, max(0, 3 - math.floor(math.log10(scale)))))


def _cell(stats: dict, interval: str, signed: bool = False) -> str:
    bounds = stats[interval]
    d = _decimals(stats["mean"], bounds)
    mean = f"{stats['mean']:{'+' if signed else ''}.{d}f}"
    if bounds is None:
        return mean
    if interval == "t":
        return f"{mean} ± {(bounds[1] - bounds[0]) / 2:.{d}f}"
    return f"{mean} [{bounds[0]:.{d}f}, {bounds[1]:.{d}f}]"


def markdown(doc: dict) -> str:
    """table.json as Markdown: the points, then their differences from the reference."""
    interval, names = doc["interval"], list(doc["figures"])
    what = "95% t interval" if interval == "t" else "95% percentile bootstrap interval"
    lines = [
        f"{doc['study']}: mean over seeds {', '.join(map(str, doc['seeds']))} and its {what}",
        "",
        "| point | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    lines += [
        f"| {point} | " + " | ".join(_cell(f[n], interval) for n in names) + " |" for point, f in doc["points"].items()
    ]
    differences = list(doc.get("paired", {}).items())
    differences += [(f["point"], f) for f in doc.get("pairs", [])]
    if differences:
        lines += [
            "",
            "| point minus another, same seed | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        lines += [
            f"| {point} - {f['minus']} | " + " | ".join(_cell(f[n], interval, signed=True) for n in names) + " |"
            for point, f in differences
        ]
    return "\n".join(lines) + "\n"


def curve_band(values: np.ndarray, report: ReportConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (T,) and the interval's bounds (T,), (T,) over seeds of ``values`` (T, n seeds); NaN
    at rows where a seed has no value (a learner's losses before its first update)."""
    ok = np.isfinite(values).all(axis=1)
    mean, low, high = (np.full(len(values), np.nan) for _ in range(3))
    x = values[ok]
    n = values.shape[1]
    mean[ok] = x.mean(axis=1)
    if n < 2:
        low[ok] = high[ok] = mean[ok]
    elif report.interval == "bootstrap":
        low[ok], high[ok] = bootstrap_bounds(x, report.bootstrap.resamples, report.bootstrap.seed)
    else:
        half = t_critical(n - 1) * x.std(axis=1, ddof=1) / math.sqrt(n)
        low[ok], high[ok] = mean[ok] - half, mean[ok] + half
    return mean, low, high


def curves(study: Study, runs: list[LoadedRun]) -> Curves:
    """key -> point -> (time_s (T,), values (T, n seeds)) of every curve that every seed of a point
    has, with a value at some row at least (NaN where it has none); RunDirError for a curve no run has."""
    out: Curves = {}
    by_name = {r.run.name: r for r in runs}
    for key in study.spec.report.curves:
        if key != "reward" and not any(key in r.metrics for r in runs):
            raise RunDirError(f"{study.path}: report.curves names {key!r}, which is a column of no run's metrics.csv")
        out[key] = {}
        for point in study.points:
            members = [by_name[r.name] for r in study.runs_of(point.name)]
            length = min(len(m.metrics["time_s"]) for m in members) - 1
            found = [curve(key, m) for m in members]
            if length < 1 or any(c is None for c in found):
                continue
            values = np.stack([c[:length] for c in found], axis=1)
            if np.isfinite(values).all(axis=1).any():
                out[key][point.name] = (members[0].metrics["time_s"][1 : length + 1], values)
    return out


def final_values(study: Study, runs: list[LoadedRun], names: list[str]) -> PerRun:
    """point -> seed -> curve -> the curve's final value: for ``reward`` the ``reward`` figure (over
    the last ``report.tail``), for a metrics.csv column its last row."""
    out: dict[str, dict[int, dict[str, float]]] = {p.name: {} for p in study.points}
    for r in runs:
        out[r.run.point][r.run.seed] = {
            name: figure("reward", r, study.spec.report.tail) if name == "reward" else float(curve(name, r)[-1])
            for name in names
        }
    return out


def plot_curves(found: Curves, points: list[str], report: ReportConfig, path: Path) -> Path:
    """A panel per curve: each point's mean over seeds and its interval (shaded), a colour per
    point of ``points``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k, points in found.items() if points]
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(6.5 * max(1, len(keys)), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for point, (time_s, values) in found[key].items():
            mean, low, high = curve_band(values, report)
            days, colour = time_s / 86400.0, f"C{points.index(point) % 10}"
            ax.plot(days, mean, color=colour, lw=1.3, label=f"{point} (n={values.shape[1]})")
            ax.fill_between(days, low, high, color=colour, alpha=0.2, lw=0)
        ax.set_xlabel("simulated day")
        ax.set_ylabel("reward per device per day, each metrics interval" if key == "reward" else key)
        ax.legend(fontsize=7)
    what = "t" if report.interval == "t" else "percentile bootstrap"
    fig.suptitle(f"learning curves: mean over seeds and 95% {what} interval", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
