"""RetainedStore: last retained payload per topic, empty payload deletes (MQTT 5, 3.3.1.3)."""

import pytest

from fleet.errors import ConfigError, WireError
from fleet.mqtt.retained import RetainedStore


@pytest.fixture
def store():
    store = RetainedStore()
    store.set("fleet/s0/d1/status", b"online")
    store.set("fleet/s0/d0/status", b"offline")
    store.set("fleet/s1/d2/params", b"\x00\x01")
    store.set("$SYS/broker/uptime", b"12")
    return store


def test_set_get_and_replace(store):
    assert len(store) == 4
    assert store.get("fleet/s0/d1/status") == b"online"
    store.set("fleet/s0/d1/status", bytearray(b"gone"))
    assert store.get("fleet/s0/d1/status") == b"gone" and len(store) == 4
    assert store.get("fleet/s9/d9/status") is None


def test_empty_payload_deletes(store):
    store.set("fleet/s0/d1/status", b"")
    assert store.get("fleet/s0/d1/status") is None and len(store) == 3
    store.set("never/set", b"")  # deleting nothing is fine
    assert len(store) == 3


def test_matching_is_sorted_and_follows_wildcard_rules(store):
    assert store.matching("fleet/+/+/status") == [("fleet/s0/d0/status", b"offline"), ("fleet/s0/d1/status", b"online")]
    assert [t for t, _ in store.matching("#")] == ["fleet/s0/d0/status", "fleet/s0/d1/status", "fleet/s1/d2/params"]
    assert store.matching("$SYS/#") == [("$SYS/broker/uptime", b"12")]
    assert store.matching("fleet/s1") == []


def test_bad_topics_and_filters(store):
    with pytest.raises(WireError):
        store.set("fleet/+/d/status", b"x")
    with pytest.raises(ConfigError):
        store.matching("fleet/#/status")
