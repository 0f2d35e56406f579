"""The learning study (docs/studies/learning.md): the controllers x five seeds on thermostats-small-v1.

Each run is ``fleet run thermostats-small-v1`` extended to STUDY_DAYS days of 15-minute
control ticks (enough updates per device to see learning at all; the 1-minute default would
need weeks of wall time per seed). Runs go to ``runs/study/<variant>-seed<k>``; then::

    fleet report runs/study/{rule-based,independent,diffusion,centralized}-seed* --comm-vs-reward --no-per-run -o <out>

and :func:`table` gives the study's table (mean and 95% Student t interval over seeds), over
the whole run (learning included) and over its last TAIL_DAYS days (the learned policy).

    python benchmarks/study_learning.py run      # the 125 runs, 2 at a time (about 75 min on 2 cores)
    python benchmarks/study_learning.py table    # results/learning-study.json and the Markdown table
    python benchmarks/study_learning.py optimum  # the same houses' perfect-information optimum, frontier.png

``--days D --only a,b [--winter] [--seeds 5-9]`` makes and tabulates a longer (or shorter)
study of some variants, or one on other seeds, in ``runs/study-<D>d[-winter][-seeds5-9]`` and
``results/learning-study-<D>d[-winter][-seeds5-9].json``; ``pool --only a,b --seeds 5-9``
tabulates those variants over the main study's seeds and the other ones together
(``results/learning-study-<D>d-seeds0-9.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleet.tradeoff import estimate

REPO = Path(__file__).resolve().parents[1]
STUDY_DAYS = 40
TAIL_DAYS = 5
SEEDS = range(5)
AC = ["learner.params.gamma=0.95", "learner.params.shaping_per_degc=0.6", "learner.params.n_steps=8"]
SGD = [*AC, "learner.params.optimizer=sgd", "learner.params.lr=0.3"]
"""Per-device learners: SGD, whose steps average under diffusion (see ``ActorCriticConfig.optimizer``)."""
ADAM = [*AC, "learner.params.optimizer=adam", "learner.params.lr=0.003"]
"""The independent learner's best setting found (per-device Adam; its steps need not average)."""
PPO = [*ADAM, "learner.params.epochs=4", "learner.params.entropy_coef=0.003"]
"""The centralized learner's one network, trained on every device's data at once: 4 clipped
(PPO) epochs on each batch of 100 devices x 8 ticks, and a smaller entropy bonus."""
PRICED = ["learner.params.shaping_per_degc=0", "learner.params.shaping_kwh_per_degc=3"]
"""Shaping priced by the tariff instead of a constant 0.6 per degree (see
``ActorCriticConfig.shaping_kwh_per_degc``): heat is credited at the price paid for it."""
IMITATION_POLICY = "benchmarks/results/imitation-policy.safetensors"
"""The actor that imitates the optimum (``python benchmarks/study_learning.py imitate``)."""
TEACHER_SEED, TEACHER_DAYS = 100, 10
"""The optimum is imitated on other houses and weather than the study's (seed 100, not 0-4),
over the first 10 days of the study's scenario."""
IMITATION = [f"learner.params.init_policy={IMITATION_POLICY}"]
COST_LEANING = ["reward.discomfort_per_degh=0.5"]
"""A user who prices a degree-hour outside the band at 0.5 instead of the scenario's 1.0."""
GREEDY = ["learner.params.evaluate=greedy"]
"""Once learning has ended, act with the policy's most probable action instead of sampling."""
VARIANTS = {
    "rule-based": ["learner.name=rule-based-v1"],
    "rule-based-preheat": ["learner.name=rule-based-v1", "learner.params.preheat_h=3"],
    "independent": ["learner.name=independent-v1", *SGD],
    "diffusion": ["learner.name=diffusion-v1", *SGD],
    "independent-adam": ["learner.name=independent-v1", *ADAM],
    "centralized": ["learner.name=centralized-v1", *PPO],
    "centralized-priced": ["learner.name=centralized-v1", *PPO, *PRICED],
    "centralized-imitation": ["learner.name=centralized-v1", *PPO, *IMITATION],
    "imitation-frozen": ["learner.name=independent-v1", *IMITATION, "learner.params.frozen=true"],
    "diffusion-imitation": ["learner.name=diffusion-v1", *SGD, *IMITATION],
    "independent-imitation": ["learner.name=independent-v1", *SGD, *IMITATION],
    "centralized-priced-w0.5": ["learner.name=centralized-v1", *PPO, *PRICED, *COST_LEANING],
    **{f"centralized-priced-w{w}": ["learner.name=centralized-v1", *PPO, *PRICED, f"reward.discomfort_per_degh={w}"] for w in ("0.6", "0.7", "0.8")},
    "diffusion-imitation-lr0.1": ["learner.name=diffusion-v1", *SGD, "learner.params.lr=0.1", *IMITATION],
    "independent-imitation-adam": ["learner.name=independent-v1", *AC, "learner.params.optimizer=adam", "learner.params.lr=0.0003", *IMITATION],
    "centralized-imitation-w0.5": ["learner.name=centralized-v1", *PPO, *IMITATION, *COST_LEANING],
    "centralized-imitation-priced": ["learner.name=centralized-v1", *PPO, *PRICED, *IMITATION],
    "centralized-imitation-lr3e-4": ["learner.name=centralized-v1", *PPO, "learner.params.lr=0.0003", *IMITATION],
    "diffusion-imitation-lr0.03": ["learner.name=diffusion-v1", *SGD, "learner.params.lr=0.03", *IMITATION],
    "centralized-stopped": ["learner.name=centralized-v1", *PPO],
    "centralized-greedy": ["learner.name=centralized-v1", *PPO, *GREEDY],
    "diffusion-greedy": ["learner.name=diffusion-v1", *SGD, *GREEDY],
    "centralized-priced-w0.5-greedy": ["learner.name=centralized-v1", *PPO, *PRICED, *COST_LEANING, *GREEDY],
}
TRAIN_THEN_TEST = {"centralized-stopped", "centralized-greedy", "diffusion-greedy", "centralized-priced-w0.5-greedy"}
"""Variants that learn until the last TAIL_DAYS days and then act with the policy they have
(``learner.params.learn_until``): their last days are a test of the learned policy, on the
same houses and days as every other variant's, with no learning and (greedy) no exploration."""


WINTER = ["weather.seasonal_amplitude_c=0", "weather.mean_c=-2"]
"""Hold the weather at the scenario's coldest seasonal mean (8 - 10 degC, mid-January) for the
whole run, so that a longer study compares its last days in the same season as the first."""


@dataclass(frozen=True)
class Study:
    """Runs of ``variants`` x ``seeds`` for ``days`` days, optionally in constant winter weather."""

    days: int = STUDY_DAYS
    variants: tuple[str, ...] = tuple(VARIANTS)
    winter: bool = False
    seeds: tuple[int, ...] = tuple(SEEDS)
    """Other seeds than SEEDS make other houses and weather: to confirm on fresh seeds a
    setting that was picked on the first five."""

    @property
    def name(self) -> str:
        """``learning-study`` for the main study, else e.g. ``learning-study-80d-winter``."""
        if self == Study():
            return "learning-study"
        fresh = f"-seeds{self.other_seeds}" if self.other_seeds else ""
        return f"learning-study-{self.days}d" + ("-winter" if self.winter else "") + fresh

    @property
    def other_seeds(self) -> str | None:
        """``FIRST-LAST`` of the seeds when they are not SEEDS, else None."""
        return f"{self.seeds[0]}-{self.seeds[-1]}" if self.seeds != tuple(SEEDS) else None

    @property
    def runs(self) -> Path:
        return REPO / "runs" / self.name.replace("learning-", "")

    @property
    def options(self) -> str:
        """The command-line options that select this study."""
        if self == Study():
            return ""
        fresh = f" --seeds {self.other_seeds}" if self.other_seeds else ""
        return f" --days {self.days} --only {','.join(self.variants)}" + (" --winter" if self.winter else "") + fresh

    @property
    def world_sets(self) -> list[str]:
        """The overrides of thermostats-small-v1 that every variant's run shares."""
        return [f"horizon={self.days}d", "control_period=15min", *(WINTER if self.winter else [])]

    def command(self, variant: str, seed: int) -> list[str]:
        sets = [*self.world_sets, *VARIANTS[variant]]
        if variant in TRAIN_THEN_TEST:
            sets.append(f"learner.params.learn_until={self.days - TAIL_DAYS}d")
        out = (self.runs / f"{variant}-seed{seed}").relative_to(REPO)  # run from REPO
        return ["fleet", "run", "thermostats-small-v1", "--seed", str(seed), "-o", str(out), "-q", *(x for s in sets for x in ("--set", s))]


def run_one(study: Study, variant: str, seed: int) -> str:
    cmd = study.command(variant, seed)
    if (study.runs / f"{variant}-seed{seed}" / "summary.json").exists():
        return f"kept {variant}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = str(Path(sys.executable).parent / "fleet")
    done = subprocess.run([exe, *cmd[1:]], cwd=REPO, env=env, capture_output=True, text=True)
    return f"{variant}-seed{seed}: exit {done.returncode} {done.stderr[-300:]}"


def run_all(study: Study) -> None:
    study.runs.mkdir(parents=True, exist_ok=True)
    if any(IMITATION[0] in VARIANTS[v] for v in study.variants):
        imitate(study)
    jobs = [(variant, seed) for variant in study.variants for seed in study.seeds]
    with ThreadPoolExecutor(2) as pool:
        for line in pool.map(lambda job: run_one(study, *job), jobs):
            print(line, flush=True)


def tail(run: Path, n: int, days: float) -> dict[str, float]:
    """Cost and discomfort per device-day over the last ``days`` of a run, from the cumulative
    KPI columns of its metrics.csv."""
    with (run / "metrics.csv").open() as f:
        rows = [(float(r["time_s"]), float(r["kpi/cost"]), float(r["kpi/discomfort_degh"])) for r in csv.DictReader(f)]
    end = rows[-1]
    start = next(r for r in rows if r[0] >= end[0] - days * 86400)
    span = (end[0] - start[0]) / 86400
    return {"tail_cost_per_device_day": (end[1] - start[1]) / n / span,
            "tail_discomfort_degh_per_device_day": (end[2] - start[2]) / n / span}


def per_run(run: Path) -> dict[str, float]:
    s = json.loads((run / "summary.json").read_text())
    n, days = s["run"]["n_devices"], s["run"]["simulated_s"] / 86400
    k = s["kpis"]
    return {
        "cost_per_device_day": k["cost"] / n / days,
        "discomfort_degh_per_device_day": k["discomfort_degh"] / n / days,
        **tail(run, n, TAIL_DAYS),
        "peak_kw": k["peak_kw"],
        "bytes_per_device_per_day": (s["comm"]["bytes_sent"] + s["comm"]["bytes_received"]) / n / days,  # sent + received
    }


COLUMNS = [
    ("cost_per_device_day", "cost / device-day", 2),
    ("discomfort_degh_per_device_day", "discomfort °C·h / device-day", 1),
    ("tail_cost_per_device_day", f"last {TAIL_DAYS} d: cost", 2),
    ("tail_discomfort_degh_per_device_day", f"last {TAIL_DAYS} d: discomfort", 1),
    ("peak_kw", "peak kW", 0),
    ("bytes_per_device_per_day", "bytes / device-day", 0),
]


def disagreement_plot(runs: Path, seeds: tuple[int, ...], path: Path) -> Path:
    """Relative spread of the parameters across each site over time, every seed of the
    per-device learners (``learner/param_disagreement`` of metrics.csv)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for variant, colour in (("independent", "tab:orange"), ("diffusion", "tab:blue")):
        for seed in seeds:
            with (runs / f"{variant}-seed{seed}" / "metrics.csv").open() as f:
                rows = [(float(r["time_h"]) / 24, float(r["learner/param_disagreement"])) for r in csv.DictReader(f)]
            ax.plot(*zip(*rows), color=colour, alpha=0.6, lw=1, label=variant if seed == seeds[0] else None)
    ax.set(yscale="log", xlabel="simulated day", ylabel="relative std of parameters",
           title=f"Parameter disagreement across devices ({len(seeds)} seeds each)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarize(values: list[float]) -> dict[str, float]:
    e = estimate(values)
    return {"mean": e.mean, "ci95": e.ci95_half_width, "n": len(values)}


PAIRED = ("tail_cost_per_device_day", "tail_discomfort_degh_per_device_day")
"""What the acceptance criterion compares, paired by seed against the rule-based thermostat
(same buildings, weather and noise in both runs of a seed)."""


def per_seed_of(runs_in: Path, variants: tuple[str, ...], seeds: tuple[int, ...]) -> dict[str, list[dict[str, float]]]:
    """Each variant's ``per_run`` figures, seed by seed; exits naming the runs that are missing."""
    missing = [f"{v}-seed{k}" for v in variants for k in seeds if not (runs_in / f"{v}-seed{k}" / "summary.json").exists()]
    if missing:
        sys.exit(f"runs missing in {runs_in}: {', '.join(missing)}; `python benchmarks/study_learning.py run` with the same options makes them")
    return {variant: [per_run(runs_in / f"{variant}-seed{seed}") for seed in seeds] for variant in variants}


def table(study: Study) -> dict:
    per_seed = per_seed_of(study.runs, study.variants, study.seeds)
    out = tabulate(study.name, per_seed, f"python benchmarks/study_learning.py run{study.options} && python benchmarks/study_learning.py table{study.options}",
                   command_lines(study, study.seeds))
    if {"independent", "diffusion"} <= set(study.variants):
        disagreement_plot(study.runs, study.seeds, REPO / "docs" / "studies" / study.name / "disagreement.png")
    return out


def pool(study: Study) -> dict:
    """``study``'s variants on its seeds and on the main study's seeds together, tabulated as
    one study of all those seeds: a setting picked on the first five and checked on others."""
    first = Study(study.days, tuple(VARIANTS), study.winter)
    if set(study.seeds) & set(first.seeds):
        sys.exit(f"pool: --seeds must be other seeds than the main study's, {first.seeds[0]}-{first.seeds[-1]}")
    home = per_seed_of(first.runs, study.variants, first.seeds)
    fresh = per_seed_of(study.runs, study.variants, study.seeds)
    both = Study(study.days, study.variants, study.winter, first.seeds + study.seeds)
    return tabulate(both.name, {v: home[v] + fresh[v] for v in study.variants}, f"python benchmarks/study_learning.py pool{study.options}",
                    command_lines(first, first.seeds, study.variants) + command_lines(study, study.seeds))


def command_lines(study: Study, seeds: tuple[int, ...], variants: tuple[str, ...] | None = None) -> list[str]:
    """The ``fleet run`` command of each run of ``variants`` (default: the study's) x ``seeds``."""
    return [" ".join(study.command(v, s)) for v in variants or study.variants for s in seeds]
def tabulate(name: str, per_seed: dict[str, list[dict[str, float]]], command: str, runs: list[str]) -> dict:
    """Mean and interval of each variant's figures, and the PAIRED differences from rule-based and
    (for variants that start from the clone) from the clone, into ``results/<name>.json`` (with
    the ``command`` that made it and the ``runs``' command lines) and printed as Markdown tables."""
    rows = {variant: {key: summarize([p[key] for p in runs]) for key in runs[0]} for variant, runs in per_seed.items()}
    paired = paired_minus("rule-based", per_seed, lambda v: True)
    paired_clone = paired_minus(CLONE, per_seed, lambda v: IMITATION[0] in VARIANTS[v])
    out = {"command": command, "runs": runs, "results": rows, "paired_minus_rule_based": paired, f"paired_minus_{CLONE}": paired_clone}
    (REPO / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(out, indent=1))
    print("| controller | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for variant, stats in rows.items():
        print(f"| {variant} | " + " | ".join(f"{stats[k]['mean']:.{d}f} ± {stats[k]['ci95']:.{d}f}" for k, _, d in COLUMNS) + " |")
    for baseline, differences in (("rule-based", paired), (CLONE, paired_clone)):
        if differences:
            print(f"\n| minus {baseline}, same seed | last {TAIL_DAYS} d: cost | last {TAIL_DAYS} d: discomfort |\n|---|---:|---:|")
        for variant, stats in differences.items():
            print(f"| {variant} | " + " | ".join(f"{stats[k]['mean']:+.2f} ± {stats[k]['ci95']:.2f}" for k in PAIRED) + " |")
    return out


CLONE = "imitation-frozen"
"""The clone of the optimum, never updated: what the learners that start from it are paired with,
to see whether learning online improves on their start."""


def paired_minus(baseline: str, per_seed: dict[str, list[dict[str, float]]], which) -> dict:
    """PAIRED figures of each variant ``which(variant)`` minus ``baseline``'s, seed by seed (none
    if the study has no ``baseline``)."""
    if baseline not in per_seed:
        return {}
    return {variant: {key: summarize([p[key] - b[key] for p, b in zip(runs, per_seed[baseline])]) for key in PAIRED}
            for variant, runs in per_seed.items() if variant != baseline and which(variant)}


def imitate(study: Study) -> None:
    """Write IMITATION_POLICY (kept if it exists): an actor cloned from the optimum's decisions
    on the teacher's houses, with its agreement on them and on 5 days of other houses."""
    from fleet.imitation import agreement, clone, demonstrations, save_policy
    from fleet.learners.stacked import ActorCriticConfig
    from fleet.scenario import load_scenario

    path = REPO / IMITATION_POLICY
    if path.exists():
        print(f"kept {IMITATION_POLICY}")
        return
    teacher = load_scenario("thermostats-small-v1", study.world_sets, TEACHER_SEED)
    x, y = demonstrations(teacher, TEACHER_DAYS, teacher.reward.discomfort_per_degh)
    actor = clone(x, y, ActorCriticConfig(), len(teacher.fleet.hvac.power_levels_kw), TEACHER_SEED)
    other = load_scenario("thermostats-small-v1", study.world_sets, TEACHER_SEED + 1)
    held_out = demonstrations(other, 5, other.reward.discomfort_per_degh)
    save_policy(path, actor)
    print(f"{IMITATION_POLICY}: the optimum's level in {agreement(actor, x, y):.1%} of its {len(y)} decisions on seed {TEACHER_SEED}, "
          f"{agreement(actor, *held_out):.1%} on 5 days of seed {TEACHER_SEED + 1}")


OPTIMUM_WEIGHTS = (0.1, 0.3, 1.0, 3.0)
"""Prices of a degree-hour outside the band at which the perfect-information optimum is found."""


def optimum(study: Study) -> dict:
    """The perfect-information optimum (:mod:`fleet.optimum`) of every seed's houses over the
    last TAIL_DAYS days, at each of OPTIMUM_WEIGHTS, beside the study's controllers."""
    from tqdm import tqdm

    from fleet.optimum import Window, optimal_control
    from fleet.scenario import load_scenario
    from fleet.sim.rng import Streams
    from fleet.sim.world import build_world

    points: dict[float, list[dict[str, float]]] = {w: [] for w in OPTIMUM_WEIGHTS}
    for seed in tqdm(study.seeds, desc="optimum, seeds", unit="seed"):
        sc = load_scenario("thermostats-small-v1", study.world_sets, seed)
        world, end = build_world(sc, Streams(sc.seed)), sc.horizon
        times = np.arange(end - (TAIL_DAYS + 1) * 86400, end, sc.control_period)  # a day to settle first
        window = Window(times, times >= end - TAIL_DAYS * 86400, sc.control_period)
        start = world.occupancy.band(times[0])[0] + 0.5
        for weight in OPTIMUM_WEIGHTS:
            best = optimal_control(world, window, weight, start)
            points[weight].append({"tail_cost_per_device_day": best.cost.mean() / TAIL_DAYS,
                                   "tail_discomfort_degh_per_device_day": best.discomfort_degh.mean() / TAIL_DAYS})
    rows = {f"optimum-w{w:g}": {key: summarize([p[key] for p in got]) for key in PAIRED} for w, got in points.items()}
    scenario_weight = [p["tail_cost_per_device_day"] for p in points[1.0]]
    above = {v: summarize([per_run(study.runs / f"{v}-seed{k}")["tail_cost_per_device_day"] - best for k, best in zip(study.seeds, scenario_weight)])
             for v in study.variants if all((study.runs / f"{v}-seed{k}" / "summary.json").exists() for k in study.seeds)}
    out = {"command": f"python benchmarks/study_learning.py optimum{study.options}", "weights": OPTIMUM_WEIGHTS, "results": rows,
           "per_seed": {f"optimum-w{w:g}": got for w, got in points.items()}, "cost_above_optimum_w1_same_seed": above}
    (REPO / "benchmarks" / "results" / f"{study.name}-optimum.json").write_text(json.dumps(out, indent=1))
    controllers = REPO / "benchmarks" / "results" / f"{study.name}.json"
    if controllers.exists():
        frontier_plot(rows, json.loads(controllers.read_text())["results"], REPO / "docs" / "studies" / study.name / "frontier.png")
    print(f"| perfect-information optimum, weight | last {TAIL_DAYS} d: cost | last {TAIL_DAYS} d: discomfort |\n|---|---:|---:|")
    for name, stats in rows.items():
        print(f"| {name.removeprefix('optimum-w')} | " + " | ".join(f"{stats[k]['mean']:.2f} ± {stats[k]['ci95']:.2f}" for k in PAIRED) + " |")
    print(f"\n| controller | last {TAIL_DAYS} d: cost above the optimum at weight 1, same seed |\n|---|---:|")
    for name, stats in above.items():
        print(f"| {name} | {stats['mean']:+.2f} ± {stats['ci95']:.2f} |")
    return out


def frontier_plot(optimum_rows: dict, controller_rows: dict, path: Path) -> Path:
    """Cost against discomfort over the last days: the optimum at each weight (a line) and each
    controller (mean and 95 % interval over seeds); controllers beyond 20 degC*h are left out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost, disc = PAIRED
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r[disc]["mean"] for r in optimum_rows.values()]
    ys = [r[cost]["mean"] for r in optimum_rows.values()]
    ax.plot(xs, ys, "k.-", label="perfect-information optimum")
    for x, y, name in zip(xs, ys, optimum_rows):
        ax.annotate(name.removeprefix("optimum-"), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for name, r in controller_rows.items():
        if r[disc]["mean"] <= 20:
            ax.errorbar(r[disc]["mean"], r[cost]["mean"], xerr=r[disc]["ci95"], yerr=r[cost]["ci95"], fmt="o", capsize=3, label=name)
    ax.set(xscale="symlog", xlabel=f"discomfort, °C·h per device-day (last {TAIL_DAYS} d)",
           ylabel=f"cost per device-day (last {TAIL_DAYS} d)", title="Controllers against the perfect-information optimum (5 seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["run", "table", "pool", "optimum", "imitate"],
                        help="make the runs (keeping finished ones), tabulate them, tabulate them with the same variants on the main study's "
                             "seeds (pool, with --seeds), find the perfect-information optimum of their houses, "
                             "or clone the optimum into an actor for the imitation variants (run does it when needed)")
    parser.add_argument("--days", type=int, default=STUDY_DAYS, help=f"simulated days per run (default {STUDY_DAYS}, the main study)")
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants (default: all): " + ", ".join(VARIANTS))
    parser.add_argument("--winter", action="store_true", help="hold the weather at mid-January's (no seasonal cycle): " + " ".join(WINTER))
    parser.add_argument("--seeds", default=f"{SEEDS[0]}-{SEEDS[-1]}",
                        help=f"seeds FIRST-LAST (default {SEEDS[0]}-{SEEDS[-1]}); others make a separate study on other houses and weather")
    args = parser.parse_args()
    variants = args.only.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--only: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    first, _, last = args.seeds.partition("-")
    if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
        parser.error(f"--seeds: expected FIRST-LAST, e.g. 5-9, got {args.seeds!r}")
    study = Study(args.days, tuple(variants), args.winter, tuple(range(int(first), int(last) + 1)))
    {"run": run_all, "table": table, "pool": pool, "optimum": optimum, "imitate": imitate}[args.what](study)


if __name__ == "__main__":
    main()
