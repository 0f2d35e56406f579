"""Load on a real broker: hundreds of PahoTransport agents through one local mosquitto; writes
``benchmarks/results/mqtt-load.json``.

    python benchmarks/bench_mqtt_load.py    # 200 agents in 4 processes, 2 msgs/s each, QoS 1, 180 s
    python benchmarks/bench_mqtt_load.py --duration 10 --agents 20 --procs 2 --out-dir /tmp/x   # a quick look

The benchmark starts mosquitto on a free loopback port with a generated configuration
(``tests.mosquitto.start_broker``: the broker's defaults, plus ``$SYS`` every second), then
``--procs`` worker processes that each run a share of the ``--agents``. Every agent is one
:class:`fleet.mqtt.paho_transport.PahoTransport`, its own MQTT v5 connection and client id. Agent
``i`` publishes on ``fleet/<site>/<device>/<kind>`` and subscribes to the topics of its ring
neighbours ``i-2, i-1, i+1, i+2`` (mostly in other processes), so every message goes to four
subscribers. The mix (``--rate`` messages/s per agent, ``--params-fraction`` of them params):
telemetry is the simulator's telemetry vector (5 float16 values, a 45-byte message); params
are a float16 parameter vector of diffusion-v1 with its default networks (2,981 floats, a
5,997-byte message). The default, 3 telemetry messages per params message, is the shipped
scenarios' ratio (telemetry every 5 min, an actor-critic update every 16 min) sped up about
600 times. Each agent sends on its own schedule with a random phase; every payload is
``fleet.mqtt.codec.encode``\\ d afresh with the send time (``time.time()``) as its timestamp and
a per-sender sequence number.

Measured: messages and bytes (payloads) published and delivered per second over the window of
``--duration`` seconds, and per second of it (min/median/max); delivery delay (the paho
callback's arrival time, converted to ``time.time()``, less the timestamp in the payload: one
clock, one machine); per (sender, receiver) pair, lost (sent but not received by the end of a
``--drain`` period), duplicated and reordered messages; publish refusals: at QoS 1 an agent may
have at most 20 messages awaiting their PUBACK (mosquitto's Receive Maximum), beyond which
``publish`` raises TransportError and the agent waits for its oldest PUBACK before trying again
(counted, with the time waited); the PUBACK reason codes; how late the agents sent against
their schedule; CPU seconds of the broker, of each worker process and of the rest of the
machine over the window (``/proc``); the broker's own ``$SYS`` counters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from bench_engine import record, say

from fleet.errors import TransportError, WireError
from fleet.mqtt.codec import DType, Kind, decode, encode, encoded_size
from fleet.mqtt.paho_transport import PahoTransport
from fleet.mqtt.topics import device_topic
from fleet.mqtt.transport import Delivery, accepted

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NAME = "mqtt-load"
TELEMETRY_FLOATS = 5
"""The simulator's telemetry vector: temperature, power, comfort band low and high, occupied
(``fleet.sim.engine.Simulation._telemetry``)."""
NEIGHBOUR_OFFSETS = (-2, -1, 1, 2)
"""Agent ``i`` subscribes to agents ``i + offset`` (mod the number of agents): a ring of 4."""
SITE_SIZE = 50
"""Agents per site in the topics (``fleet/load-s<k>/d<i>/<kind>``)."""
SYS_COUNTERS = (
    "messages/received",
    "messages/sent",
    "publish/messages/received",
    "publish/messages/sent",
    "publish/messages/dropped",
    "bytes/received",
    "bytes/sent",
    "publish/bytes/received",
    "publish/bytes/sent",
)
"""``$SYS/broker/...`` counters whose increase over the run is recorded."""
INFLIGHT_REFUSAL = "awaiting their PUBACK"
"""In the TransportError of a publish refused because the in-flight bound is reached."""


@dataclass(frozen=True)
class LoadConfig:
    """One load run."""

    agents: int = 200
    """Agents (MQTT connections), at least 5 (each has 4 distinct neighbours)."""
    procs: int = 4
    """Worker processes the agents are spread over."""
    duration: float = 180.0
    """Seconds of publishing (the measurement window)."""
    rate: float = 2.0
    """Messages per second each agent publishes, telemetry and params together."""
    params_fraction: float = 0.25
    """Share of params messages (0: telemetry only, 1: params only)."""
    qos: int = 1
    """QoS of every publish and subscription (0 or 1)."""
    drain: float = 5.0
    """Seconds after the window during which agents still receive; what has not arrived then is lost."""
    seed: int = 0
    """Seeds the agents' schedule phases and payload values."""

    def __post_init__(self) -> None:
        checks = {
            "agents": (self.agents >= len(NEIGHBOUR_OFFSETS) + 1, f"at least {len(NEIGHBOUR_OFFSETS) + 1}"),
            "procs": (1 <= self.procs <= self.agents, "between 1 and the number of agents"),
            "duration": (self.duration > 0, "positive"),
            "rate": (self.rate > 0, "positive"),
            "params_fraction": (0 <= self.params_fraction <= 1, "in [0, 1]"),
            "qos": (self.qos in (0, 1), "0 or 1"),
            "drain": (self.drain >= 0, "0 or more"),
        }
        for field, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"{field} must be {allowed}, got {getattr(self, field)!r}")

    @property
    def periods(self) -> dict[Kind, float]:
        """Seconds between an agent's messages of each kind in the mix."""
        shares = {Kind.TELEMETRY: 1 - self.params_fraction, Kind.PARAMS: self.params_fraction}
        return {kind: 1 / (self.rate * share) for kind, share in shares.items() if share > 0}


def diffusion_param_floats() -> int:
    """P, the parameters of one device of diffusion-v1 with its default networks on the shipped
    thermostat scenarios: 2,981."""
    import torch
    from bench_learners import N_ACTIONS

    from fleet.learners.actor_critic import DiffusionConfig
    from fleet.learners.features import N_FEATURES
    from fleet.learners.stacked import ActorCritic

    return ActorCritic(DiffusionConfig(), 1, N_FEATURES, N_ACTIONS, torch.Generator(), "cpu").flat().shape[1]


def topic(agent: int, kind: Kind) -> str:
    return device_topic(f"load-s{agent // SITE_SIZE}", f"d{agent:04d}", kind.name.lower())


def neighbours(agent: int, n_agents: int) -> list[int]:
    return [(agent + offset) % n_agents for offset in NEIGHBOUR_OFFSETS]


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> dict[str, float]:
    """Seconds of all cores since boot: busy (user, nice, system, irq, softirq), idle (with iowait) and steal."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / tick,
        "idle": (idle + iowait) / tick,
        "steal": steal / tick,
    }


# --- one worker process: its agents -------------------------------------------------------------


class Agent:
    """One simulated thermostat: its own connection, a sender thread, and what it received per sender."""

    def __init__(self, index: int, spec: dict) -> None:
        self.index, self.spec = index, spec
        self.transport = PahoTransport(f"load-{spec['run_id']}-{index:04d}", spec["url"])
        rng = np.random.default_rng([spec["seed"], index])
        self.periods = {Kind[k]: p for k, p in spec["periods"].items()}
        self.phase = {kind: rng.uniform(0, period) for kind, period in self.periods.items()}
        self.arrays = {
            Kind.TELEMETRY: rng.uniform(15, 25, TELEMETRY_FLOATS),
            Kind.PARAMS: rng.normal(0, 0.3, spec["param_floats"]),
        }
        self.topics = {kind: topic(index, kind) for kind in self.periods}
        self.seq = 0
        self.sent: list[tuple[float, float, int, int]] = []
        """(send time, lag behind schedule, kind, payload bytes) per message published."""
        self.outstanding: deque[Delivery] = deque()
        """What the broker has yet to answer, oldest first (PUBACKs come in order)."""
        self.puback: Counter = Counter()
        self.refusals: Counter = Counter()
        self.inflight_wait_s = 0.0
        self.behind_at_end = 0
        self.corrupt = 0
        self.seen: dict[int, set[int]] = {}
        self.newest: dict[int, int] = {}
        self.duplicates: Counter = Counter()
        self.reordered: Counter = Counter()

    # ---- sending

    def send_until(self, start: float, end: float) -> None:
        """Publish every message due in [start, end) on this agent's schedule (sender thread)."""
        due = {kind: start + phase for kind, phase in self.phase.items()}
        while True:
            kind = min(due, key=due.get)
            now = time.time()
            if due[kind] >= end or now >= end:
                self.behind_at_end = sum(int(np.ceil((end - t) / self.periods[k])) for k, t in due.items() if t < end)
                return
            if due[kind] > now:
                time.sleep(due[kind] - now)
            self.publish(kind, due[kind])
            due[kind] += self.periods[kind]

    def publish(self, kind: Kind, due: float) -> None:
        """Publish the next message of ``kind``, due at ``due``, trying again after each refusal."""
        while True:
            sent_at = time.time()
            payload = encode(kind, self.index, self.seq, sent_at, [self.arrays[kind]], DType.FLOAT16)
            try:
                delivery = self.transport.publish(self.topics[kind], payload, self.spec["qos"])
                break
            except TransportError as exc:
                self.refused(exc)
        self.seq += 1
        self.sent.append((sent_at, sent_at - due, kind, len(payload)))
        self.outstanding.append(delivery)
        while self.outstanding and self.outstanding[0].wait(0) is not None:
            self.settle(self.outstanding.popleft().wait(0))

    def refused(self, exc: TransportError) -> None:
        """Count a refused publish; at the in-flight bound wait for the oldest PUBACK, else pause."""
        if INFLIGHT_REFUSAL in str(exc) and self.outstanding:
            self.refusals["inflight_bound"] += 1
            waited = time.perf_counter()
            self.settle(self.outstanding.popleft().wait(10.0))
            self.inflight_wait_s += time.perf_counter() - waited
        else:
            self.refusals["other" if self.transport.connected else "not_connected"] += 1
            time.sleep(0.1)

    def settle(self, code: int | None) -> None:
        self.puback["none" if code is None else str(code)] += 1

    def settle_all(self, deadline: float) -> None:
        """Wait (until ``deadline``, wall clock) for the answers to every publish still awaiting one."""
        while self.outstanding:
            self.settle(self.outstanding.popleft().wait(max(0.0, deadline - time.time())))

    # ---- receiving

    def receive(self, clock_offset: float, log: list) -> None:
        """Take what arrived; per sender, note new, duplicate and reordered sequence numbers."""
        for message in self.transport.drain():
            try:
                m = decode(message.payload)
            except WireError:
                self.corrupt += 1
                continue
            seen = self.seen.setdefault(m.sender, set())
            if m.seq in seen:
                self.duplicates[m.sender] += 1
                continue
            if m.seq < self.newest.get(m.sender, -1):
                self.reordered[m.sender] += 1
            seen.add(m.seq)
            self.newest[m.sender] = max(m.seq, self.newest.get(m.sender, -1))
            log.append(
                (m.timestamp, message.arrived_at + clock_offset - m.timestamp, int(m.kind), len(message.payload))
            )

    def pairs(self) -> list[list[int]]:
        """Per sender heard: [sender, receiver, distinct seqs, duplicates, reordered, largest seq]."""
        return [
            [s, self.index, len(seqs), self.duplicates[s], self.reordered[s], max(seqs)]
            for s, seqs in self.seen.items()
        ]


def worker(spec: dict) -> dict:
    """Run this process's agents: connect and subscribe, say ready, read the start time (``time.time()``)
    from stdin, send through the window while receiving, receive through the drain period, report."""
    agents = [Agent(i, spec) for i in spec["agents"]]
    try:
        connect(agents, spec)
        print("ready", flush=True)
        return run_window(agents, spec, float(sys.stdin.readline()))
    finally:
        for agent in agents:
            agent.transport.close()


def connect(agents: list[Agent], spec: dict) -> None:
    """Connect every agent and subscribe it to its neighbours' topics; raise unless all are granted."""
    for agent in agents:
        if not agent.transport.connect(timeout=30):
            raise TransportError(f"agent {agent.index} could not connect to {spec['url']}")
    grants = [
        a.transport.subscribe(topic(n, kind), spec["qos"])
        for a in agents
        for n in neighbours(a.index, spec["n_agents"])
        for kind in a.periods
    ]
    if not all(accepted(g.wait(30)) for g in grants):
        raise TransportError("a subscription was not granted")


def run_window(agents: list[Agent], spec: dict, start: float) -> dict:
    """Send from ``start`` for the window (one thread per agent) while this thread takes what
    arrives every 20 ms, until the end of the drain period; then the report."""
    end, stop = start + spec["duration"], start + spec["duration"] + spec["drain"]
    clock_offset = time.time() - time.monotonic()  # Received.arrived_at is time.monotonic()
    senders = [threading.Thread(target=a.send_until, args=(start, end), daemon=True) for a in agents]
    for thread in senders:
        thread.start()
    log: list = []
    time.sleep(max(0.0, start - time.time()))
    cpu_start, cpu_end = cpu_seconds(), None
    while time.time() < stop:
        if cpu_end is None and time.time() >= end:
            cpu_end = cpu_seconds()
        for agent in agents:
            agent.receive(clock_offset, log)
        time.sleep(0.02)
    cpu_end = cpu_seconds() if cpu_end is None else cpu_end
    for thread in senders:
        thread.join(timeout=1.0)
    for agent in agents:
        agent.settle_all(time.time() + 5.0)
        agent.receive(clock_offset, log)
    return worker_report(spec, agents, log, cpu_end - cpu_start, cpu_seconds() - cpu_start)


def worker_report(spec: dict, agents: list[Agent], log: list, window_cpu_s: float, total_cpu_s: float) -> dict:
    """The worker's counts as JSON; per-message records (sent, received) go to ``spec['out']`` (npz)."""
    sent = np.array([row for a in agents for row in a.sent], dtype=float).reshape(-1, 4)
    got = np.array(log, dtype=float).reshape(-1, 4)
    np.savez(spec["out"], sent=sent, received=got)
    total = lambda attr: sum((getattr(a, attr) for a in agents), Counter())  # noqa: E731
    return {
        "proc": spec["proc"],
        "pid": os.getpid(),
        "npz": spec["out"],
        "sent": {a.index: a.seq for a in agents},
        "pairs": [p for a in agents for p in a.pairs()],
        "puback": dict(total("puback")),
        "refusals": dict(total("refusals")),
        "inflight_wait_s": sum(a.inflight_wait_s for a in agents),
        "behind_at_end": sum(a.behind_at_end for a in agents),
        "corrupt_received": sum(a.corrupt for a in agents),
        "cpu_window_s": window_cpu_s,
        "cpu_total_s": total_cpu_s,
    }


# --- the run: broker, workers, figures ----------------------------------------------------------


class SysWatcher:
    """A client that follows the broker's ``$SYS/broker/#`` counters."""

    def __init__(self, url: str, run_id: str) -> None:
        self.transport = PahoTransport(f"load-{run_id}-sys", url)
        self.values: dict[str, float] = {}

    def start(self) -> None:
        self.transport.connect(timeout=10)
        self.transport.subscribe("$SYS/broker/#", 0).wait(10)

    def snapshot(self) -> dict[str, float]:
        for message in self.transport.drain():
            try:
                self.values[message.topic.removeprefix("$SYS/broker/")] = float(message.payload.split()[0])
            except (ValueError, IndexError):
                continue
        return {name: self.values.get(name, float("nan")) for name in SYS_COUNTERS}


def start_workers(cfg: LoadConfig, param_floats: int, url: str, run_id: str, folder: Path) -> list[subprocess.Popen]:
    """The worker processes, each told its share of the agents; they connect and subscribe, then say ready."""
    shares = np.array_split(np.arange(cfg.agents), cfg.procs)
    common = {
        "run_id": run_id,
        "url": url,
        "n_agents": cfg.agents,
        "qos": cfg.qos,
        "seed": cfg.seed,
        "duration": cfg.duration,
        "drain": cfg.drain,
        "param_floats": param_floats,
        "periods": {k.name: p for k, p in cfg.periods.items()},
    }
    procs = []
    for p, share in enumerate(shares):
        spec = {**common, "proc": p, "agents": share.tolist(), "out": str(folder / f"worker{p}.npz")}
        with (folder / f"worker{p}.log").open("w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )
    return procs


def worker_failed(proc: subprocess.Popen, folder: Path, p: int) -> RuntimeError:
    return RuntimeError(
        f"worker {p} (pid {proc.pid}) failed; its log:\n{(folder / f'worker{p}.log').read_text()[-3000:]}"
    )


def run_load(cfg: LoadConfig, folder: Path) -> dict:
    """Start the broker and the workers in ``folder``, run the load, stop them all, return the figures."""
    from tests.mosquitto import MOSQUITTO, start_broker

    if MOSQUITTO is None:
        raise RuntimeError("needs the mosquitto broker: apt-get install mosquitto")
    run_id, param_floats = uuid.uuid4().hex[:8], diffusion_param_floats()
    broker = start_broker(folder / "broker", extra="sys_interval 1")
    procs: list[subprocess.Popen] = []
    watcher = SysWatcher(broker.url, run_id)
    try:
        watcher.start()
        procs = start_workers(cfg, param_floats, broker.url, run_id, folder)
        for p, proc in enumerate(procs):
            if proc.stdout.readline().strip() != "ready":
                raise worker_failed(proc, folder, p)
        time.sleep(1.5)  # a fresh $SYS snapshot
        load_at_start, sys_start = os.getloadavg(), watcher.snapshot()
        start = time.time() + 0.5
        for proc in procs:
            proc.stdin.write(f"{start!r}\n")
            proc.stdin.flush()
        time.sleep(max(0.0, start - time.time()))
        cpu = {"broker": cpu_seconds(broker.proc.pid), "machine": machine_cpu()}
        time.sleep(max(0.0, start + cfg.duration - time.time()))
        cpu = {
            "broker_s": cpu_seconds(broker.proc.pid) - cpu["broker"],
            **{f"machine_{k}_s": v - cpu["machine"][k] for k, v in machine_cpu().items()},
        }
        load_at_end = os.getloadavg()
        reports = []
        for p, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=cfg.drain + 60)
            if proc.returncode:
                raise worker_failed(proc, folder, p)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        time.sleep(1.5)
        sys_end = watcher.snapshot()
    finally:
        watcher.transport.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        broker.stop()
    figures = load_figures(cfg, param_floats, start, reports, cpu)
    figures["broker"] = {
        "config": broker.config.read_text(),
        "sys_counters_over_run": {k: sys_end[k] - sys_start[k] for k in SYS_COUNTERS},
    }
    figures["load_average"] = {"at_start": load_at_start, "at_end": load_at_end}
    return figures


def percentiles_ms(seconds: np.ndarray) -> dict:
    if not len(seconds):
        return {"count": 0}
    p50, p90, p99, p999 = np.percentile(seconds, [50, 90, 99, 99.9]) * 1e3
    return {
        "count": int(len(seconds)),
        "mean": float(seconds.mean() * 1e3),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "p99.9": float(p999),
        "max": float(seconds.max() * 1e3),
    }


def per_second(times: np.ndarray, start: float, duration: float) -> dict:
    """Min, median and max of the counts in each whole second of the window."""
    counts = np.bincount(
        np.floor(times[(times >= start) & (times < start + int(duration))] - start).astype(int), minlength=int(duration)
    )
    return (
        {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())} if len(counts) else {}
    )


def load_figures(cfg: LoadConfig, param_floats: int, start: float, reports: list[dict], cpu: dict) -> dict:
    """Everything the workers reported, merged; ``start`` is the window's start (``time.time()``)."""
    data = [np.load(r["npz"]) for r in reports]
    sent = np.concatenate([d["sent"] for d in data])  # (send time, lag, kind, bytes)
    got = np.concatenate([d["received"] for d in data])  # (send time, delay, kind, bytes)
    sent_by = {int(s): n for r in reports for s, n in r["sent"].items()}
    pairs = np.array([p for r in reports for p in r["pairs"]], dtype=np.int64).reshape(-1, 6)
    heard = {(int(row[0]), int(row[1])): row for row in pairs}
    expected = {(s, r): sent_by[s] for r in range(cfg.agents) for s in neighbours(r, cfg.agents)}
    lost = {pair: n - (int(heard[pair][2]) if pair in heard else 0) for pair, n in expected.items()}
    beyond = int(sum(row[5] >= sent_by[int(row[0])] for row in pairs))
    arrival = got[:, 0] + got[:, 1]
    kinds = {kind.name.lower(): int(kind) for kind in cfg.periods}
    window = cfg.duration
    total = lambda key: sum((Counter(r[key]) for r in reports), Counter())  # noqa: E731
    cpu_clients = [r["cpu_window_s"] for r in reports]
    return {
        "config": {
            **asdict(cfg),
            "neighbours_per_agent": len(NEIGHBOUR_OFFSETS),
            "agents_per_site": SITE_SIZE,
            "param_floats": param_floats,
            "message_bytes": {
                "telemetry": encoded_size(DType.FLOAT16, [(TELEMETRY_FLOATS,)]),
                "params": encoded_size(DType.FLOAT16, [(param_floats,)]),
            },
            "periods_s": {k.name.lower(): p for k, p in cfg.periods.items()},
            "target_published_per_s": cfg.agents * cfg.rate,
        },
        "published": {
            "messages": int(len(sent)),
            "per_s": len(sent) / window,
            "bytes_per_s": float(sent[:, 3].sum() / window),
            "by_kind": {name: int((sent[:, 2] == k).sum()) for name, k in kinds.items()},
            "per_second_of_window": per_second(sent[:, 0], start, window),
            "send_lag_ms": percentiles_ms(sent[:, 1]),
            "behind_schedule_at_end": sum(r["behind_at_end"] for r in reports),
        },
        "delivered": {
            "expected": int(sum(expected.values())),
            "messages": int(len(got)),
            "per_s": len(got) / window,
            "bytes_per_s": float(got[:, 3].sum() / window),
            "by_kind": {name: int((got[:, 2] == k).sum()) for name, k in kinds.items()},
            "per_second_of_window": per_second(arrival, start, window),
            "after_window": int((arrival >= start + window).sum()),
            "lost": int(sum(lost.values())),
            "pairs_with_loss": int(sum(n > 0 for n in lost.values())),
            "duplicates": int(pairs[:, 3].sum()),
            "reordered": int(pairs[:, 4].sum()),
            "seq_beyond_sent": beyond,
            "corrupt": sum(r["corrupt_received"] for r in reports),
            "pairs": len(expected),
            "unexpected_pairs": len(set(heard) - set(expected)),
        },
        "delay_ms": {
            "all": percentiles_ms(got[:, 1]),
            **{name: percentiles_ms(got[got[:, 2] == k, 1]) for name, k in kinds.items()},
        },
        "publish": {
            "puback_codes": dict(total("puback")),
            "refusals": dict(total("refusals")),
            "inflight_wait_s": sum(r["inflight_wait_s"] for r in reports),
        },
        "cpu": {
            **cpu,
            "window_s": window,
            "broker_percent_of_a_core": 100 * cpu["broker_s"] / window,
            "clients_s": cpu_clients,
            "clients_percent_of_a_core": 100 * sum(cpu_clients) / window,
            "others_s": cpu["machine_busy_s"] - cpu["broker_s"] - sum(cpu_clients),
            "client_cpu_after_window_s": [r["cpu_total_s"] - r["cpu_window_s"] for r in reports],
        },
        "zero_loss": sum(lost.values()) == 0 and beyond == 0,
    }


# --- command line -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    defaults = LoadConfig()
    p.add_argument(
        "--agents",
        type=int,
        default=defaults.agents,
        help=f"agents, one MQTT connection each [default: {defaults.agents}]",
    )
    p.add_argument(
        "--procs",
        type=int,
        default=defaults.procs,
        help=f"worker processes the agents are spread over [default: {defaults.procs}]",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        help=f"seconds of publishing [default: {defaults.duration:g}]",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help=f"messages/s each agent publishes [default: {defaults.rate:g}]",
    )
    p.add_argument(
        "--params-fraction",
        type=float,
        default=defaults.params_fraction,
        help="share of params messages (~6 KB) among the ~45 B telemetry ones; 0 or 1 for one kind "
        f"[default: {defaults.params_fraction:g}]",
    )
    p.add_argument(
        "--qos",
        type=int,
        choices=(0, 1),
        default=defaults.qos,
        help=f"QoS of publishes and subscriptions [default: {defaults.qos}]",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=defaults.drain,
        help=f"seconds to keep receiving after the window [default: {defaults.drain:g}]",
    )
    p.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"seed of schedules and payloads [default: {defaults.seed}]"
    )
    p.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the JSON result goes [default: benchmarks/results]"
    )
    p.add_argument("--tag", help=f"write {NAME}-<tag>.json instead of {NAME}.json (for variants)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one worker process's spec
    return p


def summary(figures: dict) -> str:
    pub, got, delay, cpu = figures["published"], figures["delivered"], figures["delay_ms"]["all"], figures["cpu"]
    return (
        f"published {pub['per_s']:,.0f} msgs/s ({pub['bytes_per_s'] / 1e3:,.0f} kB/s), delivered {got['per_s']:,.0f} "
        "msgs/s "
        f"({got['bytes_per_s'] / 1e3:,.0f} kB/s); delay p50 {delay['p50']:.2f} ms, p99 {delay['p99']:.2f} ms, max "
        f"{delay['max']:.1f} ms; "
        f"lost {got['lost']}, duplicates {got['duplicates']}, reordered {got['reordered']}; refusals "
        f"{figures['publish']['refusals']}; "
        f"CPU: broker {cpu['broker_percent_of_a_core']:.0f} %, clients {cpu['clients_percent_of_a_core']:.0f} % of a "
        "core"
    )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    try:
        cfg = LoadConfig(
            args.agents, args.procs, args.duration, args.rate, args.params_fraction, args.qos, args.drain, args.seed
        )
    except ValueError as exc:
        parser().error(str(exc))
    load_before = os.getloadavg()
    say(
        f"{cfg.agents} agents in {cfg.procs} processes, {cfg.rate:g} msgs/s each, QoS {cfg.qos}, for {cfg.duration:g} "
        "s "
        f"(load average {load_before[0]:.2f})"
    )
    with tempfile.TemporaryDirectory(prefix="mqtt-load-") as folder:
        figures = run_load(cfg, Path(folder))
    figures["load_average"]["before"] = load_before
    say(summary(figures))
    record(f"{NAME}-{args.tag}" if args.tag else NAME, figures, args.out_dir)


if __name__ == "__main__":
    main()
