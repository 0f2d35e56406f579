"""A provisioned tiny fleet (6 devices in 2 sites, diffusion learner) and a real mosquitto running its
broker/ folder on loopback, with MQTT 5 peers that log in as its identities; shared by the deploy tests."""

import json
import os
import re
import socket
import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.deploy import provision
from fleet.scenario import parse_scenario
from tests.conftest import tiny_scenario
from tests.mosquitto import Broker, free_port

WAIT = 5.0


def tiny(learner: str = "diffusion-v1"):
    """The tiny scenario with ``learner``: diffusion reads its neighbours' params, centralized the cloud's."""
    raw = tiny_scenario()
    raw["learner"] = {"name": learner}
    return parse_scenario(raw, "tiny", Path.cwd())


def provision_tiny(out: Path, **options) -> Path:
    """``fleet deploy provision`` of the tiny scenario into ``out`` on two free loopback ports."""
    tls_port, password_port = free_port(), free_port()
    while password_port == tls_port:
        password_port = free_port()
    provision(tiny(), out, tls_port=tls_port, password_port=password_port, **options)
    return out


def start_kit_broker(kit: Path, folder: Path) -> Broker:
    """mosquitto with the kit's mosquitto.conf, its listeners bound to loopback and its persistence in ``folder``."""
    conf = (kit / "broker" / "mosquitto.conf").read_text()
    conf = re.sub(r"^listener (\d+)$", r"listener \1 127.0.0.1", conf, flags=re.M)
    # keep the kit as provisioned
    conf = re.sub(r"^persistence_location .*$", f"persistence_location {folder}/", conf, flags=re.M)
    if os.geteuid() == 0:  # mosquitto would drop to the 'mosquitto' user, which cannot read the 0600 keys
        conf += "user root\n"
    config = folder / "mosquitto.conf"
    config.write_text(conf)
    broker = json.loads((kit / "manifest.json").read_text())["broker"]
    ports = [broker["tls_port"], broker["password_port"]]
    return Broker(config, ports[0], ports).start()


@pytest.fixture(scope="package")
def kit(tmp_path_factory) -> Path:
    """``fleet deploy provision`` output of the tiny scenario, with free loopback ports; read only."""
    return provision_tiny(tmp_path_factory.mktemp("kit") / "fleet")


@pytest.fixture(scope="package")
def manifest(kit) -> dict:
    return json.loads((kit / "manifest.json").read_text())


def topic(manifest: dict, name: str, kind: str) -> str:
    """The topic of ``kind`` of device ``name`` (its site from the manifest)."""
    site = next(i["site"] for i in manifest["identities"] if i["name"] == name)
    return f"fleet/{site}/{name}/{kind}"


class Peer:
    """A paho MQTT 5 client over TLS that records its CONNACK, acks, messages and disconnection."""

    def __init__(self, client_id: str, ca, cert=None, key=None, username=None, password=None):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        if username is not None:
            self.client.username_pw_set(username, password)
        self.changed = threading.Condition()
        self.connack = self.disconnected = self.connack_props = None
        self.acks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = lambda c, u, mid, rc, props: self._record(acks={**self.acks, mid: rc.value})
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self._record(acks={**self.acks, mid: rcs[0].value})
        self.client.on_message = lambda c, u, msg: self._record(messages=self.messages + [(msg.topic, msg.payload)])

    def _on_connect(self, client, userdata, flags, rc, props):
        self._record(connack=rc.value, connack_props=props)
        if rc.is_failure:
            client.disconnect()  # no reconnection attempts

    def _on_disconnect(self, client, userdata, flags, rc, props):
        self._record(disconnected=rc.value)
        client.disconnect()  # no reconnection attempts

    def _record(self, **changes) -> None:
        with self.changed:
            self.__dict__.update(changes)
            self.changed.notify_all()

    def wait(self, predicate, what: str):
        with self.changed:
            if not self.changed.wait_for(predicate, WAIT):
                raise AssertionError(f"no {what} within {WAIT} s")
        return predicate()

    def connect(self, port: int, session_expiry: int = 0) -> "Peer":
        """Connect and wait for the CONNACK or the connection's end (a refused TLS handshake);
        ``session_expiry`` > 0: resume the session the broker kept, and keep it that long (s) after."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        try:
            self.client.connect("127.0.0.1", port, clean_start=session_expiry == 0, properties=props)
        except OSError as e:  # includes ssl.SSLError: refused during the handshake
            self.disconnected = e
            return self
        self.client.loop_start()
        self.wait(lambda: self.connack is not None or self.disconnected is not None, "CONNACK or disconnection")
        return self

    def publish(self, topic: str, payload: bytes = b"x", retain: bool = False) -> int:
        """Publish with QoS 1; the PUBACK's reason code."""
        return self.publish_all([topic], payload, retain)[0]

    def publish_all(self, topics: list[str], payload: bytes = b"x", retain: bool = False) -> list[int]:
        """Publish on each topic in turn with QoS 1, without waiting in between; the PUBACKs' reason codes."""
        mids = [self.client.publish(t, payload, qos=1, retain=retain).mid for t in topics]
        self.wait(lambda: all(mid in self.acks for mid in mids), f"PUBACKs for {len(mids)} messages")
        return [self.acks[mid] for mid in mids]

    def subscribe(self, topic: str) -> int:
        """Subscribe with QoS 1; the SUBACK's reason code (the granted QoS when accepted)."""
        mid = self.client.subscribe(topic, qos=1)[1]
        self.wait(lambda: mid in self.acks, f"SUBACK for {topic}")
        return self.acks[mid]

    def received(self, topic: str) -> list[bytes]:
        return [payload for t, payload in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect():
    """``connect(kit, name, listener="tls"|"password", client_id=None, session_expiry=0, **overrides)``
    logs an identity of ``kit`` in as a :class:`Peer`; every peer is closed after the test."""
    opened = []

    def connect(
        kit: Path, name: str, listener: str = "tls", client_id: str | None = None, session_expiry: int = 0, **overrides
    ) -> Peer:
        manifest = json.loads((kit / "manifest.json").read_text())
        folder = kit / next(i["folder"] for i in manifest["identities"] if i["name"] == name)
        if listener == "tls":
            creds = dict(cert=folder / "client.crt", key=folder / "client.key")
        else:
            creds = dict(username=name, password=(folder / "password").read_text().strip())
        peer = Peer(client_id or name, kit / "ca" / "ca.crt", **{**creds, **overrides})
        opened.append(peer)
        return peer.connect(manifest["broker"][f"{listener}_port"], session_expiry)

    yield connect
    for peer in opened:
        peer.close()


def handshake(kit: Path, port: int, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> str:
    """TLS handshake with the broker on ``port`` as device d00000, offering at most TLS ``maximum``
    and, for TLS 1.2, only ``ciphers`` (OpenSSL names); the negotiated version, or ssl.SSLError."""
    context = ssl.create_default_context(cafile=kit / "ca" / "ca.crt")
    context.load_cert_chain(kit / "devices" / "d00000" / "client.crt", kit / "devices" / "d00000" / "client.key")
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()
