"""Conformance checks that any learner or transport implementation can run on itself.

``check_learner_contract(name)`` drives a registered learner through a short episode on a
small ring of devices and checks the protocol of :mod:`fleet.learners.base`: actions of the
right shape and range, updates that return the declared finite metrics, messages that the
wire codec can carry and the learner can consume, each kind's largest message of the size that
``message_sizes`` declares (what a scenario's links are checked against), a state that survives a save/load round
trip (the restored learner then behaves identically), and a per-device policy export.
Failures say what to fix.

``check_transport_contract(make_client, kill)`` drives clients of one broker, simulated or real,
through the protocol of :mod:`fleet.mqtt.transport`.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fleet import statefile
from fleet.errors import TransportError
from fleet.learners import REGISTRY, Deliveries, LearnerContext, Observation, make_learner
from fleet.learners.base import PREVIEW_H, Lookahead, persistence
from fleet.mqtt.codec import Kind, decode_batch, encode_batch
from fleet.mqtt.topics import KINDS
from fleet.mqtt.transport import SUCCESS, Received, Transport, Will, accepted
from fleet.scenario import TopologyConfig
from fleet.sim.topology import build_topology

N_LEVELS = 4
TICK_S = 900.0
"""The contract's control period: 15 minutes, so that a learner that plans hourly plans in its episode."""


def _context(n: int, seed: int) -> LearnerContext:
    topo = build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(n)], np.random.default_rng(seed))
    levels_kw = np.tile(np.arange(N_LEVELS, dtype=float), (n, 1))
    return LearnerContext(n, N_LEVELS, "heat", np.random.default_rng(seed), "cpu", topo, TICK_S, levels_kw=levels_kw)


def _observation(n: int, tick: int, rng: np.random.Generator, hours: tuple[float, ...] = ()) -> Observation:
    lo, h, k = np.full(n, 20.0), len(PREVIEW_H), len(hours)
    ahead = Lookahead(np.asarray(hours), lambda: (np.full((n, k), 20.0), np.full((n, k), 23.0), np.full((n, k), 0.25)))
    outdoor_c = rng.normal(3.0, 4.0, n)
    return Observation(
        temp_c=rng.normal(20.5, 1.5, n),
        outdoor_c=outdoor_c,
        band_lo=lo,
        band_hi=lo + 3,
        occupied=rng.random(n) < 0.5,
        price=np.full(n, 0.25),
        feeder_load=rng.random(n),
        hour=(tick / 60.0) % 24,  # synthetic: the hour moves a minute per tick, whatever TICK_S
        online=np.ones(n, bool),
        band_lo_ahead=np.full((n, h), 20.0),
        band_hi_ahead=np.full((n, h), 23.0),
        price_ahead=np.full((n, h), 0.25),
        **persistence(outdoor_c),
        lookahead=ahead if k else None,
    )


def _deliveries(learner, kind: str, sender: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(receiver, row index) pairs: who would receive each published row."""
    if learner.exchange == "neighbours":
        topo = learner.topology
        pairs = [(r, i) for i, s in enumerate(sender) for r in topo.receiver[topo.sender == s]]
    elif kind == "experience":
        pairs = [(n, i) for i in range(len(sender))]
    else:
        pairs = [(r, i) for i in range(len(sender)) for r in range(n)]
    rec, idx = (np.array(x, dtype=np.int64) for x in zip(*pairs)) if pairs else (np.zeros(0, np.int64),) * 2
    return rec, idx


def _run(
    learner, n: int, ticks: int, seed: int, start: int = 0, sizes: dict[str, int] | None = None
) -> list[np.ndarray]:
    """Drive ``learner`` for ``ticks`` control ticks of TICK_S after tick ``start``; returns its
    actions per tick. ``sizes``: records the largest encoded message of each kind in it."""
    rng = np.random.default_rng(seed)
    actions = []
    for tick in range(start + 1, start + ticks + 1):
        obs = _observation(n, tick, rng, getattr(learner, "lookahead_h", ()))
        a = learner.act(obs)
        assert isinstance(a, np.ndarray) and a.shape == (n,), (
            f"act() must return a numpy array of shape ({n},), got {type(a).__name__} {getattr(a, 'shape', '')}"
        )
        assert np.issubdtype(a.dtype, np.integer), f"act() must return integer levels, got dtype {a.dtype}"
        assert ((0 <= a) & (a < N_LEVELS)).all(), f"act() returned levels outside [0, {N_LEVELS})"
        actions.append(a)
        learner.observe(-rng.random(n) * 0.05)
        if learner.update_every and tick % learner.update_every == 0:
            metrics = learner.update(tick * TICK_S)
            unknown = set(metrics) - set(learner.metric_keys)
            assert not unknown, f"update() returned metrics {sorted(unknown)} not declared in metric_keys"
            assert all(np.isfinite(v) for v in metrics.values()), f"update() returned non-finite metrics {metrics}"
            if learner.communicates:
                _exchange(learner, n, tick * TICK_S, {} if sizes is None else sizes)
    return actions


def _exchange(learner, n: int, t: float, sizes: dict[str, int]) -> None:
    """Encode what the learner publishes with the wire codec and hand it back as delivered;
    the largest message of each kind goes into ``sizes``."""
    for kind, pub in learner.outbox(np.ones(n, bool)):
        assert kind in KINDS, f"outbox() used kind {kind!r}; known kinds: {KINDS}"
        seq = np.arange(1, len(pub.sender) + 1)
        rows = encode_batch(Kind[kind.upper()], pub.sender, seq, t, pub.arrays, pub.dtypes)
        sizes[kind] = max(sizes.get(kind, 0), rows.shape[1])
        dec = decode_batch(rows)
        assert dec.valid.all(), "outbox() produced payloads the codec rejects"
        receiver, idx = _deliveries(learner, kind, pub.sender, n)
        learner.inbox(kind, Deliveries(receiver, pub.sender[idx], dec.timestamp[idx], idx, list(dec.arrays)))


def check_learner_contract(name: str, n: int = 6, ticks: int = 48, seed: int = 0, params: dict | None = None) -> None:
    """Raise AssertionError, saying what to fix, if learner ``name`` (with ``params``, its
    defaults if None) breaks the protocol."""
    assert name in REGISTRY, f"{name!r} is not registered in fleet.learners.REGISTRY"
    params = params or {}
    learner = make_learner(name, params, _context(n, seed))
    for attr in ("name", "communicates", "exchange", "update_every", "metric_keys"):
        assert hasattr(learner, attr), f"learner {name!r} lacks the class attribute {attr!r}"
    sizes: dict[str, int] = {}
    _run(learner, n, ticks, seed, sizes=sizes)
    config = REGISTRY[name].config_cls.model_validate(params)
    declared = config.message_sizes(N_LEVELS) if hasattr(config, "message_sizes") else {}
    assert sizes == declared, (
        f"its config's message_sizes() must give the encoded bytes of the largest message of each kind "
        f"published: it declares {declared}, the learner published {sizes}"
    )

    # save as a state file, load into a fresh learner, and continue identically
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "learner.safetensors"
        with path.open("wb") as f:
            statefile.save(f.write, "learner", learner.state_dict())
        restored = make_learner(name, params, _context(n, seed + 1))
        restored.load_state_dict(statefile.load(path, "learner", 1 << 30))
    a = _run(learner, n, ticks, seed + 2)
    b = _run(restored, n, ticks, seed + 2)
    assert all((x == y).all() for x, y in zip(a, b)), (
        "after load_state_dict the learner must act exactly like the saved one"
    )

    policy = learner.export_policy(0)
    assert isinstance(policy, dict) and policy, "export_policy(i) must return a non-empty dict of tensors"
    assert all(isinstance(v, torch.Tensor) for v in policy.values()), "export_policy(i) values must be tensors"


# ---------------------------------------------------------------- transport contract

CONTRACT_TIMEOUT = 5.0
"""Seconds the transport contract waits for any one answer or message."""


def _received(transport: Transport, until: Callable[[list[Received]], bool], what: str) -> list[Received]:
    """Drain ``transport`` until ``until(messages so far)`` holds; fail saying ``what`` was awaited."""
    messages: list[Received] = []
    deadline = time.monotonic() + CONTRACT_TIMEOUT
    while not until(messages):
        assert time.monotonic() < deadline, (
            f"{transport.client_id} did not receive {what} within {CONTRACT_TIMEOUT} s; got {messages}"
        )
        time.sleep(0.005)
        messages += transport.drain()
    return messages


def _up_to_marker(transport: Transport, marker: str) -> list[Received]:
    """What arrived before the first message on topic ``marker``."""
    messages = _received(transport, lambda got: any(m.topic == marker for m in got), f"a message on {marker!r}")
    return messages[: [m.topic for m in messages].index(marker)]


def _subscribed(transport: Transport, topic_filter: str, qos: int) -> None:
    granted = transport.subscribe(topic_filter, qos).wait(CONTRACT_TIMEOUT)
    assert granted == qos, (
        f"subscribe({topic_filter!r}, {qos}).wait() must give the granted QoS {qos} once the broker has the "
        f"subscription, got {granted}"
    )


def _published(
    transport: Transport, topic: str, payload: bytes, qos: int = 1, retain: bool = False, subscribed: bool = True
) -> None:
    """Publish and check the broker's answer: SUCCESS for QoS 0 (written) and for QoS 1 with a
    subscriber; any success code (such as NO_MATCHING_SUBSCRIBERS) for QoS 1 without one."""
    answer = transport.publish(topic, payload, qos, retain).wait(CONTRACT_TIMEOUT)
    if subscribed or qos == 0:
        assert answer == SUCCESS, (
            f"publish({topic!r}, qos={qos}).wait() must give SUCCESS (0) once the broker has the message, got {answer}"
        )
    else:
        assert accepted(answer), (
            f"publish({topic!r}) without subscribers must still succeed (a code < 0x80), got {answer}"
        )


def _check_round_trips(sub: Transport, pub: Transport) -> None:
    """Exact bytes and topics through ``+`` and ``#`` filters, QoS 0 and 1, in order, nothing else."""
    _subscribed(sub, "contract/+/one", 1)
    _subscribed(sub, "contract/many/#", 0)
    expected = [
        ("contract/a/one", b"\x00\x01 binary \xff", 1),
        ("contract/many/x/y", b"", 0),
        ("contract/many", b"#-parent", 0),
    ]
    _published(pub, "contract/a/one", expected[0][1], qos=1)
    _published(pub, "contract/a/two", b"no match: last level", subscribed=False)
    _published(pub, "contract/a/b/one", b"no match: + is one level", subscribed=False)
    _published(pub, "contract/many/x/y", expected[1][1], qos=0)
    _published(pub, "contract/many", expected[2][1], qos=1)
    _published(pub, "contract/end/one", b"marker")
    messages = _up_to_marker(sub, "contract/end/one")
    got = [(m.topic, m.payload, m.qos) for m in messages]
    assert got == expected, (
        "a subscriber must receive exactly the matching messages, in order, with their bytes and the lower of publish "
        "and "
        f"subscription QoS: expected {expected}, got {got}"
    )
    assert all(not m.retain and m.arrived_at <= time.monotonic() for m in messages), (
        "live messages need retain=False and arrived_at from time.monotonic()"
    )


def _check_retained(make_client: Callable[..., Transport], pub: Transport) -> None:
    """A retained message reaches a later subscriber; an empty retained payload deletes it."""
    _published(pub, "contract/kept/one", b"state", retain=True)
    late = _connected(make_client, "contract-late")
    _subscribed(late, "contract/kept/+", 1)
    first = _received(late, bool, "the retained message")[0]
    assert (first.topic, first.payload, first.retain) == ("contract/kept/one", b"state", True), (
        f"a new subscription must first get the retained message with retain=True, got {first}"
    )
    _published(pub, "contract/kept/one", b"", retain=True)
    later = _connected(make_client, "contract-later")
    _subscribed(later, "contract/kept/+", 1)
    _published(pub, "contract/kept/marker", b"")
    stale = [(m.topic, m.payload) for m in _up_to_marker(later, "contract/kept/marker")]
    assert not stale, (
        f"publishing an empty retained payload must delete the retained message; a later subscriber still got {stale}"
    )
    for client in (late, later):
        client.close()


def _check_will(make_client: Callable[..., Transport], kill: Callable[[Transport], None], sub: Transport) -> None:
    """The will goes out when a client dies, not when it closes."""
    _subscribed(sub, "contract/will/+", 1)
    polite = _connected(make_client, "contract-polite", Will("contract/will/polite", b"closed", retain=False))
    polite.close()
    assert not polite.connected, "after close() the transport must say connected == False"
    mortal = _connected(make_client, "contract-mortal", Will("contract/will/mortal", b"died", retain=False))
    kill(mortal)
    messages = _received(
        sub, lambda got: any(m.topic == "contract/will/mortal" for m in got), "the will of a killed client"
    )
    time.sleep(0.2)  # a will published by mistake for the closed client would be here by now
    messages += sub.drain()
    assert "contract/will/polite" not in [m.topic for m in messages], (
        "a client that closes cleanly must not have its will published"
    )
    will = next(m for m in messages if m.topic == "contract/will/mortal")
    assert will.payload == b"died", f"the will must carry its payload b'died', got {will.payload!r}"


def _check_limits(pub: Transport) -> None:
    """A payload over max_payload raises before anything is sent, and the connection stays."""
    size = pub.max_payload + 1
    try:
        pub.publish("contract/big/one", bytes(size), qos=1)
    except TransportError:
        pass
    else:
        raise AssertionError(f"publish() of max_payload + 1 = {size} bytes must raise TransportError before sending")
    assert pub.connected, "refusing an oversized payload must not cost the connection"


def _check_drain(sub: Transport, pub: Transport, n: int = 300, readers: int = 3) -> None:
    """Several threads drain while messages arrive: each message once, each batch in order."""
    _subscribed(sub, "contract/seq/+", 0)  # "contract/seq/n" matches no other subscription of sub
    batches: list[list[int]] = []
    lock, done = threading.Lock(), threading.Event()

    def read() -> None:
        while not done.is_set():
            batch = [int.from_bytes(m.payload, "big") for m in sub.drain() if m.topic == "contract/seq/n"]
            with lock:
                batches.append(batch)
                if sum(map(len, batches)) >= n:
                    done.set()
            time.sleep(0.001)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for i in range(n):
        pub.publish("contract/seq/n", i.to_bytes(2, "big"), qos=0)
    done.wait(CONTRACT_TIMEOUT)
    done.set()
    for thread in threads:
        thread.join()
    seen = sorted(i for batch in batches for i in batch)
    assert seen == list(range(n)), (
        f"drain() from {readers} threads must return each of {n} messages exactly once; got {len(seen)} "
        f"({len(set(seen))} distinct)"
    )
    assert all(batch == list(range(batch[0], batch[0] + len(batch))) for batch in batches if batch), (
        "drain() must return messages oldest first"
    )


def _connected(make_client: Callable[..., Transport], client_id: str, will: Will | None = None) -> Transport:
    client = make_client(client_id, will=will)
    assert client.client_id == client_id, (
        f"make_client({client_id!r}) must give a transport with client_id {client_id!r}, got {client.client_id!r}"
    )
    assert client.connect(timeout=CONTRACT_TIMEOUT) is True, (
        f"connect(timeout={CONTRACT_TIMEOUT}) must return True once the broker accepted {client_id!r}"
    )
    assert client.connected, "connected must be True after connect() returned True"
    return client


def check_transport_contract(make_client: Callable[..., Transport], kill: Callable[[Transport], None]) -> None:
    """Raise AssertionError, saying what to fix, if transports break :mod:`fleet.mqtt.transport`.

    ``make_client(client_id, will=None)`` returns a new, unconnected transport to one broker
    (the same for every call, without retained messages under ``contract/``); ``kill(transport)``
    ends a connection abruptly, as a crash would, so that the broker publishes the will. The
    checks: connect; QoS 0 and 1 round trips with exact bytes and topics through ``+`` and ``#``
    filters; retained messages for late subscribers, deleted by an empty payload; PUBACK codes;
    wills on abrupt ends only; the size limit; concurrent, ordered :meth:`~Transport.drain`; close.
    """
    sub, pub = _connected(make_client, "contract-sub"), _connected(make_client, "contract-pub")
    try:
        _check_round_trips(sub, pub)
        _check_retained(make_client, pub)
        _check_will(make_client, kill, sub)
        _check_limits(pub)
        _check_drain(sub, pub)
    finally:
        sub.close()
        pub.close()
    try:
        pub.publish("contract/closed/one", b"x")
    except TransportError:
        return
    raise AssertionError("publish() after close() must raise TransportError")
