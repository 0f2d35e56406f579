"""The learning study of the README: four controllers x five seeds on thermostats-small-v1.

Each run is ``fleet run thermostats-small-v1`` extended to STUDY_DAYS days of 15-minute
control ticks (enough updates per device to see learning at all; the 1-minute default would
need weeks of wall time per seed). Runs go to ``runs/study/<learner>-seed<k>``; then::

    fleet report runs/study/* --comm-vs-reward --no-per-run -o <out>

and :func:`table` gives the README's table (mean and 95% Student t interval over seeds).

    python benchmarks/study_learning.py run      # the 20 runs, 2 at a time (about 40 min on 2 cores)
    python benchmarks/study_learning.py table    # results/learning-study.json and the Markdown table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleet.tradeoff import estimate

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "study"
STUDY_DAYS = 20
SEEDS = range(5)
BASE = [f"horizon={STUDY_DAYS}d", "control_period=15min"]
AC_PARAMS = ["learner.params.gamma=0.9", "learner.params.shaping_per_degc=0.9"]
LEARNERS = {
    "rule-based-v1": [],
    "independent-v1": AC_PARAMS,
    "diffusion-v1": AC_PARAMS,
    "centralized-v1": AC_PARAMS,
}


def command(learner: str, seed: int) -> list[str]:
    sets = [*BASE, f"learner.name={learner}", *LEARNERS[learner]]
    out = RUNS / f"{learner}-seed{seed}"
    return ["fleet", "run", "thermostats-small-v1", "--seed", str(seed), "-o", str(out), "-q", *(x for s in sets for x in ("--set", s))]


def run_one(learner: str, seed: int) -> str:
    cmd = command(learner, seed)
    if (RUNS / f"{learner}-seed{seed}" / "summary.json").exists():
        return f"kept {learner}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = str(Path(sys.executable).parent / "fleet")
    done = subprocess.run([exe, *cmd[1:]], cwd=REPO, env=env, capture_output=True, text=True)
    return f"{learner}-seed{seed}: exit {done.returncode} {done.stderr[-300:]}"


def run_all() -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    jobs = [(learner, seed) for seed in SEEDS for learner in LEARNERS]
    with ThreadPoolExecutor(2) as pool:
        for line in pool.map(lambda job: run_one(*job), jobs):
            print(line, flush=True)


def table() -> dict:
    rows = {}
    for learner in LEARNERS:
        per_seed = []
        for seed in SEEDS:
            s = json.loads((RUNS / f"{learner}-seed{seed}" / "summary.json").read_text())
            n, days = s["run"]["n_devices"], s["run"]["simulated_s"] / 86400
            k = s["kpis"]
            per_seed.append({
                "cost_per_device_day": k["cost"] / n / days,
                "discomfort_degh_per_device_day": k["discomfort_degh"] / n / days,
                "peak_kw": k["peak_kw"],
                "bytes_per_device_per_day": s["comm"]["bytes_per_device_per_day"],
            })
        stats = {}
        for key in per_seed[0]:
            est = estimate([p[key] for p in per_seed])
            stats[key] = {"mean": est.mean, "ci95": est.ci95_half_width, "n": len(per_seed)}
        rows[learner] = stats
    out = {"command": "python benchmarks/study_learning.py run && python benchmarks/study_learning.py table", "runs": [" ".join(command(l, s)) for l in LEARNERS for s in SEEDS], "results": rows}
    (REPO / "benchmarks" / "results" / "learning-study.json").write_text(json.dumps(out, indent=1))
    keys = [("cost_per_device_day", "cost / device-day", 3), ("discomfort_degh_per_device_day", "discomfort °C·h / device-day", 2), ("peak_kw", "peak kW", 1), ("bytes_per_device_per_day", "bytes sent + received / device-day", 0)]
    print("| controller | " + " | ".join(k[1] for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for learner, stats in rows.items():
        print(f"| {learner} | " + " | ".join(f"{stats[k]['mean']:.{d}f} ± {stats[k]['ci95']:.{d}f}" for k, _, d in keys) + " |")
    return out


if __name__ == "__main__":
    {"run": run_all, "table": table}[sys.argv[1]]()
