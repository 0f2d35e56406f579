"""The agent under faults: writes to its state folder that fail for a while or on a full disk
(a real process), a kill at the worst moments of queueing a reading (in process), a kill -9 while
it reports telemetry to a collector through mosquitto."""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import resource
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fleet.edge import agent as agent_module
from fleet.edge.agent import EdgeAgent
from fleet.edge.outbox import Outbox, OutboxError
from fleet.mqtt.codec import Kind, decode
from fleet.mqtt.dedup import SeqDeduplicator
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.mqtt.paho_transport import PahoTransport
from tests.edge.agents import agent_argv, diffusion_raw, memory_agent, options, view_of
from tests.edge.test_agent import ROOT, _checkpoint
from tests.mosquitto import free_port
from tests.waiting import wait_for

TELEMETRY_PERIOD = 300.0
"""The tiny scenario's telemetry period (5 min)."""


# --- write errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=errno.errorcode.get)  # all four: test_state.py
def test_checkpoints_that_fail_for_a_while_are_counted_and_reported(tmp_path, monkeypatch, caplog, code):
    fsync, refused = os.fsync, []

    def refuse_twice(fd: int) -> None:  # only checkpoints are synced: those at 0.5 h and 1 h fail
        if len(refused) < 2:
            refused.append(fd)
            raise OSError(code, os.strerror(code))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", refuse_twice)
    lines: list[str] = []
    state = tmp_path / "state"
    # a line every 15 min
    agent = EdgeAgent(
        view_of(diffusion_raw()),
        functools.partial(MemoryTransport, MemoryBroker()),
        state,
        options(checkpoint_every=1800.0, status_every=0.125),
        on_status=lines.append,
    )
    with caplog.at_level(logging.WARNING, "fleet.edge"):
        counters = agent.run()

    assert counters.ticks == 7200 // 60 + 1  # it kept controlling
    assert counters.write_errors == 2
    assert any(line.endswith(" writes=failing(checkpoint)") for line in lines) and lines[-1].endswith(" writes=ok")
    logged = [r.getMessage() for r in caplog.records]
    assert sum(f"could not write the checkpoint in {state} ([Errno {code}]" in m for m in logged) == 1  # when it starts
    assert sum("writing the checkpoint works again" in m for m in logged) == 1  # and when it ends
    saved = _checkpoint(state)
    assert saved["time"] == 7200.0 and saved["counters"]["write_errors"] == 2
    assert sorted(p.name for p in state.iterdir()) == ["checkpoint.safetensors", "outbox.sqlite"]


def test_with_its_outbox_in_memory_an_agent_sends_only_its_status_as_session_0(tmp_path, monkeypatch):
    """An outbox in memory keeps no sequence numbers: a message numbered from it could reuse a
    number after a restart, so none is sent; the session number cannot be saved either."""

    def refused(path: Path) -> Outbox:
        raise OutboxError(path, "disk I/O error (SQLITE_IOERR_SHMOPEN): the disk refused a write", storage=True)

    monkeypatch.setattr(agent_module, "_open_outbox", refused)
    broker, lines = MemoryBroker(), []
    spy = MemoryTransport(broker, "spy")
    spy.subscribe("fleet/#")
    spy.connect(1)
    agent = EdgeAgent(
        view_of(diffusion_raw()),
        functools.partial(MemoryTransport, broker),
        tmp_path / "state",
        options(duration=3600.0),
        on_status=lines.append,
    )

    counters = agent.run()

    status = [decode(m.payload) for m in spy.drain()]
    assert [(m.kind, m.seq, m.arrays[0].tolist()) for m in status] == [(Kind.STATUS, 0, [1.0]), (Kind.STATUS, 0, [0.0])]
    readings, updates = 3600 // TELEMETRY_PERIOD + 1, (3600 // 60 + 1) // 8  # every update publishes its params
    assert counters.write_errors == 2 + readings + updates  # the outbox, the session number, each message
    assert " queued=0(memory) " in lines[-1] and lines[-1].endswith(" writes=failing(sequence)")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["checkpoint.safetensors"]


# --- a full disk ---------------------------------------------------------------------------------


def _no_file_can_grow() -> None:
    """In the child: every write that would make a file longer fails with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_on_a_full_disk_the_agent_keeps_running_on_its_last_good_checkpoint(tmp_path, write_scenario):
    state = tmp_path / "state"
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none there: this agent runs alone
    argv = agent_argv(write_scenario(diffusion_raw()), state, broker, "--checkpoint-every", "30min")
    first = subprocess.run([*argv, "--duration", "1h", "-q"], cwd=ROOT, capture_output=True, timeout=120)
    assert first.returncode == 0, first.stderr.decode()
    good = (state / "checkpoint.safetensors").read_bytes()
    outbox = (state / "outbox.sqlite").read_bytes()
    (state / "checkpoint.safetensors.tmp").write_bytes(good[:1000])  # what a crash in the middle of a checkpoint leaves
    (state / "sequence.json.tmp").write_bytes(b"")

    full = subprocess.run(
        [*argv, "--duration", "2h"],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        preexec_fn=_no_file_can_grow,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )

    stderr = full.stderr.decode()
    assert full.returncode == 0, stderr
    assert "Traceback" not in stderr and "could not write the checkpoint" in stderr
    status = full.stdout.decode().splitlines()[-1]  # the last status line, at the stop
    assert status.startswith("d00000 t=3.00h ticks=181 ") and " writes=failing(" in status  # it ran its two hours
    assert (state / "checkpoint.safetensors").read_bytes() == good
    assert (state / "outbox.sqlite").read_bytes() == outbox  # not moved aside as if it were damaged
    assert sorted(p.name for p in state.iterdir() if p.name.endswith(".tmp")) == []

    after = subprocess.run([*argv, "--duration", "1h", "-q"], cwd=ROOT, capture_output=True, timeout=120)

    assert after.returncode == 0, after.stderr.decode()
    assert _checkpoint(state)["time"] == 2 * 3600.0  # resumed from the last good checkpoint (1 h), ran one more hour


# --- a kill while reporting ------------------------------------------------------------------------


def assert_each_reading_once(readings: list, end: float) -> None:
    """What a collector that drops QoS 1 duplicates by sequence number keeps of ``readings`` (decoded
    messages) is every reading from 0 to ``end`` once, and no number was used for two readings."""
    fresh = SeqDeduplicator().accept(
        np.zeros(len(readings), np.int64), np.array([r.sender for r in readings]), np.array([r.seq for r in readings])
    )
    stamps = sorted(r.timestamp for r, new in zip(readings, fresh) if new)
    numbers = {(r.seq, r.timestamp) for r in readings}
    assert len(numbers) == len({seq for seq, _ in numbers}), "a sequence number was used for two readings"
    assert stamps == [TELEMETRY_PERIOD * k for k in range(int(end // TELEMETRY_PERIOD) + 1)]


class Killed(BaseException):
    """The agent dies where it is (nothing catches it, as nothing catches a kill -9)."""


def _die(*args) -> None:
    raise Killed


DOOMED = 9
"""The reading during whose queueing the agent is killed: the 9th, at 2400 s."""


@pytest.mark.parametrize("moment", ["before its put", "inside the put's transaction", "after the put"])
def test_a_kill_while_a_reading_is_queued_loses_no_reading_and_reuses_no_number(tmp_path, monkeypatch, moment):
    """The agent checkpoints at 1800 s and is killed while it queues its reading of 2400 s: before
    the outbox's put (for an agent that saved the sequence numbers apart, right after that), in the
    put's transaction (the message is written, not committed), or after it. It restarts from its
    state folder and runs an hour. (Unlike a kill -9, the killed agent still sends what its outbox
    holds and its offline status as it stops: that does not change which readings get through.)"""
    broker = MemoryBroker()
    collector = MemoryTransport(broker, "collector")
    collector.subscribe("fleet/+/+/telemetry", qos=1)
    collector.connect(1)
    put, readings = Outbox.put, itertools.count(1)

    def put_and_die(box: Outbox, *args, kind: str, **kwargs) -> int:
        if kind != "telemetry" or next(readings) != DOOMED:
            return put(box, *args, kind=kind, **kwargs)
        if moment == "before its put":
            raise Killed
        if moment == "inside the put's transaction":
            box._evict = _die  # the last step of the put before it commits
        put(box, *args, kind=kind, **kwargs)
        raise Killed

    monkeypatch.setattr(Outbox, "put", put_and_die)
    view, state = view_of(diffusion_raw()), tmp_path / "state"
    with pytest.raises(Killed):
        memory_agent(view, broker, state, checkpoint_every=1800.0).run()
    monkeypatch.undo()
    killed = _checkpoint(state)["time"]
    assert killed == 1800.0

    memory_agent(view, broker, state, duration=3600.0).run()

    assert_each_reading_once([decode(m.payload) for m in collector.drain()], killed + 3600)


# --- a kill -9 while reporting ---------------------------------------------------------------------


@pytest.mark.mqtt
def test_after_a_kill_the_collector_gets_each_reading_once(mosquitto, tmp_path, write_scenario):
    raw = diffusion_raw()
    raw["workloads"]["telemetry"]["qos"] = 1  # nothing lost on the way: each reading arrives at least once
    state = tmp_path / "state"
    argv = agent_argv(write_scenario(raw), state, mosquitto.url, "--checkpoint-every", "2h", "-q")
    collector = PahoTransport("collector", mosquitto.url)
    collector.subscribe("fleet/+/+/telemetry", qos=1)
    assert collector.connect(5)
    readings = []

    def collect() -> list:
        readings.extend(decode(m.payload) for m in collector.drain())
        return readings

    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: (_checkpoint(state) or {}).get("time", 0) >= 7200 or proc.poll() is not None,
            timeout=60,
            what="a checkpoint at 2 h",
        )
        assert proc.poll() is None, proc.stderr.read().decode()
        saved = _checkpoint(state)["time"]
        wait_for(lambda: any(r.timestamp > saved for r in collect()), what="a reading made after the checkpoint")
    finally:
        proc.kill()
        proc.wait()
    killed = _checkpoint(state)["time"]
    assert any(r.timestamp > killed for r in readings)  # the restart runs these times again

    rerun = subprocess.run([*argv, "--duration", "1h"], cwd=ROOT, capture_output=True, timeout=120)

    assert rerun.returncode == 0, rerun.stderr.decode()
    end = killed + 3600
    wait_for(lambda: any(r.timestamp == end for r in collect()), what="the last reading")
    collector.close()
    assert_each_reading_once(readings, end)
