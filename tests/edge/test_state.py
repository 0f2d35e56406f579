"""The agent's state folder: atomic writes that fail cleanly, leftovers of a crash, sequence numbers."""

import errno
import os

import pytest

from fleet.edge.state import Sequence, StateDir, atomic_write

WRITE_ERRORS = [errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS]


def failing(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", WRITE_ERRORS, ids=errno.errorcode.get)
def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path, monkeypatch, code):
    path = tmp_path / "checkpoint.pt"
    atomic_write(path, b"good")
    monkeypatch.setattr(os, "fsync", failing(code))  # the data are written, then the disk refuses them
    with pytest.raises(OSError) as info:
        atomic_write(path, b"newer")
    assert info.value.errno == code
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_opening_the_folder_removes_what_interrupted_writes_left(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"good")
    (tmp_path / "checkpoint.pt.tmp").write_bytes(b"go")
    (tmp_path / "sequence.json.tmp").write_bytes(b"")
    StateDir(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_the_sequence_numbers_and_the_last_reading_come_back(tmp_path):
    state = StateDir(tmp_path)
    assert state.load_sequence() == Sequence()  # nothing saved yet: all 0, no reading
    sequence = Sequence()
    sequence.last["telemetry"] = 7
    sequence.last_reading = 2100.0
    state.save_sequence(sequence)
    assert state.load_sequence() == sequence
