"""Paired differences between two points of a finished study, seed by seed, beyond its one reference::

    python benchmarks/paired_difference.py studies/pretraining-finetune diffusion-finetune pretrained-frozen

A study's table pairs every point with ``report.reference`` (:mod:`fleet.study.tables`); this pairs
any point with any other of the same study (here the fine-tuned policy with the frozen one it started
from) from ``DIR/results/table.json``: for every figure of the table, the mean over the seeds of the
point's value minus the other's on the same seed, with its 95 % t interval, and each seed's difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet.tradeoff import estimate


def paired(table: dict, point: str, other: str) -> dict[str, dict]:
    """Figure -> ``{"mean", "ci95", "per_seed"}`` of ``point`` minus ``other`` in a study's table.json."""
    points = table["points"]
    for name in (point, other):
        if name not in points:
            raise SystemExit(f"{name!r} is no point of study {table['study']}; its points: {', '.join(points)}")
    out = {}
    for figure, stats in points[point].items():
        theirs = points[other][figure]["per_seed"]
        diffs = {seed: value - theirs[seed] for seed, value in stats["per_seed"].items()}
        e = estimate(list(diffs.values()))
        out[figure] = {"mean": e.mean, "ci95": e.ci95_half_width, "per_seed": diffs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a finished study's folder")
    parser.add_argument("point")
    parser.add_argument("other", help="the point subtracted, seed by seed")
    args = parser.parse_args()
    table = json.loads((args.folder / "results" / "table.json").read_text())
    for figure, d in paired(table, args.point, args.other).items():
        half = "" if d["ci95"] is None else f" ± {d['ci95']:.2f}"
        seeds = ", ".join(f"{v:+.2f}" for v in d["per_seed"].values())
        print(f"{args.point} - {args.other}, {figure}: {d['mean']:+.2f}{half} (seeds: {seeds})")


if __name__ == "__main__":
    main()
