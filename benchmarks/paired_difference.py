"""Paired differences between two points of a finished study, seed by seed, beyond its one reference::

    python benchmarks/paired_difference.py studies/pretraining-finetune diffusion-finetune pretrained-frozen
    python benchmarks/paired_difference.py studies/pretraining-finetune diffusion-finetune rule-based \
        --other-table benchmarks/results/pretraining-seeds5-9.json

A study's table pairs every point with ``report.reference`` (:mod:`fleet.study.tables`); this pairs
any point with any other of the same study (here the fine-tuned policy with the frozen one it started
from) from ``DIR/results/table.json``: for every figure of the table, the mean over the seeds of the
point's value minus the other's on the same seed, with its 95 % t interval, and each seed's difference.
``--other-table``: the other point is in another study's table.json, of the same world and seeds.

``--reward-weights D,O``: also the reward at these prices, ``-(cost + D x discomfort + O x overload)`` per
device-day over the study's tail, from each seed's ``tail.cost``, ``tail.discomfort_degh`` and
``tail.feeder_overload_kwh`` (the study's ``report.metrics`` must list them), with each point's own mean. A
study whose learners price discomfort otherwise (``reward.discomfort_per_degh: 0`` under a
``discomfort_limit``) reports its ``reward`` at that price; this puts every point at the scenario's::

    python benchmarks/paired_difference.py studies/diff-cost diffusion independent --reward-weights 1,1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fleet.tradeoff import estimate


def paired(table: dict, point: str, other: str, other_table: dict | None = None) -> dict[str, dict]:
    """Figure -> ``{"mean", "ci95", "per_seed"}`` of ``point`` minus ``other`` in a study's table.json
    (``other`` in ``other_table`` if given), for the figures that both have (another study may tabulate others)."""
    other_table = other_table or table
    for name, where in ((point, table), (other, other_table)):
        if name not in where["points"]:
            known = ", ".join(where["points"])
            raise SystemExit(f"{name!r} is no point of study {where['study']}; its points: {known}")
    out = {}
    theirs_all = other_table["points"][other]
    for figure, stats in table["points"][point].items():
        if figure not in theirs_all:
            continue
        theirs = theirs_all[figure]["per_seed"]
        diffs = {seed: value - theirs[seed] for seed, value in stats["per_seed"].items()}
        e = estimate(list(diffs.values()))
        out[figure] = {"mean": e.mean, "ci95": e.ci95_half_width, "per_seed": diffs}
    return out


PRICED = ("tail.cost", "tail.discomfort_degh", "tail.feeder_overload_kwh")
"""The figures a reward at given prices is made of: cost, discomfort and feeder overload over the tail."""


def with_reward(table: dict, discomfort_per_degh: float, overload_per_kwh: float) -> dict:
    """``table`` with a figure ``reward_at_prices`` added to every point that has the figures of :data:`PRICED`:
    per seed ``-(cost + discomfort_per_degh * discomfort + overload_per_kwh * overload)``."""
    points = {}
    for name, figures in table["points"].items():
        figures = dict(figures)
        if all(f in figures for f in PRICED):
            cost, discomfort, overload = (figures[f]["per_seed"] for f in PRICED)
            figures["reward_at_prices"] = {
                "per_seed": {
                    seed: -(cost[seed] + discomfort_per_degh * discomfort[seed] + overload_per_kwh * overload[seed])
                    for seed in cost
                }
            }
        points[name] = figures
    return {**table, "points": points}


def read_table(path: Path) -> dict:
    """The table of a finished study's folder (its results/table.json), or a table.json itself; SystemExit naming
    the path when it is neither."""
    file = path / "results" / "table.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: neither a finished study's folder nor a table.json ({e})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a finished study's folder, or a table.json")
    parser.add_argument("point")
    parser.add_argument("other", help="the point subtracted, seed by seed")
    parser.add_argument("--other-table", type=Path, help="the table.json of the study that holds OTHER")
    parser.add_argument("--reward-weights", metavar="D,O", help="also the reward at these prices (module docstring)")
    args = parser.parse_args()
    table = read_table(args.folder)
    other_table = read_table(args.other_table) if args.other_table else None
    if args.reward_weights:
        weights = [float(w) for w in args.reward_weights.split(",")]
        table, other_table = (with_reward(t, *weights) if t else None for t in (table, other_table))
        for name, t in ((args.point, table), (args.other, other_table or table)):
            if "reward_at_prices" in t["points"].get(name, {}):
                e = estimate(list(t["points"][name]["reward_at_prices"]["per_seed"].values()))
                half = "" if e.ci95_half_width is None else f" ± {e.ci95_half_width:.2f}"
                print(f"{name}, reward_at_prices: {e.mean:+.2f}{half}")
    for figure, d in paired(table, args.point, args.other, other_table).items():
        half = "" if d["ci95"] is None else f" ± {d['ci95']:.2f}"
        seeds = ", ".join(f"{v:+.2f}" for v in d["per_seed"].values())
        print(f"{args.point} - {args.other}, {figure}: {d['mean']:+.2f}{half} (seeds: {seeds})")


if __name__ == "__main__":
    main()
