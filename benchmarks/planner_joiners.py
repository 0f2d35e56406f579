"""Devices joining mid-run: what diffusion of identification buys a new install (docs/studies/planner.md).

The runs are made by ``fleet study``::

    nice -n 10 fleet study benchmarks/studies/planner-joiners.yaml -o studies/planner-joiners --engine local \
        --num-cpus 1

then::

    python benchmarks/planner_joiners.py studies/planner-joiners

prints, per variant (one run per seed) and for planner-v1 minus planner-alone-v1 paired by seed,
with 95 % Student t intervals over the seeds, about the devices installed anew (the run's first
install, ``fleet.installs[0]``, metrics columns ``installs/0/*``):

- their daily cost relative to the thermostat's on the same houses and day (the run's baseline,
  ``installs/0/baseline_cost``), so that the weather's swings from day to day cancel; its final
  value is its mean over the last TAIL_DAYS days of the run;
- **days to within 5 %**: the days from the install until that relative cost stays within 5 % of
  its final value (0: from the install's own day on);
- **extra cost**: their cost over the first day, and the first 10 days, from the install above
  what their final relative cost would have cost on those days, per joiner (money), and their
  discomfort then, per joiner-day (degC h);
- **reward**: minus their cost and weighted discomfort per joiner-day over those days (the
  reward's feeder overload term is not split by device and is left out);
- **bytes sent**: what every device sent per device-day over the run (the study switches the
  telemetry and consensus workloads off: the diffusion's messages and churn's status messages);

and, day by day from the day before the install, the joiners' cost relative to the thermostat's
and their discomfort per joiner-day, each the mean over the seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from study_planner import DAY, TAIL_DAYS, interval

from fleet.results import read_metrics

WINDOWS = (1, 10)
"""Days from the install over which the joiners' extra cost, discomfort and reward are counted."""
WITHIN = 0.05


def per_day(run: Path) -> dict[str, np.ndarray]:
    """The increase of each cumulative metrics column of ``run`` over each day, (days,) each."""
    m = read_metrics(run / "metrics.csv")
    t = m["time_s"]
    ends = np.minimum(np.searchsorted(t, DAY * np.arange(int(round(t[-1] / DAY)) + 1)), len(t) - 1)
    return {key: np.diff(column[ends]) for key, column in m.items()}


def days_to_within(ratio: np.ndarray, start: int) -> int:
    """Days from day ``start`` until ``ratio`` (days,) stays within WITHIN of its mean over the last TAIL_DAYS."""
    final = ratio[-TAIL_DAYS:].mean()
    off = np.abs(ratio[start:] / final - 1) > WITHIN
    return int(np.flatnonzero(off)[-1] + 1) if off.any() else 0


def joiners(run: Path) -> tuple[int, int, dict[str, np.ndarray]]:
    """The devices of ``run``'s first install, the day it was made, and :func:`per_day` of the run."""
    install = json.loads((run / "summary.json").read_text())["installs"][0]
    return install["devices"], int(round(install["at_s"] / DAY)), per_day(run)


def around_install(run: Path, before: int = 1, after: int = 7) -> np.ndarray:
    """(2, before + after): the joiners' daily cost relative to the thermostat's, and their
    discomfort per joiner-day, on each day from ``before`` days before the install."""
    n, start, days = joiners(run)
    window = slice(start - before, start + after)
    ratio = days["installs/0/cost"] / days["installs/0/baseline_cost"]
    return np.stack([ratio[window], days["installs/0/discomfort_degh"][window] / n])


def figures(run: Path) -> dict[str, float]:
    """The figures of one run (module docstring)."""
    summary = json.loads((run / "summary.json").read_text())
    weight = yaml.safe_load((run / "scenario.yaml").read_text())["reward"]["discomfort_per_degh"]
    n, start, days = joiners(run)
    cost, base = days["installs/0/cost"], days["installs/0/baseline_cost"]
    ratio = cost / base
    out = {"days to within 5 %": days_to_within(ratio, start), "final cost / thermostat": ratio[-TAIL_DAYS:].mean()}
    for length in WINDOWS:
        first = slice(start, start + length)
        discomfort = days["installs/0/discomfort_degh"][first].sum() / (n * length)
        out[f"extra cost per joiner, {length} d"] = (
            cost[first] - out["final cost / thermostat"] * base[first]
        ).sum() / n
        out[f"discomfort per joiner-day, {length} d"] = discomfort
        out[f"reward per joiner-day, {length} d"] = -(cost[first].sum() / (n * length) + weight * discomfort)
    device_days = summary["run"]["n_devices"] * summary["run"]["simulated_s"] / DAY
    out["bytes sent per device-day"] = summary["comm"]["bytes_sent"] / device_days
    return out


def runs_by_variant(study: Path) -> dict[str, dict[str, Path]]:
    """Variant -> seed -> run folder, of the completed runs of a study folder."""
    variants: dict[str, dict[str, Path]] = {}
    for run in sorted((study / "runs").iterdir()):
        if (run / "summary.json").exists():
            variant, seed = run.name.rsplit("-seed", 1)
            variants.setdefault(variant, {})[seed] = run
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (fleet study -o)")
    parser.add_argument("--variant", default="planner", help="the variant with diffusion")
    parser.add_argument("--reference", default="planner-alone", help="the variant without")
    args = parser.parse_args()
    values = {
        name: {seed: figures(run) for seed, run in runs.items()} for name, runs in runs_by_variant(args.study).items()
    }
    for name, runs in runs_by_variant(args.study).items():
        by_seed = values[name]
        keys = next(iter(by_seed.values()))
        shown = {k: interval([f[k] for f in by_seed.values()]) for k in keys}
        print(f"{name} ({len(by_seed)} seeds): {json.dumps(shown, ensure_ascii=False)}")
        ratio, discomfort = np.mean([around_install(run) for run in runs.values()], axis=0)
        print(f"  from the day before the install, cost / thermostat: {np.round(ratio, 3).tolist()}")
        print(f"  discomfort per joiner-day, degC h: {np.round(discomfort, 2).tolist()}")
    mine, theirs = values.get(args.variant, {}), values.get(args.reference, {})
    seeds = sorted(set(mine) & set(theirs))
    if seeds:
        keys = mine[seeds[0]]
        diff = {k: interval([mine[s][k] - theirs[s][k] for s in seeds]) for k in keys}
        print(f"{args.variant} - {args.reference} ({len(seeds)} seeds): {json.dumps(diff, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
