"""Topic names, filters and matching, checked against the MQTT 5 spec (4.7) and paho-mqtt."""

import itertools

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from fleet.errors import ConfigError, WireError
from fleet.mqtt.topics import KINDS, device_topic, topic_matches, validate_topic_filter, validate_topic_name

LEVELS = ["", "$SYS", "a", "b"]


def test_device_topic_builds_the_namespace():
    assert device_topic("s0", "d00012", "consensus") == "fleet/s0/d00012/consensus"
    assert [device_topic("site-1", "dev_2", k).rsplit("/", 1)[1] for k in KINDS] == list(KINDS)


@pytest.mark.parametrize(
    "site, device, kind",
    [
        ("", "d", "status"),
        ("s/1", "d", "status"),
        ("s", "d+", "status"),
        ("s", "#", "status"),
        ("s", "d\0", "status"),
        ("s", "d", "weather"),
    ],
)
def test_device_topic_rejects_bad_levels_and_kinds(site, device, kind):
    with pytest.raises(ConfigError):
        device_topic(site, device, kind)


@pytest.mark.parametrize(
    "topic", ["a", "/", "a//b", "$SYS/broker/load", "sport/tennis/player1", "température/1", "a" * 65535]
)
def test_valid_topic_names(topic):
    validate_topic_name(topic)


@pytest.mark.parametrize("topic", ["", "a/+", "#", "sport/tennis#", "a\0b", "é" * 32768, "\ud800"])
def test_invalid_topic_names_raise_wire_error(topic):
    with pytest.raises(WireError):
        validate_topic_name(topic)


@pytest.mark.parametrize("filter", ["#", "+", "a/#", "+/+/#", "/", "a//+", "$SYS/#", "+/tennis/#", "a" * 65535])
def test_valid_topic_filters(filter):
    validate_topic_filter(filter)


@pytest.mark.parametrize("filter", ["", "a#", "a/#/b", "#/a", "sport+", "a/b+/c", "a/\0", "é" * 32768, 7])
def test_invalid_topic_filters_raise_config_error(filter):
    with pytest.raises(ConfigError):
        validate_topic_filter(filter)


# the examples of MQTT 5, sections 4.7.1.2, 4.7.1.3 and 4.7.2
SPEC_EXAMPLES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("a/+/#", "a/$x", True),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
]


@pytest.mark.parametrize("filter, topic, expected", SPEC_EXAMPLES)
def test_topic_matches_spec_examples(filter, topic, expected):
    assert topic_matches(filter, topic) is expected
    assert topic_matches_sub(filter, topic) is expected


def _filters(max_levels):
    for n in range(1, max_levels + 1):
        for levels in itertools.product(LEVELS + ["+"], repeat=n):
            joined = "/".join(levels)
            if joined:
                yield joined
            yield joined + "/#"
    yield "#"


def test_topic_matches_agrees_with_paho_on_every_small_pair():
    topics = ["/".join(t) for n in range(1, 4) for t in itertools.product(LEVELS, repeat=n) if t != ("",)]
    results = [(topic_matches(f, t), topic_matches_sub(f, t)) for f in _filters(3) for t in topics]
    assert all(ours == paho for ours, paho in results)
    matches = sum(ours for ours, _ in results)
    assert 1000 < matches < len(results) - 1000  # both outcomes are well exercised


levels = st.sampled_from(LEVELS)
topic_names = st.lists(levels, min_size=1, max_size=5).map("/".join).filter(bool)
topic_filters = (
    st.tuples(st.lists(st.sampled_from(LEVELS + ["+"]), min_size=0, max_size=5), st.booleans())
    .map(lambda t: "/".join(t[0] + ["#"] * (t[1] or not t[0])))
    .filter(bool)
)


@settings(max_examples=400, deadline=None)
@given(filter=topic_filters, topic=topic_names)
def test_topic_matches_agrees_with_paho(filter, topic):
    validate_topic_filter(filter)
    validate_topic_name(topic)
    expected = topic_matches_sub(filter, topic)
    event(f"match={expected}")
    assert topic_matches(filter, topic) is expected
