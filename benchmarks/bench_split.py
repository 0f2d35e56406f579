"""Device-steps per second of a run split by site across 1, 2 and 4 Ray actors; writes ``results/split.json``.

    python benchmarks/bench_split.py                       # city-10k-v1, 3 h, 1/2/4 actors, twice each
    python benchmarks/bench_split.py --devices 2000 --hours 1 --repeat 1 --tag small
    python benchmarks/bench_split.py --workloads independent --devices 2000 --hours 1 --actors 1 2 --tag independent

Each measurement is one ``fleet run ... --actors K`` in a fresh process (its own local Ray of
K CPUs for K > 1); the rate is the run's own ``perf.device_steps_per_s`` (devices x control
ticks / the seconds of ``Simulation.run``: starting Ray and the actors is not in it). Actor
counts alternate within each repeat, so a noisy neighbour slows them alike. Every process
computes on one thread (the actors always do; ``--threads`` sets the coordinator's): on a busy
machine a second OpenMP/BLAS thread spinning for a core slowed the one-process city run by a
quarter, which would flatter the split. Two workloads:

- ``city``: city-10k-v1 as shipped (telemetry and consensus messages, rule-based fleet and its
  baseline); the messages stay in the coordinator, only the control tick is split;
- ``control-only``: the same without telemetry and consensus, so that the split part (sensing,
  thermostat, physics, rewards) is nearly all the work;
- ``independent``: control-only with ``independent-v1`` learning on every device (forward
  passes and updates on the shards).

Every split run's metrics.csv is checked equal to the one-actor run's before a figure is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench_engine import SCENARIO, city_overrides

HERE = Path(__file__).resolve().parent
FLEET = [sys.executable, "-m", "fleet.cli"]
QUIET = ["workloads.telemetry.enabled=false", "workloads.consensus.enabled=false"]
WORKLOADS = {"city": [], "control-only": QUIET, "independent": [*QUIET, "learner.name=independent-v1"]}


def run_once(overrides: list[str], actors: int, threads: int, out: Path) -> dict:
    """``fleet run`` of city-10k-v1 with ``overrides`` on ``actors`` actors into ``out``: its perf figures."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    options = ["--actors", str(actors), "--threads", str(threads), "-o", str(out), "-q"]
    subprocess.run([*FLEET, "run", SCENARIO, *sets, *options], check=True)
    return json.loads((out / "summary.json").read_text())["perf"]


def measure(
    devices: int, hours: float, repeat: int, actor_counts: list[int], threads: int, workloads: list[str]
) -> dict:
    """Per workload and actor count: the device-steps/s of every repeat, and the run seconds."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        for workload in workloads:
            extra = WORKLOADS[workload]
            overrides = city_overrides(devices=devices, hours=hours) + extra
            rates: dict[int, list[float]] = {k: [] for k in actor_counts}
            for r in range(repeat):
                for k in actor_counts:
                    out = Path(tmp) / f"{workload}-{k}-{r}"
                    perf = run_once(overrides, k, threads, out)
                    reference = Path(tmp) / f"{workload}-{actor_counts[0]}-{r}"
                    if (out / "metrics.csv").read_bytes() != (reference / "metrics.csv").read_bytes():
                        raise SystemExit(f"{out}: metrics.csv differs from the {actor_counts[0]}-actor run's")
                    rates[k].append(perf["device_steps_per_s"])
                    print(f"{workload:12s} actors={k}: {perf['device_steps_per_s']:,.0f} device-steps/s", flush=True)
            results[workload] = {"overrides": overrides, "device_steps_per_s": {str(k): v for k, v in rates.items()}}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=10_000, help="devices, in feeders of 500 [10000]")
    p.add_argument("--hours", type=float, default=3.0, help="simulated hours [3]")
    p.add_argument("--repeat", type=int, default=2, help="runs per actor count [2]")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4], help="actor counts, the first the reference")
    p.add_argument("--threads", type=int, default=1, help="threads of the coordinator (fleet run --threads) [1]")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS), help="[all]")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    args = p.parse_args()
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "python": platform.python_version()},
        "devices": args.devices,
        "hours": args.hours,
        "threads": args.threads,
        "workloads": measure(args.devices, args.hours, args.repeat, args.actors, args.threads, args.workloads),
    }
    out = HERE / "results" / f"split{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
