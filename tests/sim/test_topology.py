"""Topologies and consensus weights against graph theory."""

import numpy as np
import pytest

from fleet.scenario import TopologyConfig
from fleet.sim.topology import build_topology, consensus_weights, slem, weight_matrix


def ring(n):
    return build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(n)], np.random.default_rng(0))


@pytest.mark.parametrize("n", [5, 12, 30])
def test_ring_metropolis_slem_matches_the_circulant_spectrum(n):
    """Ring, Metropolis weights 1/3: eigenvalues 1/3 + 2/3 cos(2 pi k / n)."""
    topo = ring(n)
    w = weight_matrix(topo, consensus_weights(topo, "metropolis"))
    k = np.arange(1, n)
    expected = np.max(np.abs(1 / 3 + 2 / 3 * np.cos(2 * np.pi * k / n)))
    assert slem(w) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "kind,degree", [("small-world", 4), ("random-regular", 3), ("erdos-renyi", 3), ("grid", 4), ("complete", 4)]
)
def test_metropolis_weights_are_symmetric_and_doubly_stochastic(kind, degree):
    topo = build_topology(
        TopologyConfig(kind=kind, degree=degree), [np.arange(20), np.arange(20, 44)], np.random.default_rng(1)
    )
    w = weight_matrix(topo, consensus_weights(topo, "metropolis"))
    np.testing.assert_allclose(w, w.T, atol=1e-15)
    np.testing.assert_allclose(w.sum(axis=0), 1, atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-12)
    assert (np.diag(w) > 0).all()
    # groups are separate components: no edge crosses them
    assert not ((topo.receiver < 20) != (topo.sender < 20)).any()


def test_uniform_weights_are_row_stochastic_over_the_closed_neighbourhood():
    topo = build_topology(TopologyConfig(kind="erdos-renyi", degree=3), [np.arange(15)], np.random.default_rng(2))
    w = weight_matrix(topo, consensus_weights(topo, "uniform"))
    np.testing.assert_allclose(w.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(np.diag(w), 1 / (1 + topo.degree))


def test_edge_index_finds_edges_and_reports_missing_ones():
    topo = ring(6)
    idx = topo.edge_index(np.array([0, 0, 3, 2]), np.array([1, 5, 4, 5]))
    assert idx[3] == -1
    assert (topo.receiver[idx[:3]] == [0, 0, 3]).all() and (topo.sender[idx[:3]] == [1, 5, 4]).all()
