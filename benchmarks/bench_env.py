"""Steps per second of the batched fleet environment and of its PettingZoo view.

    python benchmarks/bench_env.py                      # 500, 2,000 and 10,000 devices, about 2 minutes on 2 cores

city-10k-v1 resized (feeders of 500 devices, as ``bench_engine.py scaling``), every process
of ``fleet run`` underneath (telemetry, consensus, churn, the rule-based baseline). Each
measurement is ``--steps`` control ticks after a reset, random actions drawn beforehand in
each interface's form (an (N,) tensor; a dict of agent -> int), the two interfaces alternating,
``--repeats`` times; the step call alone is timed. Writes ``results/env.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from bench_engine import RESULTS, SCENARIO, city_overrides, record, say

from fleet.env import BatchedFleetEnv, FleetParallelEnv
from fleet.scenario import load_scenario


def seconds_per_step(env, actions: list, seed: int) -> float:
    """Mean wall seconds of ``env.step`` over ``actions`` (one per step) after ``env.reset(seed)``."""
    if isinstance(env, FleetParallelEnv):
        env.reset(seed=seed)
    else:
        env.reset(seed)
    started = time.perf_counter()
    for a in actions:
        env.step(a)
    return (time.perf_counter() - started) / len(actions)


def measure(devices: int, steps: int, repeats: int) -> dict:
    """Device-steps per second of both interfaces for a fleet of ``devices``."""
    scenario = load_scenario(SCENARIO, city_overrides(devices, hours=steps / 60 + 1))
    batched = BatchedFleetEnv(scenario)
    view = FleetParallelEnv(BatchedFleetEnv(scenario))
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randint(0, batched.n_actions, (devices,), generator=gen) for _ in range(steps)]
    dicts = [dict(zip(view.possible_agents, a.tolist())) for a in tensors]
    times = {"batched": [], "parallel": []}
    for r in range(repeats):
        times["batched"].append(seconds_per_step(batched, tensors, r))
        times["parallel"].append(seconds_per_step(view, dicts, r))
    row = {"devices": devices, "steps": steps, "repeats": repeats}
    for name, runs in times.items():
        s = statistics.median(runs)
        row[name] = {"ms_per_step": 1e3 * s, "runs_ms": [1e3 * x for x in runs], "device_steps_per_s": devices / s}
    row["parallel_over_batched"] = row["parallel"]["ms_per_step"] / row["batched"]["ms_per_step"]
    say(
        f"{devices:>6} devices: batched {row['batched']['device_steps_per_s']:>10,.0f} device-steps/s, "
        f"parallel view {row['parallel']['device_steps_per_s']:>10,.0f} ({row['parallel_over_batched']:.2f} x the time)"
    )
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[500, 2000, 10000],
        help="fleet sizes, multiples of 500 [default: 500,2000,10000]",
    )
    p.add_argument("--steps", type=int, default=30, help="control ticks per measurement [default: %(default)s]")
    p.add_argument("--repeats", type=int, default=3, help="measurements per interface and size [default: %(default)s]")
    p.add_argument("--out", default=str(RESULTS), help="folder of env.json [default: benchmarks/results]")
    args = p.parse_args(argv)
    load_before = [round(x, 2) for x in os.getloadavg()]
    figures = {"load_before": load_before, "sizes": [measure(n, args.steps, args.repeats) for n in args.sizes]}
    record("env", figures, Path(args.out))
    return figures


if __name__ == "__main__":
    main()
