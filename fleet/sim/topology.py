"""Neighbour graphs (networkx) and the consensus weight matrices built on them."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from fleet.scenario import TopologyConfig


@dataclass(frozen=True)
class Topology:
    """Directed edge list of an undirected graph on N devices (both directions present).

    ``receiver (E,)``, ``sender (E,)`` sorted by receiver then sender; ``degree (N,)``.
    """

    n: int
    receiver: np.ndarray
    sender: np.ndarray

    @property
    def degree(self) -> np.ndarray:
        return np.bincount(self.receiver, minlength=self.n)

    def edge_index(self, receiver: np.ndarray, sender: np.ndarray) -> np.ndarray:
        """Index into the edge list of each (receiver, sender) pair, (K,); -1 where no such edge."""
        keys = self.receiver.astype(np.int64) * self.n + self.sender
        query = receiver.astype(np.int64) * self.n + sender
        if len(keys) == 0:
            return np.full(len(query), -1)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[pos] == query, pos, -1)

    def neighbours(self, i: int) -> np.ndarray:
        return self.sender[self.receiver == i]


def _group_graph(cfg: TopologyConfig, n: int, seed: int) -> nx.Graph:
    k = cfg.degree
    if n == 1:
        return nx.empty_graph(1)
    if cfg.kind == "ring":
        return nx.watts_strogatz_graph(n, k, 0.0, seed=seed)
    if cfg.kind == "small-world":
        return nx.connected_watts_strogatz_graph(n, k, cfg.rewire_p, tries=100, seed=seed)
    if cfg.kind == "random-regular":
        return nx.random_regular_graph(k, n, seed=seed)
    if cfg.kind == "erdos-renyi":
        return nx.fast_gnp_random_graph(n, k / (n - 1), seed=seed)
    if cfg.kind == "grid":
        rows = int(np.floor(np.sqrt(n)))
        g = nx.grid_2d_graph(rows, int(np.ceil(n / rows)))
        return nx.convert_node_labels_to_integers(g).subgraph(range(n)).copy()
    return nx.complete_graph(n)


def build_topology(cfg: TopologyConfig, groups: list[np.ndarray], rng: np.random.Generator) -> Topology:
    """One graph per group of device indices (sites, or the whole fleet), joined as an edge list."""
    n = sum(len(g) for g in groups)
    rec, snd = [], []
    for members in groups:
        graph = _group_graph(cfg, len(members), int(rng.integers(2**31)))
        edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
        a, b = members[edges[:, 0]], members[edges[:, 1]]
        rec += [a, b]
        snd += [b, a]
    receiver = np.concatenate(rec) if rec else np.zeros(0, np.int64)
    sender = np.concatenate(snd) if snd else np.zeros(0, np.int64)
    order = np.lexsort((sender, receiver))
    return Topology(n, receiver[order], sender[order])


def consensus_weights(topo: Topology, kind: str) -> np.ndarray:
    """Weight of each directed edge (E,): w[receiver, sender]; self weights are 1 - row sums.

    Metropolis-Hastings: w_ij = 1 / (1 + max(d_i, d_j)) (symmetric, doubly stochastic).
    Uniform: w_ij = 1 / (1 + d_i) (row stochastic; equal weight over the closed neighbourhood).
    """
    deg = topo.degree
    if kind == "metropolis":
        return 1.0 / (1.0 + np.maximum(deg[topo.receiver], deg[topo.sender]))
    return 1.0 / (1.0 + deg[topo.receiver])


def weight_matrix(topo: Topology, weights: np.ndarray) -> np.ndarray:
    """Dense (N, N) weight matrix, for analysis and tests on small fleets."""
    w = np.zeros((topo.n, topo.n))
    w[topo.receiver, topo.sender] = weights
    w[np.arange(topo.n), np.arange(topo.n)] = 1.0 - w.sum(axis=1)
    return w


def slem(w: np.ndarray) -> float:
    """Second-largest eigenvalue modulus of a weight matrix: the asymptotic per-round
    contraction factor of the disagreement in average consensus."""
    moduli = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
    return float(moduli[1]) if len(moduli) > 1 else 0.0
