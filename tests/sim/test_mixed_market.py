"""Mixed fleets carry the feeder market: a real-time run of the tiny fleet with auction-v1 trading is, through a real
mosquitto, the auctioneer of each site that has a real device, as ``fleet auctioneer`` would be; a board's bid is
cleared with the simulated devices' bids; a live ``fleet auctioneer`` of such a site is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from fleet.edge.auctioneer import Auctioneer
from fleet.edge.site import site_view
from fleet.mqtt.codec import Kind, decode, encode
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.mqtt.transport import Received
from fleet.scenario import parse_scenario
from fleet.sim import market
from fleet.sim.bridge import Bridge
from fleet.sim.engine import Simulation
from fleet.sim.market import clear_site
from tests.conftest import tiny_scenario
from tests.edge.agents import paho_agent, started, view_of
from tests.sim.mixed import SPEEDUP, Recorder, mixed_summary, realtime_run, refused_while_north_runs
from tests.waiting import wait_for

PERIOD_S, WINDOW_S, HORIZON_S = 300, 180, 1800
"""A round every 5 min, cleared 3 min later (0.3 wall s at the speedup of 600 for a board's bid to arrive): rounds
at 0, 300, ..., 1500, clearings at 180, 480, ..., 1680. A board takes a clearing at its first control tick after
it arrived, at the latest 2 min later, before it bids in the next round (a board's bid at a round's start comes
before its tick at that time: a clearing it takes then would be of an older round than its bid, and ignored)."""
ROUNDS = HORIZON_S // PERIOD_S
NORTH = [0, 1, 2]
"""Site north of the tiny fleet (N = 6): d00000 (the real one), d00001, d00002."""
CLEARINGS = "fleet/+/auctioneer/#"


def market_mixed_raw(feeder_kw: float, horizon_s: int = HORIZON_S) -> dict:
    """The tiny scenario trading, north's feeder at ``feeder_kw`` (levels 0, 1, 2, 3 kW), d00000 real."""
    raw = tiny_scenario()
    raw.update(horizon=f"{horizon_s}s")
    raw["fleet"]["sites"][0]["feeder_kw"] = feeder_kw
    raw["fleet"]["external"] = ["d00000"]
    raw["learner"] = {"name": "auction-v1", "params": {"market": {"period": f"{PERIOD_S}s", "window": f"{WINDOW_S}s"}}}
    return raw


@pytest.fixture
def auctions(monkeypatch) -> dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The bids the run's market cleared, round start -> (sender, [valuation, kW], published at) in arrival order."""
    calls, real = {}, market.auction

    def spy(sender, bids, published_at, round_t, *rest):
        calls[round_t] = (sender.copy(), bids.copy(), published_at.copy())
        return real(sender, bids, published_at, round_t, *rest)

    monkeypatch.setattr(market, "auction", spy)
    return calls


def recorded(
    raw: dict,
    url: str,
    folder: Path,
    topic_filter: str,
    *args: str,
    meanwhile: Callable[[Recorder], None] = lambda recorder: None,
) -> tuple[list[tuple[str, bytes]], dict]:
    """A real-time run of ``raw`` (``args``: more options) on a thread, while ``meanwhile(recorder)`` runs here: what
    the recorder, a subscriber of ``topic_filter``, heard (all clearings the run sent included), and summary.json's
    ``mixed`` section."""
    path = folder / "mixed.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    recorder, results = Recorder(url, topic_filter), []
    run = threading.Thread(target=lambda: results.append(realtime_run(path, folder / "run", url, *args)))
    try:
        run.start()
        meanwhile(recorder)
        run.join(60)
        assert results and results[0].exit_code == 0, results and results[0].output
        mixed = mixed_summary(folder / "run")
        wait_for(lambda: len(clearings(recorder.heard)) >= mixed["market_clearings"], "the last clearings to arrive")
    finally:
        run.join(60)
        recorder.close()
    return recorder.heard, mixed


def clearings(heard: list[tuple[str, bytes]]) -> list:
    return [decode(payload) for topic, payload in heard if topic.endswith("/auctioneer/clearing")]


def by_hand(bids: tuple[np.ndarray, np.ndarray, np.ndarray], feeder_kw: float) -> list[list[float]]:
    """North's clearing from its devices' bids of a round (all on time and valid): the highest valuations win while
    their kW fit, ties to the lower device, at the valuation of the first that does not fit (:func:`clear_site`)."""
    sender, values, _ = bids
    mine = np.flatnonzero(np.isin(sender, NORTH))
    mine = mine[np.argsort(sender[mine], kind="stable")]
    won, price = clear_site(values[mine, 0], values[mine, 1], feeder_kw)
    return [sender[mine][won].tolist(), values[mine, 1][won].tolist(), [price] * int(won.sum())]


def _bid(sender: int, seq: int, t: float, valuation: float, kw: float) -> bytes:
    return encode(Kind.BID, sender, seq, t, [np.array([valuation, kw], np.float32)])


def as_fleet_auctioneer(raw: dict, auctions: dict) -> list[bytes]:
    """What ``fleet auctioneer`` of north publishes, round after round, given the bids the run's auction cleared."""
    auctioneer = Auctioneer(site_view(parse_scenario(raw, "test", Path.cwd()), "north"))
    payloads = []
    for seq, round_t in enumerate(sorted(auctions), start=1):
        for j, (valuation, kw), t in zip(*auctions[round_t]):
            if j in NORTH:
                bid = _bid(int(j), seq, t, valuation, kw)
                auctioneer.offer(Received(f"fleet/north/d{j:05d}/bid", bid, 0, False, time.monotonic()), t)
        publication = auctioneer.step(round_t + WINDOW_S)
        assert publication.qos == raw["learner"]["params"]["market"].get("qos", 0)  # the bridge's: the same field
        payloads.append(publication.payload)
    return payloads


def assert_cleared_by_hand(messages: list, auctions: dict, feeder_kw: float) -> None:
    """Each clearing on the broker is the one worked out from the bids its round cleared, at float32."""
    for m in messages:
        expected = by_hand(auctions[m.timestamp - WINDOW_S], feeder_kw)
        assert [a.tolist() for a in m.arrays] == [np.float32(e).tolist() for e in expected]


@pytest.mark.mqtt
def test_the_run_publishes_one_clearing_a_round_for_each_site_with_a_real_device(mosquitto, tmp_path, auctions):
    raw = market_mixed_raw(feeder_kw=2.0)
    heard, mixed = recorded(raw, mosquitto.url, tmp_path, CLEARINGS)
    # north has the real device, south none: only north's auctioneer is on the broker, once per round
    assert {topic for topic, _ in heard} == {"fleet/north/auctioneer/clearing"}
    messages = clearings(heard)
    assert mixed["market_sites"] == ["north"] and mixed["market_clearings"] == ROUNDS and mixed["market_unsent"] == 0
    assert [m.timestamp for m in messages] == [float(PERIOD_S * k + WINDOW_S) for k in range(ROUNDS)]
    assert [m.seq for m in messages] == list(range(1, ROUNDS + 1))  # as fleet auctioneer's: one a round
    assert all(m.kind == Kind.CLEARING and m.sender == 6 for m in messages)  # sent as endpoint N, as in the model
    # no board ran: only d00001 and d00002 bid in north (the stand-in of d00000 does not), and the clearing is
    # the model's own, north's part of it; a 2 kW feeder turns some bids down (else the check is all-win)
    assert mixed["market_bids"] == 0 and all(set(auctions[r][0].tolist()) <= {1, 2, 3, 4, 5} for r in auctions)
    assert_cleared_by_hand(messages, auctions, 2.0)
    assert any(m.arrays[2].size and m.arrays[2][0] > 0 for m in messages), "no round was contested"
    # byte for byte what fleet auctioneer of north sends when it hears those bids
    assert [payload for _, payload in heard] == as_fleet_auctioneer(raw, auctions)


@pytest.mark.mqtt
def test_a_real_auction_agent_bids_and_is_cleared_with_the_simulated_devices(mosquitto, tmp_path, auctions):
    raw = market_mixed_raw(feeder_kw=2.0)
    epoch = time.time() + 3.0  # the agent and the run both up before scenario time 0
    agent = paho_agent(view_of(raw, "d00000"), mosquitto.url, tmp_path / "d00000", speedup=SPEEDUP, epoch=epoch)
    thread = started(agent)
    try:
        wait_for(lambda: agent.transport.connected, "the agent's connection")
        heard, mixed = recorded(raw, mosquitto.url, tmp_path, "fleet/north/#", "--epoch", repr(epoch))
        wait_for(lambda: agent.counters.received >= mixed["market_clearings"], "the agent to hear every clearing")
        wait_for(lambda: agent.env.now > HORIZON_S + 60, "the agent's ticks after the last clearing")
    finally:
        agent.stop()
        thread.finish(30)
    sent = {m.timestamp: m.arrays[0] for m in (decode(p) for topic, p in heard if topic == "fleet/north/d00000/bid")}
    messages = clearings(heard)
    assert mixed["market_clearings"] == ROUNDS == len(messages)
    # the board's bid, as sent, in the auction of its round beside the simulated devices' (one a device: its
    # stand-in does not bid); a bid slowed past its round's clearing (0.3 wall s) would be late, and counted
    joined = [round_t for round_t, (sender, _, _) in auctions.items() if 0 in sender]
    assert mixed["market_bids"] == len(joined) > ROUNDS // 2 and mixed["market_dropped"]["late"] <= ROUNDS - len(joined)
    assert sum(mixed["market_dropped"].values()) == mixed["market_dropped"]["late"], mixed["market_dropped"]
    for round_t in joined:
        sender, values, stamp = auctions[round_t]
        assert sorted(sender.tolist()) == [0, 1, 2, 3, 4, 5] and (stamp == round_t).all()
        assert values[sender == 0].astype(np.float32).tolist() == [sent[round_t].tolist()]
    assert_cleared_by_hand(messages, auctions, 2.0)
    assert any(0 in m.arrays[0] for m in messages), "the board never won: its grant was never in a clearing"
    # each clearing the bridge sent reached the board, whose learner took its grant from one of the last two (the
    # last, unless it arrived after the board's tick before the next round): the grant holds 4 periods from its round
    assert agent.counters.received == ROUNDS and agent.counters.dropped == 0 and agent.counters.failed == 0
    applied = agent.learner.grant_until[0] - 4 * PERIOD_S - WINDOW_S
    assert applied in (HORIZON_S - PERIOD_S, HORIZON_S - 2 * PERIOD_S)
    winners, kw, _ = next(m for m in messages if m.timestamp == applied + WINDOW_S).arrays
    assert agent.learner.grant_kw[0] == kw[winners == 0].sum()


def publish_bids(recorder: Recorder) -> None:
    """Once the first round is cleared (t = 180 s), publish on d00000's bid topic (no agent runs)."""
    wait_for(lambda: clearings(recorder.heard), "the first clearing")
    for payload in [
        _bid(0, 1, 0.0, 0.9, 1.0),  # round 0 was cleared: late
        _bid(0, 2, 600.0, 2.0, 1.0),  # a valuation above 1: invalid
        _bid(1, 3, 600.0, 0.9, 1.0),  # d00001's header on d00000's topic: foreign
        b"not a bid",  # malformed
        _bid(0, 4, 600.0, 1.0, 3.0),  # the round at 600 s (cleared at 780 s): the highest valuation, for all 3 kW
    ]:
        recorder.client.publish("fleet/north/d00000/bid", payload, qos=1).wait_for_publish(5)


@pytest.mark.mqtt
def test_a_late_or_malformed_bid_of_a_board_is_counted_and_a_good_one_cleared(mosquitto, tmp_path, auctions):
    raw = market_mixed_raw(feeder_kw=3.0, horizon_s=900)
    heard, mixed = recorded(raw, mosquitto.url, tmp_path, CLEARINGS, meanwhile=publish_bids)
    dropped = {"invalid": 1, "foreign": 1, "repeated": 0, "late": 1, "malformed": 1, "duplicates": 0}
    assert mixed["market_dropped"] == dropped and mixed["market_bids"] == 1
    # the good bid beat every other of its round (a tie goes to the lower device): d00000 won the whole feeder, and
    # only bids of 0 kW can win beside it
    messages = clearings(heard)
    winners, kw, _ = next(m for m in messages if m.timestamp == 600.0 + WINDOW_S).arrays
    assert winners[0] == 0 and kw[0] == 3.0 and (kw[1:] == 0).all()
    assert_cleared_by_hand(messages, auctions, 3.0)


@pytest.mark.mqtt
def test_a_live_fleet_auctioneer_at_a_site_with_a_real_device_is_refused(mosquitto, tmp_path):
    raw = market_mixed_raw(feeder_kw=2.0, horizon_s=600)
    assert refused_while_north_runs(raw, Auctioneer, mosquitto.url, tmp_path)["market_conflicts"] == 0


def test_the_bridge_counts_what_it_drops_of_the_boards_bids_and_an_auctioneer_that_comes_online():
    """Over the in-memory broker: what arrived on d00000's bid topic when the round at 300 s is cleared, and an
    auctioneer's status."""
    sim = Simulation(parse_scenario(market_mixed_raw(feeder_kw=2.0), "test", Path.cwd()))
    broker, external = MemoryBroker(), np.isin(sim.world.device_names, ["d00000"])
    bridge = Bridge(sim.world, external, 1, 0, MemoryTransport(broker, "bridge"), meters=False, market=sim.market)
    bridge.start(1.0)  # no auctioneer yet: it starts
    client = MemoryTransport(broker, "client")
    client.connect(1.0)
    for topic, payload in [
        ("fleet/north/d00000/bid", _bid(0, 1, 300.0, 0.5, 1.0)),  # the round's: it counts
        ("fleet/north/d00000/bid", _bid(0, 1, 300.0, 0.5, 1.0)),  # the same message again (QoS 1): a duplicate
        ("fleet/north/d00000/bid", _bid(0, 2, 300.0, 0.6, 2.0)),  # a second bid of the round: repeated
        ("fleet/north/d00000/bid", _bid(0, 3, 0.0, 0.7, 1.0)),  # of the round before: late
        ("fleet/north/d00000/bid", _bid(0, 4, 300.0, 0.7, 50.0)),  # more kW than any level: invalid
        ("fleet/north/d00000/bid", _bid(2, 5, 300.0, 0.7, 1.0)),  # d00002's header: foreign
        ("fleet/north/d00000/bid", b"\x00garbage"),  # malformed
        ("fleet/north/d00000/bid", _bid(0, 6, 600.0, 0.8, 1.0)),  # of the next round: kept for it
        ("fleet/north/d00001/bid", _bid(1, 7, 300.0, 0.9, 1.0)),  # a simulated device's topic: not heard
    ]:
        client.publish(topic, payload, qos=1)
    for site, flag in (("north", 1.0), ("south", 1.0), ("north", 0.0)):
        status = encode(Kind.STATUS, 6, 1, 0.0, [np.array([flag], np.float32)])
        client.publish(f"fleet/{site}/auctioneer/status", status, qos=1, retain=True)
    sender, bids, stamp = bridge.bids(300.0)
    assert sender.tolist() == [0] and bids.tolist() == [[0.5, 1.0]] and stamp.tolist() == [300.0]
    assert bridge.bids(600.0)[1].astype(np.float32).tolist() == [[np.float32(0.8), 1.0]]
    bridge.close()
    dropped = {"invalid": 1, "foreign": 1, "repeated": 1, "late": 1, "malformed": 1, "duplicates": 1}
    assert bridge.summary()["market_dropped"] == dropped and bridge.market["market_bids"] == 2
    # north's auctioneer said online once (its offline status is no conflict); south has no real device, so the
    # bridge does not listen there
    assert bridge.conflicts == {"meter_conflicts": 0, "market_conflicts": 1} and bridge.counters.unexpected == 0
