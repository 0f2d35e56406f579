"""A bounded, persistent outbox: the messages an edge agent could not send yet.

While the broker is away the agent :meth:`~Outbox.put`\\ s its messages here; once it is back,
it sends them oldest first and deletes each only after the broker took it, so every message
is delivered at least once, even across a crash or a power cut::

    for msg in outbox.peek(50):
        if transport.publish(msg.topic, msg.payload, msg.qos, msg.retain).wait(10) != SUCCESS:
            break  # still queued: sent again later
        outbox.ack([msg.id])

Rules:

- **latest only**: a message of a kind in :data:`LATEST_ONLY_KINDS` (``"params"``, ``"bid"``)
  replaces the one queued on the same topic (and queues at the end), since only the newest
  parameters are worth sending (and an older bid would arrive late, which is no bid);
- **bounded**: at most ``max_messages`` messages and ``max_bytes`` payload bytes. When a put
  goes over, the oldest messages are dropped, all other kinds before the latest-only ones (the
  new message included, so a full queue of parameters keeps them over new telemetry), and
  :attr:`~Outbox.dropped` counts them across restarts. Reopening with smaller bounds trims;
- **persistent**: one SQLite file in WAL mode (``synchronous=NORMAL``: a crash loses no put that
  returned, a power cut may lose the last ones, never corrupt the file); reopening it gives the
  same messages in the same order. :data:`MEMORY` as ``path`` keeps them in memory instead, until
  :meth:`~Outbox.close`;
- **stamped**: a put can carry its message's :class:`Stamp` (the sequence number and time of its
  header), which becomes the last stamp of its kind in the same transaction: a crash keeps the
  message and its stamp, or neither. So a sender that numbers its messages from
  :meth:`~Outbox.stamps` never reuses a number of a message that was queued (it may have been
  sent; after a power cut, of one that the file kept), and never skips a message whose number
  it saved. Stamps stay when their messages leave
  (sent, replaced or dropped); :meth:`~Outbox.restamp` sets them without a message (a new
  session's number). An outbox in :data:`MEMORY` keeps no stamps: it refuses a stamped put (an
  :class:`OutboxError` with ``storage`` set), since a restart would forget the number;
- **bounded on disk**: the file holds at most the bounded messages, plus free pages that later
  puts reuse. The write-ahead log is folded into the file once it holds
  :data:`WAL_CHECKPOINT_PAGES` pages, and cut back to :data:`WAL_MAX_BYTES` when it starts
  over, so it grows past that only while one put is larger. Within its size the log is
  rewritten in place, which needs no new room on a full disk.

One :class:`Outbox` holds one connection, to be used by one thread at a time (not necessarily the
one that opened it). A file that is not an outbox or is corrupt raises :class:`OutboxError`
naming it; the agent can move it aside and start empty. A file of schema version 1 (before
stamps) is upgraded in place, its messages kept. A write that the disk refuses (full, I/O error,
read-only) raises an :class:`OutboxError` with ``storage`` set: the file is not at fault, and the
write may work later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import FleetError
from fleet.mqtt.topics import KINDS, validate_topic_name

LATEST_ONLY_KINDS = frozenset({"params", "bid"})
"""Kinds of which only the newest message per topic is kept."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of an outbox file (1: before stamps)."""
MEMORY = Path(":memory:")
"""The ``path`` of an outbox kept in memory."""
WAL_CHECKPOINT_PAGES = 64
"""Pages (4 KiB) in the write-ahead log that make SQLite fold it into the file (its default: 1000)."""
WAL_MAX_BYTES = 2**20
"""Size to which the write-ahead log is cut back when it starts over (SQLite's default: never)."""
_STORAGE_ERRORS = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY})
"""SQLite's primary result codes for writes that the disk refused."""

_STAMPS = """
CREATE TABLE stamps (
    kind TEXT PRIMARY KEY,  -- one of KINDS
    seq INTEGER NOT NULL,   -- the last sequence number of that kind
    t REAL                  -- the time of its message, or NULL
);
"""
"""What version 2 added to version 1."""

_SCHEMA = (
    """
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an ack cannot hit a newer message
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE INDEX messages_by_topic ON messages (topic, kind);
CREATE TABLE counters (dropped INTEGER NOT NULL);
INSERT INTO counters VALUES (0);
"""
    + _STAMPS
)


class OutboxError(FleetError):
    """The outbox file cannot be opened, is not an outbox, is corrupt, or a write could not be
    made durable (``storage``); ``path`` names it."""

    def __init__(self, path: Path, message: str, storage: bool = False) -> None:
        super().__init__(f"outbox {path}: {message}")
        self.path = path
        self.storage = storage
        """The disk refused a write (full, I/O error, read-only), or a stamp was put in an outbox
        in memory: the file is not at fault."""


@dataclass(frozen=True)
class Stamp:
    """A message's sequence number and time, as its header carries them."""

    seq: int = 0
    """0: no message of its kind was stamped yet."""
    t: float | None = None
    """The sender's clock; None: not known (or forgotten, e.g. at the start of a new timeline)."""


@dataclass(frozen=True)
class Queued:
    """One message waiting in the outbox."""

    id: int
    """position in the outbox (increasing with every put); pass it to :meth:`Outbox.ack`"""
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str
    """one of :data:`fleet.mqtt.topics.KINDS`"""


class Outbox:
    """A bounded FIFO of messages in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: str | Path, max_messages: int, max_bytes: int) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise OutboxError(self.path, f"cannot open it: {e}") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        with self._errors():
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit = {WAL_MAX_BYTES}")
            check = self._db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                problem = " ".join(check[0][0].splitlines()[:2])  # "*** in database main ***", the first fault
                raise OutboxError(self.path, f"the file is corrupt ({problem}); move it aside to start empty")
            with self._transaction():
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                tables = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                if version == 0 and tables == 0:
                    self._create(_SCHEMA)
                elif version == 1:
                    self._create(_STAMPS)
                elif version != SCHEMA_VERSION:
                    raise OutboxError(
                        self.path,
                        f"not an outbox of schema version {SCHEMA_VERSION} (user_version is {version}); "
                        "move it aside to start empty",
                    )
                self._evict()

    def _create(self, schema: str) -> None:
        """Run the statements of ``schema`` and mark the file as of :data:`SCHEMA_VERSION`."""
        for statement in schema.split(";"):
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite's database errors (corrupt file, disk full, I/O) into :class:`OutboxError`."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            code = getattr(e, "sqlite_errorcode", None) or 0  # extended: the primary code is its low byte
            if code & 0xFF in _STORAGE_ERRORS:
                raise OutboxError(
                    self.path, f"{e} ({e.sqlite_errorname}): the disk refused a write", storage=True
                ) from None
            raise OutboxError(self.path, f"{e}; if the file is damaged, move it aside to start empty") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself after e.g. a full disk
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- queue -------------------------------------------------------------------------------

    def put(
        self, topic: str, payload: bytes, *, kind: str, qos: int = 1, retain: bool = False, stamp: Stamp | None = None
    ) -> int:
        """Queue a message; returns its id. ``kind`` is one of :data:`fleet.mqtt.topics.KINDS`.
        With ``stamp``, the message and its stamp are saved in one transaction (module docstring).

        May drop older messages (or this one) to stay within the bounds, see the module's rules.
        ``ValueError`` for a payload larger than ``max_bytes``, a qos other than 0, 1, 2 or an
        unknown kind; :class:`fleet.errors.WireError` for an invalid topic name.
        """
        validate_topic_name(topic)
        payload = bytes(payload)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        if len(payload) > self.max_bytes:
            raise ValueError(f"a payload of {len(payload)} bytes never fits in an outbox of max_bytes={self.max_bytes}")
        if stamp is not None:
            self._check_durable()
        with self._errors(), self._transaction():
            if kind in LATEST_ONLY_KINDS:
                self._db.execute("DELETE FROM messages WHERE topic = ? AND kind = ?", (topic, kind))
            cursor = self._db.execute(
                "INSERT INTO messages (topic, payload, size, qos, retain, kind) VALUES (?, ?, ?, ?, ?, ?)",
                (topic, payload, len(payload), qos, bool(retain), kind),
            )
            if stamp is not None:
                self._stamp({kind: stamp})
            self._evict()
        return cursor.lastrowid

    def _evict(self) -> None:
        """Drop messages in eviction order until within the bounds (inside a transaction)."""
        count, size = self._totals()
        victims = []
        if count > self.max_messages or size > self.max_bytes:
            latest_only = ", ".join("?" * len(LATEST_ONLY_KINDS))
            order = f"SELECT id, size FROM messages ORDER BY kind IN ({latest_only}), id"
            for message_id, message_size in self._db.execute(order, sorted(LATEST_ONLY_KINDS)):
                if count <= self.max_messages and size <= self.max_bytes:
                    break
                victims.append((message_id,))
                count, size = count - 1, size - message_size
        self._db.executemany("DELETE FROM messages WHERE id = ?", victims)
        self._db.execute("UPDATE counters SET dropped = dropped + ?", (len(victims),))

    def peek(self, n: int) -> list[Queued]:
        """The ``n`` oldest messages (fewer if fewer are queued), oldest first; they stay queued."""
        with self._errors():
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, kind FROM messages ORDER BY id LIMIT ?", (n,)
            ).fetchall()
        return [Queued(i, topic, payload, qos, bool(retain), kind) for i, topic, payload, qos, retain, kind in rows]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete the messages with these ids, once sent; returns how many were still queued
        (one replaced or dropped meanwhile is not)."""
        with self._errors(), self._transaction():
            cursor = self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
        return cursor.rowcount

    # --- stamps ------------------------------------------------------------------------------

    def stamps(self) -> dict[str, Stamp]:
        """The last stamp of every kind in :data:`~fleet.mqtt.topics.KINDS` (``Stamp()`` if none yet)."""
        with self._errors():
            rows = self._db.execute("SELECT kind, seq, t FROM stamps").fetchall()
        return {**dict.fromkeys(KINDS, Stamp()), **{kind: Stamp(seq, t) for kind, seq, t in rows}}

    def restamp(self, stamps: dict[str, Stamp]) -> None:
        """Make ``stamps`` (by kind) the last ones, in one transaction."""
        if unknown := set(stamps) - set(KINDS):
            raise ValueError(f"kinds must be among {', '.join(KINDS)}, got {', '.join(sorted(unknown))}")
        self._check_durable()
        with self._errors(), self._transaction():
            self._stamp(stamps)

    def _stamp(self, stamps: dict[str, Stamp]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO stamps (kind, seq, t) VALUES (?, ?, ?)",
            [(kind, s.seq, s.t) for kind, s in stamps.items()],
        )

    def _check_durable(self) -> None:
        if self.path == MEMORY:
            raise OutboxError(self.path, "kept in memory, where a stamp would not survive a restart", storage=True)

    # --- state -------------------------------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        return count, size

    def __len__(self) -> int:
        """Number of queued messages."""
        with self._errors():
            return self._totals()[0]

    @property
    def n_bytes(self) -> int:
        """Payload bytes of the queued messages (what ``max_bytes`` bounds)."""
        with self._errors():
            return self._totals()[1]

    @property
    def dropped(self) -> int:
        """Messages dropped to stay within the bounds since the file was created."""
        with self._errors():
            return self._db.execute("SELECT dropped FROM counters").fetchone()[0]

    def close(self) -> None:
        """Close the file (SQLite folds the write-ahead log back into it)."""
        self._db.close()
