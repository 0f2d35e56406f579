"""Mixed fleets carry the feeder meter: a real-time run of the tiny fleet with cooperative-v1 publishes, through a
real mosquitto, the readings of each site that has a real device, as ``fleet meter`` would; a board reads them; a
live ``fleet meter`` of such a site is refused."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from fleet.edge.meter import Meter
from fleet.mqtt.codec import Kind, decode, encode
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.scenario import parse_scenario
from fleet.sim import realtime
from fleet.sim.bridge import Bridge
from fleet.sim.rng import Streams
from fleet.sim.world import build_world
from tests.conftest import tiny_scenario
from tests.edge.agents import paho_agent, started, view_of
from tests.sim.mixed import SPEEDUP, Recorder, mixed_summary, realtime_run, refused_while_north_runs
from tests.waiting import wait_for

HORIZON_S, PERIOD_S = 1800, 60
NORTH = ["d00000", "d00001", "d00002"]
"""Site 0 of the tiny fleet (N = 6 devices, so north's meter sends as N + 1 + 0 = 7); d00000 is the real one."""


def cooperative_mixed_raw() -> dict:
    raw = tiny_scenario()
    raw.update(horizon=f"{HORIZON_S}s")
    raw["learner"] = {"name": "cooperative-v1"}
    raw["fleet"]["external"] = ["d00000"]
    raw["outputs"]["sample_devices"] = 6  # every device's power in the metrics rows
    return raw


def recorded_run(raw: dict, url: str, folder: Path, *args: str) -> tuple[list[tuple[str, bytes]], dict]:
    """A real-time run of ``raw`` into ``folder / "run"`` (``args``: more options): what a subscriber heard on the
    meters' topics meanwhile, and summary.json's ``mixed`` section."""
    scenario = folder / "mixed.yaml"
    scenario.write_text(yaml.safe_dump(raw, sort_keys=False))
    recorder = Recorder(url, "fleet/+/meter/#")
    try:
        result = realtime_run(scenario, folder / "run", url, *args)
        assert result.exit_code == 0, result.output
        mixed = mixed_summary(folder / "run")
        wait_for(lambda: len(recorder.heard) >= mixed["meter_readings"], "the last readings to arrive")
    finally:
        recorder.close()
    return recorder.heard, mixed


@pytest.mark.mqtt
def test_the_run_publishes_the_readings_of_each_site_with_a_real_device(mosquitto, tmp_path):
    raw = cooperative_mixed_raw()
    heard, mixed = recorded_run(raw, mosquitto.url, tmp_path)
    # north has the real device, south none: only north's meter is on the broker, once per control period
    assert {topic for topic, _ in heard} == {"fleet/north/meter/meter"}
    readings = [decode(payload) for _, payload in heard]
    ticks = HORIZON_S // PERIOD_S
    assert mixed["meter_sites"] == ["north"] and mixed["meter_readings"] == ticks and mixed["meter_unsent"] == 0
    assert [m.timestamp for m in readings] == [float(PERIOD_S * k) for k in range(ticks)]
    assert [m.seq for m in readings] == list(range(1, ticks + 1))  # one sequence per site, as fleet meter's
    assert all(m.kind == Kind.METER and m.sender == 6 + 1 + 0 for m in readings)
    values = np.stack([m.arrays[0] for m in readings])
    feeder_kw = raw["fleet"]["sites"][0]["feeder_kw"]
    assert values.dtype == np.float32 and (values[:, [0, 2, 3]] == [0.0, feeder_kw, 3.0]).all()
    # the load is the simulated feeder's: north's three devices' power in the tick at that time (the
    # metrics row at the same time comes after the control tick), d00000's stand-in included
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = {float(row["time_s"]): row for row in csv.DictReader(f)}
    for t in (0.0, 900.0):
        power = sum(float(rows[t][f"device/{d}/power_kw"]) for d in NORTH)
        assert values[int(t) // PERIOD_S, 1] == np.float32(power)
    assert values[:, 1].max() > 0  # some tick heated, so the check above is not 0 == 0 throughout


@pytest.mark.mqtt
def test_a_real_cooperative_agent_reads_every_reading_of_its_site(mosquitto, tmp_path):
    raw = cooperative_mixed_raw()
    epoch = time.time() + 3.0  # the agent and the run both up before scenario time 0
    agent = paho_agent(view_of(raw, "d00000"), mosquitto.url, tmp_path / "d00000", speedup=SPEEDUP, epoch=epoch)
    thread = started(agent)
    try:
        wait_for(lambda: agent.transport.connected, "the agent's connection")
        heard, mixed = recorded_run(raw, mosquitto.url, tmp_path, "--epoch", repr(epoch))
        # all the agent hears is its meter (no command is sent): each reading the bridge sent arrives
        wait_for(lambda: agent.counters.received >= mixed["meter_readings"], "the agent to receive every reading")
    finally:
        agent.stop()
        thread.finish(30)
    c = agent.counters
    assert mixed["meter_readings"] == HORIZON_S // PERIOD_S and c.received == mixed["meter_readings"]
    assert c.dropped == 0 and c.failed == 0
    # its learner holds the newest reading, as sent: [load, capacity, devices] of [site, load, capacity, devices]
    assert np.isfinite(agent.learner.reading_time[0])
    assert agent.learner.reading[0].tolist() == decode(heard[-1][1]).arrays[0][1:].tolist()


@pytest.mark.mqtt
def test_a_learner_that_does_not_read_the_meter_publishes_no_reading(mosquitto, tmp_path):
    raw = cooperative_mixed_raw()
    raw.update(horizon="10min")
    raw["learner"] = {"name": "diffusion-v1", "params": {"n_steps": 4}}
    heard, mixed = recorded_run(raw, mosquitto.url, tmp_path)
    assert heard == [] and mixed["meter_sites"] == [] and mixed["meter_readings"] == 0
    assert mixed["sent"] > 0  # the run did publish, its parameters


@pytest.mark.mqtt
def test_a_live_fleet_meter_at_a_bridged_site_is_refused_and_one_elsewhere_is_not(mosquitto, tmp_path):
    raw = cooperative_mixed_raw()
    raw.update(horizon="10min")
    assert refused_while_north_runs(raw, Meter, mosquitto.url, tmp_path)["meter_conflicts"] == 0


def test_a_fleet_meter_that_comes_online_during_the_run_is_counted():
    sc = parse_scenario(cooperative_mixed_raw(), "test", Path.cwd())
    world, broker = build_world(sc, Streams(sc.seed)), MemoryBroker()
    external = np.isin(world.device_names, sc.fleet.external)
    bridge = Bridge(world, external, 1, 0, MemoryTransport(broker, "bridge"), meters=True, market=None)
    bridge.start(1.0)  # no meter yet: it starts
    meter = MemoryTransport(broker, "meter")
    meter.connect(1.0)
    for site, flag in (("north", 1.0), ("south", 1.0), ("north", 0.0)):
        status = encode(Kind.STATUS, 7, 1, 0.0, [np.array([flag], np.float32)])
        meter.publish(f"fleet/{site}/meter/status", status, qos=1, retain=True)
    assert bridge.arrived(realtime.realtime_environment(1.0, time.time()), np.ones(world.n, bool)) == []
    bridge.close()
    # north's meter said online once (its offline status is no conflict); south has no real device, so no reading
    # of the bridge's, and the bridge does not listen there
    assert bridge.conflicts["meter_conflicts"] == 1 and bridge.counters.unexpected == 0
