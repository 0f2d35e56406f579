"""Performance benchmarks of the learners; each writes ``benchmarks/results/learners-<name>.json``.

    python benchmarks/bench_learners.py update   # batched A2C update vs a Python loop over per-device nn.Modules
    python benchmarks/bench_learners.py e2e      # 1,000 devices, 7 days, diffusion-v1, float16 parameters, Wi-Fi
    python benchmarks/bench_learners.py memory   # peak RSS of 10,000 devices (diffusion-v1), 3 hours
    python benchmarks/bench_learners.py gpu      # the batched update on a GPU at N = 10k and 100k (needs CUDA)
    python benchmarks/bench_learners.py all      # update, e2e, memory (about 15 min on 2 cores), gpu if there is CUDA

``update`` times one n-step A2C + GAE step of N stacked devices (``fleet.learners.stacked.
ActorCritic``) against the same step done the ordinary way, one ``torch.nn.Module`` actor and
critic and one Adam per device in a Python loop, after checking that both compute the same
parameters; the two alternate in one process, with a 2048 x 2048 ``torch.mm`` between them as
the machine's large-matmul reference. ``e2e`` runs ``fleet run`` in a fresh process;
``memory`` runs ``fleet.results.execute`` (what ``fleet run`` calls) in a fresh process with a
thread that samples the RSS and notes what the simulation was doing at its peak.

torch computes with one OpenMP thread per core by default; ``--threads`` sets the number
(``default``: leave torch's choice), because on a shared 2-core machine the choice matters
more than anything else here (see ``update``'s contention table).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_engine import (
    COLLECT,
    CONSENSUS,
    CONTROL,
    DECODE,
    DRAIN,
    ENCODE,
    FROM_BROKER,
    METRICS,
    METRICS_ROW,
    NETWORK_EVENTS,
    OUTGOING,
    PUBLISH,
    RECEIVE,
    RESEND,
    RUN,
    STATUS,
    TELEMETRY,
    TICK,
    CallTimes,
    _absent_from_source,
    hotspots,
    run_cli,
    say,
)
from torch import nn

from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout, RunningMoments, standardized

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SCENARIO = "thermostats-small-v1"
SITE_SIZE = 100
"""Devices per site (feeder) when the fleet is resized: sites of 100 on Wi-Fi."""
N_ACTIONS = 4
"""HVAC levels of thermostats-small-v1 (0, 1, 2, 3 kW): the actor's logits."""
DEFAULT_THREADS = torch.get_num_threads()
"""torch's intra-op threads in this process before any benchmark changed them."""


# --- the loop reference: one nn.Module actor and critic and one Adam per device -----------------


def mlp(sizes: list[int]) -> nn.Sequential:
    """nn.Linear layers of ``sizes`` with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if k < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


@dataclass
class LoopDevice:
    """One device's actor and critic as ordinary modules, with its own optimizer."""

    actor: nn.Sequential
    critic: nn.Sequential
    optimizer: torch.optim.Adam
    value_norm: RunningMoments
    advantage_norm: RunningMoments

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [*self.actor.parameters(), *self.critic.parameters()]

    def flat(self) -> torch.Tensor:
        """(P,) in the stacked layout: per layer the weight as (in, out), then the bias."""
        linears = [m for net in (self.actor, self.critic) for m in net if isinstance(m, nn.Linear)]
        return torch.cat([t.detach().reshape(-1) for lin in linears for t in (lin.weight.T, lin.bias)])


GAMMA = 0.95
"""Discount per step of the measured updates (the learning study's, per 15-minute tick)."""


def loop_devices(batched: ActorCritic, k: int) -> list[LoopDevice]:
    """Devices ``0 .. k-1`` of ``batched`` as separate modules with the same parameters."""
    devices = []
    for i in range(k):
        nets = []
        for stacked in (batched.actor, batched.critic):
            net = mlp(stacked.sizes)
            with torch.no_grad():
                for lin, w, b in zip([m for m in net if isinstance(m, nn.Linear)], stacked.weights, stacked.biases):
                    lin.weight.copy_(w[i].T)
                    lin.bias.copy_(b[i])
            nets.append(net)
        params = [*nets[0].parameters(), *nets[1].parameters()]
        devices.append(
            LoopDevice(
                nets[0],
                nets[1],
                torch.optim.Adam(params, lr=batched.cfg.lr),
                RunningMoments(1, batched.cfg.value_norm_decay, "cpu"),
                RunningMoments(1, batched.cfg.value_norm_decay, "cpu"),
            )
        )
    return devices


def loop_update(devices: list[LoopDevice], r: Rollout, cfg: ActorCriticConfig) -> None:
    """The actor-critic step of ``ActorCritic.update`` (one epoch: A2C with GAE and value
    normalization), written for one device at a time.

    ``r`` holds the K devices' transitions: obs (T+1, K, F), actions (T, K), rewards (T, K).
    """
    steps = r.rewards.shape[0]
    for i, d in enumerate(devices):
        obs, actions, rewards = r.obs[:, i], r.actions[:, i], r.rewards[:, i]
        values = d.critic(obs).squeeze(-1)  # (T+1,), normalized units
        with torch.no_grad():
            v = d.value_norm.denormalize(values.detach().unsqueeze(0)).squeeze(0)
            adv = torch.zeros_like(rewards)
            running = torch.zeros(())
            for t in reversed(range(steps)):
                running = rewards[t] + GAMMA * v[t + 1] - v[t] + GAMMA * cfg.gae_lambda * running
                adv[t] = running
            returns = adv + v[:-1]
            if cfg.normalize_advantages:
                adv = standardized(adv.unsqueeze(0), d.advantage_norm).squeeze(0)
            d.value_norm.update(returns.unsqueeze(0), shared=False)
            target = d.value_norm.normalize(returns.unsqueeze(0)).squeeze(0)
        dist = torch.distributions.Categorical(logits=d.actor(obs[:-1]))
        loss = (
            -(dist.log_prob(actions) * adv).mean()
            - cfg.entropy_coef * dist.entropy().mean()
            + cfg.value_coef * ((values[:-1] - target) ** 2).mean()
        )
        d.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(d.parameters, cfg.max_grad_norm)
        d.optimizer.step()


def random_rollout(n: int, steps: int, seed: int) -> Rollout:
    """T = ``steps`` transitions of ``n`` devices with rewards of a thermostat's size (-0.05 .. 0 per tick)."""
    g = torch.Generator().manual_seed(seed)
    return Rollout(
        torch.randn(steps + 1, n, N_FEATURES, generator=g),
        torch.randint(0, N_ACTIONS, (steps, n), generator=g),
        -torch.rand(steps, n, generator=g) * 0.05,
    )


def first(r: Rollout, k: int) -> Rollout:
    """The transitions of devices ``0 .. k-1``."""
    return Rollout(r.obs[:, :k], r.actions[:, :k], r.rewards[:, :k])


def same_update(cfg: ActorCriticConfig, n: int, k: int, r: Rollout, dtype: torch.dtype) -> dict:
    """One update from the same parameters, batched (N devices) and looped (the first K), in ``dtype``:
    how far apart are the parameters after it, compared with how far the update moved them?"""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        r = Rollout(r.obs.to(dtype), r.actions, r.rewards.to(dtype))
        batched = ActorCritic(cfg, n, N_FEATURES, N_ACTIONS, torch.Generator().manual_seed(0), "cpu")
        loop = loop_devices(batched, k)
        before = batched.flat()[:k]
        batched.update(r, GAMMA)
        loop_update(loop, first(r, k), cfg)
        got, expected = torch.stack([d.flat() for d in loop]), batched.flat()[:k]
    finally:
        torch.set_default_dtype(previous)
    diff = (got - expected).abs()
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "devices_compared": k,
        "tolerance": CHECK_TOLERANCE[dtype],
        "allclose": torch.allclose(got, expected, **CHECK_TOLERANCE[dtype]),
        "max_abs_difference": float(diff.max()),
        "entries_differing_by_more_than_1e-6": int((diff > 1e-6).sum()),
        "entries": diff.numel(),
        "max_abs_parameter_change": float((expected - before).abs().max()),
    }


CHECK_TOLERANCE = {torch.float64: {"rtol": 1e-6, "atol": 1e-8}, torch.float32: {"rtol": 1e-3, "atol": 1e-4}}
"""The float64 check gates the comparison. In float32 a few entries in 10^5 differ by up to
~1e-4 (a few % of the 3e-3 step): Adam divides by sqrt(v) + 1e-8, so where a gradient entry
is near 1e-8 its rounding (which depends on the order of the sums) is amplified; in float64
the two agree to ~1e-9."""


# --- the update benchmark -------------------------------------------------------------------------


def fwd_flops(sizes: list[int]) -> int:
    """Multiply-adds of one row through dense layers ``sizes``, counted as 2 FLOPs each."""
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def flops_per_sample(actor: list[int], critic: list[int], steps: int) -> float:
    """FLOPs of the matmuls per device-transition: forward (actor on T rows, critic on T+1) plus
    backward (about twice the forward)."""
    return 3 * (fwd_flops(actor) + fwd_flops(critic) * (steps + 1) / steps)


def seconds(fn, repeat: int = 1, device: str = "cpu") -> float:
    """Wall seconds of one call of ``fn``, averaged over ``repeat`` calls; on CUDA, which runs
    asynchronously, between waits for the device."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - started) / repeat


def matmul_seconds(size: int = 2048, device: str = "cpu") -> float:
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    return seconds(lambda: torch.mm(a, b), 3, device)


def calls_for(fn, at_least_s: float = 0.2, device: str = "cpu") -> int:
    """How many calls of ``fn`` take at least ``at_least_s`` (so that small updates are timed in blocks)."""
    one = seconds(fn, 1, device)
    return max(1, round(at_least_s / max(one, 1e-6)))


def check_update(cfg: ActorCriticConfig, n: int, loop_max: int) -> dict:
    """The loop reference computes the batched update (float64), or the comparison is refused."""
    k, r = min(n, loop_max), random_rollout(n, cfg.n_steps, seed=1)
    check = {"float64": same_update(cfg, n, k, r, torch.float64), "float32": same_update(cfg, n, k, r, torch.float32)}
    if not check["float64"]["allclose"]:
        raise RuntimeError(
            f"the loop reference no longer computes ActorCritic.update (N={n}): {check['float64']}; update loop_update "
            "in bench_learners.py"
        )
    say(
        f"update N={n:>6}: loop == batched after one update (first {k} devices): max difference "
        f"{check['float64']['max_abs_difference']:.0e} in float64, "
        f"{check['float32']['max_abs_difference']:.0e} in float32, for a step of "
        f"{check['float64']['max_abs_parameter_change']:.0e}"
    )
    return check


def time_update(cfg: ActorCriticConfig, n: int, loop_max: int, repeats: int) -> dict:
    """Batched update of N devices, the loop over min(N, loop_max) of them, and a large matmul, alternating."""
    k = min(n, loop_max)
    r = random_rollout(n, cfg.n_steps, seed=1)
    batched = ActorCritic(cfg, n, N_FEATURES, N_ACTIONS, torch.Generator().manual_seed(0), "cpu")
    loop, r_loop = loop_devices(batched, k), first(r, k)
    block = calls_for(lambda: batched.update(r, GAMMA))
    loop_update(loop, r_loop, cfg)
    runs = {"batched_s": [], "loop_s": [], "matmul_2048_s": []}
    for _ in range(repeats):
        runs["batched_s"].append(seconds(lambda: batched.update(r, GAMMA), block))
        runs["loop_s"].append(seconds(lambda: loop_update(loop, r_loop, cfg)) * n / k)
        runs["matmul_2048_s"].append(matmul_seconds())
    med = {key: statistics.median(v) for key, v in runs.items()}
    samples = n * cfg.n_steps
    flops = flops_per_sample(batched.actor.sizes, batched.critic.sizes, cfg.n_steps) * samples
    gflops, peak = flops / med["batched_s"] / 1e9, 2 * 2048**3 / med["matmul_2048_s"] / 1e9
    return {
        "devices": n,
        "loop_devices_timed": k,
        "loop_scaled_from_subset": k < n,
        "samples_per_update": samples,
        "batched_updates_per_timing": block,
        "batched_s": med["batched_s"],
        "loop_s": med["loop_s"],
        "loop_us_per_device": 1e6 * med["loop_s"] / n,
        "batched_samples_per_s": samples / med["batched_s"],
        "loop_samples_per_s": samples / med["loop_s"],
        "speedup": med["loop_s"] / med["batched_s"],
        "flops_per_update": flops,
        "batched_gflops": gflops,
        "matmul_2048_gflops": peak,
        "fraction_of_matmul": gflops / peak,
        "runs": runs,
    }


NEIGHBOURS = {
    "python": "while True: pass",
    "torch": (
        "import torch\n"
        "from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout\n"
        "ac = ActorCritic(ActorCriticConfig(), 1000, 10, 4, torch.Generator().manual_seed(0), 'cpu')\n"
        "r = Rollout(torch.randn(17, 1000, 10), torch.randint(0, 4, (16, 1000)), -torch.rand(16, 1000) * 0.05)\n"
        "while True:\n"
        "    ac.update(r, 0.95)\n"
    ),
}
"""Stand-ins for another engineer's job: a pure-Python loop (one busy thread), or a learner
updating 1,000 stacked devices again and again with torch's default threads."""


def neighbour(kind: str) -> subprocess.Popen | None:
    """Start a ``NEIGHBOURS[kind]`` process (``none``: none) and give it time to get going."""
    if kind == "none":
        return None
    process = subprocess.Popen([sys.executable, "-c", NEIGHBOURS[kind]], cwd=REPO, env=thread_env("default"))
    time.sleep(3.0)
    return process


def stop(process: subprocess.Popen | None) -> None:
    if process is not None:
        process.kill()
        process.wait()


def contention(cfg: ActorCriticConfig, n: int, repeats: int) -> list[dict]:
    """The batched update with 1 and 2 threads, alone and beside each kind of neighbour."""
    batched = ActorCritic(cfg, n, N_FEATURES, N_ACTIONS, torch.Generator().manual_seed(0), "cpu")
    r = random_rollout(n, cfg.n_steps, seed=1)
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for kind in ("none", *NEIGHBOURS):
            other = neighbour(kind)
            try:
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    batched.update(r, GAMMA)
                    times.setdefault((kind, threads), []).append(seconds(lambda: batched.update(r, GAMMA), 5))
            finally:
                stop(other)
    return [
        {"devices": n, "neighbour": kind, "threads": threads, "update_s": statistics.median(v), "runs": v}
        for (kind, threads), v in times.items()
    ]


def op_profile(cfg: ActorCriticConfig, n: int, top: int = 10) -> list[dict]:
    """The torch operators of one batched update of N devices, by own CPU time."""
    batched = ActorCritic(cfg, n, N_FEATURES, N_ACTIONS, torch.Generator().manual_seed(0), "cpu")
    r = random_rollout(n, cfg.n_steps, seed=1)
    batched.update(r, GAMMA)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        batched.update(r, GAMMA)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_ms": e.self_cpu_time_total / 1e3,
            "percent": 100 * e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


def bench_update(args: argparse.Namespace) -> dict:
    """Samples/s of the batched update vs the per-device loop at several N, per thread count."""
    cfg = ActorCriticConfig()
    sizes = [int(x) for x in args.sizes.split(",")]
    checks = {str(n): check_update(cfg, n, args.loop_max) for n in sizes}
    table = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n in sizes:
            load = os.getloadavg()[0]
            row = {"threads": threads, "load_before": load, **time_update(cfg, n, args.loop_max, args.repeats)}
            table.append(row)
            scaled = f" (scaled from {row['loop_devices_timed']} devices)" if row["loop_scaled_from_subset"] else ""
            say(
                f"update N={n:>6} threads={threads}: batched {1e3 * row['batched_s']:8.2f} ms, "
                f"loop {row['loop_s']:7.2f} s{scaled}, "
                f"{row['speedup']:6.0f}x, {row['batched_gflops']:.1f} GFLOP/s vs mm {row['matmul_2048_gflops']:.0f}"
            )
    say("update: the batched update with 1 and 2 threads, alone and beside another process ...")
    busy = contention(cfg, args.contention_devices, 2)
    say(f"update: torch operators of one update at N={sizes[-1]} ...")
    torch.set_num_threads(args.threads[0])
    ops = op_profile(cfg, sizes[-1])
    print(
        f"{'threads':>7}{'N':>7}{'batched ms':>12}{'loop s':>9}{'speed-up':>10}"
        f"{'samples/s batched':>19}{'loop':>9}{'GFLOP/s':>9}{'mm GFLOP/s':>11}"
    )
    for row in table:
        print(
            f"{row['threads']:>7}{row['devices']:>7}{1e3 * row['batched_s']:>12.2f}"
            f"{row['loop_s']:>9.2f}{row['speedup']:>10.0f}"
            f"{row['batched_samples_per_s']:>19,.0f}{row['loop_samples_per_s']:>9,.0f}"
            f"{row['batched_gflops']:>9.1f}{row['matmul_2048_gflops']:>11.0f}"
        )
    for row in busy:
        print(
            f"N={row['devices']}, neighbour {row['neighbour']:<6}, {row['threads']} thread(s): "
            f"{1e3 * row['update_s']:6.1f} ms per update"
        )
    at_1k = [row["speedup"] for row in table if row["devices"] == 1000]
    return {
        "config": cfg.model_dump(),
        "layers": {
            "actor": [N_FEATURES, cfg.hidden, cfg.hidden, N_ACTIONS],
            "critic": [N_FEATURES, cfg.hidden, cfg.hidden, 1],
        },
        "flops_per_sample": flops_per_sample(
            [N_FEATURES, cfg.hidden, cfg.hidden, N_ACTIONS], [N_FEATURES, cfg.hidden, cfg.hidden, 1], cfg.n_steps
        ),
        "same_update_check": checks,
        "table": table,
        "contention": busy,
        "ops_of_one_update": {"devices": sizes[-1], "threads": args.threads[0], "top": ops},
        "targets": {"speedup_at_least_20x_at_1k": bool(at_1k) and min(at_1k) >= 20},
    }


# --- scenarios: thermostats-small-v1 resized, diffusion-v1 with float16 parameters --------------


def fleet_overrides(devices: int, hours: float) -> list[str]:
    """``--set`` overrides: ``devices`` on sites of 100 over Wi-Fi, the horizon, diffusion-v1 sending float16."""
    if devices % SITE_SIZE:
        raise ValueError(f"devices ({devices}) must be a multiple of the site size ({SITE_SIZE})")
    k = devices // SITE_SIZE
    sites = ", ".join(f"{{name: s{i}, devices: {SITE_SIZE}, feeder_kw: 250, network: {{wifi: 1.0}}}}" for i in range(k))
    return [
        f"fleet.sites=[{sites}]",
        f"horizon={hours * 3600:g}",
        "learner.name=diffusion-v1",
        "learner.params.comm.dtype=float16",
    ]


def describe(devices: int, hours: float) -> dict:
    from fleet.scenario import load_scenario

    sc = load_scenario(SCENARIO, fleet_overrides(devices, hours))
    return {
        "base": SCENARIO,
        "overrides": [
            o
            if not o.startswith("fleet.sites")
            else f"fleet.sites=[{len(sc.fleet.sites)} sites of {SITE_SIZE}, feeder_kw 250, wifi 1.0]"
            for o in fleet_overrides(devices, hours)
        ],
        "devices": sc.n_devices,
        "horizon_s": sc.horizon,
        "control_period_s": sc.control_period,
        "learner": sc.learner.model_dump(),
        "telemetry_period_s": sc.workloads.telemetry.period,
        "consensus_period_s": sc.workloads.consensus.period,
        "baseline_twin": sc.outputs.baseline,
        "checkpoint_every_s": sc.outputs.checkpoint_every,
        "churn_failures_per_day": sc.network.churn.failures_per_day,
    }


def thread_env(threads: str) -> dict:
    """The environment of a child process with ``threads`` OpenMP threads (``default``: torch's choice)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env if threads == "default" else {**env, "OMP_NUM_THREADS": threads}


FLEET_RUN = (
    "import atexit, sys\n"
    "from pathlib import Path\n"
    "peak = Path(sys.argv.pop(1))\n"
    "atexit.register(lambda: peak.write_text(next(l.split()[1] for l in open('/proc/self/status') if "
    "l.startswith('VmHWM:'))))\n"
    "from fleet.cli import main\n"
    "sys.argv[0] = 'fleet'\n"
    "sys.exit(main())\n"
)
"""``fleet run`` as the ``fleet`` script runs it (``fleet.cli:main``), writing the process's
peak RSS (VmHWM, kB) to the file named by its first argument when it exits."""


def fleet_run(devices: int, hours: float, threads: str) -> dict:
    """``fleet run`` in a fresh process: wall time, its peak RSS and CPU time, summary.json."""
    args = ["run", SCENARIO, *(x for o in fleet_overrides(devices, hours) for x in ("--set", o)), "-q"]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        out, peak = Path(scratch) / "run", Path(scratch) / "peak_kb"
        with open(Path(scratch) / "log", "w+") as log:
            started = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, "-c", FLEET_RUN, str(peak), *args, "-o", str(out)],
                cwd=REPO,
                env=thread_env(threads),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                log.seek(0)
                raise RuntimeError(f"fleet run failed (exit {child.returncode}):\n{log.read()[-3000:]}")
        summary = json.loads((out / "summary.json").read_text())
        peak_mb = int(peak.read_text()) / 1024
        checkpoint = out / "checkpoint.safetensors"
        checkpoint_mb = checkpoint.stat().st_size / 2**20 if checkpoint.exists() else None
    perf, comm, days = summary["perf"], summary["comm"], summary["run"]["simulated_s"] / 86400
    steps = devices * perf["control_ticks"]
    return {
        "threads": threads,
        "load_before": load,
        "process_wall_s": wall,
        "run_s": perf["wall_s"],
        "outside_run_s": wall - perf["wall_s"],
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "device_steps": steps,
        "device_steps_per_s": steps / perf["wall_s"],
        "device_steps_per_s_process": steps / wall,
        "bytes_per_device_per_day": (comm["bytes_sent"] + comm["bytes_received"]) / devices / days,  # sent + received
        "bytes_sent_per_device_per_day": summary["comm_per_device_day"]["bytes_sent"],
        "messages_sent": comm["messages_sent"],
        "messages_delivered": comm["messages_delivered"],
        "peak_rss_mb": peak_mb,
        "checkpoint_mb": checkpoint_mb,
        "command": ["fleet", *args, "-o", "<tmpdir>"],
    }


# --- workers (each in a fresh process) ---------------------------------------------------------


def vm_mb(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) of this process, in MB, from /proc/self/status.

    Not ``ru_maxrss``: Linux carries a process's peak across fork and exec, so a child's
    ``ru_maxrss`` starts at its parent's RSS (a ``pass`` started from a 2 GB parent reports 2 GB).
    """
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def in_fresh_process(spec: dict, threads: str) -> dict:
    """Run ``WORKERS[spec['worker']]`` in a new interpreter and return what it measured."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(spec)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=thread_env(threads))
    if done.returncode:
        raise RuntimeError(f"worker {spec} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def work_profile(spec: dict) -> dict:
    """``fleet.results.execute`` (checkpoints included) under cProfile, aggregated by learner phase."""
    from fleet.results import execute
    from fleet.scenario import load_scenario

    sc = load_scenario(SCENARIO, fleet_overrides(spec["devices"], spec["hours"]))
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch:
        profiler.runcall(execute, sc, Path(scratch) / "run", device="cpu")
    stats = pstats.Stats(profiler)
    return {"phases": learner_phases(stats), "hotspots": hotspots(stats, 15)}


class PeakSampler(threading.Thread):
    """Samples the process's memory every few ms, noting what the main thread is doing: the
    high-water mark (VmHWM, exact even between samples) reached by the end of each phase of
    the run, the RSS when the simulation starts, and the stack at the highest RSS sampled.

    Phases: ``setup`` (world, network, learner), ``simulation`` (until the first checkpoint),
    ``checkpoint`` (``RunDir.save_checkpoint``), ``after the run``.
    """

    PHASES = (("fleet/results.py", "save_checkpoint", "checkpoint"), ("fleet/sim/engine.py", "run", "simulation"))

    def __init__(self, period_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.period_s, self.main, self.stop = period_s, threading.main_thread().ident, threading.Event()
        self.hwm_mb: dict[str, float] = {}
        self.rss_at_run_start_mb: float | None = None
        self.max_rss_mb = 0.0
        self.where: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            rss, hwm = vm_mb("VmRSS"), vm_mb("VmHWM")
            stack = self._stack()
            phase = next(
                (
                    name
                    for file, func, name in self.PHASES
                    if any(f.endswith(file) and fn == func for f, fn, _ in stack)
                ),
                "setup",
            )
            if phase == "setup" and "simulation" in self.hwm_mb:
                phase = "after the run"
            if phase == "simulation" and self.rss_at_run_start_mb is None:
                self.rss_at_run_start_mb = rss
            if not (phase == "simulation" and "checkpoint" in self.hwm_mb):
                self.hwm_mb[phase] = hwm
            if rss > self.max_rss_mb:
                self.max_rss_mb = rss
                self.where = [
                    f"{Path(f).as_posix().replace(REPO.as_posix() + '/', '')}:{line} {fn}"
                    for f, fn, line in stack
                    if "fleet/" in f or "devices/" in f
                ]
            time.sleep(self.period_s)

    def _stack(self) -> list[tuple[str, str, int]]:
        frame, out = sys._current_frames().get(self.main), []
        while frame is not None:
            out.append((frame.f_code.co_filename.replace(os.sep, "/"), frame.f_code.co_name, frame.f_lineno))
            frame = frame.f_back
        return out[::-1]


def work_memory(spec: dict) -> dict:
    """``fleet.results.execute`` as ``fleet run`` does it, with the RSS sampled throughout."""
    import fleet.sim.engine  # noqa: F401  (imported lazily by execute)
    from fleet.results import execute
    from fleet.scenario import load_scenario

    after_imports = vm_mb("VmRSS")
    sc = load_scenario(SCENARIO, fleet_overrides(spec["devices"], spec["hours"]))
    sampler = PeakSampler()
    sampler.start()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        _, summary = execute(sc, Path(scratch) / "run", device="cpu")
        total = time.perf_counter() - started
        checkpoint = Path(scratch) / "run" / "checkpoint.safetensors"
        checkpoint_mb = checkpoint.stat().st_size / 2**20 if checkpoint.exists() else None
    sampler.stop.set()
    sampler.join()
    return {
        "rss_after_imports_mb": after_imports,
        "rss_at_run_start_mb": sampler.rss_at_run_start_mb,
        "high_water_mb_by_end_of": sampler.hwm_mb,
        "at_highest_rss_sampled": {"rss_mb": sampler.max_rss_mb, "stack": sampler.where},
        "peak_rss_mb": vm_mb("VmHWM"),
        "total_s": total,
        "run_s": summary["perf"]["wall_s"],
        "checkpoint_mb": checkpoint_mb,
        "torch_threads": torch.get_num_threads(),
    }


WORKERS = {"profile": work_profile, "memory": work_memory}


# --- profile: time per learner phase ------------------------------------------------------------

ACT, INBOX, OUTBOX = (
    ("fleet/learners/actor_critic.py", "act"),
    ("fleet/learners/actor_critic.py", "inbox"),
    ("fleet/learners/actor_critic.py", "outbox"),
)
LEARNER_UPDATE, UPDATE_LOCAL = (
    ("fleet/learners/actor_critic.py", "update"),
    ("fleet/learners/actor_critic.py", "update_local"),
)
LEARNING, PUBLISH_LEARNER = ("fleet/sim/engine.py", "_learning"), ("fleet/sim/engine.py", "_publish_learner")
SAVE_CHECKPOINT = ("fleet/results.py", "save_checkpoint")

INSIDE = [
    ("fleet/learners/comm.py", "apply", "ParamReceiver.apply (inbox)"),
    ("fleet/learners/comm.py", "outgoing", "ParamPublisher.outgoing (outbox)"),
    ("fleet/mqtt/codec.py", "as_decoded", "as_decoded: the publisher's top-k copy of what receivers decode (outbox)"),
    ("fleet/mqtt/codec.py", "_require", "codec input checks (encode, as_decoded)"),
    ("fleet/learners/combine.py", "weighted_combine", "weighted_combine (combine)"),
    ("fleet/learners/stacked.py", "flat", "ActorCritic.flat: an (N, P) copy when the parameters changed"),
    ("fleet/sim/engine.py", "param_disagreement", "param_disagreement (metrics)"),
]
"""Functions worth seeing on their own: cumulative seconds, overlapping the phases above."""


def learner_phases(stats: pstats.Stats) -> dict:
    """Seconds and share of ``Simulation.run`` per phase, exclusive of each other: encoding,
    decoding and the network are counted apart from the phases that call them."""
    t = CallTimes(stats)
    total = t(RUN)
    act = t(ACT)
    # DiffusionLearner.update (IndependentLearner.update is called from update_local)
    diffusion_update = t(LEARNER_UPDATE, LEARNING)
    phases = {
        "act: features, actor forward, sampling": act,
        "physics, rewards, KPIs (and the rule-based twin)": t(TICK) - act,
        "sensing, weather, occupancy, churn": t(CONTROL)
        - t(TICK)
        - t(PUBLISH, NETWORK_EVENTS)
        - t(RESEND)
        - t(FROM_BROKER)
        - t(ENCODE, STATUS),
        "learner update: rollout, A2C + GAE, backward, Adam": t(UPDATE_LOCAL),
        "learner combine: flat, weighted combine, load": diffusion_update - t(UPDATE_LOCAL),
        "learner inbox: edges, top-k reconstruction, store": t(INBOX),
        "learner outbox: publish policy, top-k quantized copy": t(OUTBOX),
        "learning glue in the engine (valid deliveries)": t(LEARNING)
        - t(DRAIN, LEARNING)
        - t(DECODE, LEARNING)
        - t(INBOX)
        - diffusion_update
        - t(OUTBOX)
        - t(ENCODE, PUBLISH_LEARNER)
        - t(PUBLISH, PUBLISH_LEARNER),
        "codec: encode (params, telemetry, consensus, status)": t(ENCODE),
        "codec: decode": t(DECODE),
        "network: uplink, broker, downlink, drain": t(PUBLISH) + t(DRAIN) + t(RESEND) + t(FROM_BROKER),
        "telemetry and consensus state": t(TELEMETRY)
        - t(ENCODE, TELEMETRY)
        - t(PUBLISH, TELEMETRY)
        + t(CONSENSUS)
        - t(DRAIN, CONSENSUS)
        - t(PUBLISH, CONSENSUS)
        - t(ENCODE, OUTGOING)
        - t(DECODE, RECEIVE),
        "checkpoints (RunDir.save_checkpoint)": t(SAVE_CHECKPOINT),
        "metrics rows (param disagreement, CSV)": t(METRICS)
        - t(SAVE_CHECKPOINT, METRICS)
        + t(METRICS_ROW, RUN)
        - t(DRAIN, COLLECT)
        - t(DECODE, COLLECT),
    }
    phases["SimPy kernel and unattributed"] = total - sum(phases.values())
    return {
        "profiled_run_s": total,
        "table": [{"phase": k, "seconds": v, "percent": 100 * v / total} for k, v in phases.items()],
        "inside": [
            {
                "function": f"{file}:{name}",
                "what": what,
                "seconds": t((file, name)),
                "percent": 100 * t((file, name)) / total,
            }
            for file, name, what in INSIDE
        ],
        "functions_not_found": _absent_from_source(t.missing),
        "functions_not_called": sorted(f"{file}:{name}" for file, name in t.missing),
    }


def print_phases(phases: dict, run_s: float, hours: float, per_hours: float) -> None:
    """The profile's shares, as seconds of the measured run (scaled from the profiled horizon)."""
    print(f"{'phase':<56}{'profiled s':>11}{'%':>7}{'est. s':>8}")
    for row in phases["table"]:
        print(f"{row['phase']:<56}{row['seconds']:>11.2f}{row['percent']:>7.1f}{row['percent'] * run_s / 100:>8.1f}")
    print("inside those (overlapping):")
    for row in phases["inside"]:
        print(f"  {row['what']:<54}{row['seconds']:>11.2f}{row['percent']:>7.1f}{row['percent'] * run_s / 100:>8.1f}")
    print(f"(profiled: {per_hours:g} simulated hours; est. s = share x the {hours:g}-hour run's {run_s:.0f} s)")
    if phases["functions_not_found"]:
        print(
            f"warning: the code no longer has {', '.join(phases['functions_not_found'])}: update the phases in "
            "bench_learners.py"
        )


# --- the end-to-end and memory benchmarks --------------------------------------------------------


def bench_e2e(args: argparse.Namespace) -> dict:
    """1,000 devices for 7 days (diffusion-v1, float16 parameters, Wi-Fi) with ``fleet run``."""
    hours = args.days * 24
    runs = []
    other = neighbour(args.neighbour)
    try:
        for threads in args.threads:
            runs.append(fleet_run(args.devices, hours, threads))
            r = runs[-1]
            say(
                f"e2e {args.devices} devices, {args.days:g} days, threads={threads}: {r['process_wall_s']:.1f} s "
                f"({r['run_s']:.1f} s simulating), {r['device_steps_per_s']:,.0f} device-steps/s, "
                f"{r['bytes_per_device_per_day'] / 1e6:.2f} MB/device/day, peak {r['peak_rss_mb']:.0f} MB"
            )
    finally:
        stop(other)
    best = min(runs, key=lambda r: r["process_wall_s"])
    figures = {"scenario": describe(args.devices, hours), "neighbour": args.neighbour, "runs": runs}
    figures["targets"] = {"under_2_minutes": best["process_wall_s"] < 120}
    if args.profile or not figures["targets"]["under_2_minutes"]:
        say(f"e2e: profiling {args.profile_hours:g} simulated hours under cProfile (threads={best['threads']}) ...")
        figures["breakdown"] = {
            "threads": best["threads"],
            "hours": args.profile_hours,
            **in_fresh_process(
                {"worker": "profile", "devices": args.devices, "hours": args.profile_hours}, best["threads"]
            ),
        }
        print_phases(figures["breakdown"]["phases"], best["run_s"], hours, args.profile_hours)
    for r in runs:
        print(
            f"e2e threads={r['threads']}: {r['process_wall_s']:.1f} s in all, {r['run_s']:.1f} s simulating, "
            f"{r['device_steps_per_s']:,.0f} device-steps/s, "
            f"{r['bytes_per_device_per_day'] / 1e6:.2f} MB per device per day, peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    return figures


def bench_memory(args: argparse.Namespace) -> dict:
    """Peak RSS of 10,000 devices (diffusion-v1, float16, Wi-Fi) in a fresh process."""
    figures = {
        "scenario": describe(args.devices, args.hours),
        "threads": args.threads,
        "load_before": os.getloadavg()[0],
    }
    figures |= in_fresh_process({"worker": "memory", "devices": args.devices, "hours": args.hours}, args.threads)
    figures["targets"] = {"under_4_gb": figures["peak_rss_mb"] < 4096}
    print(
        f"memory {args.devices} devices, {args.hours:g} h: peak RSS {figures['peak_rss_mb']:.0f} MB "
        "(high-water mark by the end of: "
        f"{', '.join(f'{k} {v:.0f}' for k, v in figures['high_water_mb_by_end_of'].items())} MB; "
        f"after imports {figures['rss_after_imports_mb']:.0f} MB, when the simulation starts "
        f"{figures['rss_at_run_start_mb']:.0f} MB), "
        f"checkpoint file {figures['checkpoint_mb'] or 0:.0f} MB, {figures['total_s']:.0f} s"
    )
    print("at the highest RSS sampled: " + " > ".join(figures["at_highest_rss_sampled"]["stack"][-4:]))
    return figures


def time_update_on(device: str, cfg: ActorCriticConfig, n: int, repeats: int) -> dict:
    """The batched update of N devices and a large matmul on ``device``, alternating ``repeats``
    times; peak device memory."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batched = ActorCritic(cfg, n, N_FEATURES, N_ACTIONS, torch.Generator(device=device).manual_seed(0), device)
    r = random_rollout(n, cfg.n_steps, seed=1)
    r = Rollout(r.obs.to(device), r.actions.to(device), r.rewards.to(device))
    size = 8192 if device == "cuda" else 2048
    seconds(lambda: batched.update(r, GAMMA), 3, device)  # warm-up: kernels, allocator
    block = calls_for(lambda: batched.update(r, GAMMA), device=device)
    runs = {"batched_s": [], "matmul_s": []}
    for _ in range(repeats):
        runs["batched_s"].append(seconds(lambda: batched.update(r, GAMMA), block, device))
        runs["matmul_s"].append(matmul_seconds(size, device))
    med = {key: statistics.median(v) for key, v in runs.items()}
    samples = n * cfg.n_steps
    flops = flops_per_sample(batched.actor.sizes, batched.critic.sizes, cfg.n_steps) * samples
    gflops, peak = flops / med["batched_s"] / 1e9, 2 * size**3 / med["matmul_s"] / 1e9
    return {
        "devices": n,
        "samples_per_update": samples,
        "batched_updates_per_timing": block,
        "batched_s": med["batched_s"],
        "batched_samples_per_s": samples / med["batched_s"],
        "batched_gflops": gflops,
        "matmul_size": size,
        "matmul_gflops": peak,
        "fraction_of_matmul": gflops / peak,
        "peak_device_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "runs": runs,
    }


def bench_gpu(args: argparse.Namespace) -> dict:
    """Samples/s and GFLOP/s of the batched update on a GPU at large N (``--device cpu``: the same
    measurement on the CPU, to compare on one machine or to check the benchmark itself)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_learners.py gpu: no CUDA device here (torch.cuda.is_available() is False); --device cpu measures "
            "the CPU",
            file=sys.stderr,
        )
        sys.exit(2)
    cfg = ActorCriticConfig()
    table = []
    for n in [int(x) for x in args.sizes.split(",")]:
        row = time_update_on(args.device, cfg, n, args.repeats)
        table.append(row)
        memory = (
            f", peak {row['peak_device_memory_mb']:.0f} MB on the device"
            if row["peak_device_memory_mb"] is not None
            else ""
        )
        print(
            f"gpu N={n:>7} on {args.device}: {1e3 * row['batched_s']:8.2f} ms per update, "
            f"{row['batched_samples_per_s']:,.0f} samples/s, "
            f"{row['batched_gflops']:.1f} GFLOP/s vs mm {row['matmul_gflops']:.0f}{memory}"
        )
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    return {
        "device": args.device,
        "device_name": name,
        "torch_cuda": torch.version.cuda,
        "config": cfg.model_dump(),
        "table": table,
    }


BENCHMARKS = {"update": bench_update, "e2e": bench_e2e, "memory": bench_memory, "gpu": bench_gpu}


# --- command line -------------------------------------------------------------------------------


def threads_list(text: str) -> list[str]:
    items = text.split(",")
    if not all(x == "default" or x.isdigit() and int(x) > 0 for x in items):
        raise argparse.ArgumentTypeError(f"expected thread counts or 'default', comma-separated, got {text!r}")
    return items


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the JSON results go [default: benchmarks/results]"
    )
    p.add_argument("--tag", help="write learners-<benchmark>-<tag>.json instead of learners-<benchmark>.json")
    sub = p.add_subparsers(dest="benchmark", required=True, metavar="{update,e2e,memory,gpu,all}")
    u = sub.add_parser(
        "update", help="batched A2C update vs a loop over per-device nn.Modules: samples/s, speed-up, GFLOP/s"
    )
    u.add_argument(
        "--sizes", default="100,1000,10000", help="comma-separated device counts N [default: 100,1000,10000]"
    )
    u.add_argument(
        "--threads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="torch thread counts to measure at [default: 1,2]",
    )
    u.add_argument(
        "--loop-max",
        type=int,
        default=1000,
        help="devices the loop runs at most; beyond, its time is scaled per device [default: 1000]",
    )
    u.add_argument("--repeats", type=int, default=3, help="alternating timings of each [default: 3]")
    u.add_argument(
        "--contention-devices",
        type=int,
        default=1000,
        help="N of the 1-vs-2-threads comparison beside other processes [default: 1000]",
    )
    e = sub.add_parser(
        "e2e", help="fleet run of 1,000 devices for 7 days (diffusion-v1, float16, Wi-Fi): wall, rates, bytes, peak RSS"
    )
    e.add_argument("--devices", type=int, default=1000, help="fleet size, a multiple of 100 [default: 1000]")
    e.add_argument("--days", type=float, default=7.0, help="simulated days [default: 7]")
    e.add_argument(
        "--threads",
        type=threads_list,
        default=["1", "default"],
        help="OMP_NUM_THREADS of each run, comma-separated; 'default' leaves torch's choice, as fleet run does "
        "[default: 1,default]",
    )
    e.add_argument(
        "--neighbour",
        choices=["none", *NEIGHBOURS],
        default="none",
        help="run another process beside, on purpose: a pure-Python loop or a torch learner [default: none]",
    )
    e.add_argument("--profile", action="store_true", help="profile even if the run meets its 2-minute target")
    e.add_argument("--profile-hours", type=float, default=6.0, help="simulated hours of the cProfile run [default: 6]")
    m = sub.add_parser(
        "memory", help="peak RSS of a fresh process simulating 10,000 devices (diffusion-v1, float16, Wi-Fi)"
    )
    m.add_argument("--devices", type=int, default=10_000, help="fleet size, a multiple of 100 [default: 10000]")
    m.add_argument(
        "--hours",
        type=float,
        default=3.0,
        help="simulated hours; the peak is reached in the first hour and at the end-of-run checkpoint [default: 3]",
    )
    m.add_argument(
        "--threads", default="1", help="OMP_NUM_THREADS of the run; 'default' leaves torch's choice [default: 1]"
    )
    g = sub.add_parser(
        "gpu",
        help="batched A2C update on a GPU at N = 10k and 100k: samples/s, GFLOP/s against a large matmul there, "
        "device memory",
    )
    g.add_argument("--sizes", default="10000,100000", help="comma-separated device counts N [default: 10000,100000]")
    g.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="where to compute [default: cuda]")
    g.add_argument("--repeats", type=int, default=3, help="alternating timings of each [default: 3]")
    sub.add_parser("all", help="update, e2e and memory with their defaults, and gpu where there is CUDA")
    w = sub.add_parser("_worker")  # internal: one measurement in a fresh process
    w.add_argument("spec")
    return p


def main(argv: list[str] | None = None) -> None:
    everything = parser().parse_args(argv).benchmark == "all"
    benchmarks = (
        {k: v for k, v in BENCHMARKS.items() if k != "gpu" or torch.cuda.is_available()} if everything else BENCHMARKS
    )
    run_cli(argv, parser, benchmarks, WORKERS, prefix="learners-", extra={"torch_threads_default": DEFAULT_THREADS})


if __name__ == "__main__":
    main()
