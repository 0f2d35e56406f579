"""What a discount costs: the perfect-information optimum of a study's houses, not discounted and
at the discount per tick of learner horizons (docs/studies/discount.md, docs/studies/pretraining.md)::

    python benchmarks/optimum_discount.py --seed 0 [--thermostat RUN]
    python benchmarks/optimum_discount.py --study benchmarks/studies/pretraining.yaml [--table DIR/results/table.json]

For each ``discount_horizon`` the optimum of the discounted objective (:func:`fleet.optimum.optimal_control`
with the discount per tick of :meth:`fleet.learners.configs.ActorCriticConfig.discount`) and its
plain cost and discomfort per device-day over a run's last days (after a day to settle, as
``benchmarks/study_learning.py optimum``), one degree-hour outside the band priced at the
scenario's reward.

``--seed S``: the learning study's world (``thermostats-small-v1`` at 40 days and 15-minute control),
its last 5 days, at every horizon of :data:`HORIZONS`; the thermostat's figures from a run of
``rule-based-v1`` on the same houses and days when its run directory is given. Writes
``benchmarks/results/optimum-discount-seed<S>.json``.

``--study FILE``: every seed of a study, on the scenario of its reference point (so on the study's
climate and world), over the study's ``report.tail``, not discounted and at the learners' default
horizon (:data:`STUDY_HORIZONS`): per seed, and the mean over seeds with its 95 % t interval. With
``--table`` (the ``results/table.json`` of the finished study, or of another with the same reference
point, world and seeds) also each seed's optimum minus the reference's run, paired by seed, as the
study's table pairs its points. Writes
``benchmarks/results/<study>-optimum.json`` and prints the rows for the study's table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fleet.learners.configs import ActorCriticConfig
from fleet.optimum import Window, optimal_control
from fleet.scenario import Scenario, load_scenario
from fleet.sim.rng import Streams
from fleet.sim.world import build_world
from fleet.tradeoff import estimate

REPO = Path(__file__).resolve().parents[1]
WORLD = ["horizon=40d", "control_period=15min"]
TAIL_DAYS = 5
HORIZONS = {"none": None, "24.87h (0.99 per 15 min)": "24.87h", "24h": "24h", "4.87h (0.95 per 15 min)": "4.87h"}
"""Learner horizons compared: label -> ``discount_horizon`` (None: not discounted)."""
DEFAULT_HORIZON = ActorCriticConfig().discount_horizon
STUDY_HORIZONS = {"not discounted": None, f"at the learners' horizon ({DEFAULT_HORIZON / 3600:.3g} h)": DEFAULT_HORIZON}
"""The horizons a study's table shows: none, and the learners' default (4.87 h, 0.95 per 15-minute tick)."""
FIGURES = {"tail.cost": "cost_per_device_day", "tail.discomfort_degh": "discomfort_degh_per_device_day"}
"""A study's figures (:mod:`fleet.study.tables`) -> the optimum's of the same meaning."""


def optimum_at(
    sc: Scenario, horizon: str | float | None, tail_days: float = TAIL_DAYS, weight: float | None = None
) -> dict[str, float]:
    """Cost and discomfort per device-day over the last ``tail_days`` of ``sc``'s houses, the
    optimum at the discount of ``horizon`` per control tick (None: not discounted), a degree-hour
    outside the band priced at ``weight`` (None: the scenario's reward's price)."""
    world, end = build_world(sc, Streams(sc.seed)), sc.horizon
    times = np.arange(end - (tail_days + 1) * 86400, end, sc.control_period)
    window = Window(times, times >= end - tail_days * 86400, sc.control_period)
    start = world.occupancy.band(times[0])[0] + 0.5
    gamma = 1.0 if horizon is None else ActorCriticConfig(discount_horizon=horizon).discount(sc.control_period)
    price = sc.reward.discomfort_per_degh if weight is None else weight
    best = optimal_control(world, window, price, start, sc.fleet.hvac.mode, discount=gamma)
    return {
        "gamma_per_tick": gamma,
        "cost_per_device_day": float(best.cost.mean() / tail_days),
        "discomfort_degh_per_device_day": float(best.discomfort_degh.mean() / tail_days),
    }


def thermostat_tail(run: Path) -> dict[str, float]:
    """Cost and discomfort per device-day of a finished run over its last TAIL_DAYS, as a study table takes them."""
    from fleet.results import load_run
    from fleet.study.tables import LoadedRun, figure

    loaded = LoadedRun(None, run, *load_run(run))
    tail = TAIL_DAYS / 40
    return {
        "cost_per_device_day": figure("tail.cost", loaded, tail),
        "discomfort_degh_per_device_day": figure("tail.discomfort_degh", loaded, tail),
    }


def summarize(values: list[float]) -> dict[str, float | None]:
    """Mean and 95 % t interval half-width of ``values``."""
    e = estimate(values)
    return {"mean": e.mean, "ci95": e.ci95_half_width, "n": len(values)}


def study_optimum(study_file: Path, table_file: Path | None) -> dict:
    """The optimum of every seed of a study (module docstring): label -> per_seed, mean and, with
    ``table_file``, ``minus_reference`` (the optimum minus the reference's run, seed by seed)."""
    from fleet.study import load_study

    study = load_study(study_file)
    report = study.spec.report
    runs = [r for r in study.runs if r.point == report.reference]
    tail_days = report.tail * runs[0].scenario.horizon / 86400
    table = json.loads(table_file.read_text()) if table_file else None
    out = {}
    for label, horizon in STUDY_HORIZONS.items():
        per_seed = {r.seed: optimum_at(r.scenario, horizon, tail_days) for r in runs}
        row: dict = {"per_seed": per_seed}
        row.update({key: summarize([s[key] for s in per_seed.values()]) for key in FIGURES.values()})
        if table:
            reference = table["points"][report.reference]
            row["minus_reference"] = {
                key: summarize([s[key] - reference[name]["per_seed"][str(seed)] for seed, s in per_seed.items()])
                for name, key in FIGURES.items()
            }
        out[label] = row
    return {"study": study.name, "reference": report.reference, "tail_days": tail_days, "optimum": out}


def markdown_rows(result: dict) -> list[str]:
    """A table row per horizon: cost, minus the reference, discomfort, minus the reference (each ± its interval)."""

    def cell(s: dict, sign: str = "") -> str:
        mean = f"{s['mean']:{sign}.2f}"
        return mean if s["ci95"] is None else f"{mean} ± {s['ci95']:.2f}"

    rows = []
    for label, row in result["optimum"].items():
        cells = []
        for key in FIGURES.values():
            cells.append(cell(row[key]))
            if "minus_reference" in row:
                cells.append(cell(row["minus_reference"][key], "+"))
        rows.append(f"| optimum, {label} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--seed", type=int, default=0)
    what.add_argument("--study", type=Path, help="a study file: the optimum of every seed of its reference point")
    parser.add_argument("--thermostat", type=Path, help="with --seed: a rule-based-v1 run of the same seed and world")
    parser.add_argument("--table", type=Path, help="with --study: a table.json holding the study's reference point")
    args = parser.parse_args()
    if args.study:
        out = study_optimum(args.study, args.table)
        out["command"] = f"python benchmarks/optimum_discount.py --study {args.study}" + (
            f" --table {args.table}" if args.table else ""
        )
        path = REPO / "benchmarks" / "results" / f"{out['study']}-optimum.json"
        path.write_text(json.dumps(out, indent=1))
        print("\n".join(markdown_rows(out)))
        print(f"wrote {path}")
        return
    sc = load_scenario("thermostats-small-v1", WORLD, args.seed)
    rows = {label: optimum_at(sc, h) for label, h in HORIZONS.items()}
    out = {"command": f"python benchmarks/optimum_discount.py --seed {args.seed}", "optimum": rows}
    if args.thermostat:
        out["thermostat"] = thermostat_tail(args.thermostat)
    path = REPO / "benchmarks" / "results" / f"optimum-discount-seed{args.seed}.json"
    path.write_text(json.dumps(out, indent=1))
    for label, row in rows.items():
        print(
            f"{label:>26}: gamma {row['gamma_per_tick']:.4f}, cost {row['cost_per_device_day']:.2f}, "
            f"discomfort {row['discomfort_degh_per_device_day']:.3f} degC*h per device-day"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
