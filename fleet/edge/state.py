"""The agent's state folder (``--state-dir``): checkpoint and outbox (with the sequence numbers).

- ``checkpoint.safetensors``: the learner's state, the counters and the agent's clock, a
  :mod:`fleet.statefile` file of kind ``agent`` (data only: loading it runs no code), written
  atomically (a temporary file, fsync, ``os.replace``), so a crash leaves the previous one. It
  names its scenario and device; loading it for another one is a :class:`ConfigError` and
  changes nothing. A ``checkpoint.pt`` of an earlier version (a pickle) is never loaded;
- ``outbox.sqlite``: :class:`fleet.edge.outbox.Outbox`, messages not sent yet, and the
  :class:`~fleet.edge.outbox.Stamp` (sequence number and time) of the last message queued per
  kind, saved with that message in one transaction. So a restarted agent never reuses a number
  its receivers may have seen (they would drop the message as a duplicate), even when it resumes
  from an older checkpoint, and an agent that re-runs the ticks since its checkpoint after a crash
  reports again exactly the telemetry readings that were not queued. The ``status`` number counts
  the agent's sessions (births). A power cut (unlike a crash) may lose the last few puts,
  numbers and messages together: a number whose message was sent just before is used again;
- ``sequence.json``: where earlier versions kept the sequence numbers (and ``last_reading``, the
  time of the last telemetry), apart from the outbox: a crash between the two writes lost a
  reading. :meth:`StateDir.old_sequence` reads it, for the agent to move into the outbox and
  then delete (:meth:`StateDir.remove_old_sequence`).

A write that fails (a full disk, an I/O error, a read-only file system) raises ``OSError``
and leaves the previous file and no temporary file; temporary files that a crash left behind
(``*.tmp``) are removed when the folder is opened.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from pathlib import Path

from fleet.edge.outbox import Stamp
from fleet.errors import ConfigError
from fleet.mqtt.topics import KINDS
from fleet.statefile import StateFileError, create_new
from fleet.statefile import load as load_state
from fleet.statefile import save as save_state

log = logging.getLogger("fleet.edge")

CHECKPOINT, SEQUENCE, OUTBOX = "checkpoint.safetensors", "sequence.json", "outbox.sqlite"
OLD_CHECKPOINT = "checkpoint.pt"
"""Where earlier versions pickled the checkpoint: never loaded (a pickle can run code)."""
MAX_CHECKPOINT_BYTES = 1 << 30
"""Largest agent checkpoint read (one device's learner: a few MB)."""
TEMPORARY = ".tmp"
"""Suffix of the file that :func:`atomic_write` writes before renaming it."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` in one step: readers see the old file or the new one. The data
    reach the disk first (surviving a power cut, not only a crash)."""
    tmp = path.with_name(path.name + TEMPORARY)
    try:
        with create_new(tmp) as f:  # not through a link planted in its place
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # on a full disk, a partial file would only take more room
            tmp.unlink(missing_ok=True)
        raise


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
        self._remove_temporary()

    def _remove_temporary(self) -> None:
        """Delete the temporary files of writes that a crash interrupted (never a saved file)."""
        for tmp in self.path.glob(f"*{TEMPORARY}"):
            try:
                tmp.unlink()
                log.warning("removed %s, left by an interrupted write", tmp)
            except OSError as e:
                log.warning("could not remove %s, left by an interrupted write: %s", tmp, e.strerror)

    @property
    def outbox(self) -> Path:
        return self.path / OUTBOX

    # --- checkpoint ------------------------------------------------------------------------

    def load_checkpoint(self, scenario: dict, device: str) -> dict | None:
        """The saved checkpoint, or None if there is none; :class:`ConfigError` if it cannot be
        read or belongs to another ``scenario`` (as dumped to JSON) or ``device``."""
        path = self.path / CHECKPOINT
        if not path.exists():
            if (self.path / OLD_CHECKPOINT).exists():
                raise ConfigError(
                    f"{self.path / OLD_CHECKPOINT}: an agent checkpoint written by an earlier version of fleet, as a "
                    "pickle, which can run code when it is loaded; it was not loaded. Move it aside to start afresh"
                )
            return None
        try:
            saved = load_state(path, "agent", MAX_CHECKPOINT_BYTES)
        except StateFileError as e:
            raise ConfigError(f"{e}: not a readable agent checkpoint; move it aside to start afresh") from None
        if saved.get("device") != device:
            raise ConfigError(
                f"{path}: the checkpoint belongs to device {saved.get('device')!r}, not {device!r}; refusing to resume"
            )
        if saved.get("scenario") != scenario:
            name = saved.get("scenario", {}).get("name") if isinstance(saved.get("scenario"), dict) else None
            raise ConfigError(
                f"{path}: the checkpoint belongs to another scenario (saved: {name!r}, or the same name with other "
                "settings) "
                f"than {scenario.get('name')!r}; refusing to resume"
            )
        return saved

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (with ``scenario`` and ``device``) atomically."""
        data = io.BytesIO()
        save_state(data.write, "agent", state)
        atomic_write(self.path / CHECKPOINT, data.getvalue())

    # --- sequence numbers of earlier versions ------------------------------------------------

    def old_sequence(self) -> dict[str, Stamp]:
        """The last stamp per kind that an earlier version saved in ``sequence.json`` (the
        telemetry's with the time of the last reading), or {} when there is no such file."""
        path = self.path / SEQUENCE
        if not path.exists():
            return {}
        try:
            saved = json.loads(path.read_text())
            reading = None if saved.get("last_reading") is None else float(saved["last_reading"])
            return {k: Stamp(int(saved[k]), reading if k == "telemetry" else None) for k in KINDS if k in saved}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"{path}: cannot read the sequence numbers ({e}); move it aside to start afresh"
            ) from None

    def remove_old_sequence(self) -> None:
        """Delete ``sequence.json``, once its numbers are in the outbox."""
        (self.path / SEQUENCE).unlink(missing_ok=True)
