"""Reproduction of the cooperative-control learner on a linear system (docs/studies/cooperative.md).

N agents drive one scalar system towards 0, each with controls u_i in {-1, 0, 1}:

    v' = inertia * v + gain * sum_i u_i        x' = x + v'

(``inertia = 0``: ``x' = x + gain * sum_i u_i``, the first task of the study). Agent i's reward is
``-(x' / scale)^2 - overshoot * [x x' < 0] - effort * u_i^2``: with ``--overshoot``, a penalty on
every tick whose control carries x past the target. An agent observes x (and v, with inertia) and, unless
``--blind``, its others' mean control of the previous tick (what a meter of the joint control
tells it); it knows the dynamics (for IER) but nothing of the others' current controls or
policies. All agents pushing at once overshoot; they must learn to share the work.

    python benchmarks/cooperative_linear.py --seeds 0 1 2 3 4   # 5 variants -> results/cooperative_linear.json
    python benchmarks/cooperative_linear.py --quick             # one seed each, a few seconds per run
    python benchmarks/cooperative_linear.py --agents 4 --inertia 0 --episodes 300 --variants "independent DQN"
    python benchmarks/cooperative_linear.py --gain 0.25 --overshoot 0.25 --seeds 100   # the overshoot task

Variants: independent DQN (TER, IER and IQL off), the full method, and the full method
without each of the three. Measured per run after training, with greedy policies over 100
episodes from x ~ U[-scale, scale] at rest: the *cost* (mean over the episode's ticks of
(x / scale)^2 plus the overshoot penalty, what the agents minimize less their effort), the *settled
error* (mean |x| over the last half of each episode), the *oscillation* (the share of those ticks
on which x changes sign) and the *crossings* (times per episode that x crosses the target).
Paired differences by seed against the full method are in the results file. Without inertia the
file also holds the *bound*: the same figures for a team that chooses its joint control
centrally and optimally for the cost, from the same starts (:func:`bound`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from pydantic import ValidationError

from fleet.config import format_validation_error
from fleet.errors import ConfigError
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
        overshoot: float = 0.0,
    ) -> None:
        self.n, self.gain, self.inertia, self.effort, self.scale, self.blind = n, gain, inertia, effort, scale, blind
        self.overshoot = overshoot
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

    def cost(self, x: torch.Tensor, x_next: torch.Tensor) -> torch.Tensor:
        """(...) the cost every agent shares of a tick from ``x`` to ``x_next`` (...)."""
        return (x_next / self.scale) ** 2 + self.overshoot * (x * x_next < 0)

    def reward(self, x: torch.Tensor, x_next: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """(...) an agent's reward on a tick from ``x`` to ``x_next`` with its control ``own``."""
        return -self.cost(x, x_next) - self.effort * own**2

    def imagine(self, lived: Batch, own: torch.Tensor, others: torch.Tensor):
        """IER's model: from the lived observations (N, B, F) and controls (N, B), the next observations and rewards."""
        x = lived.obs[..., 0] * self.scale
        v = lived.obs[..., 1] * self.scale if self.inertia > 0 else torch.zeros_like(x)
        x_next, v = self.step(x, v, own + others)
        return self.observe(x_next, v, others), self.reward(x, x_next, own)


def episode(core: CooperativeQ, env: LinearSystem, x0: float, ticks: int, learn: bool) -> list[float]:
    """One episode from ``x0`` at rest; the states x visited after each tick."""
    x, v = torch.full((env.n,), x0), torch.zeros(env.n)
    obs, xs = env.observe(x, v, torch.zeros(env.n)), []
    for _ in range(ticks):
        action = core.act(obs, greedy=not learn)
        u = env.controls.gather(1, action.unsqueeze(1)).squeeze(1)
        others = u.sum() - u
        x_before = x
        x, v = env.step(x, v, u.sum().expand(env.n))
        nxt = env.observe(x, v, others)
        if learn:
            reward = env.reward(x_before, x, u)
            core.store(Batch(*(t.unsqueeze(1) for t in (obs, action, reward, nxt, others))))
            core.update()
        obs = nxt
        xs.append(float(x[0]))
    return xs


def starts(seed: int, count: int, scale: float) -> list[float]:
    """The ``count`` starting states x ~ U[-scale, scale] of a run with ``seed``: training's, then evaluation's."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    return [float(torch.rand(1, generator=gen) * 2 - 1) * scale for _ in range(count)]


def run(
    settings: dict, seed: int, env: LinearSystem, episodes: int = 300, ticks: int = 20, evaluate: int = 100
) -> dict:
    """Train learners with ``settings`` (:class:`CooperativeConfig`'s fields) ``episodes`` episodes of
    ``ticks`` from x ~ U[-scale, scale], then evaluate them greedily."""
    gen = torch.Generator().manual_seed(seed)
    cfg = CooperativeConfig(**settings)
    core = CooperativeQ(cfg, env.controls, env.n_others, env.n_features, 1.0, gen, env)
    x0s = starts(seed, episodes + evaluate, env.scale)
    for x0 in x0s[:episodes]:
        episode(core, env, x0, ticks, learn=True)
    return figures(env, [[x0, *episode(core, env, x0, ticks, learn=False)] for x0 in x0s[episodes:]])


def figures(env: LinearSystem, paths: list[list[float]]) -> dict:
    """Cost, settled error, oscillation and crossings, averaged over episodes: each path holds
    the start and the states after each tick."""
    out = {"cost": [], "settled_error": [], "oscillation": [], "crossings": []}
    for path in paths:
        xs = torch.tensor(path)
        before, after = xs[:-1], xs[1:]
        tail = after[len(after) // 2 :]
        out["cost"].append(float(env.cost(before, after).mean()))
        out["settled_error"].append(float(tail.abs().mean()))
        out["oscillation"].append(float((tail[1:] * tail[:-1] < 0).double().mean()))
        out["crossings"].append(float((before * after < 0).sum()))
    return {key: mean(values) for key, values in out.items()}


def optimal_path(env: LinearSystem, x0: float, ticks: int) -> list[float]:
    """The states of the path from ``x0`` of least total cost (:meth:`LinearSystem.cost`) when
    one planner chooses the joint control ``gain * k``, k in {-n..n}, every tick (without
    inertia). Dynamic programming over the reachable states ``x0 + gain * m``, |m| <= n ticks."""
    if env.inertia:
        raise ValueError("the bound is worked out for a system without inertia")
    reach = env.n * ticks
    x = x0 + env.gain * torch.arange(-reach, reach + 1, dtype=torch.float64)
    nxt = torch.arange(2 * reach + 1).unsqueeze(1) + torch.arange(-env.n, env.n + 1)  # (M, 2n + 1)
    inside = (nxt >= 0) & (nxt <= 2 * reach)
    nxt = nxt.clamp(0, 2 * reach)
    value, policy = torch.zeros(2 * reach + 1, dtype=torch.float64), []
    for _ in range(ticks):
        q = torch.where(inside, env.cost(x.unsqueeze(1), x[nxt]) + value[nxt], torch.inf)
        value, best = q.min(1)
        policy.insert(0, nxt.gather(1, best.unsqueeze(1)).squeeze(1))
    path, i = [x0], reach
    for step in policy:
        i = int(step[i])
        path.append(float(x[i]))
    return path


def bound(env: LinearSystem, seed: int, episodes: int, ticks: int, evaluate: int = 100) -> dict:
    """The figures of :func:`run` for the centrally optimal team, from the same evaluation starts."""
    return figures(
        env, [optimal_path(env, x0, ticks) for x0 in starts(seed, episodes + evaluate, env.scale)[episodes:]]
    )


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
    parser.add_argument("--overshoot", type=float, default=0.0, help="penalty on a tick that carries x past 0")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=JSON", help="learner settings, e.g. idle_impact=1")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.agents < 2:
        parser.error(f"--agents: a shared system needs at least 2 agents, got {args.agents}")
    if args.overshoot < 0:
        parser.error(f"--overshoot: a penalty is at least 0, got {args.overshoot}")
    seeds = args.seeds[:1] if args.quick else args.seeds
    task = {
        "n": args.agents,
        "gain": args.gain,
        "inertia": args.inertia,
        "blind": args.blind,
        "overshoot": args.overshoot,
    }
    env = LinearSystem(**task)
    try:
        config = learner_config(args.set)
    except ConfigError as err:
        parser.error(str(err))
    torch.set_num_threads(1)
    results = {}
    for name in args.variants:
        settings = {**config, **VARIANTS[name]}
        results[name] = table(name, {seed: run(settings, seed, env, args.episodes, args.ticks) for seed in seeds})
    if not args.quick:
        out = {"task": task, "config": config, "episodes": args.episodes, "ticks": args.ticks, "variants": results}
        out["paired"] = paired(results)
        if not args.inertia:
            out["bound"] = table("bound", {seed: bound(env, seed, args.episodes, args.ticks) for seed in seeds})
        args.output.write_text(json.dumps(out, indent=1) + "\n")


def learner_config(items: list[str]) -> dict:
    """The learners' config: :data:`BASE` with ``KEY=JSON`` items over it, checked by :class:`CooperativeConfig`."""
    config = dict(BASE)
    for item in items:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"--set {item}: expected KEY=JSON, e.g. idle_impact=1") from None
    try:
        CooperativeConfig(**config)
    except ValidationError as err:
        raise format_validation_error(err, "--set") from None
    return config


def table(name: str, runs: dict) -> dict:
    """The runs by seed and each figure's :func:`summary`, printed in one line under ``name``."""
    figs = {key: summary([r[key] for r in runs.values()]) for key in next(iter(runs.values()))}
    print(
        f"{name:18s}", "  ".join(f"{k} {v['mean']:.3f} [{v['low']}, {v['high']}]" for k, v in figs.items()), flush=True
    )
    return {"runs": runs, **figs}


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
