"""A real mosquitto broker on loopback, started and stopped by tests.

``.ci/run`` installs Debian's ``mosquitto`` package; where the binary is missing, tests that
need it are skipped with a message saying how to install it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class Broker:
    """A running mosquitto: ``port`` is its first listener; ``restart()`` keeps config and ports."""

    config: Path
    port: int
    ports: list[int] = field(default_factory=list)
    log: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        if MOSQUITTO is None:
            pytest.skip("needs the mosquitto broker: apt-get install mosquitto (.ci/run installs it)")
        self.log = self.config.with_suffix(".log")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        for port in self.ports or [self.port]:
            try:
                wait_for_port(port)
            except RuntimeError:
                self.stop()
                raise RuntimeError(f"mosquitto failed to start; its log:\n{self.log.read_text()}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()


def start_broker(folder: Path, extra: str = "", port: int | None = None, ports: list[int] | None = None) -> Broker:
    """mosquitto with an anonymous loopback listener on ``port`` (a free one by default) plus
    ``extra`` configuration lines; or, when ``extra`` declares its own listeners, pass their
    ``ports`` so start-up waits for each."""
    port = port or (ports[0] if ports else free_port())
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "mosquitto.conf"
    base = "" if ports else f"listener {port} 127.0.0.1\nallow_anonymous true\n"
    # "user root": mosquitto started as root drops to the "mosquitto" user, which cannot read
    # password, ACL or persistence files in pytest's private temporary folders (ignored when not root)
    config.write_text(f"persistence false\nlog_dest stdout\nuser root\n{base}{extra}\n")
    return Broker(config, port, list(ports or [])).start()
