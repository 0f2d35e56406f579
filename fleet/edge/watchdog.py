"""systemd notifications (``sd_notify``) without dependencies: readiness, status, watchdog.

Under a unit with ``Type=notify`` systemd passes the path of a datagram socket in
``$NOTIFY_SOCKET`` (a name starting with ``@`` is in the abstract namespace); each datagram
holds newline-separated ``KEY=value`` assignments. With ``WatchdogSec=`` it also sets
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``), and restarts the service unless it hears
``WATCHDOG=1`` within that interval. Outside systemd every function here is a no-op, so the
agent calls them unconditionally::

    ready()
    interval = watchdog_interval()
    while running:
        ...  # one control tick
        ping()  # at least every interval / 2, as systemd recommends
    stopping()

Send failures (systemd gone) raise ``OSError``; :func:`tell` sends one notification, logging such
a failure instead.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from fleet.errors import ConfigError

log = logging.getLogger("fleet.edge")


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; ``False`` when ``$NOTIFY_SOCKET`` is unset.

    :class:`ConfigError` for an address that is neither a path nor an abstract name
    (``@name``); ``OSError`` when the datagram cannot be sent.
    """
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        raise ConfigError(f"$NOTIFY_SOCKET={address!r} is not a unix socket path or an abstract name starting with '@'")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), address)
    return True


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects :func:`ping`, or ``None`` without a watchdog.

    ``None`` also when ``$WATCHDOG_PID`` names another process (the watchdog is not ours).
    :class:`ConfigError` when either variable is not a positive integer.
    """
    usec = _positive_int("WATCHDOG_USEC")
    pid = _positive_int("WATCHDOG_PID")
    if usec is None or (pid is not None and pid != os.getpid()):
        return None
    return usec / 1e6


def _positive_int(name: str) -> int | None:
    text = os.environ.get(name, "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise ConfigError(f"${name}={text!r} must be a positive integer")
    return int(text)


def ready() -> bool:
    """Tell systemd the agent has started (``READY=1``)."""
    return notify("READY=1")


def ping() -> bool:
    """Keep the watchdog from restarting the agent (``WATCHDOG=1``)."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Tell systemd the agent is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Show one line of ``text`` in ``systemctl status`` (``STATUS=...``)."""
    if "\n" in text:
        raise ValueError(f"status text must be one line, got {text!r}")
    return notify(f"STATUS={text}")


def tell(send: Callable[[], bool]) -> None:
    """Run one of the notifications above; a failure (systemd gone) is logged, never raised."""
    try:
        send()
    except OSError as e:
        log.debug("systemd notification failed: %s", e)
