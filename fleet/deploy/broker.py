"""mosquitto 2.0 configuration for a fleet's broker.

Two listeners, both TLS with the fleet's server certificate:

- **mutual TLS** (default port 8883): a client must present a certificate signed by the fleet CA
  (``require_certificate true``); its common name becomes the username
  (``use_identity_as_username true``); no password is asked;
- **password** (default port 8884): username and password from the password file, the server
  still authenticated by the CA.

On both, ``use_username_as_clientid true`` replaces whatever client id a client sends with its
authenticated username. mosquitto 2.0 cannot refuse a CONNECT whose client id differs from the
username with a password file and an ACL file (only the dynamic-security plugin can, and only for
password logins: it is not consulted for certificate identities), so the broker enforces the
equality by rewriting instead: a client can never act under, or take over the session of, a client
id other than its own username. ``allow_anonymous false`` and the ACL file deny everything else.

TLS 1.3 only by default (every suite of TLS 1.3 is AEAD with forward secrecy); ``tls12`` also
admits TLS 1.2 with the ECDHE-ECDSA AEAD suites of :data:`TLS12_CIPHERS`, for boards whose TLS
stack has no 1.3, and never a CBC or SHA-1 suite.

Bounds per client, so that no client can grow the broker without limit: packets of at most the
scenario's largest payload plus :data:`HEADER_ALLOWANCE` (``max_packet_size``; a larger one closes
the connection); :data:`MAX_INFLIGHT_MESSAGES` QoS 1 messages in flight each way, and
:data:`MAX_QUEUED_MESSAGES` or :data:`MAX_QUEUED_BYTES` of payload more queued for it, whichever
comes first (later ones are dropped), as much as the edge agent's outbox holds for the broker.
Retained messages are bounded by the ACL: one per topic a client may write (:mod:`fleet.deploy.acl`).

Persistence: the broker's state (retained messages, sessions, their subscriptions and queued
messages) lives in memory and is saved to ``data/mosquitto.db`` every ``autosave_interval``
seconds and at a clean stop; a crash (kill -9, power loss) loses what changed since the last save.
"""

from __future__ import annotations

from pathlib import PurePosixPath

HEADER_ALLOWANCE = 1024
"""Bytes allowed on top of the largest payload for the rest of a PUBLISH packet: fixed header,
topic (fleet topics are at most ~150 bytes), packet id and MQTT 5 properties."""

BROKER_FILES = {
    "ca": "ca.crt",
    "cert": "server.crt",
    "key": "server.key",
    "passwd": "passwd",
    "acl": "acl",
    "data": "data",
}
"""The files of the broker/ folder, by role."""

AUTOSAVE_INTERVAL = 60
"""Default seconds between two saves of the broker's state to disk (mosquitto's own is 1800)."""
MAX_INFLIGHT_MESSAGES = 20
"""QoS 1 messages in flight per client and direction (the Receive Maximum of the CONNACK)."""
MAX_QUEUED_MESSAGES = 1000
"""QoS 1 messages queued per client above those in flight (also while a persistent session is away)."""
MAX_QUEUED_BYTES = 8 * 2**20
"""Bytes of payload queued per client above those in flight."""
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
"""TLS 1.2 suites admitted with ``tls12``: forward secret and AEAD (the server key is EC, hence ECDSA)."""


def _tls_lines(path: dict[str, PurePosixPath], tls12: bool) -> str:
    """The TLS options of a listener: the fleet's files and the admitted protocol versions and suites."""
    versions = f"tls_version tlsv1.2\nciphers {TLS12_CIPHERS}\n" if tls12 else "tls_version tlsv1.3\n"
    return f"cafile {path['ca']}\ncertfile {path['cert']}\nkeyfile {path['key']}\n{versions}"


def mosquitto_conf(
    root: PurePosixPath,
    scenario_name: str,
    tls_port: int,
    password_port: int,
    max_payload: int,
    autosave_interval: int = AUTOSAVE_INTERVAL,
    tls12: bool = False,
) -> str:
    """The text of mosquitto.conf for broker files under ``root`` (on the broker host);
    ``max_payload`` is the scenario's ``network.broker.max_packet_bytes``; ``autosave_interval``
    in seconds; ``tls12``: also admit TLS 1.2 AEAD suites (see the module docstring)."""
    path = {role: root / name for role, name in BROKER_FILES.items()}
    tls = _tls_lines(path, tls12)
    return f"""\
# mosquitto 2.0 configuration for the fleet of scenario {scenario_name}, written by `fleet deploy provision`.
# Paths point to {root}: copy the broker/ folder there, owned by the user mosquitto runs as.

per_listener_settings false
allow_anonymous false
password_file {path["passwd"]}
acl_file {path["acl"]}

# Retained messages, sessions and queued messages are saved every {autosave_interval} s and at a clean stop;
# a crash loses what changed since the last save.
persistence true
persistence_location {path["data"]}/
autosave_interval {autosave_interval}

# Whole MQTT packets: the scenario's largest payload ({max_payload} bytes) plus {HEADER_ALLOWANCE} for the headers.
# A client that sends a larger packet is disconnected; MQTT 5 clients learn the limit from the CONNACK.
max_packet_size {max_payload + HEADER_ALLOWANCE}

# Per client: QoS 1 messages in flight, and queued above those (while it is slow or away: messages and payload
# bytes, whichever limit comes first); later ones are dropped.
max_inflight_messages {MAX_INFLIGHT_MESSAGES}
max_queued_messages {MAX_QUEUED_MESSAGES}
max_queued_bytes {MAX_QUEUED_BYTES}

# Mutual TLS: the client certificate's common name (the device name) is the username.
listener {tls_port}
{tls}require_certificate true
use_identity_as_username true
use_username_as_clientid true

# Username and password (TLS, server certificate only), for clients without a certificate.
listener {password_port}
{tls}require_certificate false
use_username_as_clientid true
"""
