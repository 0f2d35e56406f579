"""auction-v1 with and without its feeder market on feeder-peak-v1, beside independent-v1 and the rule-based thermostat.

Runs each variant for each seed (``fleet run feeder-peak-v1 --set seed=K ...``; every run also runs the
rule-based thermostat on the same houses) and prints the feeder overload, the peak, the scenario's reward
(minus cost, discomfort and overload at the scenario's weights) and the market's bytes per device-day, each
as the mean over seeds with a 95 % Student t interval. Recorded in docs/studies/auction.md::

    nice -n 10 python benchmarks/auction_feeder.py --seeds 3 --horizon 1d --out benchmarks/results/auction-feeder.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fleet.tradeoff import estimate

SCENARIO = "feeder-peak-v1"
VARIANTS = {
    "independent-v1": ["learner.name=independent-v1"],
    "auction-v1": ["learner.name=auction-v1"],
    "auction-v1 + market": ["learner.name=auction-v1", "learner.params.market.period=15min"],
}
"""Name -> ``--set`` overrides."""


def run(overrides: list[str], seed: int, horizon: str, folder: Path) -> dict:
    """The summary.json of one run."""
    sets = [x for o in [f"seed={seed}", f"horizon={horizon}", *overrides] for x in ("--set", o)]
    subprocess.run(
        [sys.executable, "-m", "fleet.cli", "run", SCENARIO, "-o", str(folder), "--device", "cpu", *sets],
        check=True,
        capture_output=True,
    )
    return json.loads((folder / "summary.json").read_text())


def figures(kpis: dict, weights: dict) -> dict[str, float]:
    """Overload (kWh), peak (kW) and reward of a fleet's KPIs."""
    reward = -(
        kpis["cost"]
        + weights["discomfort_per_degh"] * kpis["discomfort_degh"]
        + weights["overload_per_kwh"] * kpis["feeder_overload_kwh"]
    )
    return {
        "overload_kwh": kpis["feeder_overload_kwh"],
        "peak_kw": kpis["peak_kw"],
        "discomfort_degh": kpis["discomfort_degh"],
        "cost": kpis["cost"],
        "reward": reward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--horizon", default="3d", help="simulated time of each run (the scenario's: 3d)")
    parser.add_argument("--out", help="write the figures per variant and seed as JSON here")
    args = parser.parse_args()
    weights = {"discomfort_per_degh": 1.0, "overload_per_kwh": 5.0}  # feeder-peak-v1's reward
    per_seed: dict[str, list[dict]] = {"rule-based-v1": []}
    with tempfile.TemporaryDirectory() as scratch:
        for name, overrides in VARIANTS.items():
            per_seed[name] = []
            for seed in range(args.seeds):
                summary = run(
                    overrides, seed, args.horizon, Path(scratch) / f"{len(per_seed[name])}-{name.replace(' ', '')}"
                )
                row = figures(summary["kpis"], weights)
                row["bytes_per_device_day"] = summary["comm_per_device_day"]["bytes_sent"]
                per_seed[name].append(row)
                if name == "auction-v1":
                    baseline = figures(summary["baseline"], weights)
                    per_seed["rule-based-v1"].append({**baseline, "bytes_per_device_day": float("nan")})
                print(f"{name} seed {seed}: {row}", file=sys.stderr)
    keys = ("overload_kwh", "peak_kw", "discomfort_degh", "cost", "reward", "bytes_per_device_day")
    print("| controller | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, rows in per_seed.items():
        cells = []
        for k in keys:
            e = estimate([r[k] for r in rows])
            cells.append(f"{e.mean:,.0f}" + (f" ± {e.ci95_half_width:,.0f}" if e.ci95_half_width is not None else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        record = {"scenario": SCENARIO, "horizon": args.horizon, "seeds": args.seeds, "runs": per_seed}
        Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
