"""The planner study's figures (docs/studies/planner.md), from the runs of its study files.

The runs are made by ``fleet study``::

    nice -n 10 fleet study benchmarks/studies/planner-study.yaml -o studies/planner-study --engine local --num-cpus 2

then::

    python benchmarks/study_planner.py studies/planner-study

prints, per variant and paired by seed with the plain thermostat that every run also runs on
the same houses, weather and sensor noise (its ``baseline``): the last five days' cost and
discomfort per device-day minus the thermostat's, with 95 % Student t intervals over the
seeds; the days until the fleet's daily cost (relative to the thermostat's on the same day)
is within 5 % of its final value; and the bytes on the air per device-day.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from fleet.study.stats import t_interval

DAY = 86400.0
TAIL_DAYS = 5


def daily(run: Path) -> dict[str, np.ndarray]:
    """Per day of ``run``: cost and discomfort per device of the controller (``kpi/``) and of the
    baseline thermostat (``baseline/``), and bytes sent per device, each (days,)."""
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    n = json.loads((run / "summary.json").read_text())["run"]["n_devices"]
    t = np.array([float(r["time_s"]) for r in rows])
    ends = [int(np.searchsorted(t, d * DAY)) for d in range(int(round(t[-1] / DAY)) + 1)]
    out = {}
    for key in ("kpi/cost", "kpi/discomfort_degh", "baseline/cost", "baseline/discomfort_degh", "net/bytes_sent"):
        total = np.array([float(rows[min(i, len(rows) - 1)][key]) for i in ends])
        out[key] = np.diff(total) / n
    return out


def days_to_final(days: dict[str, np.ndarray], within: float = 0.05) -> int:
    """The first day from which the controller's daily cost relative to the thermostat's stays
    within ``within`` of its mean over the last TAIL_DAYS days."""
    ratio = days["kpi/cost"] / days["baseline/cost"]
    final = ratio[-TAIL_DAYS:].mean()
    off = np.abs(ratio / final - 1) > within
    return int(np.flatnonzero(off)[-1] + 1) if off.any() else 0


def interval(values) -> str:
    """Mean ± the half width of its 95 % t interval."""
    i = t_interval(values)
    return f"{i.mean:+.2f}" + ("" if i.low is None else f" ± {(i.high - i.low) / 2:.2f}")


def tails(runs: list[Path]) -> dict[str, np.ndarray]:
    """Per key of :func:`daily`, the mean over the last TAIL_DAYS days of each run (seeds,)."""
    per_seed = [daily(r) for r in runs]
    return {k: np.array([d[k][-TAIL_DAYS:].mean() for d in per_seed]) for k in per_seed[0]}


def paired(runs: list[Path], reference: list[Path]) -> dict[str, str]:
    """The last days' cost and discomfort of ``runs`` minus those of ``reference``, seed by seed."""
    mine, theirs = tails(runs), tails(reference)
    return {
        f"tail {k.split('/')[1]} - reference": interval(mine[k] - theirs[k])
        for k in ("kpi/cost", "kpi/discomfort_degh")
    }


def summary(runs: list[Path]) -> dict[str, str]:
    """The figures of one variant's runs (one per seed)."""
    per_seed = [daily(r) for r in runs]
    tail = tails(runs)
    return {
        "tail cost": interval(tail["kpi/cost"]),
        "tail cost - thermostat": interval(np.subtract(tail["kpi/cost"], tail["baseline/cost"])),
        "tail discomfort": interval(tail["kpi/discomfort_degh"]),
        "tail discomfort - thermostat": interval(
            np.subtract(tail["kpi/discomfort_degh"], tail["baseline/discomfort_degh"])
        ),
        "days to within 5 %": interval([days_to_final(d) for d in per_seed]),
        "bytes sent / device-day": interval([d["net/bytes_sent"].mean() for d in per_seed]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (fleet study -o)")
    parser.add_argument("--reference", default="rule-based-preheat", help="variant to pair the others with")
    args = parser.parse_args()
    variants: dict[str, list[Path]] = {}
    for run in sorted((args.study / "runs").iterdir()):
        if (run / "summary.json").exists():
            variants.setdefault(run.name.rsplit("-seed", 1)[0], []).append(run)
    reference = variants.get(args.reference, [])
    for name, runs in variants.items():
        figures = summary(runs)
        seeds = {r.name.rsplit("-seed", 1)[1] for r in runs}
        against = [r for r in reference if r.name.rsplit("-seed", 1)[1] in seeds]
        if name != args.reference and len(against) == len(runs):
            figures.update(paired(runs, against))
        print(f"{name} ({len(runs)} seeds): {json.dumps(figures, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
