"""Transports: one contract on the in-process broker and on a real mosquitto, then stories told on
both where both have the feature (outage, persistent session, packet size, ACL) and on mosquitto
alone for what only a network has (a broker away at boot, credentials, TLS, acknowledgements
that do not come). Reason codes are what mosquitto 2.0.11 sends to MQTT v5 clients."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fleet.deploy.pki import issue, make_ca
from fleet.errors import ConfigError, TransportError
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.mqtt.paho_transport import PahoTransport, TLSFiles
from fleet.mqtt.transport import (
    MQTT_MAX_PACKET_SIZE,
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    SUCCESS,
    Received,
    Will,
    accepted,
)
from fleet.mqtt.url import BrokerURL, parse_broker_url
from fleet.testing import check_transport_contract
from tests.mosquitto import Broker, free_port, start_broker
from tests.waiting import wait_for

FAST = {"keepalive": 5, "reconnect_delay": (0.05, 0.2)}
"""Short keepalive and backoff so that reconnections happen within a test."""


def receive(transport, n: int) -> list[Received]:
    """The next ``n`` messages of ``transport``, waiting up to 5 s for them."""
    got: list[Received] = []

    def enough() -> bool:
        got.extend(transport.drain())
        return len(got) >= n

    wait_for(enough, f"{transport.client_id} receives {n} messages")
    return got


class World:
    """One broker, in memory or a mosquitto (with persistence, so a restart keeps sessions as the
    memory broker does), and the same handles on both: ``connected(...)``, ``stop()``, ``start()``."""

    def __init__(self, kind: str, folder: Path, max_packet_size: int = MQTT_MAX_PACKET_SIZE) -> None:
        self.kind, self.clients = kind, []
        if kind == "memory":
            self.memory = MemoryBroker(max_packet_size)
        else:
            extra = f"persistence true\npersistence_location {folder}/\n"
            if max_packet_size < MQTT_MAX_PACKET_SIZE:
                extra += f"max_packet_size {max_packet_size}\n"
            self.mosquitto = start_broker(folder, extra)

    def connected(self, client_id: str, **options):
        if self.kind == "memory":
            client = MemoryTransport(self.memory, client_id, **options)
        else:
            client = PahoTransport(client_id, self.mosquitto.url, **FAST, **options)
        self.clients.append(client)
        assert client.connect(timeout=5)
        return client

    def stop(self) -> None:
        (self.memory if self.kind == "memory" else self.mosquitto).stop()

    def start(self) -> None:
        (self.memory if self.kind == "memory" else self.mosquitto).start()

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self.kind == "mosquitto":
            self.mosquitto.stop()


@pytest.fixture(params=["memory", pytest.param("mosquitto", marks=pytest.mark.mqtt)])
def world(request, tmp_path):
    """``world(max_packet_size=...)`` makes the broker of this parameter."""
    worlds = []

    def make(**options) -> World:
        worlds.append(World(request.param, tmp_path / f"broker{len(worlds)}", **options))
        return worlds[-1]

    yield make
    for w in worlds:
        w.close()


# ---------------------------------------------------------------- the contract


def test_memory_transport_keeps_the_contract():
    broker = MemoryBroker()
    check_transport_contract(
        lambda cid, will=None: MemoryTransport(broker, cid, will=will), lambda t: broker.drop(t.client_id)
    )


@pytest.mark.mqtt
def test_paho_transport_keeps_the_contract(mosquitto):
    check_transport_contract(
        lambda cid, will=None: PahoTransport(cid, mosquitto.url, will=will, **FAST), PahoTransport.abort
    )


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local", BrokerURL("broker.local", 1883, False)),
        ("mqtts://broker.local", BrokerURL("broker.local", 8883, True)),
        ("MQTT://10.0.0.2:1884/", BrokerURL("10.0.0.2", 1884, False)),
        ("mqtts://dev-7:s%40cret@broker.local:8884", BrokerURL("broker.local", 8884, True, "dev-7", "s@cret")),
        ("mqtt://dev-7@[::1]", BrokerURL("::1", 1883, False, "dev-7")),
    ],
)
def test_broker_url_parses(url, expected):
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("http://broker.local", "scheme 'http'"),
        ("broker.local:1883", "scheme 'broker.local'"),
        ("mqtt:broker.local", "scheme 'mqtt'"),
        ("mqtt://broker.local:88a3", "port '88a3'"),
        ("mqtt://broker.local:0", "port '0'"),
        ("mqtt://broker.local:65536", "port '65536'"),
        ("mqtt://broker.local:", "port ''"),
        ("mqtt://", "host ''"),
        ("mqtt://[::1", "cannot be parsed"),
        ("mqtt://broker.local/fleet", "path '/fleet'"),
        ("mqtt://broker.local?x=1", "query 'x=1'"),
        ("mqtt://:hunter2@broker.local", "user name"),
        ("", "non-empty"),
    ],
)
def test_broker_url_errors_name_the_part(url, fault):
    with pytest.raises(ConfigError, match=fault.replace("?", r"\?").replace("[", r"\[")):
        parse_broker_url(url)


def test_broker_url_errors_hide_the_password():
    with pytest.raises(ConfigError) as error:
        parse_broker_url("mqtt://dev-7:hunter2@broker.local:x")
    assert "hunter2" not in str(error.value) and "dev-7:***@" in str(error.value)


@pytest.mark.parametrize(
    ("options", "fault"),
    [
        ({"keepalive": 70000}, "keepalive"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"session_expiry": -1}, "session_expiry"),
        ({"reconnect_delay": (5.0, 1.0)}, "reconnect_delay"),
        ({"username": "other"}, "both in the broker URL"),
        ({"tls": TLSFiles()}, "not mqtts"),
    ],
)
def test_paho_options_are_checked(options, fault):
    with pytest.raises(ConfigError, match=fault):
        PahoTransport("d1", "mqtt://dev:pw@127.0.0.1", **options)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """PEM files: a CA, a server certificate for 127.0.0.1 and its key, and an unrelated key."""
    folder, now = tmp_path_factory.mktemp("pki"), dt.datetime.now(dt.UTC)
    ca = make_ca("test", now)
    server, stranger = issue(ca, "broker", now, 30, hosts=("127.0.0.1",)), issue(ca, "stranger", now, 30)
    files = {
        "ca": ca.cert_pem,
        "server.crt": server.cert_pem,
        "server.key": server.key_pem,
        "stranger.key": stranger.key_pem,
    }
    for name, pem in files.items():
        (folder / name).write_bytes(pem)
    return {name: folder / name for name in files}


def test_tls_files_are_checked(pki, tmp_path):
    with pytest.raises(ConfigError, match="TLS CA file '.*missing.pem' cannot be read"):
        TLSFiles(ca_file=tmp_path / "missing.pem").context()
    with pytest.raises(ConfigError, match="TLS CA file .* holds no PEM certificate"):
        TLSFiles(ca_file=pki["stranger.key"]).context()
    with pytest.raises(
        ConfigError, match="server.crt' and key '.*stranger.key' are not a PEM certificate with its own private key"
    ):
        TLSFiles(cert_file=pki["server.crt"], key_file=pki["stranger.key"]).context()
    assert TLSFiles(ca_file=pki["ca"], cert_file=pki["server.crt"], key_file=pki["server.key"]).context().check_hostname


@pytest.mark.mqtt
def test_tls_round_trip(pki, tmp_path):
    port = free_port()
    listener = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\ncertfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
    )
    broker = start_broker(tmp_path, listener, ports=[port])
    try:
        device = PahoTransport("tls-device", f"mqtts://127.0.0.1:{port}", tls=TLSFiles(ca_file=pki["ca"]), **FAST)
        assert device.connect(timeout=5)
        assert device.subscribe("fleet/s/d/cmd").wait(5) == 1
        assert device.publish("fleet/s/d/cmd", b"over TLS").wait(5) == SUCCESS
        assert [m.payload for m in receive(device, 1)] == [b"over TLS"]
        device.close()
    finally:
        broker.stop()


# ---------------------------------------------------------------- stories on both brokers


def test_outage_publish_refused_then_reconnect_and_resubscribe(world):
    w = world()
    sub, pub = w.connected("sub"), w.connected("pub")
    assert sub.subscribe("fleet/s/+/params").wait(5) == 1
    assert pub.publish("fleet/s/d1/params", b"before").wait(5) == SUCCESS
    w.stop()
    wait_for(lambda: not sub.connected and not pub.connected, "both clients see the broker go")
    with pytest.raises(TransportError, match="not connected"):
        pub.publish("fleet/s/d1/params", b"during")  # refused, not reported as delivered
    assert sub.subscribe("fleet/s/+/status").wait(0) is None  # sent when the connection is back
    w.start()
    wait_for(lambda: sub.connected and pub.connected, "both clients reconnect by themselves")
    assert pub.publish("fleet/s/d1/params", b"after").wait(5) == SUCCESS
    assert pub.publish("fleet/s/d1/status", b"new filter").wait(5) == SUCCESS
    assert [m.payload for m in receive(sub, 3)] == [b"before", b"after", b"new filter"]


def test_persistent_session_gets_qos1_sent_while_away_across_a_restart(world):
    w = world()
    away = w.connected("away", session_expiry=60)
    gone = w.connected("gone")  # session_expiry 0: nothing kept
    for client in (away, gone):
        assert client.subscribe("fleet/s/+/params").wait(5) == 1
        client.close()
    pub = w.connected("pub")
    sent = [pub.publish("fleet/s/d1/params", bytes([i]), qos=1) for i in range(3)]
    pub.publish("fleet/s/d1/params", b"qos 0 is not queued", qos=0)
    assert [d.wait(5) for d in sent] == [SUCCESS] * 3
    w.stop()  # mosquitto saves the session to its persistence file and loads it back
    w.start()
    back = w.connected("away", session_expiry=60)  # a new process: it never subscribes itself
    assert [(m.topic, m.payload, m.qos) for m in receive(back, 3)] == [
        ("fleet/s/d1/params", bytes([i]), 1) for i in range(3)
    ]
    wait_for(lambda: pub.connected, "publisher back")
    assert pub.publish("fleet/s/d1/params", b"live").wait(5) == SUCCESS
    assert [m.payload for m in receive(back, 1)] == [b"live"]
    fresh = w.connected("gone")
    assert fresh.subscribe("fleet/s/+/cmd").wait(5) == 1
    assert pub.publish("fleet/s/d1/cmd", b"marker").wait(5) == SUCCESS
    assert [m.payload for m in receive(fresh, 1)] == [b"marker"], "a clean session starts with no queued message"


def test_memory_session_expires():
    broker = MemoryBroker()
    away, pub = MemoryTransport(broker, "away", session_expiry=1), MemoryTransport(broker, "pub")
    assert away.connect(0) and pub.connect(0) and away.subscribe("fleet/s/+/params").wait(0) == 1
    away.close()
    assert pub.publish("fleet/s/d1/params", b"kept for 1 s").wait(0) == SUCCESS
    time.sleep(1.1)
    assert pub.publish("fleet/s/d1/params", b"too late").wait(0) == NO_MATCHING_SUBSCRIBERS
    back = MemoryTransport(broker, "away", session_expiry=1)
    assert back.connect(0) and back.drain() == [], "an expired session keeps nothing"


def test_overlapping_subscriptions_give_one_copy_each(world):
    client = world().connected("overlap")
    assert client.subscribe("fleet/s/+/params", 1).wait(5) == 1 and client.subscribe("fleet/#", 0).wait(5) == 0
    assert client.publish("fleet/s/d1/params", b"twice").wait(5) == SUCCESS
    assert sorted((m.payload, m.qos) for m in receive(client, 2)) == [(b"twice", 0), (b"twice", 1)]


def test_max_packet_size_is_enforced_before_sending(world):
    w = world(max_packet_size=2048)
    client = w.connected("big")
    assert client.max_payload == 2048 - 10 - 128
    assert client.subscribe("fleet/s/big/#").wait(5) == 1
    long_topic = "fleet/s/big/" + "x" * 288  # 300 bytes: longer than the 128 that max_payload leaves room for
    assert client.publish("fleet/s/big/params", bytes(client.max_payload)).wait(5) == SUCCESS
    assert client.publish(long_topic, bytes(2048 - 10 - 300)).wait(5) == SUCCESS
    for topic, size in (("fleet/s/big/params", client.max_payload + 1), (long_topic, 2048 - 10 - 300 + 1)):
        with pytest.raises(TransportError, match="maximum packet size of 2048 bytes"):
            client.publish(topic, bytes(size))
    assert client.connected and [len(m.payload) for m in receive(client, 2)] == [1910, 1738]


def test_memory_takeover_ends_the_older_connection():
    """mosquitto 2.0.11 just closes the older connection, and paho reconnects it (see PahoTransport);
    the memory broker ends it for good with a message that names the mistake."""
    broker = MemoryBroker()
    watcher, second = MemoryTransport(broker, "watcher"), MemoryTransport(broker, "twin")
    first = MemoryTransport(broker, "twin", will=Will("fleet/s/twin/status", b"first is gone", retain=False))
    assert watcher.connect(0) and watcher.subscribe("fleet/s/twin/status").wait(0) == 1
    assert first.connect(0) and second.connect(0) and not first.connected
    assert [m.payload for m in watcher.drain()] == [b"first is gone"], (
        "a takeover publishes the older connection's will"
    )
    with pytest.raises(TransportError, match="lost its session to another connection with the same client id"):
        first.publish("fleet/s/twin/status", b"x")


# ---------------------------------------------------------------- ACL and credentials


def _acl_story(device, other) -> None:
    """``device`` may write under fleet/s/device-1/ and read params; ``other`` reads everything."""
    assert other.subscribe("fleet/#").wait(5) == 1
    assert device.subscribe("fleet/s/device-2/#").wait(5) == 1, (
        "mosquitto grants every subscription; the ACL filters delivery"
    )
    assert device.publish("fleet/s/device-1/telemetry", b"mine").wait(5) == SUCCESS
    assert device.publish("fleet/s/device-2/cmd", b"not mine").wait(5) == NOT_AUTHORIZED
    assert device.publish("fleet/s/device-2/cmd", b"qos 0 dropped silently", qos=0).wait(5) == SUCCESS
    assert other.publish("fleet/s/device-2/cmd", b"unreadable for device").wait(5) == SUCCESS
    assert other.publish("fleet/s/device-2/params", b"readable").wait(5) == SUCCESS
    assert device.connected, "a refused publish keeps the connection"
    assert [m.payload for m in receive(other, 3)] == [b"mine", b"unreadable for device", b"readable"]
    assert [m.payload for m in receive(device, 1)] == [b"readable"]
    assert device.drain() == []


def test_memory_acl_refuses_with_135():
    def acl(client_id: str, topic: str, access: str) -> bool:
        return (
            client_id == "other"
            or topic.startswith(f"fleet/s/{client_id}/")
            or (access == "read" and topic.endswith("/params"))
        )

    broker = MemoryBroker(acl=acl)
    device, other = MemoryTransport(broker, "device-1"), MemoryTransport(broker, "other")
    assert device.connect(0) and other.connect(0)
    _acl_story(device, other)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """mosquitto with a password file (device-1/secret, other/pass) and an ACL."""
    folder = tmp_path_factory.mktemp("secured")
    passwords, acl = folder / "passwords", folder / "acl"
    for i, (user, password) in enumerate((("device-1", "secret"), ("other", "pass"))):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwords), user, password], check=True
        )
    acl.write_text(
        "user device-1\ntopic write fleet/s/device-1/#\ntopic read fleet/+/+/params\n\nuser other\ntopic readwrite "
        "fleet/#\n"
    )
    broker = start_broker(folder, f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n")
    yield broker
    broker.stop()


@pytest.mark.mqtt
def test_mosquitto_acl_refuses_with_135(secured):
    url = f"mqtt://127.0.0.1:{secured.port}"
    device = PahoTransport("device-1", url, username="device-1", password="secret", **FAST)
    other = PahoTransport("other", url.replace("//", "//other:pass@"), **FAST)
    try:
        assert device.connect(5) and other.connect(5)
        _acl_story(device, other)
    finally:
        device.close()
        other.close()


@pytest.mark.mqtt
@pytest.mark.parametrize("login", ["device-1:wrong@", "nobody:secret@", ""])
def test_refused_credentials_raise_and_stop_retrying(secured, login):
    client = PahoTransport("device-1", f"mqtt://{login}127.0.0.1:{secured.port}", **FAST)
    with pytest.raises(
        TransportError,
        match=r"client 'device-1' of 127.0.0.1:\d+ was refused: CONNACK reason code 135 \(Not authorized\)",
    ):
        client.connect(timeout=5)
    network_threads = lambda: [t for t in threading.enumerate() if t.name == "paho-mqtt-client-device-1"]  # noqa: E731
    wait_for(
        lambda: not network_threads(), "after a refusal that retrying cannot fix, paho's thread stops reconnecting"
    )
    with pytest.raises(TransportError, match="135"):
        client.publish("fleet/s/device-1/telemetry", b"x")
    client.close()


# ---------------------------------------------------------------- what only a network does


@pytest.mark.mqtt
def test_broker_away_at_boot_then_connects_by_itself(tmp_path):
    port = free_port()
    client = PahoTransport("early", f"mqtt://127.0.0.1:{port}", **FAST)
    broker: Broker | None = None
    try:
        assert client.connect(timeout=0.3) is False
        with pytest.raises(TransportError, match="not connected"):
            client.publish("fleet/s/early/status", b"x")
        broker = start_broker(tmp_path, port=port)
        wait_for(lambda: client.connected, "the client connects once the broker is up")
        assert accepted(client.publish("fleet/s/early/status", b"up").wait(5))
    finally:
        client.close()
        if broker is not None:
            broker.stop()


def test_memory_broker_away_at_boot_then_connects_by_itself():
    broker = MemoryBroker()
    broker.stop()
    client = MemoryTransport(broker, "early")
    assert client.connect(timeout=0.05) is False
    with pytest.raises(TransportError, match="not connected"):
        client.publish("fleet/s/early/status", b"x")
    broker.start()
    assert client.connected and client.publish("fleet/s/early/status", b"up").wait(0) == NO_MATCHING_SUBSCRIBERS


@contextlib.contextmanager
def frozen(broker: Broker):
    """The broker process stopped (SIGSTOP): connections stay open, nothing is acknowledged."""
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        if broker.proc is not None:
            broker.proc.send_signal(signal.SIGCONT)


@pytest.mark.mqtt
@pytest.mark.parametrize(("max_inflight", "bound"), [(5, 5), (100, 20)], ids=["own-limit", "broker-receive-maximum"])
def test_inflight_qos1_never_exceeds_its_bound(mosquitto, max_inflight, bound):
    client = PahoTransport("burst", mosquitto.url, max_inflight=max_inflight, **FAST)
    assert client.connect(5)
    with frozen(mosquitto):
        sent = [client.publish("fleet/s/burst/telemetry", bytes([i])) for i in range(bound)]
        with pytest.raises(TransportError, match=f"{bound} QoS 1 messages awaiting their PUBACK"):
            client.publish("fleet/s/burst/telemetry", b"one too many")
        client.publish("fleet/s/burst/telemetry", b"QoS 0 has no bound", qos=0)
        assert all(d.wait(0) is None for d in sent)
    assert all(d.wait(5) == NO_MATCHING_SUBSCRIBERS for d in sent)
    assert client.publish("fleet/s/burst/telemetry", b"room again").wait(5) == NO_MATCHING_SUBSCRIBERS
    client.close()


@pytest.mark.mqtt
def test_unacknowledged_qos1_is_not_reported_delivered_when_the_broker_dies(mosquitto):
    client = PahoTransport("witness", mosquitto.url, **FAST)
    assert client.connect(5)
    with frozen(mosquitto):
        delivery = client.publish("fleet/s/witness/status", b"in flight")
        assert delivery.wait(0.2) is None
        mosquitto.proc.kill()
        mosquitto.proc.wait()
        mosquitto.proc = None
    wait_for(lambda: not client.connected, "the client sees the broker die")
    assert delivery.wait(0.2) is None, "a message the broker never acknowledged must not be reported delivered"
    mosquitto.start()
    wait_for(lambda: client.connected, "the client reconnects")
    assert delivery.wait(5) == NO_MATCHING_SUBSCRIBERS, (
        "paho sends the message again after reconnecting; its PUBACK settles it"
    )
    client.close()
