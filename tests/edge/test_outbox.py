"""The outbox: order, latest-only parameters, bounds (also of the write-ahead log), persistence,
at-least-once, stamps saved with their messages, corrupt and older files."""

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from fleet.edge.outbox import MEMORY, WAL_CHECKPOINT_PAGES, WAL_MAX_BYTES, Outbox, OutboxError, Queued, Stamp
from fleet.errors import FleetError, WireError
from fleet.mqtt.topics import KINDS

TELEMETRY = "fleet/site-a/d00001/telemetry"
PARAMS = "fleet/site-a/d00001/params"
OTHER_PARAMS = "fleet/site-a/d00002/params"


@pytest.fixture
def path(tmp_path):
    return tmp_path / "outbox.db"


@pytest.fixture
def outbox(path):
    with closing(Outbox(path, max_messages=100, max_bytes=10_000)) as box:
        yield box


def contents(box: Outbox) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in box.peek(1000)]


def test_messages_come_out_in_order_with_their_fields(outbox):
    first = outbox.put(TELEMETRY, b"t1", kind="telemetry", qos=0)
    second = outbox.put(PARAMS, bytearray(b"p1"), kind="params", retain=True)
    assert second > first
    assert outbox.peek(5) == [
        Queued(first, TELEMETRY, b"t1", 0, False, "telemetry"),
        Queued(second, PARAMS, b"p1", 1, True, "params"),
    ]
    assert outbox.peek(1) == outbox.peek(5)[:1]
    assert (len(outbox), outbox.n_bytes, outbox.dropped) == (2, 4, 0)
    assert outbox.ack([first]) == 1
    assert contents(outbox) == [(PARAMS, b"p1")]


def test_params_keep_only_the_latest_per_topic(outbox):
    outbox.put(PARAMS, b"p1", kind="params")
    outbox.put(TELEMETRY, b"t1", kind="telemetry")
    outbox.put(OTHER_PARAMS, b"q1", kind="params")
    outbox.put(PARAMS, b"p2", kind="params")
    outbox.put(TELEMETRY, b"t2", kind="telemetry")
    assert contents(outbox) == [(TELEMETRY, b"t1"), (OTHER_PARAMS, b"q1"), (PARAMS, b"p2"), (TELEMETRY, b"t2")]
    assert outbox.dropped == 0  # a replaced message is not a dropped one


def test_bids_keep_only_the_latest_an_older_one_would_arrive_late(outbox):
    bid = "fleet/site-a/d00001/bid"
    outbox.put(bid, b"round 1", kind="bid")
    outbox.put(TELEMETRY, b"t1", kind="telemetry")
    outbox.put(bid, b"round 2", kind="bid")
    assert contents(outbox) == [(TELEMETRY, b"t1"), (bid, b"round 2")]


def test_full_by_count_drops_the_oldest_and_counts(path):
    with closing(Outbox(path, max_messages=3, max_bytes=10_000)) as box:
        for i in range(5):
            box.put(TELEMETRY, b"t%d" % i, kind="telemetry")
        assert [p for _, p in contents(box)] == [b"t2", b"t3", b"t4"]
        assert box.dropped == 2


def test_full_by_bytes_drops_as_many_as_needed(path):
    with closing(Outbox(path, max_messages=100, max_bytes=10)) as box:
        for payload in (b"aaa", b"bbb", b"ccc"):
            box.put(TELEMETRY, payload, kind="telemetry")
        box.put(TELEMETRY, b"dddddd", kind="telemetry")  # 15 bytes: drop aaa and bbb
        assert [p for _, p in contents(box)] == [b"ccc", b"dddddd"]
        assert (box.n_bytes, box.dropped) == (9, 2)
        with pytest.raises(ValueError, match="payload of 11 bytes never fits in an outbox of max_bytes=10"):
            box.put(TELEMETRY, b"x" * 11, kind="telemetry")


def test_params_are_dropped_only_when_nothing_else_is_left(path):
    with closing(Outbox(path, max_messages=2, max_bytes=10_000)) as box:
        box.put(PARAMS, b"p", kind="params")
        box.put(TELEMETRY, b"t1", kind="telemetry")
        box.put(TELEMETRY, b"t2", kind="telemetry")
        assert contents(box) == [(PARAMS, b"p"), (TELEMETRY, b"t2")]
        box.put(OTHER_PARAMS, b"q", kind="params")
        assert contents(box) == [(PARAMS, b"p"), (OTHER_PARAMS, b"q")]
        box.put(TELEMETRY, b"t3", kind="telemetry")  # the new telemetry itself goes
        assert contents(box) == [(PARAMS, b"p"), (OTHER_PARAMS, b"q")]
        assert box.dropped == 3  # t1, t2, t3


def test_reopening_gives_the_same_messages_in_order_and_the_count(path):
    with closing(Outbox(path, max_messages=2, max_bytes=10_000)) as box:
        for i in range(3):
            box.put(TELEMETRY, b"t%d" % i, kind="telemetry")
        before = box.peek(10)
    with closing(Outbox(path, max_messages=2, max_bytes=10_000)) as box:
        assert box.peek(10) == before
        assert box.dropped == 1
        box.ack(m.id for m in before)
        assert box.put(TELEMETRY, b"t3", kind="telemetry") > before[-1].id  # ids never reused


def test_reopening_with_smaller_bounds_trims(path):
    with closing(Outbox(path, max_messages=10, max_bytes=10_000)) as box:
        for i in range(4):
            box.put(TELEMETRY, b"t%d" % i, kind="telemetry")
    with closing(Outbox(path, max_messages=1, max_bytes=10_000)) as box:
        assert contents(box) == [(TELEMETRY, b"t3")]
        assert box.dropped == 3


def test_the_write_ahead_log_stays_bounded(path):
    wal = path.with_name(path.name + "-wal")
    frame = 24 + 4096  # a frame header and a page (SQLite's default page size)
    # a checkpoint once the log holds WAL_CHECKPOINT_PAGES pages, then it starts over: at most
    # that many pages before the last put's (a few: table, index, counters, sqlite_sequence)
    most = 32 + (WAL_CHECKPOINT_PAGES + 16) * frame
    with closing(Outbox(path, max_messages=100, max_bytes=10**7)) as box:
        sizes = []
        for i in range(500):  # about 2000 pages written: SQLite's default checkpoint (1000 pages) would pass by
            box.put(TELEMETRY, bytes([i % 256]) * 500, kind="telemetry")
            sizes.append(wal.stat().st_size)
        assert max(sizes) <= most < WAL_MAX_BYTES
        box.put(TELEMETRY, bytes(3 * WAL_MAX_BYTES // 2), kind="telemetry")  # one put larger than the bound
        assert wal.stat().st_size > WAL_MAX_BYTES
        box.put(TELEMETRY, b"t", kind="telemetry")  # the log starts over: cut back
        assert wal.stat().st_size <= WAL_MAX_BYTES


def test_a_message_stays_until_acked_even_across_a_crash(path):
    """A process puts two messages, 'sends' one without an acknowledgement and dies."""
    script = f"""
import os
from fleet.edge.outbox import Outbox
box = Outbox({str(path)!r}, max_messages=10, max_bytes=1000)
box.put({TELEMETRY!r}, b"t1", kind="telemetry")
box.put({TELEMETRY!r}, b"t2", kind="telemetry")
box.ack([box.peek(1)[0].id])  # t1 went through
box.peek(1)  # t2 is published, but the broker never answers
os._exit(0)  # no close(): the write-ahead log is left behind
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    assert path.with_name(path.name + "-wal").exists()
    with closing(Outbox(path, max_messages=10, max_bytes=1000)) as box:
        assert contents(box) == [(TELEMETRY, b"t2")]


# --- stamps ------------------------------------------------------------------------------------


def test_stamps_are_saved_with_their_messages_and_stay_when_the_messages_leave(path):
    with closing(Outbox(path, max_messages=2, max_bytes=10_000)) as box:
        assert box.stamps() == {kind: Stamp() for kind in KINDS}  # nothing stamped yet
        box.put(TELEMETRY, b"t1", kind="telemetry", stamp=Stamp(1, 0.0))
        box.put(TELEMETRY, b"t2", kind="telemetry", qos=0, stamp=Stamp(2, 300.0))
        box.put(PARAMS, b"p1", kind="params", stamp=Stamp(1, 480.0))  # full: t1 is dropped
        box.put(PARAMS, b"p2", kind="params", stamp=Stamp(2, 960.0))  # replaces p1
        box.put(TELEMETRY, b"t3", kind="telemetry")  # not stamped: the stamp stays
        box.ack(m.id for m in box.peek(10))  # all sent
        box.restamp({"status": Stamp(4, 1000.0), "telemetry": Stamp(2)})  # a new session, a new timeline
    with closing(Outbox(path, max_messages=2, max_bytes=10_000)) as box:
        assert len(box) == 0
        assert box.stamps() == {
            **{kind: Stamp() for kind in KINDS},
            "telemetry": Stamp(2),
            "params": Stamp(2, 960.0),
            "status": Stamp(4, 1000.0),
        }


def test_a_crash_inside_a_stamped_put_keeps_neither_the_message_nor_its_stamp(path):
    """A process puts a stamped message, then dies in the middle of the next put's transaction."""
    script = f"""
import os
from fleet.edge.outbox import Outbox, Stamp
box = Outbox({str(path)!r}, max_messages=10, max_bytes=1000)
box.put({TELEMETRY!r}, b"t1", kind="telemetry", stamp=Stamp(1, 0.0))
box._evict = lambda: os._exit(0)  # the message and its stamp are written, not committed
box.put({TELEMETRY!r}, b"t2", kind="telemetry", stamp=Stamp(2, 300.0))
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    with closing(Outbox(path, max_messages=10, max_bytes=1000)) as box:
        assert contents(box) == [(TELEMETRY, b"t1")]
        assert box.stamps()["telemetry"] == Stamp(1, 0.0)


def test_an_outbox_in_memory_refuses_stamps_and_keeps_unstamped_messages():
    with closing(Outbox(MEMORY, max_messages=10, max_bytes=1000)) as box:
        with pytest.raises(OutboxError, match="kept in memory, where a stamp would not survive a restart") as info:
            box.put(TELEMETRY, b"t1", kind="telemetry", stamp=Stamp(1, 0.0))
        assert info.value.storage
        with pytest.raises(OutboxError, match="kept in memory"):
            box.restamp({"status": Stamp(1)})
        box.put(TELEMETRY, b"t2", kind="telemetry")
        assert contents(box) == [(TELEMETRY, b"t2")] and box.stamps()["telemetry"] == Stamp()


def test_an_outbox_of_schema_version_1_is_upgraded_with_its_messages(path):
    with closing(Outbox(path, max_messages=10, max_bytes=1000)) as box:
        box.put(TELEMETRY, b"t1", kind="telemetry")
    with closing(sqlite3.connect(path)) as db:  # as version 1 wrote it: no stamps
        db.executescript("DROP TABLE stamps; PRAGMA user_version = 1;")
    with closing(Outbox(path, max_messages=10, max_bytes=1000)) as box:
        assert contents(box) == [(TELEMETRY, b"t1")]
        box.put(TELEMETRY, b"t2", kind="telemetry", stamp=Stamp(1, 0.0))
        assert box.stamps()["telemetry"] == Stamp(1, 0.0)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)


# --- more faults ---------------------------------------------------------------------------------


def test_acking_a_replaced_message_keeps_its_replacement(outbox):
    outbox.put(PARAMS, b"p1", kind="params")
    in_flight = outbox.peek(1)[0]
    outbox.put(PARAMS, b"p2", kind="params")  # arrives while p1 awaits its PUBACK
    assert outbox.ack([in_flight.id]) == 0
    assert contents(outbox) == [(PARAMS, b"p2")]


def test_invalid_messages_are_refused(outbox):
    with pytest.raises(ValueError, match="kind must be one of telemetry, status, .*got 'param'"):
        outbox.put(PARAMS, b"p", kind="param")
    with pytest.raises(ValueError, match="qos must be 0, 1 or 2, got 3"):
        outbox.put(PARAMS, b"p", kind="params", qos=3)
    with pytest.raises(WireError, match="wildcard"):
        outbox.put("fleet/+/d/params", b"p", kind="params")
    with pytest.raises(ValueError, match="max_messages must be >= 1, got 0"):
        Outbox(outbox.path, max_messages=0, max_bytes=10)
    with pytest.raises(ValueError, match="kinds must be among telemetry, .*got param"):
        outbox.restamp({"param": Stamp(1)})
    assert len(outbox) == 0


def test_a_file_that_is_not_a_database(path):
    path.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(OutboxError, match="file is not a database; .*move it aside") as info:
        Outbox(path, max_messages=10, max_bytes=1000)
    assert isinstance(info.value, FleetError) and info.value.path == path
    assert str(path) in str(info.value)


def test_a_damaged_database(path):
    with closing(Outbox(path, max_messages=1000, max_bytes=10**6)) as box:
        for i in range(200):
            box.put(TELEMETRY, bytes([i]) * 1000, kind="telemetry")
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data), 7 * page):  # scribble over b-tree page headers
        data[start : start + 12] = b"\xa5" * 12
    path.write_bytes(data)
    with pytest.raises(OutboxError, match=f"outbox {path}: .*move it aside"):
        Outbox(path, max_messages=1000, max_bytes=10**6)


def test_a_database_that_lost_its_free_pages(path):
    """Zeroing the header's freelist fields (offsets 32-39) leaves pages that quick_check finds unused."""
    with closing(Outbox(path, max_messages=1000, max_bytes=10**6)) as box:
        for i in range(50):
            box.put(TELEMETRY, bytes([i]) * 1000, kind="telemetry")
        box.ack(m.id for m in box.peek(40))
    data = bytearray(path.read_bytes())
    data[32:40] = bytes(8)
    path.write_bytes(data)
    unused = r"the file is corrupt \(\*\*\* in database main \*\*\* Page \d+ is never used\); move it aside"
    with pytest.raises(OutboxError, match=unused):
        Outbox(path, max_messages=1000, max_bytes=10**6)


def test_another_sqlite_database_is_not_an_outbox(path):
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(OutboxError, match="not an outbox of schema version 2 \\(user_version is 0\\)"):
        Outbox(path, max_messages=10, max_bytes=1000)


def test_a_missing_folder(tmp_path):
    with pytest.raises(OutboxError, match="missing/outbox.db: cannot open it"):
        Outbox(tmp_path / "missing" / "outbox.db", max_messages=10, max_bytes=1000)
