"""systemd notifications, received on real unix datagram sockets as systemd would."""

import os
import socket
import uuid

import pytest

from fleet.edge import watchdog
from fleet.errors import ConfigError


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A datagram socket bound in tmp_path, announced in $NOTIFY_SOCKET; returns a receiver."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        yield lambda: sock.recv(4096).decode()


def test_each_helper_sends_its_assignment(systemd):
    assert watchdog.ready()
    assert watchdog.status("3 devices, broker away")
    assert watchdog.ping()
    assert watchdog.stopping()
    assert watchdog.notify("RELOADING=1\nMONOTONIC_USEC=42")
    received = [systemd() for _ in range(5)]
    assert received == [
        "READY=1",
        "STATUS=3 devices, broker away",
        "WATCHDOG=1",
        "STOPPING=1",
        "RELOADING=1\nMONOTONIC_USEC=42",
    ]


def test_abstract_socket_name(monkeypatch):
    name = f"fleet-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert watchdog.ping()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert watchdog.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert watchdog.ping() is False


def test_bad_address_and_vanished_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with pytest.raises(ConfigError, match=r"\$NOTIFY_SOCKET='vsock:2:1234' is not a unix socket path"):
        watchdog.ready()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError):
        watchdog.ready()


def test_multi_line_status_is_refused():
    with pytest.raises(ValueError, match="one line"):
        watchdog.status("a\nREADY=1")


@pytest.mark.parametrize(
    "usec, pid, expected",
    [(None, None, None), ("30000000", None, 30.0), ("1500", "self", 0.0015), ("30000000", "other", None)],
)
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            pids = {"self": os.getpid(), "other": os.getpid() + 1}
            monkeypatch.setenv(name, str(pids.get(value, value)))
    assert watchdog.watchdog_interval() == expected


@pytest.mark.parametrize("name, value", [("WATCHDOG_USEC", "30s"), ("WATCHDOG_USEC", "0"), ("WATCHDOG_PID", "-1")])
def test_malformed_watchdog_variables(monkeypatch, name, value):
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"\${name}='{value}' must be a positive integer"):
        watchdog.watchdog_interval()
