"""Average consensus among topology neighbours, over the simulated network.

Every round each online device (1) takes in the neighbour values that reached it, keeping the
newest per neighbour, (2) combines ``x_i <- (1 - sum_j w_ij) x_i + sum_j w_ij x_j`` over the
neighbours whose value is fresh (published at most ``staleness`` ago; a missing neighbour's
weight stays with the device itself), and (3) publishes its new value. Over a loss-free network
with latency below the period this is ``x(k+1) = W x(k)``, whose disagreement shrinks by the
second-largest eigenvalue modulus of W per round; loss and churn slow it down.
"""

from __future__ import annotations

import numpy as np

from fleet.mqtt.codec import Kind, decode_batch, encode_batch
from fleet.mqtt.topics import KINDS
from fleet.net.network import Delivered, Outgoing
from fleet.scenario import DTYPES, ConsensusConfig
from fleet.sim.topology import Topology, consensus_weights
from fleet.statefile import attrs_state, load_attrs

CONSENSUS = KINDS.index("consensus")


class ConsensusExchange:
    """State ``x`` (N, dim) and the newest value received on every edge, ``edge_value`` (E, dim)."""

    def __init__(self, cfg: ConsensusConfig, topo: Topology, group_of: np.ndarray, rng: np.random.Generator) -> None:
        """``group_of`` (N,): the group (site or fleet) whose mean each device converges to."""
        self.cfg = cfg
        self.topo = topo
        self.group_of = group_of
        self.weights = consensus_weights(topo, cfg.weights)
        self.x = rng.normal(size=(topo.n, cfg.dim))
        self.edge_value = np.zeros((len(topo.receiver), cfg.dim))
        self.edge_time = np.full(len(topo.receiver), -np.inf)
        self.seq = np.zeros(topo.n, np.int64)
        self.invalid = 0
        self.initial_disagreement = self.disagreement()

    STATE = ("x", "edge_value", "edge_time", "seq", "invalid")
    """What changes round by round (:mod:`fleet.statefile`); the rest is drawn at construction."""

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    def receive(self, got: Delivered) -> None:
        """Store the newest valid value per edge from what was delivered."""
        if len(got.receiver) == 0:
            return
        dec = decode_batch(got.rows)
        ok = dec.valid[got.msg]
        self.invalid += int((~ok).sum())
        edge = self.topo.edge_index(got.receiver, got.sender)
        ok &= edge >= 0
        stamp = dec.timestamp[got.msg]
        idx = np.flatnonzero(ok)
        idx = idx[np.lexsort((stamp[idx], edge[idx]))]
        last = np.r_[edge[idx][1:] != edge[idx][:-1], True]
        idx = idx[last]
        newer = stamp[idx] > self.edge_time[edge[idx]]
        idx = idx[newer]
        self.edge_value[edge[idx]] = dec.arrays[0][got.msg[idx]]
        self.edge_time[edge[idx]] = stamp[idx]

    def combine(self, t: float, active: np.ndarray) -> None:
        """One consensus step for the ``active`` (N,) devices with their fresh neighbour values."""
        fresh = (t - self.edge_time) <= self.cfg.staleness_s
        w = self.weights * fresh * active[self.topo.receiver]
        self_w = 1.0 - np.bincount(self.topo.receiver, w, minlength=self.topo.n)
        mixed = np.zeros_like(self.x)
        np.add.at(mixed, self.topo.receiver, w[:, None] * self.edge_value)
        self.x = self_w[:, None] * self.x + mixed

    def outgoing(self, t: float, active: np.ndarray) -> Outgoing:
        """Every active device publishes its current value (encoded with the wire codec)."""
        sender = np.flatnonzero(active)
        self.seq[sender] += 1
        rows = encode_batch(
            Kind.CONSENSUS, sender, self.seq[sender], t, [self.x[sender].astype(np.float32)], DTYPES[self.cfg.dtype]
        )
        return Outgoing(CONSENSUS, sender, self.seq[sender], rows, self.cfg.qos, self.cfg.retain)

    def disagreement(self) -> float:
        """Root-mean-square distance of the devices' values from their group's mean."""
        counts = np.bincount(self.group_of)[:, None]
        means = np.zeros((len(counts), self.x.shape[1]))
        np.add.at(means, self.group_of, self.x)
        dev = self.x - (means / counts)[self.group_of]
        return float(np.sqrt(np.mean(np.sum(dev**2, axis=1))))
