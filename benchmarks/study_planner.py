"""The planner study's figures (docs/studies/planner.md), from the runs of its study files.

The runs are made by ``fleet study``::

    nice -n 10 fleet study benchmarks/studies/planner-forecast.yaml -o studies/planner-forecast --num-cpus 1

then::

    python benchmarks/study_planner.py studies/planner-forecast --optimum

prints a markdown table: per variant, the last five days' cost and discomfort per device-day,
each also minus the plain thermostat's and minus the reference's (``--reference``), paired by
seed, with 95 % Student t intervals over the seeds; the days until the fleet's daily cost
(relative to the thermostat's on the same day) is within 5 % of its final value; and the bytes
on the air per device-day. The plain thermostat of a run is its in-run ``baseline`` where the
run has one, else the run of the ``--thermostat`` variant with the same seed (the same houses,
weather and sensor noise). ``--optimum`` adds the perfect-information optimum of each seed's
houses over the same days (``benchmarks/optimum_discount.py``): undiscounted, discounted at a
24 h horizon, and at the planner's own price of discomfort; kept in ``<study>/optimum.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from fleet.learners.planner.config import DiffusionPlannerConfig
from fleet.study.stats import t_interval

DAY = 86400.0
TAIL_DAYS = 5
KPIS = ("cost", "discomfort_degh")
PLANNER_WEIGHT = DiffusionPlannerConfig().discomfort_per_degh
OPTIMA = {
    "optimum": (None, None),
    "optimum, discounted at 24 h": ("24h", None),
    f"optimum at the planner's weight {PLANNER_WEIGHT:g}": (None, PLANNER_WEIGHT),
}
"""Optimum rows: label -> (discount horizon, None: not discounted; price of a degree-hour outside
the band, None: the scenario's)."""


def daily(run: Path) -> dict[str, np.ndarray]:
    """Per day of ``run``, per device, each (days,): the controller's cost and discomfort
    (``kpi/``), the in-run baseline thermostat's where it has one (``baseline/``), and the bytes sent."""
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    n = json.loads((run / "summary.json").read_text())["run"]["n_devices"]
    t = np.array([float(r["time_s"]) for r in rows])
    ends = [int(np.searchsorted(t, d * DAY)) for d in range(int(round(t[-1] / DAY)) + 1)]
    keys = [f"{side}/{k}" for side in ("kpi", "baseline") for k in KPIS if f"{side}/{k}" in rows[0]]
    out = {}
    for key in [*keys, "net/bytes_sent"]:
        total = np.array([float(rows[min(i, len(rows) - 1)][key]) for i in ends])
        out[key] = np.diff(total) / n
    return out


def with_thermostat(days: dict[str, np.ndarray], plain: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """``days`` with ``thermostat/<kpi>``: its own baseline's, else the plain thermostat run's ``plain``."""
    source = {k: days.get(f"baseline/{k}") for k in KPIS}
    if any(v is None for v in source.values()):
        if plain is None:
            raise SystemExit("a run has no in-run baseline and no --thermostat run of its seed: nothing to pair with")
        source = {k: plain[f"kpi/{k}"] for k in KPIS}
    return {**days, **{f"thermostat/{k}": v for k, v in source.items()}}


def days_to_final(days: dict[str, np.ndarray], within: float = 0.05) -> int:
    """The first day from which the controller's daily cost relative to the thermostat's stays
    within ``within`` of its mean over the last TAIL_DAYS days."""
    ratio = days["kpi/cost"] / days["thermostat/cost"]
    final = ratio[-TAIL_DAYS:].mean()
    off = np.abs(ratio / final - 1) > within
    return int(np.flatnonzero(off)[-1] + 1) if off.any() else 0


def interval(values) -> str:
    """Mean ± the half width of its 95 % t interval."""
    i = t_interval(values)
    return f"{i.mean:.2f}".replace("-", "−") + ("" if i.low is None else f" ± {(i.high - i.low) / 2:.2f}")


def tail(per_seed: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per key, the mean over the last TAIL_DAYS days of each seed's days (seeds,)."""
    return {k: np.array([d[k][-TAIL_DAYS:].mean() for d in per_seed]) for k in per_seed[0]}


def row(name: str, mine: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None, extra: list[str]) -> str:
    """One markdown row: per KPI the value, minus the thermostat, minus ``reference`` (paired by seed)."""
    cells = [name]
    for k in KPIS:
        cells += [interval(mine[f"kpi/{k}"]), interval(mine[f"kpi/{k}"] - mine[f"thermostat/{k}"])]
        cells.append("" if reference is None else interval(mine[f"kpi/{k}"] - reference[f"kpi/{k}"]))
    return "| " + " | ".join(cells + extra) + " |"


def optimum(study: Path, thermostat_runs: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """Label -> seed -> the optimum's cost and discomfort per device-day over each thermostat
    run's last TAIL_DAYS, from ``<study>/optimum.json``, found (and kept there) where missing."""
    from optimum_discount import optimum_at

    from fleet.scenario import load_scenario

    path = study / "optimum.json"
    found = json.loads(path.read_text()) if path.exists() else {}
    for label, (horizon, weight) in OPTIMA.items():
        for run in thermostat_runs:
            if seed_of(run) not in found.setdefault(label, {}):
                found[label][seed_of(run)] = optimum_at(load_scenario(run / "scenario.yaml"), horizon, weight=weight)
                path.write_text(json.dumps(found, indent=1))
    return found


def paired_tail(reference: dict[str, dict[str, np.ndarray]], seeds: list[str]) -> dict[str, np.ndarray] | None:
    """:func:`tail` of the reference's days of ``seeds``; None unless it has every one."""
    return tail([reference[s] for s in seeds]) if set(seeds) <= set(reference) else None


def completed(run: Path) -> bool:
    """Whether ``run`` is a finished run (a run still going has a summary too)."""
    path = run / "summary.json"
    return path.exists() and json.loads(path.read_text())["run"]["status"] == "completed"


def seed_of(run: Path) -> str:
    return run.name.rsplit("-seed", 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study folder (fleet study -o)")
    parser.add_argument("--reference", default="rule-based-preheat", help="variant to pair the others with")
    parser.add_argument("--thermostat", default="rule-based", help="the plain thermostat's variant")
    parser.add_argument("--optimum", action="store_true", help="add the perfect-information optimum's rows")
    args = parser.parse_args()
    variants: dict[str, list[Path]] = {}
    for run in sorted((args.study / "runs").iterdir()):
        if completed(run):
            variants.setdefault(run.name.rsplit("-seed", 1)[0], []).append(run)
    plain = {seed_of(r): daily(r) for r in variants.get(args.thermostat, [])}
    days = {
        name: {seed_of(r): with_thermostat(daily(r), plain.get(seed_of(r))) for r in runs}
        for name, runs in variants.items()
    }
    print(f"| controller (seeds) | cost | − thermostat | − {args.reference} | discomfort °C·h | − thermostat | "
          f"− {args.reference} | days to within 5 % | bytes sent / device-day |")  # fmt: skip
    print("|---" * 9 + "|")
    reference = days.get(args.reference, {})
    for name, by_seed in days.items():
        seeds = sorted(by_seed)
        paired = None if name == args.reference else paired_tail(reference, seeds)
        extra = [interval([days_to_final(by_seed[s]) for s in seeds])]
        extra.append(interval([by_seed[s]["net/bytes_sent"].mean() for s in seeds]))
        print(row(f"{name} ({', '.join(seeds)})", tail([by_seed[s] for s in seeds]), paired, extra))
    if args.optimum:
        found = optimum(args.study, variants[args.thermostat])
        seeds = sorted(plain)
        for label, per_seed in found.items():
            mine = {f"kpi/{k}": np.array([per_seed[s][f"{k}_per_device_day"] for s in seeds]) for k in KPIS}
            mine.update({f"thermostat/{k}": tail([days[args.thermostat][s] for s in seeds])[f"kpi/{k}"] for k in KPIS})
            paired = paired_tail(reference, seeds)
            print(row(f"{label} ({', '.join(seeds)})", mine, paired, ["", ""]))


if __name__ == "__main__":
    main()
