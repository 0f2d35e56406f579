"""What an edge agent counts: its work, its messages and everything that went wrong.

The counters are saved in every checkpoint, so they keep counting across restarts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fleet.errors import ConfigError


@dataclass
class Counters:
    """Totals since the agent's first start."""

    ticks: int = 0
    """Control ticks: the learner acted and the HVAC level was applied."""
    updates: int = 0
    """Learner updates."""
    reward_sum: float = 0.0
    """Sum of the rewards the learner observed."""
    read_errors: int = 0
    """Driver readings that failed (the agent acted on the last good one)."""
    apply_errors: int = 0
    """HVAC levels the driver did not take."""
    sent: int = 0
    """Messages the broker took (QoS 1: acknowledged; QoS 0: written to the connection)."""
    sent_bytes: int = 0
    """Payload bytes of ``sent``."""
    refused: int = 0
    """Publishes the broker refused (a PUBACK reason code >= 128, e.g. 135 not authorized)."""
    oversize: int = 0
    """Outgoing messages dropped because they exceed the broker's (or the codec's) size limit."""
    received: int = 0
    """Messages accepted from the broker and handed to the learner (or applied as a command); the
    learner may still refuse one (``rejected``)."""
    received_bytes: int = 0
    """Payload bytes of ``received``."""
    malformed: int = 0
    """Received payloads dropped: not decodable (truncated, bad CRC or version, non-finite
    values), over the size limit, of the wrong kind or layout for their topic."""
    unexpected: int = 0
    """Received messages dropped because they come from a device that is not a neighbour
    (a topic the agent does not listen to, or a header naming another sender than the topic)."""
    duplicates: int = 0
    """QoS 1 messages received twice (dropped the second time)."""
    rejected: int = 0
    """Parameters the learner refused: not finite, too large, or of a norm much larger than the
    device's own (``learner.params.guard``), or not fit for its learner (top-k under a dense policy)."""
    failed: int = 0
    """Received messages whose handling raised an error (logged and dropped; the agent goes on)."""
    rollbacks: int = 0
    """Learner updates after which the device's parameters failed the guard's check and went back
    to those from before the update (never published or checkpointed)."""
    connects: int = 0
    """Times the connection to the broker came up."""
    forecast_updates: int = 0
    """Forecast tables taken from the forecast source (:mod:`fleet.edge.forecast`)."""
    forecast_errors: int = 0
    """Forecast tables that could not be read or decoded (the last good one was kept)."""
    forecast_fallbacks: int = 0
    """Ticks at which the learner observed persistence because the forecast source had no fresh
    table reaching every lead time."""
    write_errors: int = 0
    """Writes to the state folder that failed (a full disk, an I/O error, a read-only file system):
    checkpoints, sequence numbers, outbox. The agent kept running on what was saved before."""

    @property
    def dropped(self) -> int:
        """Received messages dropped for any reason."""
        return self.malformed + self.unexpected + self.duplicates + self.rejected + self.failed

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> Counters:
        """Counters from a checkpoint. One written by an earlier version lacks the counters added
        since: they start at 0, so that a board keeps its learner and history across an upgrade.
        A counter this version does not know (a later version's, or a forged one) or a value that
        is not a number is :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - names) if isinstance(saved, dict) else None
        if unknown is None or unknown:
            raise ConfigError(
                f"the checkpoint's counters are not those of this version of fleet: unknown {unknown or saved!r}"
            )
        for name, value in saved.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"the checkpoint's counter {name!r} is not a number: {value!r}")
        return cls(**saved)
