"""The agent's state folder: atomic writes that fail cleanly, leftovers of a crash, old sequence numbers."""

import errno
import json
import os

import pytest

from fleet.edge.outbox import Stamp
from fleet.edge.state import StateDir, atomic_write
from fleet.errors import ConfigError

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


def test_the_sequence_numbers_of_an_earlier_version_are_read_as_stamps_until_removed(tmp_path):
    state = StateDir(tmp_path)
    assert state.old_sequence() == {}  # none there
    saved = {"telemetry": 7, "status": 3, "params": 0, "last_reading": 2100.0}
    (tmp_path / "sequence.json").write_text(json.dumps(saved))
    assert state.old_sequence() == {"telemetry": Stamp(7, 2100.0), "status": Stamp(3), "params": Stamp(0)}
    state.remove_old_sequence()
    assert state.old_sequence() == {} and list(tmp_path.iterdir()) == []


def test_unreadable_sequence_numbers_of_an_earlier_version_are_a_config_error_naming_the_file(tmp_path):
    (tmp_path / "sequence.json").write_text('{"telemetry": "many"}')
    with pytest.raises(ConfigError, match=r"sequence\.json: cannot read the sequence numbers .*move it aside"):
        StateDir(tmp_path).old_sequence()
