"""Broker URLs: ``mqtt://[user[:password]@]host[:port]`` and ``mqtts://`` for MQTT over TLS.

The default ports are 1883 (``mqtt``) and 8883 (``mqtts``). User name and password are
percent-decoded (write ``%40`` for ``@``); an IPv6 host goes in brackets (``mqtt://[::1]:1883``).
A password in a URL is visible to other users of the machine (``ps``) while the command runs;
:func:`redact` replaces it by ``***`` in every error message, record (run.json) and log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from fleet.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
"""Port by scheme when the URL gives none."""
FORM = "mqtt://[user[:password]@]host[:port] or mqtts://..."


@dataclass(frozen=True)
class BrokerURL:
    """Where a broker listens and how to log in."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]{0,15}://[^/@:\s]*:)\S*@", re.IGNORECASE)
"""``scheme://user:`` then everything up to the last ``@`` of the word: the password, even one
written with a raw ``@``, ``/`` or ``:`` in it."""


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    ``fleet run --broker mqtts://bridge:s3cret@host`` -> ``fleet run --broker mqtts://bridge:***@host``;
    the user name and host stay, so the record still says where the run connected.
    """
    return _PASSWORD.sub(r"\1***@", text)


def parse_broker_url(url: str) -> BrokerURL:
    """Parse a broker URL; raise :class:`ConfigError` naming the part at fault."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"broker URL must be a non-empty string like mqtt://broker.local:1883, got {url!r}")
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"broker URL {shown!r} cannot be parsed ({exc}); write {FORM}") from None
    if parts.scheme not in DEFAULT_PORTS or not url.lower().startswith(parts.scheme + "://"):
        raise ConfigError(f"broker URL {shown!r}: scheme {parts.scheme!r} is not mqtt or mqtts; write {FORM}")
    extra = [
        f"{name} {value!r}"
        for name, value in (("path", parts.path), ("query", parts.query), ("fragment", parts.fragment))
        if value and value != "/"
    ]
    if extra:
        raise ConfigError(f"broker URL {shown!r} has a {', '.join(extra)}; write {FORM}")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, port = _host_port(hostport, shown)
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if not user:
            raise ConfigError(f"broker URL {shown!r}: the user name before '@' is empty")
        username, password = unquote(user), (unquote(secret) if colon else None)
    return BrokerURL(host, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts", username, password)


def _host_port(hostport: str, shown: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"broker URL {shown!r}: IPv6 host must be written [address] or [address]:port")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.partition(":")
        port_text = port_text if colon else None
    if not host or any(c.isspace() for c in host):
        raise ConfigError(f"broker URL {shown!r}: host {host!r} is empty or contains spaces")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ConfigError(f"broker URL {shown!r}: port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)
