"""MQTT v5 to a real broker with paho-mqtt 2.x: the :class:`~fleet.mqtt.transport.Transport` of an edge board.

paho runs the connection on its own thread (``loop_start``): it connects in the background, so
a broker that is away at boot is not an error, and reconnects with exponential backoff. The
callbacks only touch this object's state under its lock: the inbox, the connection flag and the
:class:`~fleet.mqtt.transport.Delivery` objects that wait for an acknowledgement (paho may
acknowledge a packet before ``publish()`` has returned its id, so an early answer is kept until
its Delivery is registered). Behaviour other components rely on:

- Sessions: ``session_expiry=0`` starts a clean session on every connection; a positive value
  (``clean_start=False`` with that Session Expiry Interval) asks the broker to keep the
  subscriptions and queue QoS 1 messages while the device is away, across process restarts too.
- After every (re)connection all subscriptions are sent again with Retain Handling 1: a broker
  that lost the session gets them back, with their retained messages; one that kept it sends no
  retained message twice.
- QoS 1: at most ``min(max_inflight, the broker's Receive Maximum)`` messages await their PUBACK
  (mosquitto announces 20); beyond, :meth:`PahoTransport.publish` raises TransportError and the
  caller buffers. A message whose connection drops before its PUBACK is sent again by paho after
  reconnecting, and its Delivery is settled only by that PUBACK.
- Size: payloads are checked against the broker's CONNACK Maximum Packet Size before sending:
  mosquitto answers an oversized packet by closing the connection, and paho would send the
  same packet again after every reconnect.
- A CONNACK refusal that retrying cannot fix (bad user name or password, not authorized,
  banned...) stops the reconnecting; :meth:`PahoTransport.connect` raises TransportError.
  mosquitto 2.0 answers a wrong password and a missing one alike with 135 (Not authorized).
- Client ids must be unique: mosquitto 2.0.11 closes the older of two connections with the same
  id without a DISCONNECT reason (paho reports 128), so both reconnect and take the session from
  each other in turn, each takeover publishing the will of the connection it ends.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from fleet.errors import ConfigError, TransportError
from fleet.mqtt.topics import validate_topic_filter
from fleet.mqtt.transport import (
    MAX_SESSION_EXPIRY,
    MQTT_MAX_PACKET_SIZE,
    Delivery,
    Inbox,
    Received,
    Will,
    check_publish,
    check_qos,
    payload_limit,
)
from fleet.mqtt.url import parse_broker_url, redact

FATAL_CONNACK = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
"""CONNACK refusals that retrying cannot fix: unsupported protocol version, client identifier not
valid, bad user name or password, not authorized, banned, bad authentication method."""

_WRITE, _PUBACK, _SUBACK = "write", "puback", "suback"
"""What a registered Delivery waits for: a QoS 0 publish to be written, a PUBACK, a SUBACK."""


@dataclass(frozen=True)
class TLSFiles:
    """PEM files for ``mqtts://``: the CA that signed the broker's certificate (``None``: the
    system's CAs) and, for mutual TLS, this device's certificate and key (the key may be in the
    certificate file)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A client context that checks the broker's certificate and host name; raises
        :class:`ConfigError` naming the file that is missing, unreadable or not what it should be."""
        for what, path in (
            ("CA file", self.ca_file),
            ("certificate file", self.cert_file),
            ("key file", self.key_file),
        ):
            if path is not None:
                try:
                    Path(path).open("rb").close()
                except OSError as exc:
                    raise ConfigError(f"TLS {what} {str(path)!r} cannot be read: {exc.strerror}") from None
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError(f"TLS key file {str(self.key_file)!r} is given without its certificate file")
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise ConfigError(f"TLS CA file {str(self.ca_file)!r} holds no PEM certificate ({exc.reason})") from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"TLS certificate {str(self.cert_file)!r} and key {str(self.key_file or self.cert_file)!r} "
                    f"are not a PEM certificate with its own private key ({exc.reason})"
                ) from None
        return context


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value!r}")


class PahoTransport:
    """One MQTT v5 connection to a real broker, keeping :class:`fleet.mqtt.transport.Transport`.

    ``url`` is ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (see
    :mod:`fleet.mqtt.url`); credentials go either there or in ``username``/``password``.
    ``tls`` only with ``mqtts``. ``session_expiry`` in seconds (0: clean sessions). ``keepalive``
    in seconds. ``max_inflight``: QoS 1 messages that may await their PUBACK. ``reconnect_delay``:
    first and longest wait between connection attempts, in seconds (doubling in between).
    """

    def __init__(
        self,
        client_id: str,
        url: str,
        *,
        will: Will | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: TLSFiles | None = None,
        session_expiry: int = 0,
        keepalive: int = 30,
        max_inflight: int = 100,
        reconnect_delay: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(f"client_id must be a non-empty string, got {client_id!r}")
        broker = parse_broker_url(url)
        if broker.username is not None and (username is not None or password is not None):
            raise ConfigError("credentials are given both in the broker URL and as username/password; give them once")
        username, password = (broker.username, broker.password) if broker.username is not None else (username, password)
        if password is not None and username is None:
            raise ConfigError("a password is given without a username")
        if tls is not None and not broker.tls:
            raise ConfigError(f"TLS files are given but the broker URL {redact(url)!r} is not mqtts://")
        _check_range("session_expiry", session_expiry, 0, MAX_SESSION_EXPIRY)
        _check_range("keepalive", keepalive, 0, 65535)
        _check_range("max_inflight", max_inflight, 1, 65535)
        _check_range("reconnect_delay[0]", reconnect_delay[0], 0.01, reconnect_delay[1])
        self.client_id = client_id
        self._broker, self._keepalive, self._session_expiry = broker, keepalive, session_expiry
        self._max_inflight, self._receive_maximum = max_inflight, 65535
        self._max_packet = MQTT_MAX_PACKET_SIZE

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._publishing = threading.Lock()  # makes the in-flight check and the send one step
        self._up = self._started = self._closed = False
        self._ended: str | None = None
        """Why the broker will never accept this client (a CONNACK refusal), if it said so."""
        self._last_disconnect = "not connected yet"
        self._filters: dict[str, int] = {}
        self._inbox = Inbox()
        self._waiting: dict[int, tuple[Delivery, str]] = {}
        self._early: dict[int, int] = {}
        self._awaiting_puback = 0

        self._client = client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(max_inflight)
        client.reconnect_delay_set(*reconnect_delay)
        if will is not None:
            check_publish(will.topic, will.payload, will.qos, MQTT_MAX_PACKET_SIZE)
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        if username is not None:
            client.username_pw_set(username, password)
        if broker.tls:
            client.tls_set_context((tls or TLSFiles()).context())
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_message, client.on_publish, client.on_subscribe = (
            self._on_message,
            self._on_publish,
            self._on_subscribe,
        )

    # ---------------------------------------------------------------- Transport

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def max_payload(self) -> int:
        return payload_limit(self._max_packet)

    def connect(self, timeout: float | None = None) -> bool:
        with self._lock:
            self._check_usable()
            start, self._started = not self._started, True
        if start:
            properties = Properties(PacketTypes.CONNECT)
            if self._session_expiry:
                properties.SessionExpiryInterval = self._session_expiry
            self._client.connect_async(
                self._broker.host,
                self._broker.port,
                self._keepalive,
                clean_start=self._session_expiry == 0,
                properties=properties,
            )
            self._client.loop_start()
        with self._changed:
            self._changed.wait_for(lambda: self._up or self._ended is not None, timeout)
            self._check_usable()
            return self._up

    def subscribe(self, topic_filter: str, qos: int = 1) -> Delivery:
        validate_topic_filter(topic_filter)
        check_qos(qos)
        with self._lock:
            self._check_usable()
            self._filters[topic_filter] = qos
            up = self._up
        return self._send_subscription(topic_filter, qos, retain_handling=0) if up else _answered(None)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Delivery:
        with self._publishing:
            with self._lock:
                check_publish(topic, payload, qos, self._max_packet)
                self._check_usable()
                if not self._up:
                    raise TransportError(
                        f"client {self.client_id!r} is not connected ({self._last_disconnect}); buffer and retry"
                    )
                limit = min(self._max_inflight, self._receive_maximum)
                if qos and self._awaiting_puback >= limit:
                    raise TransportError(
                        f"client {self.client_id!r} has {limit} QoS 1 messages awaiting their PUBACK, "
                        f"the most allowed; buffer and retry when some are acknowledged"
                    )
            info = self._client.publish(topic, payload, qos, retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and not (qos and info.rc == mqtt.MQTT_ERR_NO_CONN):
                # (a QoS 1 message that found the connection gone stays queued in paho and goes out on reconnecting)
                raise TransportError(
                    f"client {self.client_id!r} could not publish on {topic!r}: {mqtt.error_string(info.rc)}"
                )
            with self._lock:
                return self._expect(info.mid, _PUBACK if qos else _WRITE)

    def drain(self) -> list[Received]:
        return self._inbox.drain()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            unanswered = [delivery for delivery, _ in self._waiting.values()]
            self._waiting.clear()
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
        for delivery in unanswered:
            delivery.settle(None)

    def abort(self) -> None:
        """End the connection without DISCONNECT, as a crash or a cut cable would, so that the
        broker publishes the will; then close. For fault injection and tests."""
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)
        self.close()

    # ---------------------------------------------------------------- bookkeeping, under the lock

    def _check_usable(self) -> None:
        if self._ended is not None:
            raise TransportError(f"client {self.client_id!r} of {self._broker.host}:{self._broker.port} {self._ended}")
        if self._closed:
            raise TransportError(f"client {self.client_id!r} was closed; make a new transport to reconnect")

    def _expect(self, mid: int, kind: str) -> Delivery:
        """The Delivery of packet ``mid``, settled already if its answer came first."""
        delivery, code = Delivery(), self._early.pop(mid, None)
        if code is not None:
            delivery.settle(code)
        elif kind != _PUBACK and not self._up:
            delivery.settle(None)  # its connection is gone: paho drops what it had not written
        else:
            self._waiting[mid] = (delivery, kind)
            self._awaiting_puback += kind == _PUBACK
        return delivery

    def _answer(self, mid: int, code: int) -> None:
        with self._lock:
            delivery, kind = self._waiting.pop(mid, (None, None))
            if delivery is None:
                self._early[mid] = code
                return
            self._awaiting_puback -= kind == _PUBACK
        delivery.settle(code)

    def _send_subscription(self, topic_filter: str, qos: int, retain_handling: int) -> Delivery:
        rc, mid = self._client.subscribe(
            topic_filter, options=SubscribeOptions(qos=qos, retainHandling=retain_handling)
        )
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return _answered(None)  # not connected after all: sent on connecting
        with self._lock:
            return self._expect(mid, _SUBACK)

    # ---------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if reason_code.value in FATAL_CONNACK:
                with self._changed:
                    self._ended = (
                        f"was refused: CONNACK reason code {reason_code.value} ({reason_code}); "
                        "check its user name, password and ACL"
                    )
                    self._changed.notify_all()
                client.disconnect()  # ends paho's reconnect loop
            return
        with self._changed:
            self._up = True
            self._max_packet = getattr(properties, "MaximumPacketSize", MQTT_MAX_PACKET_SIZE)
            self._receive_maximum = getattr(properties, "ReceiveMaximum", 65535)
            filters = list(self._filters.items())
            self._changed.notify_all()
        for topic_filter, qos in filters:
            self._send_subscription(topic_filter, qos, retain_handling=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._changed:
            self._up = False
            self._last_disconnect = f"last disconnect: {reason_code}"
            lost = [mid for mid, (_, kind) in self._waiting.items() if kind != _PUBACK]
            unanswered = [self._waiting.pop(mid)[0] for mid in lost]
            self._changed.notify_all()
        for delivery in unanswered:
            delivery.settle(None)

    def _on_message(self, client, userdata, message) -> None:
        received = Received(message.topic, bytes(message.payload), message.qos, bool(message.retain), time.monotonic())
        self._inbox.put(received)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._answer(mid, reason_code.value)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._answer(mid, reason_codes[0].value)


def _answered(code: int | None) -> Delivery:
    delivery = Delivery()
    delivery.settle(code)
    return delivery
