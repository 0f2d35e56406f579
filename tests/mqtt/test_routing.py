"""TopicIndex routes exactly what topic_matches says, once per (message, subscriber)."""

import numpy as np
import pytest

from fleet.errors import ConfigError
from fleet.mqtt.routing import TopicIndex
from fleet.mqtt.topics import KINDS, device_topic, topic_matches

TELEMETRY, CONSENSUS = KINDS.index("telemetry"), KINDS.index("consensus")


def pairs(index, sender, kind):
    msg, subscriber = index.route(np.asarray(sender), np.asarray(kind))
    return list(zip(msg.tolist(), subscriber.tolist()))


@pytest.fixture
def index():
    """Three devices: s0/a, s0/b and s1/a."""
    return TopicIndex(["s0", "s0", "s1"], ["a", "b", "a"])


def test_literal_wildcard_and_foreign_filters(index):
    index.subscribe(1, "fleet/s0/a/consensus")  # neighbour subscription
    index.subscribe(7, "fleet/+/+/telemetry")  # collector
    index.subscribe(8, "fleet/s1/#")  # one site
    index.subscribe(9, "other/#")  # outside the namespace
    sender, kind = [0, 0, 1, 2, 2], [CONSENSUS, TELEMETRY, TELEMETRY, CONSENSUS, TELEMETRY]
    assert pairs(index, sender, kind) == [(0, 1), (1, 7), (2, 7), (3, 8), (4, 7), (4, 8)]


def test_overlapping_filters_deliver_once(index):
    for filter in ["fleet/s0/a/consensus", "fleet/s0/a/+", "fleet/#", "#", "+/s0/+/consensus"]:
        index.subscribe(3, filter)
    assert pairs(index, [0, 1], [CONSENSUS, CONSENSUS]) == [(0, 3), (1, 3)]


def test_subscribe_twice_then_unsubscribe(index):
    index.subscribe(2, "fleet/s0/b/status")
    index.subscribe(2, "fleet/s0/b/status")
    status = KINDS.index("status")
    assert pairs(index, [1], [status]) == [(0, 2)]
    index.unsubscribe(2, "fleet/s0/b/status")
    assert pairs(index, [1], [status]) == []
    index.unsubscribe(2, "fleet/s0/b/status")  # not subscribed: ignored, as in MQTT
    index.subscribe(5, "fleet/s0/+/status")
    assert pairs(index, [1, 2], [status, status]) == [(0, 5)]


def test_no_messages_and_no_subscribers(index):
    assert pairs(index, [0, 1], [0, 1]) == []
    index.subscribe(0, "#")
    assert pairs(index, np.zeros(0, int), np.zeros(0, int)) == []


def test_bad_input_is_refused(index):
    with pytest.raises(ConfigError, match="'#' must be"):
        index.subscribe(0, "fleet/#/a")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        index.route(np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="KINDS"):
        index.route(np.array([0]), np.array([len(KINDS)]))
    with pytest.raises(ValueError, match="subscriber"):
        index.subscribe(-1, "#")
    with pytest.raises(ConfigError, match="devices 0 and 1"):
        TopicIndex(["s0", "s0"], ["a", "a"])
    with pytest.raises(ConfigError, match="site"):
        TopicIndex(["s/0"], ["a"])


def random_filter(rng, sites, names):
    """A filter from a real device topic (levels turned into '+', a '#' tail) or one that matches nothing."""
    levels = ["fleet", rng.choice(sites), rng.choice(names), rng.choice(KINDS)]
    style = rng.integers(6)
    if style == 0:
        return "/".join(levels)  # literal (possibly a device that does not exist)
    if style == 1:
        return "/".join(level if rng.random() < 0.5 else "+" for level in levels)
    if style == 2:
        return "/".join(levels[: rng.integers(0, 5)] + ["#"])
    if style == 3:
        plus = ["+" if rng.random() < 0.4 else level for level in levels]
        return "/".join(plus[: rng.integers(0, 5)] + ["#"])
    if style == 4:
        return "/".join(levels + ["+"] * rng.integers(0, 2) + ["#"] * rng.integers(0, 2))
    return rng.choice(
        ["fleet", "fleet/s9/+/status", "fleet/+/+", "$SYS/#", "fleet/+/+/weather", "+/+/+/+/+", "other/+/a/cmd"]
    )


@pytest.mark.parametrize("seed", range(40))
def test_route_agrees_with_topic_matches(seed):
    rng = np.random.default_rng(seed)
    sites, names = ["s0", "s1", "$s"][: rng.integers(1, 4)], ["a", "b", "c", "d", "e"]
    all_topics = rng.permutation([(s, d) for s in sites for d in names])[: rng.integers(1, 12)]
    n = len(all_topics)
    index = TopicIndex([s for s, _ in all_topics], [d for _, d in all_topics])
    subscriptions = [
        (int(rng.integers(0, n + 3)), random_filter(rng, sites, names)) for _ in range(rng.integers(0, 15))
    ]
    for subscriber, filter in subscriptions:
        index.subscribe(subscriber, filter)
    for subscriber, filter in subscriptions[: rng.integers(0, 3)]:
        index.unsubscribe(subscriber, filter)
        subscriptions = [sf for sf in subscriptions if sf != (subscriber, filter)]
    m = int(rng.integers(0, 20))
    sender, kind = rng.integers(0, n, m), rng.integers(0, len(KINDS), m)

    topics = [device_topic(*all_topics[s], KINDS[k]) for s, k in zip(sender, kind)]
    subscribers = sorted({s for s, _ in subscriptions})
    expected = [
        (j, s)
        for j, topic in enumerate(topics)
        for s in subscribers
        if any(topic_matches(f, topic) for t, f in subscriptions if t == s)
    ]
    assert pairs(index, sender, kind) == expected


def test_ten_thousand_devices_with_neighbours_and_collectors():
    n = 10_000
    index = TopicIndex([f"s{i // 1000}" for i in range(n)], [f"d{i:05d}" for i in range(n)])
    for i in range(n):
        for j in (i - 2, i - 1, i + 1, i + 2):
            index.subscribe(i, device_topic(f"s{j % n // 1000}", f"d{j % n:05d}", "consensus"))
    index.subscribe(n, "fleet/+/+/telemetry")
    index.subscribe(n + 1, "fleet/#")
    sender = np.concatenate([np.arange(n), np.arange(n)])
    kind = np.repeat([CONSENSUS, TELEMETRY], n)
    msg, subscriber = index.route(sender, kind)

    assert len(msg) == n * 5 + n * 2  # consensus: 4 neighbours + fleet/#; telemetry: both collectors
    assert np.all(np.diff(msg * (n + 2) + subscriber) > 0)  # sorted, no repeats
    assert subscriber[msg == 0].tolist() == [1, 2, n - 2, n - 1, n + 1]
    assert subscriber[msg == n + 5].tolist() == [n, n + 1]
