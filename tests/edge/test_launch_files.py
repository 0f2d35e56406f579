"""The agent's small input files (--env-file, --password-file) are read only if they are small
regular files: a FIFO would hang the board at start, a huge file would exhaust its memory."""

import os

import pytest

from fleet.edge.launch import MAX_SMALL_FILE_BYTES, AgentArgs, _password, read_env_file
from fleet.errors import ConfigError


def test_env_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "agent.env"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: never
    with pytest.raises(ConfigError, match=r"--env-file .*agent.env is a FIFO"):
        read_env_file(fifo)


def test_env_file_larger_than_the_limit_is_refused(tmp_path):
    big = tmp_path / "agent.env"
    big.write_text("# padding\n" * (MAX_SMALL_FILE_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match=r"--env-file .* larger than"):
        read_env_file(big)


def test_env_file_at_the_limit_is_read(tmp_path):
    line = "FLEET_DEVICE=d0\n"
    ok = tmp_path / "agent.env"
    ok.write_text("#" * (MAX_SMALL_FILE_BYTES - len(line) - 1) + "\n" + line)
    assert ok.stat().st_size == MAX_SMALL_FILE_BYTES
    assert read_env_file(ok) == {"FLEET_DEVICE": "d0"}


def test_password_file_checks(tmp_path):
    good = tmp_path / "password"
    good.write_text("s3cret\n")
    assert _password(AgentArgs(password_file=good)) == "s3cret"
    with pytest.raises(ConfigError, match=r"--password-file .* is a directory"):
        _password(AgentArgs(password_file=tmp_path))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"--password-file .*not UTF-8 text \(byte 0\)"):
        _password(AgentArgs(password_file=binary))
