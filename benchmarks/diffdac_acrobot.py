"""Diff-DAC's multitask Acrobot: diffusion against independent and centralized learners.

    nice -n 10 .venv/bin/python benchmarks/diffdac_acrobot.py   # 5 seeds x 40,000 steps per agent: ~1 h on 2 busy cores

The task of Valcarcel Macua, Davies, Tukiainen and Munoz de Cote (2021), as their reference code
IanRDavies/Diff-DAC runs it: 25 agents, each on its own acrobot whose link mass, length and
moment of inertia are drawn from [0.5, 0.75) U [1.25, 1.5) times nominal
(:mod:`fleet.env.acrobot`), and three learners on it, all with Diff-DAC's reference defaults
(:data:`fleet.env.train.DIFF_DAC`: RMSprop at 7e-4, 5-step returns, gamma 0.99):

- ``diffusion-v1``: adapt, then combine with the two ring neighbours' adapted parameters
  (uniform weights 1/3, the reference's ring of 25);
- ``independent-v1``: the same agents without the combine (specialists, one per task);
- ``centralized-v1``: one network trained on the rollouts of all 25 agents.

A seed s draws the tasks (``task_seed=s``) and the learners' and the episodes' randomness, so
the three learners of a seed face the same 25 acrobots. Each run's figures: the mean return of
the episodes (of all agents) that ended in the last quarter of the run, and over the whole run
(the area under the learning curve). Reported as the mean over seeds with a 95 % Student t
interval, and the differences from diffusion seed by seed (paired). Writes
``benchmarks/results/diffdac-acrobot.json`` (every curve, with the command, the machine, the
commit and the date) and the plot ``docs/img/diffdac-acrobot.png``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_engine import REPO, RESULTS, record, say  # noqa: E402

from fleet.env.acrobot import AcrobotParallelEnv  # noqa: E402
from fleet.env.train import DIFF_DAC, train  # noqa: E402
from fleet.study.stats import t_interval  # noqa: E402

LEARNERS = ("diffusion-v1", "independent-v1", "centralized-v1")
"""The learners compared; the first is the one the others are differenced against."""


@dataclass
class Settings:
    """What one study trains."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds: each draws its own 25 tasks, shared by the three learners."""
    steps: int = 40_000
    """Environment steps per agent: the reference's default run (1e6 steps of all 25 agents);
    the paper's Acrobot runs went to 400,000 (1e7 in all)."""
    agents: int = 25
    """Agents, each with its own task, on a ring."""
    points: int = 20
    """Rows of each learning curve."""


def run(learner: str, seed: int, s: Settings) -> list[dict]:
    """One learner's learning curve on seed ``seed``'s tasks."""
    env = AcrobotParallelEnv(s.agents, task_seed=seed)
    ring = {"graph": nx.cycle_graph(s.agents)} if learner == "diffusion-v1" else {}
    return train(env, learner, DIFF_DAC, steps=s.steps, seed=seed, points=s.points, **ring).curve


def figures(curves: dict[str, dict[int, list[dict]]]) -> dict:
    """Per learner and seed, the last quarter's and the whole run's mean return; over seeds, their
    t intervals and those of the differences from the first learner's, seed by seed."""

    def last_quarter(curve: list[dict]) -> float:
        return _episode_mean(curve[len(curve) - max(1, len(curve) // 4) :])

    out = {}
    for name, measure in (("last_quarter", last_quarter), ("whole_run", _episode_mean)):
        per_seed = {learner: [measure(c) for c in by_seed.values()] for learner, by_seed in curves.items()}
        reference = np.array(per_seed[LEARNERS[0]])
        out[name] = {
            "per_seed": per_seed,
            "mean_ci95": {learner: asdict(t_interval(v)) for learner, v in per_seed.items()},
            f"{LEARNERS[0]}_minus": {
                learner: asdict(t_interval(reference - np.array(v)))
                for learner, v in per_seed.items()
                if learner != LEARNERS[0]
            },
        }
    return out


def _episode_mean(rows: list[dict]) -> float:
    """Mean return over the episodes that ended in ``rows`` (each row's mean weighted by its
    episodes); NaN if none ended."""
    counted = [(r["episodes"], r["mean_return"]) for r in rows if r["episodes"]]
    total = sum(n for n, _ in counted)
    return float(sum(n * m for n, m in counted) / total) if total else float("nan")


def study(s: Settings) -> dict:
    """Every learner on every seed: the JSON that is written."""
    started = time.perf_counter()
    curves: dict[str, dict[int, list[dict]]] = {learner: {} for learner in LEARNERS}
    for seed in s.seeds:
        for learner in LEARNERS:
            t = time.perf_counter()
            curves[learner][seed] = run(learner, seed, s)
            last = curves[learner][seed][-1]["mean_return"]
            say(f"seed {seed} {learner}: last mean return {last:.1f} ({time.perf_counter() - t:.0f} s)")
    return {
        "settings": asdict(s),
        "params": {**DIFF_DAC, "max_grad_norm": str(DIFF_DAC["max_grad_norm"])},  # JSON has no infinity
        "curves": curves,
        "figures": figures(curves),
        "wall_s": time.perf_counter() - started,
    }


def plot(result: dict, path: Path) -> None:
    """Mean episode return against environment steps per agent: each learner's mean over seeds,
    shaded by its 95 % t interval."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for learner, by_seed in result["curves"].items():
        rows = list(by_seed.values())
        x = [r["step"] for r in rows[0]]
        y = np.array([[r["mean_return"] for r in curve] for curve in rows])
        bands = [t_interval(column) for column in y.T]
        ax.plot(x, y.mean(0), label=f"{learner} ({len(rows)} seeds)")
        if len(rows) > 1:
            ax.fill_between(x, [b.low for b in bands], [b.high for b in bands], alpha=0.2)
    ax.set_xlabel("environment steps per agent")
    ax.set_ylabel("mean episode return (all agents)")
    ax.set_title(f"Multitask Acrobot, {result['settings']['agents']} agents, Diff-DAC defaults")
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, default=len(Settings.seeds), help="seeds 0..n-1 [default: %(default)s]")
    p.add_argument("--steps", type=int, default=Settings.steps, help="steps per agent per run [default: %(default)s]")
    p.add_argument("--agents", type=int, default=Settings.agents, help="agents on the ring [default: %(default)s]")
    p.add_argument("--points", type=int, default=Settings.points, help="rows of each curve [default: %(default)s]")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of diffdac-acrobot.json [default: %(default)s]")
    p.add_argument("--png", type=Path, default=REPO / "docs/img/diffdac-acrobot.png", help="where the plot goes")
    args = p.parse_args(argv)
    if min(args.seeds, args.steps, args.points) < 1 or args.agents < 3:
        p.error("--seeds, --steps and --points need at least 1, --agents at least 3 (a ring)")
    torch.set_num_threads(1)  # tensors of 25 agents: more threads only wait on each other
    s = Settings(seeds=tuple(range(args.seeds)), steps=args.steps, agents=args.agents, points=args.points)
    result = study(s)
    record("diffdac-acrobot", result, args.out)
    plot(result, args.png)
    for name, f in result["figures"].items():
        for learner, ci in f["mean_ci95"].items():
            say(f"{name} {learner}: {ci['mean']:.1f} [{ci['low']}, {ci['high']}]")
    return result


if __name__ == "__main__":
    main()
