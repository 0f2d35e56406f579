"""The learning study's two steps that are not runs of the study (docs/studies/learning.md).

The study itself is a study file, run by ``fleet study``::

    fleet study benchmarks/studies/learning-study.yaml -o studies/learning-study

(its imitation variants start from IMITATION_POLICY, which ``imitate`` writes). Then::

    python benchmarks/study_learning.py imitate
    python benchmarks/study_learning.py optimum benchmarks/studies/learning-study.yaml studies/learning-study

``imitate`` clones the perfect-information optimum's decisions into an actor (kept if it
exists); ``optimum`` finds the optimum (:mod:`fleet.optimum`) of each seed's houses over the
study's last days, at several prices of discomfort, beside the study's controllers
(``benchmarks/results/<study>-optimum.json`` and ``docs/studies/<study>/frontier.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fleet.study import Study, load_study
from fleet.tradeoff import estimate

REPO = Path(__file__).resolve().parents[1]
IMITATION_POLICY = "benchmarks/results/imitation-policy.safetensors"
"""The actor that imitates the optimum, as the study files name it."""
TEACHER_SEED, TEACHER_DAYS = 100, 10
"""The optimum is imitated on other houses and weather than the study's (seed 100, not 0-4),
over the first 10 days of the study's scenario."""
WORLD = ["horizon=40d", "control_period=15min"]
"""The learning study's overrides of thermostats-small-v1 (benchmarks/studies/learning-study.yaml)."""
OPTIMUM_WEIGHTS = (0.1, 0.3, 1.0, 3.0)
"""Prices of a degree-hour outside the band at which the perfect-information optimum is found."""
TAIL = ("tail.cost", "tail.discomfort_degh")
"""The study's figures the optimum is set against."""


def summarize(values: list[float]) -> dict[str, float]:
    e = estimate(values)
    return {"mean": e.mean, "ci95": e.ci95_half_width, "n": len(values)}


def imitate() -> None:
    """Write IMITATION_POLICY (kept if it exists): an actor cloned from the optimum's decisions
    on the teacher's houses, with its agreement on them and on 5 days of other houses."""
    from fleet.imitation import agreement, clone, demonstrations, save_policy
    from fleet.learners.stacked import ActorCriticConfig
    from fleet.scenario import load_scenario

    path = REPO / IMITATION_POLICY
    if path.exists():
        print(f"kept {IMITATION_POLICY}")
        return
    teacher = load_scenario("thermostats-small-v1", WORLD, TEACHER_SEED)
    x, y = demonstrations(teacher, TEACHER_DAYS, teacher.reward.discomfort_per_degh)
    actor = clone(x, y, ActorCriticConfig(), len(teacher.fleet.hvac.power_levels_kw), TEACHER_SEED)
    other = load_scenario("thermostats-small-v1", WORLD, TEACHER_SEED + 1)
    held_out = demonstrations(other, 5, other.reward.discomfort_per_degh)
    save_policy(path, actor)
    print(
        f"{IMITATION_POLICY}: the optimum's level in {agreement(actor, x, y):.1%} of its {len(y)} decisions "
        f"on seed {TEACHER_SEED}, {agreement(actor, *held_out):.1%} on 5 days of seed {TEACHER_SEED + 1}"
    )


def optimum(study: Study, folder: Path) -> dict:
    """The perfect-information optimum of every seed's houses over the study's last days (its
    ``report.tail``), at each of OPTIMUM_WEIGHTS, beside the controllers of its table."""
    from tqdm import tqdm

    from fleet.optimum import Window, optimal_control
    from fleet.sim.rng import Streams
    from fleet.sim.world import build_world

    controllers = json.loads((folder / "results" / "table.json").read_text())
    reference = [r for r in study.runs if r.point == study.spec.report.reference]
    points: dict[float, list[dict[str, float]]] = {w: [] for w in OPTIMUM_WEIGHTS}
    for run in tqdm(reference, desc="optimum, seeds", unit="seed"):
        sc = run.scenario
        tail_days = study.spec.report.tail * sc.horizon / 86400
        world, end = build_world(sc, Streams(sc.seed)), sc.horizon
        times = np.arange(end - (tail_days + 1) * 86400, end, sc.control_period)  # a day to settle first
        window = Window(times, times >= end - tail_days * 86400, sc.control_period)
        start = world.occupancy.band(times[0])[0] + 0.5
        for weight in OPTIMUM_WEIGHTS:
            best = optimal_control(world, window, weight, start)
            points[weight].append(
                {TAIL[0]: best.cost.mean() / tail_days, TAIL[1]: best.discomfort_degh.mean() / tail_days}
            )
    rows = {f"optimum-w{w:g}": {key: summarize([p[key] for p in got]) for key in TAIL} for w, got in points.items()}
    at_one = [p[TAIL[0]] for p in points[1.0]]
    above = {
        name: summarize([got[TAIL[0]]["per_seed"][str(r.seed)] - best for r, best in zip(reference, at_one)])
        for name, got in controllers["points"].items()
    }
    out = {
        "command": f"python benchmarks/study_learning.py optimum {study.path} {folder}",
        "weights": OPTIMUM_WEIGHTS,
        "results": rows,
        "per_seed": {f"optimum-w{w:g}": got for w, got in points.items()},
        "cost_above_optimum_w1_same_seed": above,
    }
    (REPO / "benchmarks" / "results" / f"{study.name}-optimum.json").write_text(json.dumps(out, indent=1))
    frontier_plot(rows, controllers["points"], REPO / "docs" / "studies" / study.name / "frontier.png")
    return out


def frontier_plot(optimum_rows: dict, controller_rows: dict, path: Path) -> Path:
    """Cost against discomfort over the last days: the optimum at each weight (a line) and each
    controller (mean and 95 % t interval over seeds); controllers beyond 20 degC*h are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost, disc = TAIL
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r[disc]["mean"] for r in optimum_rows.values()]
    ys = [r[cost]["mean"] for r in optimum_rows.values()]
    ax.plot(xs, ys, "k.-", label="perfect-information optimum")
    for x, y, name in zip(xs, ys, optimum_rows):
        ax.annotate(name.removeprefix("optimum-"), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for name, r in controller_rows.items():
        if r[disc]["mean"] <= 20:
            xerr, yerr = ((s["t"][1] - s["t"][0]) / 2 if s["t"] else None for s in (r[disc], r[cost]))
            ax.errorbar(r[disc]["mean"], r[cost]["mean"], xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=name)
    ax.set(
        xscale="symlog",
        xlabel="discomfort, °C·h per device-day (last days)",
        ylabel="cost per device-day (last days)",
        title="Controllers against the perfect-information optimum",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("imitate", help="clone the optimum into an actor for the imitation variants")
    o = sub.add_parser("optimum", help="the perfect-information optimum of a finished study's houses")
    o.add_argument("study", type=Path, help="the study file, e.g. benchmarks/studies/learning-study.yaml")
    o.add_argument("folder", type=Path, help="its study folder (fleet study ... -o FOLDER), with results/table.json")
    args = parser.parse_args()
    if args.what == "imitate":
        imitate()
    else:
        optimum(load_study(args.study), args.folder)


if __name__ == "__main__":
    main()
