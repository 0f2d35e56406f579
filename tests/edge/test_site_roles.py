"""The site roles over a real mosquitto (issues 16 and 17 on boards): the auctioneer and the feeder meter,
with agents that bid and read the meter; hostile messages dropped and counted; the commands' bad input."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fleet.cli import main
from fleet.edge.agent import EdgeAgent
from fleet.edge.auctioneer import Auctioneer
from fleet.edge.meter import Meter
from fleet.edge.site import RunOptions, SiteRunner, site_view
from fleet.mqtt.codec import Kind, decode, encode
from fleet.mqtt.memory import MemoryBroker
from fleet.mqtt.paho_transport import PahoTransport
from fleet.mqtt.transport import Received
from fleet.scenario import parse_scenario
from tests.conftest import tiny_scenario
from tests.edge.agents import injector, memory_agent, options, started, view_of
from tests.waiting import wait_for

SPEEDUP = 300.0
"""A minute of the clock in 0.2 wall seconds: a market window of 2 min is 0.4 s for bids to arrive."""
MARKET = {"period": "5min", "window": "2min"}


def market_raw(feeder_kw: float = 1.0) -> dict:
    """The tiny scenario (sites north: d00000..d00002 and south) with auction-v1 trading, north's feeder
    at ``feeder_kw`` (levels 0, 1, 2, 3 kW: with 1 kW only bids for 0 or 1 kW can fit)."""
    raw = tiny_scenario()
    raw["fleet"]["sites"][0]["feeder_kw"] = feeder_kw
    raw["learner"] = {"name": "auction-v1", "params": {"market": MARKET}}
    return raw


def cooperative_raw() -> dict:
    raw = tiny_scenario()
    raw["learner"] = {"name": "cooperative-v1"}
    return raw


def _agent(raw: dict, device: str, url: str, state, epoch: float | None, **changes) -> EdgeAgent:
    make = functools.partial(PahoTransport, url=url, reconnect_delay=(0.1, 0.5))
    return EdgeAgent(view_of(raw, device), make, state / device, options(speedup=SPEEDUP, epoch=epoch, **changes))


def _role(cls, raw: dict, url: str, epoch: float | None, duration: float) -> SiteRunner:
    site = site_view(parse_scenario(raw, "test", Path.cwd()), "north")
    make = functools.partial(PahoTransport, url=url, reconnect_delay=(0.1, 0.5))
    return SiteRunner(cls(site), make, RunOptions(speedup=SPEEDUP, epoch=epoch, duration=duration, status_every=3600))


def _recording(agent: EdgeAgent) -> list[tuple[bool, float, float, float]]:
    """Every level the agent applies, as (under a grant, kW granted, kW applied, kW its auction wanted); the
    last entry is the driver switching off at the stop."""
    log, apply, learner = [], agent.driver.apply, agent.learner

    def record(level: int) -> None:
        kw = learner.levels_kw[0]
        granted = learner.now < learner.grant_until[0]
        log.append((bool(granted), float(learner.grant_kw[0]), float(kw[level]), float(kw[learner.wanted[0]])))
        apply(level)

    agent.driver.apply = record
    return log


def _inject(url: str, messages: list[tuple[str, bytes]]) -> None:
    client = injector(url)
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def _bid(sender: int, seq: int, t: float, valuation: float, kw: float) -> bytes:
    return encode(Kind.BID, sender, seq, t, [np.array([valuation, kw], np.float32)])


# --- the auctioneer ------------------------------------------------------------------------------


def _received(topic: str, payload: bytes) -> Received:
    return Received(topic, payload, 1, False, time.monotonic())


def test_the_auctioneer_clears_its_sites_bids_as_the_simulation_and_drops_what_it_drops():
    """North's feeder is 1 kW. Round at 300 s, cleared at 420 s: d00000 bids 0.9 for 1 kW, d00001 0.5 for
    1 kW (does not fit after d00000's: rejected, its bid is the price), d00002 0.7 for 0 kW (fits)."""
    auctioneer = Auctioneer(site_view(parse_scenario(market_raw(), "test", Path.cwd()), "north"))
    bids = [
        ("fleet/north/d00000/bid", _bid(0, 1, 300.0, 0.9, 1.0)),
        ("fleet/north/d00001/bid", _bid(1, 1, 300.0, 0.5, 1.0)),
        ("fleet/north/d00002/bid", _bid(2, 1, 300.0, 0.7, 0.0)),
        ("fleet/north/d00002/bid", _bid(2, 2, 300.0, 0.95, 1.0)),  # a second bid of the round: repeated
        ("fleet/north/d00001/bid", _bid(1, 2, 0.0, 0.99, 1.0)),  # of the round before: late
        ("fleet/north/d00001/bid", _bid(1, 3, 300.0, 1.5, 1.0)),  # valuation above 1: invalid
        ("fleet/north/d00001/bid", _bid(1, 4, 300.0, 0.9, 40.0)),  # more than the largest level: invalid
        ("fleet/north/d00001/bid", _bid(3, 5, 300.0, 0.9, 1.0)),  # d00003's header on d00001's topic: foreign
        ("fleet/north/intruder/bid", _bid(0, 6, 300.0, 0.9, 1.0)),  # no device of the site: foreign
        ("fleet/north/d00001/bid", b"\x00garbage"),  # malformed
        ("fleet/north/d00001/bid", encode(Kind.BID, 1, 7, 300.0, [np.zeros(3, np.float32)])),  # malformed
    ]
    for topic, payload in bids:
        auctioneer.offer(_received(topic, payload), 400.0)
    clearing = decode(auctioneer.step(420.0).payload)
    assert clearing.kind == Kind.CLEARING and clearing.sender == 6 and clearing.timestamp == 420.0
    winners, kw, price = clearing.arrays
    assert winners.tolist() == [0, 2] and kw.tolist() == [1.0, 0.0] and price.tolist() == pytest.approx([0.5, 0.5])
    assert auctioneer.dropped == {"invalid": 2, "foreign": 0, "repeated": 1, "late": 1}
    assert auctioneer.counters.malformed == 2 and auctioneer.counters.unexpected == 2
    assert auctioneer.rounds == 1 and not auctioneer.inbox.bids  # the next round starts empty


def test_a_bid_of_the_next_round_that_arrives_before_a_clearing_waits_for_its_round():
    """A clearing that runs late (its clock behind the agents') may hear a bid of the next round: it is no bid of
    the round cleared, nor late; the next clearing takes it."""
    auctioneer = Auctioneer(site_view(parse_scenario(market_raw(), "test", Path.cwd()), "north"))
    auctioneer.offer(_received("fleet/north/d00000/bid", _bid(0, 1, 600.0, 0.9, 1.0)), 430.0)
    assert decode(auctioneer.step(420.0).payload).arrays[0].tolist() == []
    assert decode(auctioneer.step(720.0).payload).arrays[0].tolist() == [0]
    assert auctioneer.dropped == {"invalid": 0, "foreign": 0, "repeated": 0, "late": 0}


@pytest.mark.mqtt
def test_agents_bid_and_the_clearing_that_comes_back_limits_their_power(mosquitto, tmp_path):
    raw, epoch = market_raw(), time.time() + 2.0  # the clock starts once all are up
    duration = 40 * 60.0
    auctioneer = _role(Auctioneer, raw, mosquitto.url, epoch, duration + 600)
    roles = started(auctioneer)
    agents = [_agent(raw, device, mosquitto.url, tmp_path, epoch, duration=duration) for device in ("d00000", "d00001")]
    logs = [_recording(agent) for agent in agents]
    threads = [started(agent) for agent in agents]
    wait_for(lambda: auctioneer.transport.connected and all(a.transport.connected for a in agents), "connections")
    time.sleep(0.3)  # the subscriptions' acknowledgements
    _inject(
        mosquitto.url,
        [
            ("fleet/north/d00002/bid", _bid(2, 1, 1.0, 2.0, 1.0)),  # invalid
            ("fleet/north/d00002/bid", b"not a bid"),  # malformed
            ("fleet/north/ghost/bid", _bid(2, 2, 1.0, 0.5, 1.0)),  # foreign
            ("fleet/north/auctioneer/clearing", b"not a clearing"),  # malformed, at both agents
        ],
    )
    for thread in threads:
        thread.finish(60)
    auctioneer.stop()
    roles.finish(30)
    assert auctioneer.role.rounds >= 6 and auctioneer.role.counters.received >= 8
    assert auctioneer.role.dropped["invalid"] == 1
    assert auctioneer.role.counters.malformed == 1 and auctioneer.role.counters.unexpected == 1
    logs = [log[:-1] for log in logs]  # the ticks
    for agent, log in zip(agents, logs):
        assert agent.counters.malformed == 1 and agent.counters.failed == 0
        granted = [entry for entry in log if entry[0]]
        assert granted, f"{agent.view.name} never ran under a grant"
        # never above what it won, compared at the wire's float32 (a grant of a level's kW holds that level)
        assert all(np.float32(applied) <= np.float32(grant) for _, grant, applied, _ in granted)
    limited = [entry for log in logs for entry in log if entry[0] and entry[3] > entry[1]]
    assert limited, "no clearing ever held a device below the level its auction wanted"


@pytest.mark.mqtt
def test_without_an_auctioneer_the_agents_bid_and_control_alone(mosquitto, tmp_path):
    raw, epoch = market_raw(), time.time() + 2.0
    agents = [_agent(raw, d, mosquitto.url, tmp_path, epoch, duration=20 * 60.0) for d in ("d00000", "d00001")]
    logs = [_recording(agent) for agent in agents]
    for thread in [started(agent) for agent in agents]:
        thread.finish(60)
    for agent, log in zip(agents, logs):
        assert agent.last["bid"].seq >= 3 and agent.counters.sent >= 3  # it bid every round ...
        assert np.isinf(agent.learner.grant_until).all() and len(log) >= 15  # ... heard nothing, kept going
        assert all(applied == wanted for _, _, applied, wanted in log[:-1])  # its own control, untouched


# --- the meter -------------------------------------------------------------------------------------


def _reading(sender: int, seq: int, values: list[float]) -> bytes:
    return encode(Kind.METER, sender, seq, 0.0, [np.array(values, np.float32)])


def _telemetry(sender: int, seq: int, kw: float) -> bytes:
    return encode(Kind.TELEMETRY, sender, seq, 0.0, [np.array([20.0, kw, 19.0, 22.0, 1.0], np.float32)])


@pytest.mark.mqtt
def test_agents_read_their_sites_meter_which_sums_their_telemetry(mosquitto, tmp_path):
    raw = cooperative_raw()
    meter = _role(Meter, raw, mosquitto.url, None, 3 * 3600.0)
    roles = started(meter)
    agents = [_agent(raw, d, mosquitto.url, tmp_path, None, duration=30 * 60.0) for d in ("d00000", "d00001")]
    threads = [started(agent) for agent in agents]
    wait_for(lambda: meter.transport.connected and all(a.transport.connected for a in agents), "connections")
    time.sleep(0.3)
    # north's meter (site 0 of 6 devices) sends as endpoint N + 1 = 7
    _inject(
        mosquitto.url,
        [
            ("fleet/north/meter/meter", b"garbage"),  # malformed
            ("fleet/north/meter/meter", _reading(7, 1001, [1.0, 2.0, 120.0, 3.0])),  # south's: malformed
            ("fleet/north/meter/meter", _reading(7, 1002, [0.0, -2.0, 120.0, 3.0])),  # negative load: malformed
            ("fleet/north/meter/meter", _reading(4, 1003, [0.0, 2.0, 120.0, 3.0])),  # d00004's header: unexpected
            ("fleet/north/d00002/telemetry", b"garbage"),  # malformed at the meter
            ("fleet/north/d00002/telemetry", _telemetry(2, 1, 1000.0)),  # 1 MW from a 3 kW heat pump: malformed
            ("fleet/north/ghost/telemetry", _telemetry(2, 2, 1.0)),  # no device of the site: unexpected
        ],
    )
    for thread in threads:
        thread.finish(60)
    meter.stop()
    roles.finish(30)
    assert meter.role.counters.malformed == 2 and meter.role.counters.unexpected == 1
    assert sorted(meter.role.source.reported) == [0, 1] and meter.role.seq >= 10
    for agent in agents:
        assert agent.counters.malformed == 3 and agent.counters.unexpected == 1 and agent.counters.failed == 0
        load, capacity, devices = agent.learner.reading[0].tolist()
        assert np.isfinite(agent.learner.reading_time[0])  # a reading reached the learner
        assert capacity == 120.0 and devices == 3.0  # north's feeder and its three devices, as the meter said
        assert 0.0 <= load <= 2 * 3.0  # the two reporting heat pumps, at most 3 kW each


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "raw", "extra", "words"),
    [
        ("auctioneer", tiny_scenario(), ["--site", "north"], ["learner.params.market.period"]),
        ("auctioneer", market_raw(), ["--site", "west"], ["--site", "west", "north, south"]),
        ("meter", {**tiny_scenario(), "workloads": {"telemetry": {"enabled": False}}}, ["--site", "north"],
         ["workloads.telemetry.enabled"]),
        ("meter", cooperative_raw(), ["--site", "north", "--broker", "ftp://x"], ["ftp"]),
        ("agent", market_raw(), ["--device", "d00000", "--broker", "mqtt://127.0.0.1:1"], ["--epoch"]),
    ],
)  # fmt: skip
def test_bad_options_of_the_site_roles_exit_2_naming_what_is_wrong(
    tmp_path, write_scenario, command, raw, extra, words
):
    scenario = write_scenario(raw)
    args = [command, str(scenario)]
    if command == "agent":
        args = [command, "--scenario", str(scenario), "--state-dir", str(tmp_path / "state")]
    result = CliRunner().invoke(main, [*args, "--broker", "mqtt://127.0.0.1:1", *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output
    assert not (tmp_path / "state").exists()  # nothing written


def test_at_a_round_that_falls_on_a_control_tick_the_agent_controls_first_then_bids(tmp_path):
    """As in the simulation (its market phase comes last at a common time): the bid of a round is for the
    level of the auction the tick at that time ran, and a clearing that arrived before it reaches the
    learner before it bids."""
    calls: list[tuple[str, float]] = []
    agent = memory_agent(view_of(market_raw()), MemoryBroker(), tmp_path, epoch=time.time() + 0.3, duration=16 * 60.0)
    agent._tick = _logged(calls, "tick", agent, agent._tick)
    agent._bid = _logged(calls, "bid", agent, agent._bid)
    agent.run()
    bids = [t for name, t in calls if name == "bid"]
    assert len(bids) >= 3
    for t in bids:
        at_t = [name for name, when in calls if when == t]
        assert at_t == ["tick", "bid"], f"at {t} s: {at_t}"


def _logged(calls: list, name: str, agent: EdgeAgent, method):
    def step() -> None:
        calls.append((name, agent.env.now))
        method()

    return step
