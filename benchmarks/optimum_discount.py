"""What a discount costs: the perfect-information optimum of one seed's houses at the discount
per tick of several learner horizons (docs/studies/discount.md)::

    python benchmarks/optimum_discount.py --seed 0

The learning study's world (``thermostats-small-v1``, or ``--scenario``, at 40 days and 15-minute control), its
last 5 days (after a day to settle, as ``benchmarks/study_learning.py optimum``), one degree-hour
outside the band priced at 1 (the scenario's reward). For each ``discount_horizon`` the optimum
of the discounted objective (:func:`fleet.optimum.optimal_control` with the discount per tick of
:meth:`fleet.learners.configs.ActorCriticConfig.discount`) and its plain cost and discomfort per
device-day; the thermostat's from a run of ``rule-based-v1`` on the same houses and days, when
its run directory is given (``--thermostat RUN``). Writes ``benchmarks/results/optimum-discount-seed<S>.json``
(``optimum-discount-<scenario>-seed<S>.json`` for another scenario).
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

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "thermostats-small-v1"
WORLD = ["horizon=40d", "control_period=15min"]
TAIL_DAYS = 5
HORIZONS = {"none": None, "24.87h (0.99 per 15 min)": "24.87h", "24h": "24h", "4.87h (0.95 per 15 min)": "4.87h"}
"""Learner horizons compared: label -> ``discount_horizon`` (None: not discounted)."""


def optimum_at(sc: Scenario, horizon: str | None, weight: float | None = None) -> dict[str, float]:
    """Cost and discomfort per device-day over the last TAIL_DAYS of the houses of scenario ``sc``
    (its seed's), the optimum at the discount of ``horizon`` per control tick, a degree-hour outside
    the band priced at ``weight`` (None: the scenario's reward's price)."""
    world, end = build_world(sc, Streams(sc.seed)), sc.horizon
    times = np.arange(end - (TAIL_DAYS + 1) * 86400, end, sc.control_period)
    window = Window(times, times >= end - TAIL_DAYS * 86400, sc.control_period)
    start = world.occupancy.band(times[0])[0] + 0.5
    gamma = 1.0 if horizon is None else ActorCriticConfig(discount_horizon=horizon).discount(sc.control_period)
    price = sc.reward.discomfort_per_degh if weight is None else weight
    best = optimal_control(world, window, price, start, discount=gamma)
    return {
        "gamma_per_tick": gamma,
        "cost_per_device_day": float(best.cost.mean() / TAIL_DAYS),
        "discomfort_degh_per_device_day": float(best.discomfort_degh.mean() / TAIL_DAYS),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenario", default=SCENARIO, help="scenario name or file (at 40 d, 15 min)")
    parser.add_argument("--thermostat", type=Path, help="a rule-based-v1 run of the same seed and world")
    args = parser.parse_args()
    sc = load_scenario(args.scenario, WORLD, args.seed)
    rows = {label: optimum_at(sc, h) for label, h in HORIZONS.items()}
    named = "" if args.scenario == SCENARIO else f" --scenario {args.scenario}"
    out = {"command": f"python benchmarks/optimum_discount.py --seed {args.seed}{named}", "optimum": rows}
    if args.thermostat:
        out["thermostat"] = thermostat_tail(args.thermostat)
    name = "" if args.scenario == SCENARIO else f"{Path(args.scenario).stem}-"
    path = REPO / "benchmarks" / "results" / f"optimum-discount-{name}seed{args.seed}.json"
    path.write_text(json.dumps(out, indent=1))
    for label, row in rows.items():
        print(
            f"{label:>26}: gamma {row['gamma_per_tick']:.4f}, cost {row['cost_per_device_day']:.2f}, "
            f"discomfort {row['discomfort_degh_per_device_day']:.3f} degC*h per device-day"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
