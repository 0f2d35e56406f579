"""The feeder learners' table: a finished ``fleet study`` of feeder-peak-v1 as the docs print it.

Reads ``results/table.json`` of one or more study folders of the same seeds (``fleet study
benchmarks/studies/feeder-peak.yaml``, ``feeder-peak-auction.yaml``) and prints, for every point of each,
the fleet's feeder overload (kWh), peak (kW), cost, discomfort (°C·h), the reward at feeder-peak-v1's own
weights, ``-(cost + 1 x discomfort + 5 x overload)`` (fleet totals, whatever weights a point's learners were
trained with), and the bytes each device sent and received per day; each as the mean over seeds ± the 95 %
Student t half-width. ``--minus A=B`` adds A's differences from B, seed by seed
(paired), for the same figures. Used by docs/studies/auction.md and docs/studies/cooperative.md::

    python benchmarks/feeder_table.py studies/feeder-peak studies/feeder-peak-auction \\
        --minus auction_wifi-mix=independent_wifi-mix
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet.tradeoff import estimate

WEIGHTS = {"kpis.cost": 1.0, "kpis.discomfort_degh": 1.0, "kpis.feeder_overload_kwh": 5.0}
"""feeder-peak-v1's reward: minus the sum of these figures with these weights."""
COLUMNS = {
    "overload kWh": "kpis.feeder_overload_kwh",
    "peak kW": "kpis.peak_kw",
    "cost": "kpis.cost",
    "discomfort °C·h": "kpis.discomfort_degh",
    "reward": "reward",
    "bytes sent /device-day": "bytes_sent",
    "bytes received /device-day": "comm_per_device_day.bytes_received",
}
"""Column -> figure of the study (``reward``: recomputed here at the scenario's weights)."""


def per_seed(point: dict) -> dict[str, dict[str, float]]:
    """Figure -> seed -> value of one point of table.json, with ``reward`` at the scenario's weights."""
    figures = {name: point[name]["per_seed"] for name in COLUMNS.values() if name in point}
    figures["reward"] = {
        seed: -sum(w * point[name]["per_seed"][seed] for name, w in WEIGHTS.items())
        for seed in point["kpis.cost"]["per_seed"]
    }
    return figures


def cell(values: list[float]) -> str:
    """``mean ± half-width`` of the 95 % t interval."""
    e = estimate(values)
    return f"{e.mean:,.0f}" + ("" if e.ci95_half_width is None else f" ± {e.ci95_half_width:,.0f}")


def row(name: str, figures: dict[str, dict[str, float]], minus: dict[str, dict[str, float]] | None = None) -> str:
    """One markdown row: each column's cell over the seeds (less ``minus``'s value of the same seed)."""
    cells = []
    for figure in COLUMNS.values():
        seeds = figures.get(figure, {})
        cells.append(cell([v - (minus[figure][s] if minus else 0.0) for s, v in seeds.items()]) if seeds else "–")
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", type=Path, nargs="+", help="finished study folders (their results/table.json)")
    parser.add_argument("--minus", nargs="*", default=[], metavar="A=B", help="paired differences of point A from B")
    args = parser.parse_args()
    points = {
        name: per_seed(p)
        for study in args.studies
        for name, p in json.loads((study / "results/table.json").read_text())["points"].items()
    }
    header = "| point | " + " | ".join(COLUMNS) + " |\n|---" + "|---:" * len(COLUMNS) + "|"
    print(header)
    for name, figures in points.items():
        print(row(name, figures))
    if args.minus:
        print("\n" + header.replace("| point |", "| A minus B, same seed |", 1))
        for pair in args.minus:
            a, b = pair.split("=")
            print(row(f"{a} − {b}", points[a], points[b]))


if __name__ == "__main__":
    main()
