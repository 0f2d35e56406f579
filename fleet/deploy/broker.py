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
"""

from __future__ import annotations

from pathlib import PurePosixPath

HEADER_ALLOWANCE = 1024
"""Bytes allowed on top of the largest payload for the rest of a PUBLISH packet: fixed header,
topic (fleet topics are at most ~150 bytes), packet id and MQTT 5 properties."""

BROKER_FILES = {"ca": "ca.crt", "cert": "server.crt", "key": "server.key", "passwd": "passwd", "acl": "acl", "data": "data"}
"""The files of the broker/ folder, by role."""


def mosquitto_conf(root: PurePosixPath, scenario_name: str, tls_port: int, password_port: int, max_payload: int) -> str:
    """The text of mosquitto.conf for broker files under ``root`` (on the broker host);
    ``max_payload`` is the scenario's ``network.broker.max_packet_bytes``."""
    path = {role: root / name for role, name in BROKER_FILES.items()}
    tls = f"cafile {path['ca']}\ncertfile {path['cert']}\nkeyfile {path['key']}\n"
    return f"""\
# mosquitto 2.0 configuration for the fleet of scenario {scenario_name}, written by `fleet deploy provision`.
# Paths point to {root}: copy the broker/ folder there, owned by the user mosquitto runs as.

per_listener_settings false
allow_anonymous false
password_file {path['passwd']}
acl_file {path['acl']}

persistence true
persistence_location {path['data']}/

# Whole MQTT packets: the scenario's largest payload ({max_payload} bytes) plus {HEADER_ALLOWANCE} for the headers.
# A client that sends a larger packet is disconnected; MQTT 5 clients learn the limit from the CONNACK.
max_packet_size {max_payload + HEADER_ALLOWANCE}

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
