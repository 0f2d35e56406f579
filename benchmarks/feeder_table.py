"""The feeder learners' table: a finished ``fleet study`` of feeder-peak-v1 as the docs print it.

Reads the runs' ``summary.json`` in one or more study folders of the same seeds (``fleet study
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
    "bytes sent /device-day": "comm_per_device_day.bytes_sent",
    "bytes received /device-day": "comm_per_device_day.bytes_received",
}
"""Column -> a run's figure: a dotted path in its summary.json, or ``reward`` (at the scenario's weights)."""


def figure(summary: dict, name: str) -> float:
    """A run's figure ``name`` (a key of :data:`COLUMNS`' values) from its summary.json."""
    if name == "reward":
        return -sum(w * figure(summary, path) for path, w in WEIGHTS.items())
    section, key = name.split(".")
    return summary[section][key]


def per_seed(runs: dict[int, dict]) -> dict[str, dict[int, float]]:
    """Figure -> seed -> value, of one point's runs (seed -> summary.json)."""
    return {name: {seed: figure(summary, name) for seed, summary in runs.items()} for name in COLUMNS.values()}


def load_points(studies: list[Path]) -> dict[str, dict[str, dict[int, float]]]:
    """Point -> its figures per seed, from the finished runs (``runs/<point>-seed<k>/summary.json``) of the
    study folders."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(p for study in studies for p in study.glob("runs/*/summary.json")):
        point, seed = path.parent.name.rsplit("-seed", 1)
        runs.setdefault(point, {})[int(seed)] = json.loads(path.read_text())
    return {point: per_seed(by_seed) for point, by_seed in runs.items()}


def cell(values: list[float]) -> str:
    """``mean ± half-width`` of the 95 % t interval."""
    e = estimate(values)
    return f"{e.mean:,.0f}" + ("" if e.ci95_half_width is None else f" ± {e.ci95_half_width:,.0f}")


def row(label: str, figures: dict[str, dict[int, float]], minus: dict[str, dict[int, float]] | None = None) -> str:
    """One markdown row: each column's cell over the seeds (less ``minus``'s value of the same seed, over the
    seeds both have)."""
    cells = []
    for key in COLUMNS.values():
        seeds = (
            figures[key]
            if minus is None
            else {s: v - minus[key][s] for s, v in figures[key].items() if s in minus[key]}
        )
        cells.append(cell(list(seeds.values())))
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", type=Path, nargs="+", help="study folders (their finished runs)")
    parser.add_argument("--minus", nargs="*", default=[], metavar="A=B", help="paired differences of point A from B")
    args = parser.parse_args()
    points = load_points(args.studies)
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
