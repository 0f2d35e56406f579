"""The edge agent: one device of the tiny scenario on the real-time clock, over an in-process
broker and a real mosquitto on loopback; killed, restarted and fed garbage."""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import socket
import sqlite3
import subprocess
import time
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from devices.drivers import Reading
from fleet.cli import main
from fleet.deploy import provision
from fleet.edge.agent import BOARD_ROBUST, EdgeAgent, device_learner, simulated_driver
from fleet.edge.counters import Counters
from fleet.edge.inbound import InboundFilter, cmd_layout, params_layout
from fleet.edge.launch import AgentArgs, build_agent, read_env_file
from fleet.edge.outbox import Outbox, Stamp
from fleet.errors import TransportError
from fleet.mqtt.codec import DEFAULT_MAX_BYTES, Kind, decode, encode
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.mqtt.paho_transport import PahoTransport
from fleet.mqtt.transport import Received
from fleet.scenario import parse_scenario
from fleet.sim.engine import Simulation
from tests.edge.agents import (
    N_STEPS,
    agent_argv,
    diffusion_raw,
    injector,
    memory_agent,
    options,
    paho_agent,
    started,
    view_of,
)
from tests.hostile import assert_refused, fleet_cli, hostile_pickle
from tests.mosquitto import Broker, free_port, start_broker
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PARAMS_0 = "fleet/north/d00000/params"
"""Where d00000 publishes; its neighbours are d00001 and d00002 (the tiny sites have three devices)."""


def n_params(agent) -> int:
    return agent.learner.flat_params().shape[1]


# --- on the in-process broker ----------------------------------------------------------------


def test_an_agent_acts_learns_and_publishes_params_that_decode(tmp_path):
    broker = MemoryBroker()
    spy = MemoryTransport(broker, "spy")
    spy.subscribe("fleet/#")
    spy.connect(1)
    agent = memory_agent(view_of(diffusion_raw()), broker, tmp_path / "state")
    before = agent.learner.flat_params().clone()

    counters = agent.run()

    assert counters.ticks == 7200 // 60 + 1  # ticks at 0, 60, ..., 7200 s
    assert counters.updates == counters.ticks // N_STEPS
    after = agent.learner.flat_params()
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    messages = spy.drain()
    params = [decode(m.payload) for m in messages if m.topic == PARAMS_0]
    assert len(params) == counters.updates  # period 1, no event trigger: every update publishes
    assert [m.seq for m in params] == list(range(1, counters.updates + 1))
    assert all(m.kind == Kind.PARAMS and m.sender == 0 and m.arrays[0].shape == (n_params(agent),) for m in params)
    assert np.array_equal(params[-1].arrays[0], after[0].numpy())  # float32 on the wire: exact
    telemetry = [decode(m.payload) for m in messages if m.topic == "fleet/north/d00000/telemetry"]
    assert len(telemetry) == 7200 // 300 + 1 and telemetry[0].arrays[0].shape == (5,)
    late = MemoryTransport(broker, "late")
    late.subscribe("fleet/+/+/status")
    late.connect(1)
    (status,) = late.drain()
    assert status.retain and decode(status.payload).arrays[0].tolist() == [0.0]  # offline after a clean stop
    assert decode(status.payload).seq == 1  # the first session


def test_a_refused_publish_counts_as_an_error_not_as_sent(tmp_path):
    raw = diffusion_raw(qos=1)  # QoS 1: the broker's PUBACK carries its refusal
    broker = MemoryBroker(acl=lambda client, topic, access: not topic.endswith("/params"))
    counters = memory_agent(view_of(raw), broker, tmp_path / "state", duration=1800.0).run()
    assert counters.refused == counters.updates == 31 // N_STEPS
    telemetry = 1800 // 300 + 1
    assert counters.sent == 1 + telemetry + 1  # birth, telemetry, offline status


def test_payloads_over_the_brokers_limit_are_counted_and_not_sent(tmp_path):
    broker = MemoryBroker(max_packet_size=1000)  # room for telemetry and status, not for parameters
    counters = memory_agent(view_of(diffusion_raw()), broker, tmp_path / "state", duration=1800.0).run()
    assert counters.oversize == counters.updates == 31 // N_STEPS
    assert counters.sent == 1 + (1800 // 300 + 1) + 1


def test_only_neighbours_messages_of_the_right_layout_pass_and_each_once():
    view = view_of(diffusion_raw())
    counters = Counters()
    p = 40
    check = InboundFilter(
        view.subscriptions("neighbours"), {"params": params_layout(p), "cmd": cmd_layout}, counters
    ).check
    values = [np.ones(p, np.float32)]

    def received(topic, sender, seq=1, qos=0, arrays=values):
        return Received(topic, encode(Kind.PARAMS, sender, seq, 0.0, arrays), qos, False, 0.0)

    accepted = check(received("fleet/north/d00002/params", 2))
    assert accepted.sender.slot == 2 and accepted.message.seq == 1
    assert check(received("fleet/south/d00004/params", 4)) is None  # not a neighbour's topic
    assert check(received("fleet/north/d00001/params", 4)) is None  # a neighbour's topic, another sender
    assert counters.unexpected == 2
    assert check(received("fleet/north/d00001/params", 1, seq=7, qos=1)) is not None
    assert check(received("fleet/north/d00001/params", 1, seq=7, qos=1)) is None
    assert counters.duplicates == 1
    sparse = [np.array([0, p], np.int64), np.ones(2, np.float32)]  # index p is out of range
    assert check(received("fleet/north/d00001/params", 1, seq=8, arrays=sparse)) is None
    assert counters.malformed == 1 and counters.received == 2


@pytest.mark.parametrize("learner", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_a_board_starts_from_the_parameters_of_the_simulated_devices(learner):
    """A mixed fleet's boards and simulated devices must start alike (diffusion averages them)."""
    raw = diffusion_raw()
    raw["learner"]["name"] = learner
    simulated = Simulation(parse_scenario(raw, "test", Path.cwd())).fleet.controller.flat_params()
    board = device_learner(view_of(raw, "d00004")).flat_params()
    assert simulated.shape[0] == 6 and board.shape[0] == 1
    assert torch.equal(simulated, board.expand_as(simulated))


def test_the_agent_tells_systemd_it_is_ready_alive_and_stopping(tmp_path, monkeypatch):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s wall = 720 s at 7200x
        memory_agent(view_of(diffusion_raw()), MemoryBroker(), tmp_path / "state", duration=3600.0).run()
        systemd.setblocking(False)
        received = []
        while True:
            try:
                received.append(systemd.recv(4096).decode())
            except BlockingIOError:
                break
    assert received[0] == "READY=1" and received[-1] == "STOPPING=1"
    assert received.count("WATCHDOG=1") == 3600 // 720 + 1
    assert any(line.startswith("STATUS=d00000 t=1.00h ticks=61 ") for line in received)


def test_an_upgraded_agent_moves_its_sequence_numbers_into_the_outbox_and_goes_on_from_them(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "sequence.json").write_text('{"telemetry": 40, "status": 3, "params": 12, "last_reading": 900.0}')
    broker = MemoryBroker()
    spy = MemoryTransport(broker, "spy")
    spy.subscribe("fleet/#")
    spy.connect(1)

    memory_agent(view_of(diffusion_raw()), broker, state, duration=600.0).run()

    messages = [decode(m.payload) for m in spy.drain()]
    seqs = {kind: [m.seq for m in messages if m.kind == kind] for kind in (Kind.TELEMETRY, Kind.PARAMS, Kind.STATUS)}
    # no checkpoint: a fresh start, whose readings at 0, 300 and 600 s are all new; one update, at the 8th tick (420 s)
    assert seqs == {Kind.TELEMETRY: [41, 42, 43], Kind.PARAMS: [13], Kind.STATUS: [4, 4]}
    assert not (state / "sequence.json").exists()
    with closing(Outbox(state / "outbox.sqlite", 1000, 2**20)) as outbox:
        stamps = outbox.stamps()
    assert (stamps["telemetry"], stamps["params"], stamps["status"]) == (
        Stamp(43, 600.0),
        Stamp(13, 420.0),
        Stamp(4, 0),
    )


def test_a_message_whose_handling_fails_is_counted_and_dropped_and_the_agent_goes_on(tmp_path):
    broker = MemoryBroker()
    neighbour = MemoryTransport(broker, "d00001")
    neighbour.connect(1)
    p = n_params(memory_agent(view_of(diffusion_raw()), broker, tmp_path / "probe"))
    message = encode(Kind.PARAMS, 1, 1, 0.0, [np.zeros(p, np.float32)])
    neighbour.publish("fleet/north/d00001/params", message, retain=True)  # the agent gets it when it subscribes
    agent = memory_agent(view_of(diffusion_raw()), broker, tmp_path / "state", duration=3600.0)

    def broken(kind, got):
        raise RuntimeError("a bug in the learner")

    agent.learner.inbox = broken
    counters = agent.run()
    assert counters.failed == 1 and counters.received == 1 and counters.dropped == 1
    assert counters.ticks == 3600 // 60 + 1  # the whole hour


class _BrokenSensor:
    """The simulated thermostat, whose sensor reads NaN (a fault the driver does not catch) from 30 to 60 min."""

    def __init__(self, view, clock):
        self.driver, self.clock = simulated_driver(view, clock), clock
        self.n_levels = self.driver.n_levels

    def read(self) -> Reading:
        reading = self.driver.read()
        return Reading(float("nan")) if 1800 <= self.clock() < 3600 else reading

    def apply(self, level: int) -> None:
        self.driver.apply(level)

    def close(self) -> None:
        self.driver.close()


def test_updates_that_leave_the_parameters_not_finite_are_rolled_back_and_never_published(tmp_path):
    broker = MemoryBroker()
    spy = MemoryTransport(broker, "spy")
    spy.subscribe(PARAMS_0)
    spy.connect(1)
    transport = functools.partial(MemoryTransport, broker)
    agent = EdgeAgent(view_of(diffusion_raw()), transport, tmp_path / "state", options(), _BrokenSensor)
    counters = agent.run()
    assert counters.rollbacks > 0 and counters.ticks == 7200 // 60 + 1
    params = [decode(m.payload).arrays[0] for m in spy.drain()]
    assert len(params) == counters.updates and all(np.isfinite(v).all() for v in params)
    assert not np.array_equal(params[-1], params[len(params) // 2])  # it learns again once the sensor reads numbers


def test_boards_combine_robustly_unless_the_scenario_says_otherwise():
    assert device_learner(view_of(diffusion_raw())).cfg.robust == BOARD_ROBUST != "none"
    assert device_learner(view_of(diffusion_raw(robust="none"))).cfg.robust == "none"
    simulated = Simulation(parse_scenario(diffusion_raw(), "test", Path.cwd())).fleet.controller
    assert simulated.cfg.robust is None  # simulated devices: as written (unset: the plain combine)


# --- over mosquitto ------------------------------------------------------------------------------


@pytest.mark.mqtt
def test_neighbours_exchange_params_through_mosquitto(mosquitto, tmp_path):
    raw = diffusion_raw()
    agents = [
        paho_agent(view_of(raw, f"d0000{i}"), mosquitto.url, tmp_path / str(i), duration=3 * 3600.0) for i in range(3)
    ]
    # common init
    assert all(torch.equal(agent.learner.flat_params(), agents[0].learner.flat_params()) for agent in agents)
    for thread in [started(agent) for agent in agents]:
        thread.finish()
    for agent in agents:
        assert agent.view.neighbours.tolist() == [j for j in range(3) if j != agent.view.index]
        assert np.isfinite(agent.learner.edge_time).all()  # each neighbour's params reached the learner
        assert agent.learner.edge_params.abs().sum(dim=1).gt(0).all()
        assert agent.counters.received > 0 and agent.counters.dropped == 0


def _bad_payloads(p: int) -> dict[str, tuple[bytes, str]]:
    """Payloads on a neighbour's params topic, with the counter each must land in."""
    good = encode(Kind.PARAMS, 1, 100, 0.0, [np.zeros(p, np.float32)])
    version = bytearray(good)
    version[2] = 2
    nan = bytearray(good[:-4])
    nan[-4 * p : -4 * p + 4] = np.float32(np.nan).tobytes()
    nan += zlib.crc32(nan).to_bytes(4, "little")
    return {
        "garbage": (b"not a fleet message", "malformed"),
        "truncated": (good[:-10], "malformed"),
        "another version": (bytes(version), "malformed"),
        "NaN with a valid CRC": (bytes(nan), "malformed"),
        "oversized": (bytes(DEFAULT_MAX_BYTES + 1), "malformed"),
        "wrong shape": (encode(Kind.PARAMS, 1, 101, 0.0, [np.zeros(3, np.float32)]), "malformed"),
        "wrong kind": (encode(Kind.TELEMETRY, 1, 102, 0.0, [np.zeros(p, np.float32)]), "malformed"),
        "from a non-neighbour": (encode(Kind.PARAMS, 4, 103, 0.0, [np.ones(p, np.float32)]), "unexpected"),
    }


@pytest.mark.mqtt
def test_garbage_from_the_network_is_dropped_and_counted_and_the_model_learns_as_without_it(mosquitto, tmp_path):
    raw = diffusion_raw()
    agent = paho_agent(view_of(raw), mosquitto.url, tmp_path / "attacked", duration=6 * 3600.0)
    thread = started(agent)
    client = injector(mosquitto.url)
    try:
        # handshake: a harmless command (feeder load 0, as without one) shows the agent listens
        for seq in range(1, 50):
            client.publish(
                "fleet/north/d00000/cmd", encode(Kind.CMD, 9, seq, 0.0, [np.zeros(1, np.float32)]), qos=1
            ).wait_for_publish(2)
            time.sleep(0.05)
            if agent.counters.received:
                break
        assert agent.counters.received > 0, "the agent never heard the injector"
        bad = _bad_payloads(n_params(agent))
        for payload, _ in bad.values():
            client.publish("fleet/north/d00001/params", payload, qos=1).wait_for_publish(5)
        expected = {kind: sum(1 for _, k in bad.values() if k == kind) for kind in ("malformed", "unexpected")}
        wait_for(lambda: {k: getattr(agent.counters, k) for k in expected} == expected, what=f"the drops {expected}")
    finally:
        client.loop_stop()
        client.disconnect()
        thread.finish()
    assert not np.isfinite(agent.learner.edge_time).any()  # nothing reached the combine step
    twin = memory_agent(view_of(raw), MemoryBroker(), tmp_path / "quiet", duration=6 * 3600.0, speedup=72000.0)
    twin.run()
    assert twin.counters.ticks == agent.counters.ticks
    assert torch.equal(agent.learner.flat_params(), twin.learner.flat_params())


def _agent_process(scenario: Path, device: str, url: str, state: Path, duration: str) -> tuple[subprocess.Popen, Path]:
    """``fleet agent`` for ``device`` at 720x (an hour in 5 wall seconds); its status lines go to
    ``<device>-<duration>.out``, its log to ``.err``. Returns the process and the .out file."""
    argv = agent_argv(
        scenario,
        state / device,
        url,
        "--duration",
        duration,
        "--checkpoint-every",
        "30min",
        "--status-every",
        "1h",
        device=device,
        speedup="720",
    )
    out = state / f"{device}-{duration}.out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        argv, cwd=ROOT, stdout=out.open("wb"), stderr=out.with_suffix(".err").open("wb"), env=env
    ), out


def _last_status(out: Path) -> dict[str, str]:
    """The fields of the agent's last status line (printed when it stops)."""
    return dict(re.findall(r"(\w+(?:/\w+)?)=(\S+)", out.read_text().splitlines()[-1]))


def _run_attacked(scenario: Path, url: str, state: Path, duration: str) -> list[tuple[subprocess.Popen, Path]]:
    """The honest neighbours d00001 and d00002 as real agent processes for ``duration``, while
    d00000's credentials publish ±3e38 (finite, well-formed) on its params topic all along."""
    agents = [_agent_process(scenario, device, url, state, duration) for device in ("d00001", "d00002")]
    hostile = injector(url)
    p = device_learner(view_of(diffusion_raw())).flat_params().shape[1]
    poison = [np.where(np.arange(p) % 2 == 0, 3e38, -3e38).astype(np.float32)]
    seq = 0
    try:
        deadline = time.monotonic() + 180
        while any(proc.poll() is None for proc, _ in agents) and time.monotonic() < deadline:
            seq += 1
            hostile.publish(PARAMS_0, encode(Kind.PARAMS, 0, seq, 0.0, poison), qos=0)
            time.sleep(0.02)  # some 14 s of agent time: several poisoned messages between two updates
    finally:
        hostile.loop_stop()
        hostile.disconnect()
        for proc, _ in agents:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    for proc, out in agents:
        assert proc.returncode == 0, out.with_suffix(".err").read_text()
    return agents


@pytest.mark.mqtt
def test_real_agents_outlive_a_hostile_neighbour_publishing_huge_parameters_stay_honest_and_resume(
    mosquitto, write_scenario, tmp_path
):
    """The issue's attack: both neighbours crashed, and their checkpoints made every restart crash."""
    raw = diffusion_raw()
    scenario = write_scenario(raw)
    honest = Simulation(parse_scenario({**raw, "horizon": "1h"}, "test", Path.cwd()))
    honest.run()
    bound = 2 * float(honest.fleet.controller.flat_params().abs().max())  # the range of an honest run, with room
    spy = PahoTransport("spy", mosquitto.url)
    spy.subscribe("fleet/north/+/params")
    assert spy.connect(5)
    published: dict[str, list[np.ndarray]] = {"d00001": [], "d00002": []}

    def collect() -> None:
        for m in spy.drain():
            device = m.topic.split("/")[2]
            if device in published:
                published[device].append(decode(m.payload).arrays[0])

    try:
        first = _run_attacked(scenario, mosquitto.url, tmp_path, "1h")
        collect()
        counts = [len(v) for v in published.values()]
        rerun = _run_attacked(scenario, mosquitto.url, tmp_path, "30min")  # from their checkpoints
        more = lambda: collect() or all(len(v) > n for v, n in zip(published.values(), counts))  # noqa: E731
        wait_for(more, what="params after the restart")
    finally:
        spy.close()
    for (_, out), (_, again) in zip(first, rerun):
        before, after = _last_status(out), _last_status(again)
        assert before["t"] == "1.00h" and after["t"] == "1.50h"  # the second run resumed at the first one's end
        assert "resuming from" in again.with_suffix(".err").read_text()
        assert 0 < int(before["rejected"]) < int(after["rejected"])  # counted, and the count survives the restart
        assert int(after["dropped"]) == int(after["rejected"]) and after["rollbacks"] == "0"
    for device, vectors in published.items():
        assert len(vectors) >= 3600 // 60 // N_STEPS, device  # it kept learning and publishing all along
        assert all(np.isfinite(v).all() and np.abs(v).max() <= bound for v in vectors), device


def _queued_params(outbox: Path) -> list[float]:
    """Timestamps of the parameters waiting in the agent's outbox."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        return [
            decode(payload).timestamp for (payload,) in db.execute("SELECT payload FROM messages WHERE kind = 'params'")
        ]
    finally:
        db.close()


@pytest.mark.mqtt
def test_after_a_broker_restart_the_agent_reconnects_and_its_queued_params_arrive(tmp_path):
    # a broker that keeps sessions across the restart, so the spy's subscription is there at once
    broker = start_broker(tmp_path / "broker", extra=f"persistence true\npersistence_location {tmp_path}/\n")
    spy = PahoTransport("spy", broker.url, session_expiry=600, reconnect_delay=(0.1, 0.5))
    spy.subscribe(PARAMS_0, qos=1)
    assert spy.connect(5)
    agent = paho_agent(view_of(diffusion_raw(qos=1)), broker.url, tmp_path / "state", speedup=3600.0, duration=None)
    thread = started(agent)
    try:
        wait_for(lambda: spy.drain(), what="params before the restart")
        down = agent.env.now
        broker.stop()
        spy.drain()
        # made after ``down``: a message that was on its way when the broker stopped waits there too
        wait_for(
            lambda: any(t > down for t in _queued_params(tmp_path / "state" / "outbox.sqlite")),
            what="params made and queued while the broker is away",
        )
        broker.start()
        wait_for(lambda: agent.counters.connects == 2, what="the agent to reconnect")
        up = agent.env.now
        stamps: list[float] = []
        wait_for(
            lambda: (
                stamps.extend(decode(m.payload).timestamp for m in spy.drain()) or any(down <= t <= up for t in stamps)
            ),
            what="params made while the broker was away",
        )
    finally:
        agent.stop()
        spy.close()
        thread.finish()
        broker.stop()
    assert agent.counters.dropped == agent.counters.refused == 0


@pytest.mark.mqtt
def test_an_agent_started_without_its_broker_runs_and_connects_when_it_comes(tmp_path):
    port = free_port()
    agent = paho_agent(
        view_of(diffusion_raw()),
        f"mqtt://127.0.0.1:{port}",
        tmp_path / "state",
        speedup=3600.0,
        duration=None,
        connect_wait=0.1,
    )
    thread = started(agent)
    broker = None
    try:
        wait_for(lambda: agent.counters.ticks > 30, what="half an hour of control without a broker")
        assert not agent.transport.connected and agent.counters.sent == 0
        broker = start_broker(tmp_path / "broker", port=port)
        wait_for(lambda: agent.transport.connected and agent.counters.sent > 1, what="the agent to connect and send")
        for spy_id in ("spy", "late-spy"):  # the second subscribes once the broker has the status: retained
            spy = PahoTransport(spy_id, broker.url)
            spy.subscribe("fleet/north/d00000/status")
            spy.connect(5)
            got: list[Received] = []
            wait_for(lambda got=got, spy=spy: got.extend(spy.drain()) or got, what="the status")
            spy.close()
            status = decode(got[0].payload)
            assert status.arrays[0].tolist() == [1.0] and status.seq == 1  # online, first session
        assert got[0].retain
    finally:
        agent.stop()
        thread.finish()
        if broker is not None:
            broker.stop()


@pytest.mark.mqtt
def test_with_one_message_in_flight_at_a_time_the_rest_waits_in_the_outbox_and_none_is_lost(mosquitto, tmp_path):
    raw = diffusion_raw(qos=1)
    raw["workloads"]["telemetry"]["qos"] = 1
    spy = PahoTransport("spy", mosquitto.url)
    spy.subscribe(PARAMS_0, qos=1)
    assert spy.connect(5)
    agent = paho_agent(view_of(raw), mosquitto.url, tmp_path / "state", max_inflight=1)
    counters = agent.run()
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite", 1000, 2**20)
    queued = len(outbox)
    outbox.close()
    telemetry = 7200 // 300 + 1
    assert counters.sent + queued == 1 + telemetry + counters.updates + 1  # birth, telemetry, params, offline
    seqs = [decode(m.payload).seq for m in spy.drain()]
    spy.close()
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= counters.updates - queued  # in order, none lost
    assert counters.refused == counters.oversize == 0


@pytest.mark.mqtt
def test_provisioned_boards_talk_over_mutual_tls_within_their_acl(tmp_path):
    """Two agents set up from their agent.env of `fleet deploy provision`, on the provisioned broker."""
    kit = tmp_path / "kit"
    tls_port, password_port = free_port(), free_port()
    provision(parse_scenario(diffusion_raw(), "test", Path.cwd()), kit, tls_port=tls_port, password_port=password_port)
    conf = re.sub(
        r"^listener (\d+)$", r"listener \1 127.0.0.1", (kit / "broker" / "mosquitto.conf").read_text(), flags=re.M
    )
    config = tmp_path / "mosquitto.conf"
    config.write_text(conf + ("user root\n" if os.geteuid() == 0 else ""))
    broker = Broker(config, tls_port, [tls_port, password_port]).start()
    try:
        agents = []
        for name in ("d00000", "d00001"):
            board = kit / "devices" / name  # installed as /etc/fleet on a board: give the local paths
            args = AgentArgs(
                env_file=board / "agent.env",
                scenario=str(board / "scenario.yaml"),
                ca=board / "ca.crt",
                cert=board / "client.crt",
                key=board / "client.key",
                state_dir=tmp_path / name,
                speedup=7200.0,
                duration="3h",
            )
            agents.append(build_agent(args))
        for thread in [started(agent) for agent in agents]:
            thread.finish()
        board = kit / "devices" / "d00002"
        env = read_env_file(board / "agent.env")  # the password listener, with a wrong password
        wrong = AgentArgs(
            env_file=board / "agent.env",
            scenario=str(board / "scenario.yaml"),
            broker=env["FLEET_PASSWORD_BROKER_URL"],
            ca=board / "ca.crt",
            password="wrong",
            state_dir=tmp_path / "d00002",
            speedup=7200.0,
            duration="1h",
        )
        with pytest.raises(TransportError, match="135"):  # CONNACK: not authorized
            build_agent(wrong).run()
    finally:
        broker.stop()
    for agent in agents:
        assert agent.counters.refused == agent.counters.dropped == 0  # the ACL lets through all it sends
        assert np.isfinite(agent.learner.edge_time[0])  # each is the other's first neighbour (slot 1)


# --- the command line ------------------------------------------------------------------------------


def _checkpoint(state: Path) -> dict | None:
    from fleet.statefile import load

    if not (state / "checkpoint.safetensors").exists():
        return None
    return load(state / "checkpoint.safetensors", "agent", 1 << 30)


def _write_checkpoint(state: Path, saved: dict) -> None:
    from fleet.statefile import save

    with (state / "checkpoint.safetensors").open("wb") as f:
        save(f.write, "agent", saved)


def test_an_agent_killed_with_sigkill_resumes_from_its_checkpoint(tmp_path, write_scenario):
    scenario = write_scenario(diffusion_raw())
    state = tmp_path / "state"
    argv = agent_argv(scenario, state, f"mqtt://127.0.0.1:{free_port()}", "--checkpoint-every", "30min", "-q")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: (_checkpoint(state) or {}).get("time", 0) >= 3600 or proc.poll() is not None,
            timeout=60,
            what="a checkpoint after an hour",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    killed = _checkpoint(state)

    rerun = subprocess.run([*argv, "--duration", "1h"], cwd=ROOT, capture_output=True, timeout=120)

    assert rerun.returncode == 0, rerun.stderr.decode()
    final = _checkpoint(state)
    assert final["time"] == killed["time"] + 3600
    ticks = final["counters"]["ticks"]
    assert ticks == final["time"] // 60 + 1  # every tick from 0 once: none lost, none repeated
    assert final["counters"]["updates"] == ticks // N_STEPS
    with closing(Outbox(state / "outbox.sqlite", 1000, 2**20)) as outbox:
        assert outbox.stamps()["status"].seq == 2  # the second session


@pytest.fixture
def agent_cli(write_scenario, tmp_path):
    """``agent_cli(*args)`` runs ``fleet agent`` in-process on the tiny scenario, device d00000."""
    scenario = write_scenario(diffusion_raw())

    def run(*args: str):
        argv = [
            "agent",
            "--scenario",
            str(scenario),
            "--device",
            "d00000",
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
            "--state-dir",
            str(tmp_path / "state"),
            "--speedup",
            "7200",
            "--duration",
            "10min",
            "-q",
            *args,
        ]
        return CliRunner().invoke(main, argv)

    return run


def _mismatched_cert(tmp_path: Path) -> list[str]:
    from fleet.deploy.pki import issue, make_ca

    now = dt.datetime.now(dt.UTC)
    ca = make_ca("test", now)
    mine, other = issue(ca, "d00000", now, 1), issue(ca, "d00001", now, 1)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "client.crt").write_bytes(mine.cert_pem)
    (tmp_path / "other.key").write_bytes(other.key_pem)
    return [
        "--broker",
        "mqtts://127.0.0.1:8883",
        "--ca",
        str(tmp_path / "ca.crt"),
        "--cert",
        str(tmp_path / "client.crt"),
        "--key",
        str(tmp_path / "other.key"),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--broker", "http://broker.local"], "scheme 'http' is not mqtt or mqtts"),
        (["--broker", "mqtt://broker.local:99999"], "port '99999'"),
        (["--device", "d99999"], "device 'd99999' is not in scenario 'thermostats-tiny'; its 6 devices are d00000"),
        (["--broker", "mqtts://127.0.0.1:8883", "--cert", "missing.crt"], "--cert missing.crt: no such file"),
        (["--ca", "ca.crt"], "TLS broker"),
        (["--driver", "sysfs"], "--driver sysfs needs --gpio"),
        (["--duration", "soon"], "--duration: cannot read 'soon'"),
        ("mismatched", "are not a PEM certificate with its own private key"),
    ],
    ids=[
        "url-scheme",
        "url-port",
        "unknown-device",
        "missing-cert",
        "tls-files-without-tls",
        "sysfs-without-gpio",
        "bad-duration",
        "key-of-another-cert",
    ],
)
def test_bad_options_exit_2_with_a_message_and_no_traceback(agent_cli, tmp_path, args, message):
    result = agent_cli(*(_mismatched_cert(tmp_path) if args == "mismatched" else args))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "state" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("change", ["wrong shape", "another scenario", "another device", "not a checkpoint"])
def test_a_checkpoint_that_does_not_fit_exits_2_and_changes_nothing(agent_cli, tmp_path, write_scenario, change):
    state = tmp_path / "state"
    memory_agent(view_of(diffusion_raw()), MemoryBroker(), state, duration=600.0).run()
    saved = _checkpoint(state)
    args: list[str] = []
    if change == "wrong shape":
        saved["learner"]["edge_params"] = torch.zeros(5, saved["learner"]["edge_params"].shape[1])
        _write_checkpoint(state, saved)
    elif change == "another scenario":
        args = ["--scenario", str(write_scenario({**diffusion_raw(), "seed": 7}, "seed7.yaml"))]
    elif change == "another device":
        args = ["--device", "d00001"]
    else:
        (state / "checkpoint.safetensors").write_bytes(b"\x80\x05 not a checkpoint")
    before = {p.name: p.read_bytes() for p in state.iterdir()}

    result = agent_cli(*args)

    assert result.exit_code == 2, result.output
    assert "checkpoint" in result.output and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before


@pytest.mark.parametrize("name", ["checkpoint.pt", "checkpoint.safetensors"])
def test_an_agent_checkpoint_crafted_to_run_a_command_runs_nothing_and_the_agent_exits_2(
    tmp_path, write_scenario, name
):
    scenario = write_scenario(diffusion_raw())
    state = tmp_path / "state"
    state.mkdir()
    (state / name).write_bytes(hostile_pickle(tmp_path / "ran"))
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    done = fleet_cli(
        "agent",
        "--scenario",
        scenario,
        "--device",
        "d00000",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--state-dir",
        state,
        "--duration",
        "10min",
        "-q",
    )
    assert_refused(done, str(state / name))
    assert not (tmp_path / "ran").exists()
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before


def test_an_agent_never_writes_its_state_through_a_planted_link(tmp_path):
    state, victim = tmp_path / "state", tmp_path / "victim"
    state.mkdir()
    victim.write_text("precious")
    for name in ("checkpoint.pt.tmp", "checkpoint.safetensors.tmp"):
        (state / name).symlink_to(victim)
    memory_agent(view_of(diffusion_raw()), MemoryBroker(), state, duration=600.0).run()
    assert victim.read_text() == "precious"
    assert _checkpoint(state)["time"] == 600.0
