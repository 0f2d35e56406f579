"""Reproduction of the cooperative-control learner on a linear system (docs/studies/cooperative.md).

N agents drive one scalar system towards 0, each with controls u_i in {-1, 0, 1}:

    v' = inertia * v + gain * sum_i u_i        x' = x + v'

(``inertia = 0``: ``x' = x + gain * sum_i u_i``, the first task of the study). Agent i's reward is
``-(x' / scale)^2 - effort * u_i^2``. An agent observes x (and v, with inertia) and, unless
``--blind``, its others' mean control of the previous tick (what a meter of the joint control
tells it); it knows the dynamics (for IER) but nothing of the others' current controls or
policies. All agents pushing at once overshoot; they must learn to share the work.

    python benchmarks/cooperative_linear.py --seeds 0 1 2 3 4   # 5 variants -> results/cooperative_linear.json
    python benchmarks/cooperative_linear.py --quick             # one seed each, a few seconds per run
    python benchmarks/cooperative_linear.py --agents 4 --inertia 0 --episodes 300 --variants "independent DQN"

Variants: independent DQN (TER, IER and IQL off), the full method, and the full method
without each of the three. Measured per run after training, with greedy policies over 100
episodes from x ~ U[-scale, scale] at rest: the *cost* (mean of (x / scale)^2 over the
episode's ticks, what the agents minimize), the *settled error* (mean |x| over the last half of
each episode) and the *oscillation* (the share of those ticks on which x changes sign).
Paired differences by seed against the full method are in the results file.
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
FULL = "TER+IER+IQL"
VARIANTS = {
    "independent DQN": {"ter": False, "ier": False, "iql": False},
    FULL: {},
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
    """``n`` agents on one scalar system; observations (n, F): x / scale, v / scale (with inertia)
    and the others' mean control of the previous tick (unless ``blind``)."""

    def __init__(
        self,
        n: int = 4,
        gain: float = 1.0,
        inertia: float = 0.0,
        effort: float = 0.01,
        scale: float = 4.0,
        blind: bool = False,
    ) -> None:
        self.n, self.gain, self.inertia, self.effort, self.scale, self.blind = n, gain, inertia, effort, scale, blind
        self.controls = torch.tensor([[-1.0, 0.0, 1.0]]).repeat(n, 1)
        self.n_others = torch.full((n,), n - 1)
        self.n_features = 1 + (inertia > 0) + (not blind)
        self.coordination = (IDLE, COPY_MEAN, ALL_COPY)

    def observe(self, x: torch.Tensor, v: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """(..., F) observations of the state ``x``, ``v`` (...) after the others' summed controls ``others`` (...)."""
        features = [x / self.scale] + [v / self.scale] * (self.inertia > 0) + [others / (self.n - 1)] * (not self.blind)
        return torch.stack(features, -1)

    def step(self, x: torch.Tensor, v: torch.Tensor, joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``x``, ``v`` (...) under the joint control ``joint`` (...)."""
        v = self.inertia * v + self.gain * joint
        return x + v, v

    def reward(self, x: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """(...) an agent's reward on reaching ``x`` with its control ``own``."""
        return -((x / self.scale) ** 2) - self.effort * own**2

    def imagine(self, lived: Batch, own: torch.Tensor, others: torch.Tensor):
        """IER's model: from the lived observations (N, B, F) and controls (N, B), the next observations and rewards."""
        x = lived.obs[..., 0] * self.scale
        v = lived.obs[..., 1] * self.scale if self.inertia > 0 else torch.zeros_like(x)
        x, v = self.step(x, v, own + others)
        return self.observe(x, v, others), self.reward(x, own)


def episode(core: CooperativeQ, env: LinearSystem, x0: float, ticks: int, learn: bool) -> list[float]:
    """One episode from ``x0`` at rest; the states x visited after each tick."""
    x, v = torch.full((env.n,), x0), torch.zeros(env.n)
    obs, xs = env.observe(x, v, torch.zeros(env.n)), []
    for _ in range(ticks):
        action = core.act(obs, greedy=not learn)
        u = env.controls.gather(1, action.unsqueeze(1)).squeeze(1)
        others = u.sum() - u
        x, v = env.step(x, v, u.sum().expand(env.n))
        nxt = env.observe(x, v, others)
        if learn:
            reward = env.reward(x, u)
            core.store(Batch(*(t.unsqueeze(1) for t in (obs, action, reward, nxt, others))))
            core.update()
        obs = nxt
        xs.append(float(x[0]))
    return xs


def run(variant: dict, seed: int, env: LinearSystem, episodes: int = 300, ticks: int = 20, evaluate: int = 100) -> dict:
    """Train ``episodes`` episodes of ``ticks`` from x ~ U[-scale, scale], then evaluate greedily."""
    gen = torch.Generator().manual_seed(seed)
    cfg = CooperativeConfig(**BASE, **variant)
    core = CooperativeQ(cfg, env.controls, env.n_others, env.n_features, 1.0, gen, env)
    starts = torch.Generator().manual_seed(10_000 + seed)

    def start() -> float:
        return float(torch.rand(1, generator=starts) * 2 - 1) * env.scale

    for _ in range(episodes):
        episode(core, env, start(), ticks, learn=True)
    cost, settled, flips = [], [], []
    for _ in range(evaluate):
        xs = torch.tensor(episode(core, env, start(), ticks, learn=False))
        tail = xs[ticks // 2 :]
        cost.append(float(((xs / env.scale) ** 2).mean()))
        settled.append(float(tail.abs().mean()))
        flips.append(float((tail[1:] * tail[:-1] < 0).double().mean()))
    return {"cost": mean(cost), "settled_error": mean(settled), "oscillation": mean(flips)}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summary(values: list[float]) -> dict:
    """Mean and 95 % Student t interval of ``values`` (one per seed)."""
    iv = t_interval(values)
    return {"mean": iv.mean, "low": iv.low, "high": iv.high}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per variant, nothing written")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=300, help="training episodes per run")
    parser.add_argument("--ticks", type=int, default=20, help="ticks per episode")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--inertia", type=float, default=0.0, help="v' = inertia v + gain sum u")
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--blind", action="store_true", help="agents do not observe the others' last controls")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.agents < 2:
        parser.error(f"--agents: a shared system needs at least 2 agents, got {args.agents}")
    seeds = args.seeds[:1] if args.quick else args.seeds
    task = {"n": args.agents, "gain": args.gain, "inertia": args.inertia, "blind": args.blind}
    torch.set_num_threads(1)
    results = {}
    for name in args.variants:
        runs = {seed: run(VARIANTS[name], seed, LinearSystem(**task), args.episodes, args.ticks) for seed in seeds}
        results[name] = {"runs": runs, **{key: summary([r[key] for r in runs.values()]) for key in runs[seeds[0]]}}
        line = "  ".join(f"{k} {v['mean']:.3f} [{v['low']}, {v['high']}]" for k, v in list(results[name].items())[1:])
        print(f"{name:18s} {line}", flush=True)
    if not args.quick:
        out = {"task": task, "config": BASE, "episodes": args.episodes, "ticks": args.ticks, "variants": results}
        out["paired"] = paired(results)
        args.output.write_text(json.dumps(out, indent=1) + "\n")


def paired(results: dict) -> dict:
    """Each variant minus the full method, seed by seed: per figure, the mean difference, its
    95 % interval and every seed's difference."""
    if FULL not in results:
        return {}
    full = results[FULL]["runs"]
    out = {}
    for name, res in results.items():
        if name == FULL:
            continue
        out[f"{name} - {FULL}"] = {
            key: {**summary(d := [r[key] - full[s][key] for s, r in res["runs"].items()]), "per_seed": d}
            for key in full[next(iter(full))]
        }
    return out


if __name__ == "__main__":
    main()
