"""Paired differences between two points of a finished study, seed by seed, beyond its one reference::

    python benchmarks/paired_difference.py studies/pretraining-finetune diffusion-finetune pretrained-frozen
    python benchmarks/paired_difference.py studies/pretraining-finetune diffusion-finetune rule-based \
        --other-table benchmarks/results/pretraining-seeds5-9.json

A study's table pairs every point with ``report.reference`` (:mod:`fleet.study.tables`); this pairs
any point with any other of the same study (here the fine-tuned policy with the frozen one it started
from) from ``DIR/results/table.json``: for every figure of the table, the mean over the seeds of the
point's value minus the other's on the same seed, with its 95 % t interval, and each seed's difference.
``--other-table``: the other point is in another study's table.json, of the same world and seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet.tradeoff import estimate


def paired(table: dict, point: str, other: str, other_table: dict | None = None) -> dict[str, dict]:
    """Figure -> ``{"mean", "ci95", "per_seed"}`` of ``point`` minus ``other`` in a study's table.json
    (``other`` in ``other_table`` if given), for the figures of ``point`` that ``other`` has too."""
    other_table = other_table or table
    for name, where in ((point, table), (other, other_table)):
        if name not in where["points"]:
            known = ", ".join(where["points"])
            raise SystemExit(f"{name!r} is no point of study {where['study']}; its points: {known}")
    out = {}
    for figure, stats in table["points"][point].items():
        if figure not in other_table["points"][other]:
            continue  # a figure the other study did not report
        theirs = other_table["points"][other][figure]["per_seed"]
        diffs = {seed: value - theirs[seed] for seed, value in stats["per_seed"].items()}
        e = estimate(list(diffs.values()))
        out[figure] = {"mean": e.mean, "ci95": e.ci95_half_width, "per_seed": diffs}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a finished study's folder")
    parser.add_argument("point")
    parser.add_argument("other", help="the point subtracted, seed by seed")
    parser.add_argument("--other-table", type=Path, help="the table.json of the study that holds OTHER")
    args = parser.parse_args()
    table = json.loads((args.folder / "results" / "table.json").read_text())
    other_table = json.loads(args.other_table.read_text()) if args.other_table else None
    for figure, d in paired(table, args.point, args.other, other_table).items():
        half = "" if d["ci95"] is None else f" ± {d['ci95']:.2f}"
        seeds = ", ".join(f"{v:+.2f}" for v in d["per_seed"].values())
        print(f"{args.point} - {args.other}, {figure}: {d['mean']:+.2f}{half} (seeds: {seeds})")


if __name__ == "__main__":
    main()
