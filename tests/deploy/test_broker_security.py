"""The provisioned broker configuration, enforced by a real mosquitto: who may connect, publish and read.

Reason codes are those mosquitto 2.0.11 sends to MQTT 5 clients: a refused login gets CONNACK 135
(not authorized, also for a wrong password), a denied publish PUBACK 135, an allowed one with no
subscriber PUBACK 16. Subscriptions are granted (SUBACK QoS 1) whatever the topic; the ACL filters
each message at delivery. To show that a message is *not* delivered without waiting for a timeout,
the same publisher sends a deliverable message after it: once that one has arrived, the other
would have arrived before it.
"""

import datetime as dt
import os
import re
import threading

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from fleet.deploy.pki import issue, make_ca
from tests.mosquitto import Broker

pytestmark = pytest.mark.mqtt

NOT_AUTHORIZED, NO_MATCHING_SUBSCRIBERS = 135, 16
WAIT = 5.0


@pytest.fixture(scope="module")
def broker(kit, manifest, tmp_path_factory):
    """mosquitto with the generated mosquitto.conf, its listeners bound to loopback."""
    conf = (kit / "broker" / "mosquitto.conf").read_text()
    folder = tmp_path_factory.mktemp("broker")
    conf = re.sub(r"^listener (\d+)$", r"listener \1 127.0.0.1", conf, flags=re.M)
    conf = re.sub(r"^persistence_location .*$", f"persistence_location {folder}/", conf, flags=re.M)  # keep the kit as provisioned
    if os.geteuid() == 0:  # mosquitto would drop to the 'mosquitto' user, which cannot read the 0600 keys
        conf += "user root\n"
    config = folder / "mosquitto.conf"
    config.write_text(conf)
    ports = [manifest["broker"]["tls_port"], manifest["broker"]["password_port"]]
    b = Broker(config, ports[0], ports).start()
    yield b
    b.stop()


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

    def connect(self, port: int) -> "Peer":
        """Connect and wait for the CONNACK or the connection's end (a refused TLS handshake)."""
        try:
            self.client.connect("127.0.0.1", port)
        except OSError as e:  # includes ssl.SSLError: refused during the handshake
            self.disconnected = e
            return self
        self.client.loop_start()
        self.wait(lambda: self.connack is not None or self.disconnected is not None, "CONNACK or disconnection")
        return self

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        """Publish with QoS 1; the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        self.wait(lambda: mid in self.acks, f"PUBACK for {topic}")
        return self.acks[mid]

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
def peers(kit, manifest, broker):
    """``peers(name, listener="tls"|"password", client_id=None, **overrides)`` connects an identity."""
    folders = {i["name"]: kit / i["folder"] for i in manifest["identities"]}
    ports = {"tls": manifest["broker"]["tls_port"], "password": manifest["broker"]["password_port"]}
    opened = []

    def connect(name: str, listener: str = "tls", client_id: str | None = None, **overrides) -> Peer:
        folder = folders[name]
        if listener == "tls":
            creds = dict(cert=folder / "client.crt", key=folder / "client.key")
        else:
            creds = dict(username=name, password=(folder / "password").read_text().strip())
        peer = Peer(client_id or name, kit / "ca" / "ca.crt", **{**creds, **overrides})
        opened.append(peer)
        return peer.connect(ports[listener])

    yield connect
    for peer in opened:
        peer.close()


def topic(manifest, name: str, kind: str) -> str:
    site = next(i["site"] for i in manifest["identities"] if i["name"] == name)
    return f"fleet/{site}/{name}/{kind}"


def neighbours(manifest, name: str) -> tuple[list[str], list[str]]:
    """(neighbours, other devices) of device ``name``, from the params topics it may read."""
    ident = next(i for i in manifest["identities"] if i["name"] == name)
    nbrs = [t.split("/")[2] for t in ident["read"] if t.endswith("/params")]
    others = [i["name"] for i in manifest["identities"] if i["role"] == "device" and i["name"] not in nbrs + [name]]
    return nbrs, others


# --- connecting ----------------------------------------------------------------------------------


def test_device_certificate_connects_over_mutual_tls(peers, manifest):
    peer = peers("d00000")
    assert peer.connack == 0
    assert peer.connack_props.MaximumPacketSize == manifest["broker"]["max_packet_size"]


def test_password_login_works_and_wrong_or_missing_credentials_get_connack_135(peers):
    assert peers("d00001", "password").connack == 0
    assert peers("d00001", "password", password="wrong-password").connack == NOT_AUTHORIZED
    assert peers("d00001", "password", username="d00001", password="").connack == NOT_AUTHORIZED
    anonymous = peers("d00001", "password", username=None, password=None)
    assert anonymous.connack == NOT_AUTHORIZED


def test_tls_listener_refuses_no_certificate_and_a_certificate_of_another_ca(peers, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    rogue = issue(make_ca("rogue", now), "d00000", now, 1)
    (tmp_path / "rogue.crt").write_bytes(rogue.cert_pem)
    (tmp_path / "rogue.key").write_bytes(rogue.key_pem)
    for peer in (peers("d00000", cert=None, key=None), peers("d00000", cert=tmp_path / "rogue.crt", key=tmp_path / "rogue.key")):
        if peer.connack is None:  # TLS 1.3: the server's alert comes after the client's handshake
            peer.wait(lambda: peer.disconnected is not None, "disconnection")
        assert peer.connack is None and peer.disconnected is not None


# --- publishing and reading ------------------------------------------------------------------------


def test_publishing_on_another_devices_topic_gets_puback_135(peers, manifest):
    d0 = peers("d00000")
    assert d0.publish(topic(manifest, "d00001", "telemetry")) == NOT_AUTHORIZED
    assert d0.publish(topic(manifest, "d00001", "cmd")) == NOT_AUTHORIZED
    assert d0.publish("fleet/cloud/collector/params") == NOT_AUTHORIZED
    assert d0.publish(topic(manifest, "d00000", "telemetry")) == NO_MATCHING_SUBSCRIBERS


def test_another_devices_cmd_delivers_nothing_while_its_own_arrives(peers, manifest):
    d0, collector = peers("d00000"), peers("collector")
    for t in (topic(manifest, "d00001", "cmd"), topic(manifest, "d00000", "cmd")):
        assert d0.subscribe(t) == 1  # granted: mosquitto filters at delivery, not at subscription
    assert d0.subscribe("fleet/#") == 1
    collector.publish(topic(manifest, "d00001", "cmd"), b"not for d00000")
    collector.publish(topic(manifest, "d00000", "cmd"), b"for d00000")
    d0.wait(lambda: d0.received(topic(manifest, "d00000", "cmd")), "own cmd")
    assert {t for t, _ in d0.messages} == {topic(manifest, "d00000", "cmd")}


def test_neighbours_params_are_readable_and_other_devices_params_are_not(peers, manifest):
    nbrs, others = neighbours(manifest, "d00000")
    assert nbrs and others
    d0 = peers("d00000")
    for name in nbrs + others:
        d0.subscribe(topic(manifest, name, "params"))
    for name in others + nbrs:  # the others first: routed (PUBACK) before the neighbours publish
        assert peers(name).publish(topic(manifest, name, "params"), name.encode()) in (0, NO_MATCHING_SUBSCRIBERS)
    d0.wait(lambda: all(d0.received(topic(manifest, n, "params")) for n in nbrs), "neighbours' params")
    assert {t for t, _ in d0.messages} == {topic(manifest, n, "params") for n in nbrs}


# --- client ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["tls", "password"])
def test_spoofed_client_id_is_replaced_by_the_username_and_takes_nothing_over(peers, manifest, listener):
    """mosquitto 2.0 cannot refuse it with a password and ACL file; use_username_as_clientid makes the
    broker use the authenticated username as client id, so the victim's session is untouched."""
    victim, collector = peers("d00000"), peers("collector")
    victim.subscribe(topic(manifest, "d00000", "cmd"))
    spoofer = peers("d00002", listener, client_id="d00000")
    assert spoofer.connack == 0
    assert spoofer.publish(topic(manifest, "d00000", "status")) == NOT_AUTHORIZED
    spoofer.subscribe(topic(manifest, "d00000", "cmd"))
    collector.publish(topic(manifest, "d00000", "cmd"), b"still yours")
    victim.wait(lambda: victim.received(topic(manifest, "d00000", "cmd")), "cmd to the victim")
    assert victim.disconnected is None and victim.client.is_connected()
    assert spoofer.messages == []


# --- packet size -------------------------------------------------------------------------------------


def test_largest_scenario_payload_passes_and_a_larger_packet_disconnects(peers, manifest, kit):
    max_payload = yaml.safe_load((kit / "scenario.yaml").read_text())["network"]["broker"]["max_packet_bytes"]
    d0 = peers("d00000")
    assert d0.publish(topic(manifest, "d00000", "telemetry"), bytes(max_payload)) == NO_MATCHING_SUBSCRIBERS
    d0.client.publish(topic(manifest, "d00000", "telemetry"), bytes(manifest["broker"]["max_packet_size"]), qos=1)
    d0.wait(lambda: d0.disconnected is not None, "disconnection after an oversized packet")
