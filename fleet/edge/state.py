"""The agent's state folder (``--state-dir``): checkpoint, message sequence numbers, outbox.

- ``checkpoint.pt``: the learner's state, the counters and the agent's clock, written
  atomically (a temporary file, fsync, ``os.replace``), so a crash leaves the previous one. It
  names its scenario and device; loading it for another one is a :class:`ConfigError` and
  changes nothing;
- ``sequence.json``: the last sequence number used per message kind, saved whenever one is
  used, so that a restarted agent never reuses a number its receivers have seen (they would
  drop the message as a duplicate), even when it resumes from an older checkpoint. The
  ``status`` number counts the agent's sessions (births);
- ``outbox.sqlite``: :class:`fleet.edge.outbox.Outbox`, messages not sent yet.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

from fleet.errors import ConfigError
from fleet.mqtt.topics import KINDS

CHECKPOINT, SEQUENCE, OUTBOX = "checkpoint.pt", "sequence.json", "outbox.sqlite"
FORMAT = 1
"""Version of the checkpoint's layout."""


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` by ``data`` in one step: readers see the old file or the new one. With
    ``sync`` the data reach the disk first (surviving a power cut, not only a crash)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class StateDir:
    """The folder ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--state-dir {self.path}: cannot create it: {e.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"--state-dir {self.path}: not writable by this user")

    @property
    def outbox(self) -> Path:
        return self.path / OUTBOX

    # --- checkpoint ------------------------------------------------------------------------

    def load_checkpoint(self, scenario: dict, device: str) -> dict | None:
        """The saved checkpoint, or None if there is none; :class:`ConfigError` if it cannot be
        read or belongs to another ``scenario`` (as dumped to JSON) or ``device``."""
        path = self.path / CHECKPOINT
        if not path.exists():
            return None
        try:
            with path.open("rb") as f:
                saved = pickle.load(f)
        except Exception as e:  # a damaged or foreign file can fail to unpickle in many ways
            raise ConfigError(f"{path}: not a readable agent checkpoint ({type(e).__name__}: {e}); move it aside to start afresh") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ConfigError(f"{path}: not an agent checkpoint of format {FORMAT}; move it aside to start afresh")
        if saved.get("device") != device:
            raise ConfigError(f"{path}: the checkpoint belongs to device {saved.get('device')!r}, not {device!r}; refusing to resume")
        if saved.get("scenario") != scenario:
            name = saved.get("scenario", {}).get("name") if isinstance(saved.get("scenario"), dict) else None
            raise ConfigError(
                f"{path}: the checkpoint belongs to another scenario (saved: {name!r}, or the same name with other settings) "
                f"than {scenario.get('name')!r}; refusing to resume"
            )
        return saved

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (with ``format``, ``scenario`` and ``device``) atomically."""
        atomic_write(self.path / CHECKPOINT, pickle.dumps({"format": FORMAT, **state}, protocol=pickle.HIGHEST_PROTOCOL))

    # --- sequence numbers ----------------------------------------------------------------------

    def load_sequence(self) -> dict[str, int]:
        """Last sequence number per kind (0 for none yet)."""
        path = self.path / SEQUENCE
        seq = dict.fromkeys(KINDS, 0)
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                seq.update({k: int(saved[k]) for k in KINDS if k in saved})
            except (OSError, ValueError, TypeError, AttributeError) as e:
                raise ConfigError(f"{path}: cannot read the sequence numbers ({e}); move it aside to start afresh") from None
        return seq

    def save_sequence(self, seq: dict[str, int]) -> None:
        """Save the numbers (often, so without fsync: a crash keeps them, a power cut may not)."""
        atomic_write(self.path / SEQUENCE, json.dumps(seq).encode(), sync=False)
