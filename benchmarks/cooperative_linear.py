"""Reproduction of the cooperative-control learner on a linear system (docs/studies/cooperative.md).

N agents drive one scalar system ``x' = x + gain * sum_i u_i`` towards 0, each with controls
u_i in {-1, 0, 1}; agent i's reward is ``-(x' / scale)^2 - effort * u_i^2``. An agent observes x and its
others' mean control of the previous tick (what a meter of the joint control tells it); it
knows the dynamics (for IER) but nothing of the others' current controls or policies. Acting
alone, an agent should push while |x| is large; all pushing at once overshoots (four agents
move x by up to 4 per tick; from |x| = 1 one of them should push), so the agents must learn to share the work.

    python benchmarks/cooperative_linear.py          # 5 variants x 5 seeds -> results/cooperative_linear.json
    python benchmarks/cooperative_linear.py --quick  # one seed each, a few seconds per run
    python benchmarks/cooperative_linear.py --episodes 900 --variants "independent DQN" "TER+IER+IQL"

Variants: independent DQN (TER, IER and IQL off), the full method, and the full method
without each of the three. Measured per run after training, with greedy policies over 100
episodes: the settled error (mean |x| over each episode's last 10 ticks), the share of those
ticks on which x changes sign (oscillation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from fleet.learners.cooperative.config import CooperativeConfig
from fleet.learners.cooperative.core import CooperativeQ
from fleet.learners.cooperative.imagine import ALL_COPY, COPY_MEAN, IDLE
from fleet.learners.cooperative.replay import Batch
from fleet.study.stats import t_interval

RESULTS = Path(__file__).resolve().parent / "results" / "cooperative_linear.json"
VARIANTS = {
    "independent DQN": {"ter": False, "ier": False, "iql": False},
    "TER+IER+IQL": {},
    "without TER": {"ter": False},
    "without IER": {"ier": False},
    "without IQL": {"iql": False},
}
BASE = {
    "hidden": 32,
    "discount_horizon": 5.0,
    "lr": 1e-3,
    "batch": 32,
    "macro_batch": 128,
    "capacity": 2000,
    "explore_for": 4000.0,
    "target_every": 100,
}
"""The learners' config; durations in ticks (a tick is one second)."""


class LinearSystem:
    """``n`` agents on one scalar system; observations (n, 2): x / scale and the others' mean
    control of the previous tick."""

    def __init__(self, n: int = 4, gain: float = 1.0, effort: float = 0.01, scale: float = 4.0) -> None:
        self.n, self.gain, self.effort, self.scale = n, gain, effort, scale
        self.controls = torch.tensor([[-1.0, 0.0, 1.0]]).repeat(n, 1)
        self.n_others = torch.full((n,), n - 1)
        self.coordination = (IDLE, COPY_MEAN, ALL_COPY)

    def observe(self, x: float, others: torch.Tensor) -> torch.Tensor:
        """(n, 2) observations at ``x`` after the others' summed controls ``others`` (n,)."""
        return torch.stack([torch.full((self.n,), x / self.scale), others / (self.n - 1)], 1)

    def imagine(self, lived: Batch, own: torch.Tensor, others: torch.Tensor):
        """IER's model: from the lived observations (N, B, 2) and controls (N, B), the next observations and rewards."""
        x = lived.obs[..., 0] * self.scale + self.gain * (own + others)
        return torch.stack([x / self.scale, others / (self.n - 1)], -1), -((x / self.scale) ** 2) - self.effort * own**2


def episode(core: CooperativeQ, env: LinearSystem, x: float, ticks: int, learn: bool) -> list[float]:
    """One episode from ``x``; the states visited after each tick."""
    obs, xs = env.observe(x, torch.zeros(env.n)), []
    for _ in range(ticks):
        action = core.act(obs, greedy=not learn)
        u = env.controls.gather(1, action.unsqueeze(1)).squeeze(1)
        x = x + env.gain * float(u.sum())
        others = u.sum() - u
        nxt = env.observe(x, others)
        if learn:
            reward = torch.full((env.n,), -((x / env.scale) ** 2)) - env.effort * u**2
            core.store(
                Batch(obs.unsqueeze(1), action.unsqueeze(1), reward.unsqueeze(1), nxt.unsqueeze(1), others.unsqueeze(1))
            )
            core.update()
        obs = nxt
        xs.append(x)
    return xs


def run(variant: dict, seed: int, episodes: int = 300, ticks: int = 20, evaluate: int = 100) -> dict:
    """Train ``episodes`` episodes of ``ticks`` from x ~ U[-4, 4], then evaluate greedily."""
    env = LinearSystem()
    gen = torch.Generator().manual_seed(seed)
    core = CooperativeQ(CooperativeConfig(**BASE, **variant), env.controls, env.n_others, 2, 1.0, gen, env)
    starts = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(episodes):
        episode(core, env, float(torch.rand(1, generator=starts) * 8 - 4), ticks, learn=True)
    settled, flips = [], []
    for _ in range(evaluate):
        tail = torch.tensor(episode(core, env, float(torch.rand(1, generator=starts) * 8 - 4), ticks, False)[-10:])
        settled.append(float(tail.abs().mean()))
        flips.append(float((tail[1:] * tail[:-1] < 0).double().mean()))
    return {"settled_error": sum(settled) / evaluate, "oscillation": sum(flips) / evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per variant")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=300, help="training episodes per run")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    args = parser.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    torch.set_num_threads(1)
    results = {}
    for name in args.variants:
        runs = [run(VARIANTS[name], seed, args.episodes) for seed in seeds]
        results[name] = {"runs": runs}
        for key in runs[0]:
            iv = t_interval([r[key] for r in runs])
            results[name][key] = {"mean": iv.mean, "low": iv.low, "high": iv.high}
        line = "  ".join(
            f"{k} {v['mean']:.3f} [{v['low']}, {v['high']}]" for k, v in results[name].items() if k != "runs"
        )
        print(f"{name:18s} {line}", flush=True)
    if not args.quick:
        path = RESULTS if args.episodes == 300 else RESULTS.with_stem(f"{RESULTS.stem}-{args.episodes}")
        path.write_text(json.dumps({"config": BASE, "episodes": args.episodes, "variants": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
