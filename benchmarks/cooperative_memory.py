"""Peak memory of cooperative-v1 for 10,000 devices on the CPU (docs/studies/cooperative.md).

    python benchmarks/cooperative_memory.py            # 10,000 devices, default config, 5 ticks with updates

Builds the learner as the engine does (feeder-peak-v1's level table), fills a few ticks and
updates, and reports the replay memories' preallocated bytes and the process's peak RSS
(VmHWM), which includes torch and the interpreter.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fleet.learners import Deliveries, LearnerContext, make_learner
from fleet.testing import _observation


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))


def measure(devices: int, ticks: int) -> dict:
    n = devices
    levels = np.tile([0.0, 1.5, 3.0, 4.5], (n, 1))
    ctx = LearnerContext(n, 4, "heat", np.random.default_rng(0), levels_kw=levels, reward_weights=(1.0, 5.0))
    learner = make_learner("cooperative-v1", {"batch": 4, "macro_batch": 8}, ctx)
    rng = np.random.default_rng(1)
    reading = np.array([[0, 100.0, 150.0, n]], np.float32)
    for tick in range(ticks):
        learner.act(_observation(n, tick, rng))
        learner.observe(-rng.random(n))
        everyone = np.arange(n)
        learner.inbox("meter", Deliveries(everyone, everyone, np.full(n, 60.0 * tick), np.zeros(n, int), [reading]))
        learner.update(60.0 * tick)
    return {"devices": n, "replay_mb": learner.replay_bytes / 2**20, "peak_rss_mb": vm_hwm_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=6)
    print(json.dumps(measure(**vars(parser.parse_args()))))


if __name__ == "__main__":
    main()
