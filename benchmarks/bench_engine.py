"""Performance benchmarks of the simulation engine; each writes ``benchmarks/results/<name>.json``.

    python benchmarks/bench_engine.py city10k   # city-10k-v1, one day: wall, rates, memory, profile
    python benchmarks/bench_engine.py scaling   # 1k, 10k, 100k devices: us per device-step
    python benchmarks/bench_engine.py naive     # the engine vs one SimPy process per device
    python benchmarks/bench_engine.py programme # the planner's dynamic programme: CPU per device-plan
    python benchmarks/bench_engine.py city10k --learner planner-v1   # the planner's day, its share vs the physics
    python benchmarks/bench_engine.py all       # the three, about 8 minutes on 2 cores

Every measurement runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own
and one run's garbage never slows the next. Wall times are ``time.perf_counter`` around the
simulation; the profile that breaks the time down into engine phases is a separate run under
cProfile (which slows Python code down, so its seconds are larger; compare percentages).
Where two implementations are compared, their runs alternate, so that a noisy neighbour on a
shared machine slows both.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import platform
import pstats
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
SCENARIO = "city-10k-v1"
SITE_SIZE = 500
"""Devices per site (feeder) when a fleet is resized: the city grows by adding feeders."""


# --- scenarios -------------------------------------------------------------------------------


def city_overrides(
    devices: int | None = None, hours: float | None = None, baseline: bool | None = None, site_size: int = SITE_SIZE
) -> list[str]:
    """``--set`` overrides of city-10k-v1 for ``devices`` devices (sites of ``site_size``), a horizon and the
    baseline."""
    overrides = []
    if devices is not None:
        if devices % site_size:
            raise ValueError(f"devices ({devices}) must be a multiple of the site size ({site_size})")
        k = devices // site_size
        width = max(2, len(str(k - 1)))
        sites = ", ".join(
            f"{{name: feeder{i:0{width}d}, devices: {site_size}, feeder_kw: 1000, network: {{wifi: 1.0}}}}"
            for i in range(k)
        )
        overrides.append(f"fleet.sites=[{sites}]")
    if hours is not None:
        overrides.append(f"horizon={hours * 3600:g}")
    if baseline is not None:
        overrides.append(f"outputs.baseline={str(baseline).lower()}")
    return overrides


PLANNER_OVERRIDES = ["control_period=15min", "learner.params.identification.min_data=1h"]
"""What a planner learner needs of city-10k-v1: 15-minute control, the period it was built and tuned for (its
day-ahead plan holds a value function per tick: 1-minute ticks would be 1,440 of them, 4.6 GB at 10k); and to
plan from its first re-plan on, as a fleet with a model does every day (with the default ``min_data`` of a day,
a fleet that starts cold in the morning would plan only in the day's last hours)."""


def learner_overrides(name: str | None) -> list[str]:
    """``--set`` overrides that run city-10k-v1 with the learner ``name`` (None: the scenario's own)."""
    if name is None:
        return []
    return [f"learner.name={name}", *(PLANNER_OVERRIDES if name.startswith("planner") else [])]


def spec_overrides(spec: dict) -> list[str]:
    """The overrides of a worker spec: size, horizon, baseline, learner, then any ``--set`` given."""
    size = city_overrides(spec.get("devices"), spec.get("hours"), spec.get("baseline"))
    return size + learner_overrides(spec.get("learner")) + spec.get("set", [])


def describe(spec: dict) -> dict:
    """What a worker spec simulates, in words a reader of the JSON needs."""
    from fleet.scenario import load_scenario

    sc = load_scenario(SCENARIO, spec_overrides(spec))
    return {
        "base": SCENARIO,
        "devices": sc.n_devices,
        "sites": len(sc.fleet.sites),
        "devices_per_site": sorted({s.devices for s in sc.fleet.sites}),
        "horizon_s": sc.horizon,
        "control_period_s": sc.control_period,
        "telemetry_period_s": sc.workloads.telemetry.period,
        "consensus_period_s": sc.workloads.consensus.period,
        "network": sorted({c for s in sc.fleet.sites for c in s.network}),
        "baseline_twin": sc.outputs.baseline,
        "learner": sc.learner.name,
        "extra_overrides": learner_overrides(spec.get("learner")) + spec.get("set", []),
    }


# --- workers (each in a fresh process) ---------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def work_engine(spec: dict) -> dict:
    """Run the scenario through ``fleet.results.execute`` into a scratch run directory."""
    started = time.perf_counter()
    import fleet.sim.engine  # noqa: F401  (execute imports it lazily; its import, torch's included, is not setup)
    from fleet.results import execute
    from fleet.scenario import load_scenario

    import_s, rss_import = time.perf_counter() - started, _peak_rss_mb()
    sc = load_scenario(SCENARIO, spec_overrides(spec))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu = time.perf_counter(), time.process_time()
        _, summary = execute(sc, Path(scratch) / "run", device="cpu")
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
    perf, comm = summary["perf"], summary["comm"]
    return rates(
        n=sc.n_devices,
        ticks=perf["control_ticks"],
        total_s=total,
        run_s=perf["wall_s"],
        sent=comm["messages_sent"],
        delivered=comm["messages_delivered"],
        dropped=comm["messages_dropped"],
        import_s=import_s,
        rss_import_mb=rss_import,
        cpu_total_s=cpu,
        load_before=load,
    )


def work_naive(spec: dict) -> dict:
    """Run the same scenario with the one-process-per-device reference implementation."""
    started = time.perf_counter()
    from naive_engine import NaiveSimulation

    from fleet.scenario import load_scenario

    import_s, rss_import = time.perf_counter() - started, _peak_rss_mb()
    sc = load_scenario(SCENARIO, spec_overrides(spec))
    load = os.getloadavg()[0]
    started, cpu = time.perf_counter(), time.process_time()
    r = NaiveSimulation(sc).run()
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    return rates(
        n=r.n_devices,
        ticks=r.device_steps // r.n_devices,
        total_s=total,
        run_s=r.wall_s,
        sent=r.messages_sent,
        delivered=r.messages_delivered,
        dropped=r.messages_dropped,
        import_s=import_s,
        rss_import_mb=rss_import,
        cpu_total_s=cpu,
        load_before=load,
    )


def rates(
    n: int,
    ticks: int,
    total_s: float,
    run_s: float,
    sent: float,
    delivered: float,
    dropped: float,
    import_s: float,
    rss_import_mb: float,
    cpu_total_s: float,
    load_before: float,
) -> dict:
    """The figures of one run; rates are per second of simulation (``run_s``, without setup).

    ``import_s``: importing the packages (torch included); ``total_s``: building the world and
    the network (``setup_s``), then simulating (``run_s``), without the imports; ``cpu_total_s``:
    the CPU time of ``total_s`` (well below it when other processes competed for the cores);
    ``load_before``: the machine's 1-minute load average when the run started.
    """
    steps = n * ticks
    return {
        "devices": n,
        "control_ticks": ticks,
        "device_steps": steps,
        "import_s": import_s,
        "total_s": total_s,
        "cpu_total_s": cpu_total_s,
        "load_before": load_before,
        "setup_s": total_s - run_s,
        "run_s": run_s,
        "device_steps_per_s": steps / run_s,
        "us_per_device_step": 1e6 * run_s / steps,
        "messages_sent": sent,
        "messages_delivered": delivered,
        "messages_dropped": dropped,
        "messages_sent_per_s": sent / run_s,
        "messages_delivered_per_s": delivered / run_s,
        "rss_after_imports_mb": rss_import_mb,
        "peak_rss_mb": _peak_rss_mb(),
    }


def work_profile(spec: dict) -> dict:
    """Profile ``Simulation.run`` (not the world's construction) and aggregate it by phase."""
    from fleet.scenario import load_scenario
    from fleet.sim.engine import Simulation

    sc = load_scenario(SCENARIO, spec_overrides(spec))
    sim = Simulation(sc, device="cpu")
    profiler = cProfile.Profile()
    profiler.runcall(sim.run)
    stats = pstats.Stats(profiler)
    learner = sim.fleet.controller
    phases = phase_breakdown(stats, learner_methods(type(learner)))
    out = {"phases": phases, "learner_vs_physics": learner_vs_physics(phases), "hotspots": hotspots(stats, 15)}
    if type(learner).__module__.startswith("fleet.learners.planner"):
        methods, replan = learner_methods(type(learner)), learner.cfg.replan_period
        out["planner_parts"] = planner_parts(stats, methods, sc.control_period, replan)
    return out


def learner_methods(learner: type) -> dict[str, tuple[str, str]]:
    """The (file, function) of a learner class's ``act`` and ``update``, as a profile names them."""
    return {name: (getattr(learner, name).__module__.replace(".", "/") + ".py", name) for name in ("act", "update")}


WORKERS = {"engine": work_engine, "naive": work_naive, "profile": work_profile}


def in_fresh_process(spec: dict) -> dict:
    """Run ``WORKERS[spec['worker']]`` in a new interpreter and return what it measured."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", json.dumps(spec)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"worker {spec} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- profile: time per engine phase ------------------------------------------------------------

# (file, function) of the engine; the profile's caller table splits a callee's time by caller.
RUN = ("fleet/sim/engine.py", "run")
CONTROL, TICK, TELEMETRY = (
    ("fleet/sim/engine.py", "_control"),
    ("fleet/sim/engine.py", "tick"),
    ("fleet/sim/engine.py", "_telemetry"),
)
CONSENSUS, METRICS = ("fleet/sim/engine.py", "_consensus"), ("fleet/sim/engine.py", "_metrics")
METRICS_ROW, COLLECT, STATUS = (
    ("fleet/sim/engine.py", "metrics_row"),
    ("fleet/sim/engine.py", "_collect"),
    ("fleet/sim/engine.py", "_status"),
)
NETWORK_EVENTS, FIRE_WILLS = ("fleet/sim/engine.py", "_network_events"), ("fleet/sim/engine.py", "_fire_wills")
RECEIVE, OUTGOING = ("fleet/sim/consensus.py", "receive"), ("fleet/sim/consensus.py", "outgoing")
PUBLISH, BROKER = ("fleet/net/network.py", "publish"), ("fleet/net/network.py", "_through_broker")
DOWNLINK, DRAIN = ("fleet/net/network.py", "_downlink"), ("fleet/net/network.py", "drain")
SENSE, LEARNING = ("fleet/sim/engine.py", "sense"), ("fleet/sim/engine.py", "_learning")
ARRIVED, PUBLISH_LEARNER = ("fleet/sim/engine.py", "_arrived"), ("fleet/sim/engine.py", "_publish_learner")
PHYSICS, LOOKAHEAD = ("devices/building.py", "step"), ("fleet/learners/base.py", "lookahead")
RULE_BASED = {"act": ("fleet/learners/rule_based.py", "act"), "update": ("fleet/learners/rule_based.py", "update")}
FROM_BROKER, RESEND = ("fleet/net/network.py", "publish_from_broker"), ("fleet/net/network.py", "resend_retained")
ENCODE, DECODE = ("fleet/mqtt/codec.py", "encode_batch"), ("fleet/mqtt/codec.py", "decode_batch")


CRC32 = "isal.isal_zlib" if importlib.util.find_spec("isal") else "zlib"
"""The module whose crc32 the codec calls (ISA-L's where installed, as ``fleet.mqtt.codec`` chooses)."""

INSIDE = [
    ("fleet/mqtt/dedup.py", "accept", "dedup on every drain (downlink)"),
    ("fleet/mqtt/retained.py", "set", "retained store, 1 call per publish (broker)"),
    ("fleet/mqtt/routing.py", "route", "topic routing (broker)"),
    ("fleet/mqtt/routing.py", "_build", "routing tables, lazy first build (broker)"),
    ("fleet/net/link.py", "send", "link queues, jitter, loss (up and down)"),
    ("~", f"<built-in method {CRC32}.crc32>", f"CRC-32 ({CRC32}), 1 call per message (codec)"),
    ("devices/occupancy.py", "occupied", "occupancy schedule (control, telemetry)"),
]
"""Functions worth seeing on their own: cumulative seconds, overlapping the phases above."""


class CallTimes:
    """Cumulative seconds of a function in a cProfile, in total or as called from one caller."""

    def __init__(self, stats: pstats.Stats) -> None:
        self.stats = stats.stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
        self.missing: set[tuple[str, str]] = set()
        """Functions asked for that the profile never saw (not called in this run, or renamed)."""

    def _keys(self, func: tuple[str, str]) -> list:
        keys = [k for k in self.stats if k[0].replace(os.sep, "/").endswith(func[0]) and k[2] == func[1]]
        if func[0] == "~":  # a built-in
            return keys
        if not keys:
            self.missing.add(func)
        return keys

    def calls(self, func: tuple[str, str]) -> int:
        """How many times ``func`` was called."""
        return sum(self.stats[k][1] for k in self._keys(func))

    def __call__(self, func: tuple[str, str], caller: tuple[str, str] | None = None) -> float:
        if caller is None:
            return sum(self.stats[k][3] for k in self._keys(func))
        callers = set(self._keys(caller))
        return sum(ct for k in self._keys(func) for c, (_, _, _, ct) in self.stats[k][4].items() if c in callers)


def phase_breakdown(stats: pstats.Stats, learner: dict[str, tuple[str, str]] = RULE_BASED) -> dict:
    """Seconds and share of ``Simulation.run`` spent in each engine phase (exclusive of each other);
    ``learner``: the (file, function) of the fleet's learner's ``act`` and ``update`` (:func:`learner_methods`)."""
    t = CallTimes(stats)
    total = t(RUN)
    encode = t(ENCODE, TELEMETRY) + t(ENCODE, OUTGOING) + t(ENCODE, STATUS) + t(ENCODE, PUBLISH_LEARNER)
    churn_messages = t(PUBLISH, NETWORK_EVENTS) + t(BROKER, FROM_BROKER) + t(DOWNLINK, RESEND) + t(ENCODE, STATUS)
    act, physics, ahead = t(learner["act"], TICK), t(PHYSICS, TICK), t(LOOKAHEAD, SENSE)
    update = t(learner["update"], LEARNING)
    learning_messages = (
        t(PUBLISH, PUBLISH_LEARNER) + t(ENCODE, PUBLISH_LEARNER) + t(DRAIN, ARRIVED) + t(DECODE, ARRIVED)
    )
    phases = {
        "control: physics (the houses' RC step)": physics,
        "control: learner act": act,
        "control: rewards, KPIs, the baseline twin's controller": t(TICK) - physics - act,
        "control: learner's lookahead (schedule, tariff)": ahead,
        "control: sensing, weather, occupancy, churn": t(CONTROL) - t(TICK) - churn_messages - ahead,
        "learning: learner update": update,
        "learning: learner inbox, outbox": t(LEARNING) - update - learning_messages,
        "telemetry: assembling the state": t(TELEMETRY) - t(ENCODE, TELEMETRY) - t(PUBLISH, TELEMETRY),
        "consensus: combine, edge bookkeeping": t(CONSENSUS)
        - t(DRAIN, CONSENSUS)
        - t(PUBLISH, CONSENSUS)
        - t(ENCODE, OUTGOING)
        - t(DECODE, RECEIVE),
        "network: uplink (links, loss, accounting)": t(PUBLISH) - t(BROKER, PUBLISH),
        "network: broker (routing, queue, retained)": t(BROKER) - t(DOWNLINK, BROKER),
        "network: downlink and delivery (drain, dedup)": t(DOWNLINK) + t(DRAIN),
        "codec: encode": encode,
        "codec: decode": t(DECODE),
        "metrics rows": t(METRICS) + t(METRICS_ROW, RUN) - t(DRAIN, COLLECT) - t(DECODE, COLLECT),
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


LEARNER_PHASES = (
    "control: learner act",
    "control: learner's lookahead (schedule, tariff)",
    "learning: learner update",
    "learning: learner inbox, outbox",
)
"""The phases of the learner's own work (its messages' network and codec time is in the network's and codec's)."""


def learner_vs_physics(phases: dict) -> dict:
    """The learner's share of the run (act, update, lookahead) against the physics' share × 5 (issue 13's
    budget for a planner)."""
    share = {row["phase"]: row["percent"] for row in phases["table"]}
    learner = sum(share[k] for k in LEARNER_PHASES)
    physics = share["control: physics (the houses' RC step)"]
    return {
        "learner_percent": learner,
        "physics_percent": physics,
        "physics_x5_percent": 5 * physics,
        "met": learner <= 5 * physics,
    }


PLANNER, IDENT = "fleet/learners/planner/learner.py", "fleet/learners/planner/identification.py"
PROGRAMME_PART, STAGES = "programme (the dynamic programme of a plan)", ("fleet/learners/planner/planning.py", "stages")
PLANNER_PARTS = {
    "identification per tick (RLS: close and open a sample)": ("tick", [(IDENT, "close"), (IDENT, "open")]),
    "identification per plan (estimate, check, neighbours' mean)": (
        "plan",
        [(IDENT, "estimate"), (IDENT, "physical"), (PLANNER, "_neighbours"), (PLANNER, "_samples")],
    ),
    PROGRAMME_PART: ("plan", [("fleet/learners/planner/planning.py", "plan")]),
    "acting: follow the plan (choose a level)": ("tick", [("fleet/learners/planner/planning.py", "choose")]),
    "acting: the fallback thermostat": ("tick", [("fleet/learners/rule_based.py", "act")]),
}
"""The planner's parts: label -> (what it runs once per: a control tick or a plan, its (file, function)s as
called from the planner's ``act``, ``advise`` (which ``act`` calls) or ``update``)."""
LOOKAHEAD_PART = "lookahead: made by the engine (every tick; computed when first read)"
READ_PART = "lookahead: computed when a plan reads it (schedule, tariff)"
READS = [("fleet/learners/base.py", name) for name in ("band_lo", "band_hi", "price")]
"""A :class:`~fleet.learners.base.Lookahead`'s arrays: the first read computes them."""
MESSAGES_PART = "messages: inbox, outbox, their codec and network"


def planner_parts(
    stats: pstats.Stats, learner: dict[str, tuple[str, str]], dt_s: float, replan_period_s: float
) -> dict:
    """The planner's time by part (:data:`PLANNER_PARTS`, plus the lookahead, its messages and the rest of its
    ``act`` and ``update``), each as a multiple of the physics' time in the same run, and of a steady day's
    (ticks of ``dt_s``, a plan every ``replan_period_s``: a run of a few hours holds fewer plans per tick)."""
    t = CallTimes(stats)
    ticks, plans = t.calls(learner["act"]), t.calls(learner["update"])
    callers = (learner["act"], (PLANNER, "advise"), learner["update"])
    seconds = {label: sum(t(func, c) for func in funcs for c in callers) for label, (_, funcs) in PLANNER_PARTS.items()}
    per = {label: per for label, (per, _) in PLANNER_PARTS.items()}
    seconds[READ_PART], per[READ_PART] = sum(t(func, STAGES) for func in READS), "plan"
    seconds[PROGRAMME_PART] -= seconds[READ_PART]
    for method, phase, each in (("act", TICK, "tick"), ("update", LEARNING, "plan")):
        mine = [k for k in seconds if per[k] == each]
        seconds[f"the rest of {method}"] = t(learner[method], phase) - sum(seconds[k] for k in mine)
        per[f"the rest of {method}"] = each
    seconds[LOOKAHEAD_PART], per[LOOKAHEAD_PART] = t(LOOKAHEAD, SENSE), "tick"
    seconds[MESSAGES_PART], per[MESSAGES_PART] = t(LEARNING) - t(learner["update"], LEARNING), "plan"
    physics = t(PHYSICS, TICK)
    day = {"tick": 86400.0 / dt_s / ticks, "plan": 86400.0 / replan_period_s / plans}
    return {
        "ticks": ticks,
        "plans": plans,
        "physics_s": physics,
        "table": [
            {
                "part": label,
                "per": per[label],
                "seconds": s,
                "x_physics_run": s / physics,
                "x_physics_day": s * day[per[label]] / (physics * day["tick"]),
            }
            for label, s in seconds.items()
        ],
    }


def _absent_from_source(funcs: set[tuple[str, str]]) -> list[str]:
    """The functions of ``funcs`` that no longer exist (renamed or moved): the breakdown needs updating."""
    return sorted(
        f"{file}:{name}"
        for file, name in funcs
        if not (REPO / file).is_file() or f"def {name}(" not in (REPO / file).read_text()
    )


def short_path(file: str) -> str:
    """``file`` from inside site-packages or the repository, without the folders up to there."""
    return Path(file).as_posix().split("site-packages/")[-1].replace(REPO.as_posix() + "/", "")


def hotspots(stats: pstats.Stats, top: int) -> list[dict]:
    """The ``top`` functions by own time (tottime), with their cumulative time."""
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [
        {
            "function": f"{short_path(file)}:{line}({name})",
            "calls": nc,
            "tottime_s": tt,
            "cumtime_s": ct,
        }
        for (file, line, name), (_, nc, tt, ct, _) in rows
    ]


# --- the machine and the record -----------------------------------------------------------------


def machine() -> dict:
    """Where the figures were taken."""
    import numpy
    import simpy
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "simpy": simpy.__version__,
    }


def code_version() -> dict:
    """The commit measured, and the engine files that differed from it (edits in progress)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    import fleet

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": git("status", "--porcelain", "--", "fleet", "devices").splitlines(),
        "fleet_imported_from": str(Path(fleet.__file__).resolve().parent),
    }


def record(name: str, figures: dict, out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>.json`` with the figures, the command, the machine and the date."""
    argv = [
        Path(sys.argv[0]).resolve().relative_to(REPO).as_posix()
        if Path(sys.argv[0]).resolve().is_relative_to(REPO)
        else sys.argv[0],
        *sys.argv[1:],
    ]
    out = {
        "benchmark": name,
        "command": shlex.join(["python", *argv]),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "code": code_version(),
        **figures,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=sys.stderr)
    return path


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


# --- benchmarks ---------------------------------------------------------------------------------


def bench_city10k(args: argparse.Namespace) -> dict:
    """city-10k-v1 as shipped (one day, 1-min ticks, telemetry 5 min, consensus 15 min, wifi), or with another
    learner and size (``--learner``, ``--devices``)."""
    spec = {"worker": "engine", "devices": args.devices, "learner": args.learner, "set": args.set}
    runs = []
    for i in range(args.repeats):
        runs.append(in_fresh_process(spec))
        say(
            f"city10k run {i + 1}/{args.repeats}: {runs[-1]['total_s']:.1f} s total, {runs[-1]['run_s']:.1f} s "
            f"simulating, peak {runs[-1]['peak_rss_mb']:.0f} MB"
        )
    summary = {
        k: median_of(runs, k)
        for k in (
            "total_s",
            "setup_s",
            "run_s",
            "device_steps_per_s",
            "us_per_device_step",
            "messages_sent_per_s",
            "messages_delivered_per_s",
        )
    }
    summary |= {
        "device_steps": runs[0]["device_steps"],
        "messages_sent": runs[0]["messages_sent"],
        "messages_delivered": runs[0]["messages_delivered"],
    }
    summary |= {"peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs), "total_s_max": max(r["total_s"] for r in runs)}
    figures = {"scenario": describe(spec), "runs": runs, "median": summary}
    figures["targets"] = {
        "whole_day_under_30_s": summary["total_s"] < 30.0,
        "under_2_gb": summary["peak_rss_mb_max"] < 2048.0,
    }
    if not args.no_profile:
        say("city10k: profiling one more run under cProfile ...")
        figures["breakdown"] = in_fresh_process({**spec, "worker": "profile"})
        print_breakdown(figures["breakdown"]["phases"], summary["run_s"])
        share = figures["breakdown"]["learner_vs_physics"]
        print(
            f"learner {share['learner_percent']:.1f} % of the run, physics {share['physics_percent']:.2f} % "
            f"(x 5 = {share['physics_x5_percent']:.1f} %): {'met' if share['met'] else 'not met'}"
        )
        if "planner_parts" in figures["breakdown"]:
            print_planner_parts(figures["breakdown"]["planner_parts"])
    print(
        f"city10k: {summary['total_s']:.1f} s total ({summary['run_s']:.1f} s simulating), "
        f"{summary['device_steps_per_s']:,.0f} device-steps/s, "
        f"{summary['messages_sent_per_s']:,.0f} msgs sent/s, {summary['messages_delivered_per_s']:,.0f} delivered/s, "
        f"peak RSS {summary['peak_rss_mb_max']:.0f} MB"
    )
    return figures


def print_breakdown(phases: dict, run_s: float) -> None:
    print(f"{'phase':<50}{'profiled s':>11}{'%':>7}{'est. s':>8}")
    for row in phases["table"]:
        print(f"{row['phase']:<50}{row['seconds']:>11.2f}{row['percent']:>7.1f}{row['percent'] * run_s / 100:>8.2f}")
    print(f"{'inside those (overlapping):':<50}")
    for row in phases["inside"]:
        print(f"  {row['what']:<48}{row['seconds']:>11.2f}{row['percent']:>7.1f}{row['percent'] * run_s / 100:>8.2f}")
    if phases["functions_not_found"]:
        print(
            f"warning: the engine no longer has {', '.join(phases['functions_not_found'])}: update the phases in "
            "bench_engine.py"
        )


def print_planner_parts(parts: dict) -> None:
    print(f"the planner's parts ({parts['ticks']} ticks, {parts['plans']} plans; physics {parts['physics_s']:.2f} s):")
    print(f"{'part':<72}{'per':>5}{'profiled s':>11}{'x physics':>10}{'x, a day':>9}")
    for row in parts["table"]:
        print(
            f"{row['part']:<72}{row['per']:>5}{row['seconds']:>11.2f}{row['x_physics_run']:>10.1f}"
            f"{row['x_physics_day']:>9.1f}"
        )


def bench_scaling(args: argparse.Namespace) -> dict:
    """The same city at several sizes (sites of 500 devices), same horizon: us per device-step."""
    sizes = [int(x) for x in args.sizes.split(",")]
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    for i in range(args.repeats):
        for n in sizes:
            runs[n].append(in_fresh_process({"worker": "engine", "devices": n, "hours": args.hours, "set": args.set}))
            r = runs[n][-1]
            say(
                f"scaling {n:>7} devices, run {i + 1}/{args.repeats}: {r['run_s']:.2f} s simulating, "
                f"{r['us_per_device_step']:.2f} us/step, peak {r['peak_rss_mb']:.0f} MB"
            )
    table = [
        {
            "devices": n,
            "us_per_device_step": median_of(runs[n], "us_per_device_step"),
            "us_per_device_step_min": min(r["us_per_device_step"] for r in runs[n]),
            "run_s": median_of(runs[n], "run_s"),
            "setup_s": median_of(runs[n], "setup_s"),
            "device_steps_per_s": median_of(runs[n], "device_steps_per_s"),
            "messages_delivered_per_s": median_of(runs[n], "messages_delivered_per_s"),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[n]),
        }
        for n in sizes
    ]
    print(f"{'devices':>9}{'us/step':>9}{'run s':>8}{'setup s':>9}{'steps/s':>12}{'peak MB':>9}")
    for row in table:
        print(
            f"{row['devices']:>9}{row['us_per_device_step']:>9.2f}{row['run_s']:>8.2f}{row['setup_s']:>9.2f}{row['device_steps_per_s']:>12,.0f}{row['peak_rss_mb']:>9.0f}"
        )
    figures = {
        "scenarios": [describe({"devices": n, "hours": args.hours, "set": args.set}) for n in sizes],
        "table": table,
        "runs": {str(n): r for n, r in runs.items()},
    }
    if not args.no_profile:
        figures["phases_us_per_device_step"] = phases_by_size(sizes, args, table)
    return figures


def phases_by_size(sizes: list[int], args: argparse.Namespace, table: list[dict]) -> list[dict]:
    """One cProfile run per size; each phase's share of it, times the measured us/step at that size."""
    rows: dict[str, dict[str, float]] = {}
    for n, measured in zip(sizes, table):
        say(f"scaling {n:>7} devices: profiling one more run under cProfile ...")
        for row in in_fresh_process({"worker": "profile", "devices": n, "hours": args.hours, "set": args.set})[
            "phases"
        ]["table"]:
            rows.setdefault(row["phase"], {})[str(n)] = row["percent"] / 100 * measured["us_per_device_step"]
    print(f"{'us per device-step, by phase':<50}" + "".join(f"{n:>9}" for n in sizes))
    for phase, by_size in rows.items():
        print(f"{phase:<50}" + "".join(f"{by_size[str(n)]:>9.3f}" for n in sizes))
    return [{"phase": phase, **by_size} for phase, by_size in rows.items()]


def bench_naive(args: argparse.Namespace) -> dict:
    """The engine and the naive reference on the same scenario, alternating; both without the twin."""
    spec = {"devices": args.devices, "hours": args.hours, "baseline": False, "set": args.set}
    runs: dict[str, list[dict]] = {"engine": [], "naive": []}
    for i in range(args.repeats):
        for impl in ("engine", "naive"):
            runs[impl].append(in_fresh_process({**spec, "worker": impl}))
            say(f"naive comparison, {impl} run {i + 1}/{args.repeats}: {runs[impl][-1]['run_s']:.2f} s simulating")
    engine, naive = runs["engine"][0], runs["naive"][0]
    counts = {
        k: {"engine": engine[k], "naive": naive[k]}
        for k in ("device_steps", "messages_sent", "messages_delivered", "messages_dropped")
    }
    for k in ("device_steps", "messages_sent", "messages_delivered"):
        if abs(naive[k] - engine[k]) > 0.03 * engine[k]:
            raise RuntimeError(f"the naive engine did different work: {k} engine {engine[k]} vs naive {naive[k]}")
    med = {impl: {k: median_of(r, k) for k in ("run_s", "total_s", "us_per_device_step")} for impl, r in runs.items()}
    speedup = {
        "run": med["naive"]["run_s"] / med["engine"]["run_s"],
        "total": med["naive"]["total_s"] / med["engine"]["total_s"],
    }
    print(
        f"engine {med['engine']['run_s']:.2f} s, naive {med['naive']['run_s']:.2f} s simulating: {speedup['run']:.1f}x "
        f"(with setup: {med['engine']['total_s']:.2f} s vs {med['naive']['total_s']:.2f} s, {speedup['total']:.1f}x)"
    )
    return {
        "scenario": describe(spec),
        "counts": counts,
        "median": med,
        "speedup": speedup,
        "target_10x_met": speedup["run"] >= 10,
        "runs": runs,
    }


def bench_programme(args: argparse.Namespace) -> dict:
    """CPU seconds per device-plan of the dynamic programme (``fleet.optimum.cost_to_go``) at the planner's
    defaults: 96 quarter-hour ticks (``--ticks``), grid 12-28 degC by 0.2 (``--grid-step``), 4 levels, random
    identified houses; best of repeats."""
    import numpy as np

    from fleet.optimum import HouseModel, Stage, cost_to_go

    n, dt_h, rng = args.devices, 0.25, np.random.default_rng(0)
    levels = np.array([0.0, 1.0, 2.0, 3.0]) * rng.uniform(0.8, 1.2, (n, 1))
    heat = rng.uniform(8, 20, (n, 1)) * levels + rng.uniform(0.3, 2, (n, 1))
    house = HouseModel(np.ones(n), rng.uniform(12, 60, n), levels, heat)
    stages = [
        Stage(rng.normal(2, 1, n), np.full(n, 0.25), np.full(n, 20.3 if k % 96 < 88 else 16.3), np.full(n, 22.7))
        for k in range(args.ticks)
    ]
    cpu, load = [], os.getloadavg()[0]
    for _ in range(args.repeats):
        started = time.process_time()
        cost_to_go(house, stages, 1.0, dt_h, (12.0, 28.0, args.grid_step))
        cpu.append(time.process_time() - started)
    per_plan = min(cpu) / n
    print(
        f"programme: {1e3 * per_plan:.3f} ms CPU per device-plan at {n} devices, {args.ticks} ticks, grid step "
        f"{args.grid_step:g} (best of {args.repeats})"
    )
    return {
        "devices": n,
        "ticks": args.ticks,
        "grid_step_c": args.grid_step,
        "cpu_s": cpu,
        "ms_per_device_plan": 1e3 * per_plan,
        "load_before": load,
    }


BENCHMARKS = {"city10k": bench_city10k, "scaling": bench_scaling, "naive": bench_naive, "programme": bench_programme}


# --- command line -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the JSON results go [default: benchmarks/results]"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra scenario override, as for `fleet run --set` (repeatable)",
    )
    p.add_argument(
        "--tag", help="write <benchmark>-<tag>.json instead of <benchmark>.json (for variants made with --set)"
    )
    sub = p.add_subparsers(dest="benchmark", required=True, metavar="{city10k,scaling,naive,programme,all}")
    c = sub.add_parser(
        "city10k", help="city-10k-v1 for one day: wall time, device-steps/s, messages/s, peak RSS, time per phase"
    )
    c.add_argument("--repeats", type=int, default=3, help="measured runs, each in a fresh process [default: 3]")
    c.add_argument("--no-profile", action="store_true", help="skip the cProfile run that breaks the time down by phase")
    c.add_argument(
        "--learner",
        help="run this learner instead of the scenario's (planner-*: with 15-minute control) [default: none]",
    )
    c.add_argument("--devices", type=int, help="fleet size, a multiple of 500 [default: the scenario's 10,000]")
    s = sub.add_parser("scaling", help="us per device-step at several fleet sizes (sites of 500 devices)")
    s.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help="comma-separated device counts, multiples of 500 [default: 1000,10000,100000]",
    )
    s.add_argument("--hours", type=float, default=3.0, help="simulated hours at every size [default: 3]")
    s.add_argument("--repeats", type=int, default=3, help="runs per size, sizes interleaved [default: 3]")
    s.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile run per size that splits us/step by phase"
    )
    n = sub.add_parser("naive", help="the engine vs one SimPy process per device, side by side")
    n.add_argument("--devices", type=int, default=1000, help="fleet size, a multiple of 500 [default: 1000]")
    n.add_argument("--hours", type=float, default=6.0, help="simulated hours [default: 6]")
    n.add_argument("--repeats", type=int, default=2, help="alternating runs of each [default: 2]")
    d = sub.add_parser("programme", help="CPU time per device-plan of the planner's dynamic programme")
    d.add_argument("--devices", type=int, default=1000, help="devices planned at once [default: 1000]")
    d.add_argument("--repeats", type=int, default=3, help="plans timed, the best reported [default: 3]")
    d.add_argument("--ticks", type=int, default=96, help="ticks of the horizon, 15 minutes each [default: 96]")
    d.add_argument("--grid-step", type=float, default=0.2, help="step of the 12-28 degC grid [default: 0.2]")
    sub.add_parser("all", help="city10k, scaling, naive and programme with their defaults")
    w = sub.add_parser("_worker")  # internal: one measurement in a fresh process
    w.add_argument("spec")
    return p


def run_cli(
    argv: list[str] | None,
    make_parser,
    benchmarks: dict,
    workers: dict,
    prefix: str = "",
    forwarded=lambda args: [],
    extra: dict | None = None,
) -> None:
    """The ``main`` of a benchmark script: ``_worker`` does one measurement for a fresh process and
    prints it; ``all`` runs every benchmark with its defaults plus the options ``forwarded(args)``;
    each result (with ``extra`` figures) is recorded as ``<prefix><name>[-<tag>]``."""
    args = make_parser().parse_args(argv)
    if args.benchmark == "_worker":
        spec = json.loads(args.spec)
        print(json.dumps(workers[spec["worker"]](spec)))
        return
    for name in list(benchmarks) if args.benchmark == "all" else [args.benchmark]:
        sub_args = make_parser().parse_args([*forwarded(args), name]) if args.benchmark == "all" else args
        label = f"{prefix}{name}-{args.tag}" if args.tag else f"{prefix}{name}"
        record(label, {**(extra or {}), **benchmarks[name](sub_args)}, args.out_dir)


def main(argv: list[str] | None = None) -> None:
    run_cli(argv, parser, BENCHMARKS, WORKERS, forwarded=lambda args: [f"--set={x}" for x in args.set])


if __name__ == "__main__":
    main()
