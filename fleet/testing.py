"""Conformance checks that any learner implementation can run on itself.

``check_learner_contract(name)`` drives a registered learner through a short episode on a
small ring of devices and checks the protocol of :mod:`fleet.learners.base`: actions of the
right shape and range, updates that return the declared finite metrics, messages that the
wire codec can carry and the learner can consume, a state that survives a save/load round
trip (the restored learner then behaves identically), and a per-device policy export.
Failures say what to fix.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from fleet.learners import REGISTRY, LearnerContext, Observation, make_learner
from fleet.mqtt.codec import Kind, decode_batch, encode_batch
from fleet.mqtt.topics import KINDS
from fleet.scenario import TopologyConfig
from fleet.sim.topology import build_topology

N_LEVELS = 4


def _context(n: int, seed: int) -> LearnerContext:
    topo = build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(n)], np.random.default_rng(seed))
    return LearnerContext(n, N_LEVELS, "heat", np.random.default_rng(seed), "cpu", topo)


def _observation(n: int, tick: int, rng: np.random.Generator) -> Observation:
    lo = np.full(n, 20.0)
    return Observation(
        temp_c=rng.normal(20.5, 1.5, n), outdoor_c=rng.normal(3.0, 4.0, n), band_lo=lo, band_hi=lo + 3,
        occupied=rng.random(n) < 0.5, price=np.full(n, 0.25), feeder_load=rng.random(n),
        hour=(tick / 60.0) % 24, online=np.ones(n, bool),
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


def _run(learner, n: int, ticks: int, seed: int) -> list[np.ndarray]:
    """Drive ``learner`` for ``ticks`` control ticks; returns its actions per tick."""
    rng = np.random.default_rng(seed)
    actions = []
    for tick in range(1, ticks + 1):
        obs = _observation(n, tick, rng)
        a = learner.act(obs)
        assert isinstance(a, np.ndarray) and a.shape == (n,), f"act() must return a numpy array of shape ({n},), got {type(a).__name__} {getattr(a, 'shape', '')}"
        assert np.issubdtype(a.dtype, np.integer), f"act() must return integer levels, got dtype {a.dtype}"
        assert ((0 <= a) & (a < N_LEVELS)).all(), f"act() returned levels outside [0, {N_LEVELS})"
        actions.append(a)
        learner.observe(-rng.random(n) * 0.05)
        if learner.update_every and tick % learner.update_every == 0:
            metrics = learner.update(tick * 60.0)
            unknown = set(metrics) - set(learner.metric_keys)
            assert not unknown, f"update() returned metrics {sorted(unknown)} not declared in metric_keys"
            assert all(np.isfinite(v) for v in metrics.values()), f"update() returned non-finite metrics {metrics}"
            if learner.communicates:
                _exchange(learner, n, tick * 60.0)
    return actions


def _exchange(learner, n: int, t: float) -> None:
    """Encode what the learner publishes with the wire codec and hand it back as delivered."""
    for kind, pub in learner.outbox(np.ones(n, bool)):
        assert kind in KINDS, f"outbox() used kind {kind!r}; known kinds: {KINDS}"
        seq = np.arange(1, len(pub.sender) + 1)
        rows = encode_batch(Kind[kind.upper()], pub.sender, seq, t, pub.arrays, pub.dtypes)
        dec = decode_batch(rows)
        assert dec.valid.all(), "outbox() produced payloads the codec rejects"
        receiver, idx = _deliveries(learner, kind, pub.sender, n)
        learner.inbox(kind, receiver, pub.sender[idx], [a[idx] for a in dec.arrays], dec.timestamp[idx])


def check_learner_contract(name: str, n: int = 6, ticks: int = 48, seed: int = 0) -> None:
    """Raise AssertionError, saying what to fix, if learner ``name`` breaks the protocol."""
    assert name in REGISTRY, f"{name!r} is not registered in fleet.learners.REGISTRY"
    learner = make_learner(name, {}, _context(n, seed))
    for attr in ("name", "communicates", "exchange", "update_every", "metric_keys"):
        assert hasattr(learner, attr), f"learner {name!r} lacks the class attribute {attr!r}"
    _run(learner, n, ticks, seed)

    # save, load into a fresh learner, and continue identically
    buffer = io.BytesIO()
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    restored = make_learner(name, {}, _context(n, seed + 1))
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    a = _run(learner, n, ticks, seed + 2)
    b = _run(restored, n, ticks, seed + 2)
    assert all((x == y).all() for x, y in zip(a, b)), "after load_state_dict the learner must act exactly like the saved one"

    policy = learner.export_policy(0)
    assert isinstance(policy, dict) and policy, "export_policy(i) must return a non-empty dict of tensors"
    assert all(isinstance(v, torch.Tensor) for v in policy.values()), "export_policy(i) values must be tensors"
