"""The composed network (uplink -> broker -> routing -> downlink) against hand-worked timing,
loss rates, QoS 1 semantics, retained messages and size limits."""

from types import SimpleNamespace

import numpy as np
import pytest

from fleet.mqtt.codec import DType, Kind, decode, encode_batch
from fleet.mqtt.routing import TopicIndex
from fleet.mqtt.topics import KINDS, device_topic
from fleet.net.network import Outgoing, SimNetwork, endpoint_topics
from fleet.net.profiles import IndependentLoss, LinkProfile
from fleet.scenario import BrokerConfig, Qos1Config

CONSENSUS = KINDS.index("consensus")


def link(**kw):
    base = dict(
        latency_s=0.01, jitter_s=0.0, up_bps=80_000.0, down_bps=160_000.0, max_payload_bytes=10_000, overhead_bytes=20
    )
    return LinkProfile(**{**base, **kw})


QOS1 = Qos1Config()


def network(n=4, profile=None, capacity=1000.0, qos1=QOS1, seed=0):
    """n devices (one site) plus a collector; everybody subscribes to device 0's consensus topic."""
    sites, names = ["s"] * n, [f"d{i}" for i in range(n)]
    net = SimNetwork(
        TopicIndex(sites, names),
        [profile or link()],
        np.zeros(n + 1, int),
        endpoint_topics(sites + ["cloud"], names + ["collector"]),
        BrokerConfig(capacity_msgs_per_s=capacity),
        qos1,
        np.random.default_rng(seed),
        np.random.default_rng(seed + 1),
    )
    for i in range(1, n + 1):
        net.subscribe(i, [device_topic("s", "d0", "consensus")])
    return net


def outgoing(sender, seq=None, dim=8, qos=0, retain=False, t=0.0):
    sender = np.asarray(sender)
    seq = np.arange(1, len(sender) + 1) if seq is None else np.asarray(seq)
    x = np.tile(np.arange(dim, dtype=np.float32), (len(sender), 1)) + seq[:, None]
    rows = encode_batch(Kind.CONSENSUS, sender, seq, t, [x], DType.FLOAT32)
    return Outgoing(CONSENSUS, sender, seq, rows, qos, retain)


def drain(net, t):
    """The single layout drained at ``t`` (these tests publish one layout), or an empty stand-in."""
    groups = net.drain(CONSENSUS, t)
    assert len(groups) <= 1
    return groups[0] if groups else SimpleNamespace(receiver=np.zeros(0, int))


def test_one_message_arrives_after_serialization_latency_and_broker_service():
    net = network(n=4)
    out = outgoing([0])
    size = out.rows.shape[1]
    net.publish(0.0, out)
    got = drain(net, 10.0)
    up = (size + 20) * 8 / 80_000 + 0.01
    broker = (1 + 4) / 1000.0  # one inbound publish + four deliveries
    down = (size + 20) * 8 / 160_000 + 0.01
    assert sorted(got.receiver.tolist()) == [1, 2, 3, 4]
    np.testing.assert_allclose(got.arrived_at, up + broker + down, rtol=1e-12)
    assert net.stats.messages_delivered.sum() == 4 and net.stats.messages_dropped.sum() == 0
    assert net.stats.bytes_sent[0] == size + 20
    np.testing.assert_allclose(net.stats.bytes_received[1:], size + 20)


def test_drain_returns_only_what_has_arrived_and_keeps_the_rest():
    net = network(n=2)
    net.publish(0.0, outgoing([0]))
    assert len(drain(net, 0.001).receiver) == 0
    assert len(drain(net, 1.0).receiver) == 2
    assert len(drain(net, 2.0).receiver) == 0


def test_back_to_back_publishes_queue_behind_each_other_on_the_uplink():
    net = network(n=1)
    seqs = np.arange(1, 6)
    net.publish(0.0, Outgoing(CONSENSUS, np.zeros(5, int), seqs, outgoing(np.zeros(5, int)).rows, 0))
    got = drain(net, 10.0)
    size = got.rows.shape[1]
    serial = (size + 20) * 8 / 80_000
    assert np.diff(np.sort(got.arrived_at)) == pytest.approx(np.full(4, serial))


def test_a_saturated_broker_spaces_departures_by_its_service_time():
    """500 devices publish at once to a broker of 1000 msgs/s, each with one subscriber:
    the k-th publish leaves the broker at about k * 2 / 1000 s."""
    n = 500
    sites, names = ["s"] * n, [f"d{i}" for i in range(n)]
    net = SimNetwork(
        TopicIndex(sites, names),
        [link(up_bps=1e9, down_bps=1e9)],
        np.zeros(n + 1, int),
        endpoint_topics(sites + ["cloud"], names + ["collector"]),
        BrokerConfig(capacity_msgs_per_s=1000.0),
        Qos1Config(),
        np.random.default_rng(0),
        np.random.default_rng(1),
    )
    net.subscribe(n, ["fleet/+/+/consensus"])
    net.publish(0.0, outgoing(np.arange(n)))
    got = drain(net, 100.0)
    delays = np.sort(got.arrived_at)
    expected = 0.02 + np.arange(1, n + 1) * 2 / 1000.0  # two latencies + queue
    np.testing.assert_allclose(delays, expected, atol=1e-3)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_qos0_delivers_the_fraction_that_survives_both_hops(p):
    net = network(n=4, profile=link(loss=IndependentLoss(p=p)), capacity=1e7)
    rounds = 2000
    for r in range(rounds):
        net.publish(float(r), outgoing([0], seq=[r + 1], t=float(r)))
    delivered = len(drain(net, rounds + 10.0).receiver)
    trials = rounds * 4
    expected = (1 - p) ** 2
    assert delivered / trials == pytest.approx(
        expected, abs=4 * np.sqrt(expected * (1 - expected) / trials) + 4 * p / np.sqrt(rounds)
    )
    # lost publishes count once
    assert net.stats.messages_dropped.sum() == pytest.approx(trials - delivered, abs=rounds)


def test_qos1_retries_deliver_everything_and_duplicates_are_removed():
    """Loss 30% on every hop, 8 retries: a message is lost with probability ~0.3^9; lost PUBACKs
    cause duplicates, which receivers drop by (sender, seq)."""
    net = network(
        n=3, profile=link(loss=IndependentLoss(p=0.3)), capacity=1e7, qos1=Qos1Config(timeout=5.0, max_retries=8)
    )
    rounds = 300
    for r in range(rounds):
        net.publish(100.0 * r, outgoing([0], seq=[r + 1], qos=1, t=100.0 * r))
    got = drain(net, 100.0 * rounds + 1000)
    pairs = set(zip(got.receiver.tolist(), got.seq.tolist()))
    assert len(pairs) == len(got.receiver) == rounds * 3  # everything once, nothing twice
    assert net.stats.duplicates.sum() > 0  # duplicates happened and were dropped
    assert net.stats.messages_delivered.sum() == rounds * 3
    late = got.arrived_at - got.published_at
    assert late.max() >= 5.0  # some copies came only after a retransmission timeout


def test_oversized_messages_are_dropped_and_counted():
    net = network(n=2, profile=link(max_payload_bytes=40))
    net.publish(0.0, outgoing([0], dim=8))  # 67 bytes
    assert len(drain(net, 10.0).receiver) == 0
    assert net.stats.messages_dropped.sum() == 1 and net.stats.bytes_sent.sum() == 0
    assert net.stats.messages_sent.sum() == 0 and net.stats.payload_bytes_sent.sum() == 0  # never on the air


def test_payload_counts_each_publish_once_and_bytes_sent_every_transmission_with_overhead():
    # 4 devices subscribe to device 0; its uplink loses half the messages, so QoS 1 retransmits
    net = network(n=4, profile=link(loss=IndependentLoss(p=0.5)), qos1=Qos1Config(timeout=1.0, max_retries=20))
    for k in range(50):
        net.publish(10.0 * k, outgoing([0], seq=[k + 1], qos=1, t=10.0 * k))
    st = net.stats
    assert st.messages_sent[0] == 50 and st.payload_bytes_sent[0] == 50 * 67  # 67-byte messages
    transmissions = st.bytes_sent[0] / (67 + 20)  # each with 20 bytes of link overhead
    assert transmissions == int(transmissions) and transmissions > 50  # some were sent more than once
    assert st.payload_bytes_sent[0] < st.bytes_sent[0]


def test_offline_receivers_lose_qos0_messages_and_reconnecting_ones_get_the_retained_value():
    net = network(n=3)
    net.online[2] = False
    net.publish(0.0, outgoing([0], seq=[1], retain=True))
    net.publish(10.0, outgoing([0], seq=[2], retain=True, t=10.0))
    got = drain(net, 20.0)
    assert 2 not in got.receiver.tolist()
    assert net.stats.messages_dropped[2] == 2
    net.online[2] = True
    net.resend_retained(30.0, [2])
    again = drain(net, 40.0)
    assert again.receiver.tolist() == [2]
    assert decode(again.rows[again.msg[0]].tobytes()).seq == 2  # the latest retained value


def test_subscribers_reconnecting_together_get_every_retained_message_of_their_filters_once():
    """One re-send for several subscribers: each gets the latest retained payload of every topic
    its filters match, whatever the kind and size, and nothing of topics it does not follow."""
    net = network(n=4)
    status = KINDS.index("status")
    net.subscribe(3, [device_topic("s", "d1", "status")])
    net.publish(0.0, outgoing([0], seq=[7], dim=8, retain=True))
    net.publish(0.0, outgoing([1], seq=[3], dim=2, retain=True))  # d1's consensus: nobody follows it
    rows = encode_batch(Kind.STATUS, np.array([1]), np.array([5]), 0.0, [np.ones((1, 3), np.float32)], DType.FLOAT32)
    net.publish(0.0, Outgoing(status, np.array([1]), np.array([5]), rows, 0, True))
    drain(net, 10.0), net.drain(status, 10.0)
    net.resend_retained(30.0, [2, 3])
    consensus = drain(net, 40.0)
    assert sorted(consensus.receiver.tolist()) == [2, 3]
    assert {decode(consensus.rows[m].tobytes()).seq for m in consensus.msg} == {7}
    (got,) = net.drain(status, 40.0)
    assert got.receiver.tolist() == [3] and decode(got.rows[got.msg[0]].tobytes()).sender == 1
    assert (consensus.published_at == 30.0).all()  # the delay counts from the re-send


def test_streams_of_different_kinds_are_deduplicated_separately():
    """Sequence numbers count per (sender, kind): a status and a consensus message that share a
    sequence number are both delivered."""
    net = network(n=1)
    net.subscribe(1, [device_topic("s", "d0", "status")])
    status = KINDS.index("status")
    rows = encode_batch(Kind.STATUS, np.array([0]), np.array([1]), 0.0, [np.ones((1, 1), np.float32)], DType.FLOAT32)
    net.publish(0.0, outgoing([0], seq=[1]))
    net.publish(0.0, Outgoing(status, np.array([0]), np.array([1]), rows, 0))
    assert len(drain(net, 10.0).receiver) == 1
    assert [len(g.receiver) for g in net.drain(status, 10.0)] == [1]
    assert net.stats.duplicates.sum() == 0
