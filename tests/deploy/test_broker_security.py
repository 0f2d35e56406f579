"""The provisioned broker configuration, enforced by a real mosquitto: who may connect, publish and read.

Reason codes are those mosquitto 2.0.11 sends to MQTT 5 clients: a refused login gets CONNACK 135
(not authorized, also for a wrong password), a denied publish PUBACK 135, an allowed one with no
subscriber PUBACK 16. Subscriptions are granted (SUBACK QoS 1) whatever the topic; the ACL filters
each message at delivery. To show that a message is *not* delivered without waiting for a timeout,
the same publisher sends a deliverable message after it: once that one has arrived, the other
would have arrived before it.
"""

import datetime as dt
import ssl

import pytest
import yaml

from fleet.deploy.broker import MAX_INFLIGHT_MESSAGES, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES
from fleet.deploy.pki import issue, make_ca
from tests.deploy.conftest import handshake, start_kit_broker, topic

pytestmark = pytest.mark.mqtt

NOT_AUTHORIZED, NO_MATCHING_SUBSCRIBERS = 135, 16


@pytest.fixture(scope="module")
def broker(kit, tmp_path_factory):
    """mosquitto with the generated mosquitto.conf, its listeners bound to loopback."""
    b = start_kit_broker(kit, tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()


@pytest.fixture
def peers(kit, broker, connect):
    """``peers(name, listener="tls"|"password", client_id=None, session_expiry=0, **overrides)`` logs an identity in."""
    return lambda *args, **kwargs: connect(kit, *args, **kwargs)


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
    now = dt.datetime.now(dt.UTC)
    rogue = issue(make_ca("rogue", now), "d00000", now, 1)
    (tmp_path / "rogue.crt").write_bytes(rogue.cert_pem)
    (tmp_path / "rogue.key").write_bytes(rogue.key_pem)
    for peer in (
        peers("d00000", cert=None, key=None),
        peers("d00000", cert=tmp_path / "rogue.crt", key=tmp_path / "rogue.key"),
    ):
        if peer.connack is None:  # TLS 1.3: the server's alert comes after the client's handshake
            peer.wait(lambda p=peer: p.disconnected is not None, "disconnection")
        assert peer.connack is None and peer.disconnected is not None


@pytest.mark.parametrize("listener", ["tls", "password"])
def test_listeners_speak_tls_13_only(kit, manifest, broker, listener):
    port = manifest["broker"][f"{listener}_port"]
    assert handshake(kit, port) == "TLSv1.3"
    for ciphers in (
        None,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES128-SHA",
    ):  # any 1.2 suite, AEAD or CBC/SHA-1
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            handshake(kit, port, ssl.TLSVersion.TLSv1_2, ciphers)


# --- publishing and reading ------------------------------------------------------------------------


def test_publishing_on_another_devices_topic_gets_puback_135(peers, manifest):
    d0 = peers("d00000")
    assert d0.publish(topic(manifest, "d00001", "telemetry")) == NOT_AUTHORIZED
    assert d0.publish(topic(manifest, "d00001", "cmd")) == NOT_AUTHORIZED
    assert d0.publish("fleet/cloud/collector/params") == NOT_AUTHORIZED
    assert d0.publish(topic(manifest, "d00000", "telemetry")) == NO_MATCHING_SUBSCRIBERS


def test_a_device_publishes_and_retains_only_the_topics_its_agent_uses(peers, manifest):
    """Diffusion: status, telemetry, params. Its own cmd (the collector's), kinds its agent does not
    publish and any other topic under its subtree get PUBACK 135: neither delivered nor retained."""
    granted = [topic(manifest, "d00000", kind) for kind in ("status", "telemetry", "params")]
    others = ["cmd", "consensus", "experience", "status/extra", "x1", "x2", "x3"]
    refused = [topic(manifest, "d00000", kind) for kind in others]
    d0, watcher = peers("d00000"), peers("bridge")  # the bridge reads all of fleet/#
    watcher.subscribe(topic(manifest, "d00000", "#"))
    assert d0.publish_all(refused, b"refused", retain=True) == [NOT_AUTHORIZED] * len(refused)
    assert NOT_AUTHORIZED not in d0.publish_all(granted, b"granted", retain=True)
    watcher.wait(lambda: all(watcher.received(t) for t in granted), "the granted messages")
    assert sorted(t for t, _ in watcher.messages) == sorted(granted)  # the refused ones were sent first

    watcher.close()
    late = peers("bridge")  # retained messages come right after the SUBACK, before the marker published after it
    late.subscribe(topic(manifest, "d00000", "#"))
    d0.publish(granted[1], b"marker")
    late.wait(lambda: b"marker" in late.received(granted[1]), "the marker")
    assert sorted(t for t, payload in late.messages if payload == b"granted") == sorted(granted)
    d0.publish_all(granted, b"", retain=True)  # clears them for the other tests


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


# --- queues --------------------------------------------------------------------------------------------


def test_connack_announces_the_inflight_bound(peers):
    assert peers("d00000").connack_props.ReceiveMaximum == MAX_INFLIGHT_MESSAGES


@pytest.mark.parametrize("size", ["1 byte", "largest"])
def test_a_persistent_sessions_queue_stops_growing_at_its_bound(peers, manifest, kit, size):
    """While a device is away, the broker queues QoS 1 messages for it as long as fewer than
    MAX_QUEUED_MESSAGES messages and fewer than MAX_QUEUED_BYTES bytes of payload wait: of 1-byte
    messages 1000, of the largest (256 kB) ceil(8 MiB / 256 kB) = 32; it drops the rest."""
    largest = yaml.safe_load((kit / "scenario.yaml").read_text())["network"]["broker"]["max_packet_bytes"]
    payload = 1 if size == "1 byte" else largest
    bound = min(MAX_QUEUED_MESSAGES, -(-MAX_QUEUED_BYTES // payload))
    cmd = topic(manifest, "d00003", "cmd")
    away = peers("d00003", session_expiry=600)
    away.subscribe(cmd)
    away.close()
    collector = peers("collector")
    assert NOT_AUTHORIZED not in collector.publish_all([cmd] * (bound + 10), bytes(payload))
    back = peers("d00003", session_expiry=600)  # resumes the session: its queue arrives
    back.wait(lambda: len(back.received(cmd)) >= bound, f"{bound} queued messages")
    collector.publish(cmd, b"after")
    back.wait(lambda: back.received(cmd)[-1:] == [b"after"], "the message sent after the reconnection")
    assert len(back.received(cmd)) == bound + 1
