"""Retained messages: the last payload published with the retain flag, per topic.

A new subscriber receives the retained message of every topic its filter matches. Publishing
an empty retained payload deletes the topic's retained message (MQTT 5, 3.3.1.3).
"""

from __future__ import annotations

import numpy as np

from fleet.errors import WireError
from fleet.mqtt.topics import topic_matches, validate_topic_filter, validate_topic_name
from fleet.statefile import StateMismatch, array, entry, expect_keys, within


class RetainedStore:
    """Retained payloads by topic name."""

    def __init__(self) -> None:
        self._payloads: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._payloads)

    def set(self, topic: str, payload: bytes) -> None:
        """Retain ``payload`` for ``topic``; an empty payload deletes what was retained."""
        if topic not in self._payloads:  # a retained topic was checked when it was first set
            validate_topic_name(topic)
        if payload:
            self._payloads[topic] = bytes(payload)
        else:
            self._payloads.pop(topic, None)

    def get(self, topic: str) -> bytes | None:
        """The payload retained for ``topic``, or None."""
        return self._payloads.get(topic)

    def matching(self, filter: str) -> list[tuple[str, bytes]]:
        """``(topic, payload)`` for every retained topic ``filter`` matches, sorted by topic.
        A filter without wildcards is one dictionary lookup; only wildcard filters scan."""
        validate_topic_filter(filter)
        if "+" not in filter and "#" not in filter:
            payload = self._payloads.get(filter)
            return [] if payload is None else [(filter, payload)]
        return sorted((t, p) for t, p in self._payloads.items() if topic_matches(filter, t))

    def state_dict(self) -> dict:
        """``payloads``: topic -> payload (L,) uint8, in the order they were first retained."""
        return {"payloads": {topic: np.frombuffer(payload, np.uint8) for topic, payload in self._payloads.items()}}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("payloads",))
        payloads = {}
        for topic, payload in entry(state, "payloads", dict).items():
            with within(f"payloads.{topic}"):
                try:
                    validate_topic_name(topic)
                except WireError as e:
                    raise StateMismatch("", str(e)) from None
                payloads[topic] = array(payload, dtype=np.uint8, shape=(None,)).tobytes()
                if not payloads[topic]:
                    raise StateMismatch("", "an empty payload is never retained")
        self._payloads = payloads
