"""The project's learners on mpe2's simple_spread (3 agents, discrete actions): learning curves
over a few seeds, against a uniformly random policy.

    .venv/bin/python benchmarks/train_simple_spread.py            # 3 seeds x 40k steps per learner, ~10 min on 2 cores

Writes ``benchmarks/results/simple-spread.json`` (every curve, with the command, the machine,
the commit and the date) and the plot ``docs/img/simple-spread.png`` (mean over seeds, the seeds' range
shaded). Needs the ``examples`` extra (``pip install -c constraints.txt -e '.[examples]'``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_engine import REPO, RESULTS, record, say  # noqa: E402
from mpe2 import simple_spread_v3  # noqa: E402

from fleet.env.train import random_returns, train  # noqa: E402


@dataclass
class Settings:
    """What one study trains."""

    learners: tuple[str, ...] = ("independent-v1", "diffusion-v1")
    """Learners of :func:`fleet.env.train.train`, each with its default ActorCriticConfig."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (the environment's and the learner's)."""
    steps: int = 40_000
    """Environment steps per run (an episode is 25 steps: 1,600 episodes)."""
    points: int = 20
    """Rows of each learning curve."""
    random_episodes: int = 200
    """Episodes of the random policy per seed."""
    env: dict = field(default_factory=lambda: {"N": 3, "max_cycles": 25, "continuous_actions": False})
    """simple_spread_v3.parallel_env arguments."""


def study(s: Settings) -> dict:
    """Every learner on every seed, and the random policy: the JSON that is written."""
    started = time.perf_counter()
    curves = {learner: {} for learner in s.learners}
    for learner in s.learners:
        for seed in s.seeds:
            curves[learner][seed] = train(
                simple_spread_v3.parallel_env(**s.env), learner, steps=s.steps, seed=seed, points=s.points
            ).curve
            say(f"{learner} seed {seed}: final mean return {curves[learner][seed][-1]['mean_return']:.2f}")
    env = simple_spread_v3.parallel_env(**s.env)
    rand = [float(np.mean(random_returns(env, s.random_episodes, seed))) for seed in s.seeds]
    return {
        "settings": asdict(s),
        "curves": curves,
        "random_mean_return": rand,
        "final_mean_return": {
            learner: [c[-1]["mean_return"] for c in by_seed.values()] for learner, by_seed in curves.items()
        },
        "wall_s": time.perf_counter() - started,
    }


def plot(result: dict, path: Path) -> None:
    """Mean episode return against environment steps, each learner's seeds' mean and range."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for learner, by_seed in result["curves"].items():
        rows = list(by_seed.values())
        x = [r["step"] for r in rows[0]]
        y = np.array([[r["mean_return"] for r in curve] for curve in rows])
        ax.plot(x, y.mean(0), label=f"{learner} (mean of {len(rows)} seeds)")
        ax.fill_between(x, y.min(0), y.max(0), alpha=0.2)
    ax.axhline(np.mean(result["random_mean_return"]), color="grey", linestyle="--", label="random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean episode return per agent")
    ax.set_title("mpe2 simple_spread_v3, 3 agents, discrete actions")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=Settings.steps, help="environment steps per run [default: %(default)s]")
    p.add_argument("--seeds", type=int, default=len(Settings.seeds), help="seeds 0..n-1 [default: %(default)s]")
    p.add_argument("--points", type=int, default=Settings.points, help="rows of each curve [default: %(default)s]")
    p.add_argument(
        "--random-episodes",
        type=int,
        default=Settings.random_episodes,
        help="episodes of the random policy per seed [default: %(default)s]",
    )
    p.add_argument(
        "--out", type=Path, default=RESULTS, help="folder of simple-spread.json [default: benchmarks/results]"
    )
    p.add_argument("--png", type=Path, default=REPO / "docs/img/simple-spread.png", help="where the plot goes")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # tensors of 3 agents: more threads only wait on each other
    s = Settings(
        seeds=tuple(range(args.seeds)), steps=args.steps, points=args.points, random_episodes=args.random_episodes
    )
    result = study(s)
    record("simple-spread", result, args.out)
    plot(result, args.png)
    return result


if __name__ == "__main__":
    main()
