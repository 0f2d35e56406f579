"""The consensus workload over the simulated network, against the spectrum of its weight matrix."""

import numpy as np
import pytest

from fleet.sim.engine import Simulation
from fleet.sim.topology import slem, weight_matrix

PERIOD = 900.0


def consensus_scenario(shrink, rounds: int, **extra):
    """One site of 24 devices on loss-free Ethernet, consensus only."""
    settings = {
        "fleet.sites": "[{name: a, devices: 24, feeder_kw: 100, network: {ethernet: 1.0}}]",
        "horizon": rounds * PERIOD,
        "control_period": PERIOD,
        "topology": "{kind: random-regular, degree: 3, scope: site}",
        "workloads.telemetry.enabled": "false",
        "workloads.consensus.period": PERIOD,
        "network.churn.failures_per_day": 0,
        "outputs.metrics_period": PERIOD,
        "outputs.baseline": "false",
    }
    settings.update(extra)
    return shrink(**{k.replace("__", "."): v for k, v in settings.items()})


def run(scenario):
    sim = Simulation(scenario)
    x0 = sim.consensus.x.copy()
    rows = []
    sim.run(on_row=rows.append)
    return sim, x0, rows


def test_loss_free_consensus_equals_powers_of_the_weight_matrix(scenario_factory):
    """Round k combines what round k-1 published: after R rounds, x = W^(R-1) x0 (float32 on the wire)."""
    rounds = 12
    sim, x0, _ = run(consensus_scenario(scenario_factory, rounds))
    w = weight_matrix(sim.world.topology, sim.consensus.weights)
    expected = np.linalg.matrix_power(w, rounds - 1) @ x0
    np.testing.assert_allclose(sim.consensus.x, expected, atol=1e-5)
    assert sim.network.stats.messages_dropped.sum() == 0


def test_disagreement_decays_at_the_second_largest_eigenvalue_modulus(scenario_factory):
    rounds = 40
    sim, _, rows = run(consensus_scenario(scenario_factory, rounds))
    lam = slem(weight_matrix(sim.world.topology, sim.consensus.weights))
    d = np.array([r["consensus/disagreement"] for r in rows])
    # asymptotic regime: fit log d over the later rounds
    k = np.arange(len(d))
    late = slice(15, rounds)
    rate = np.exp(np.polyfit(k[late], np.log(d[late]), 1)[0])
    assert rate == pytest.approx(lam, abs=0.02)
    assert lam < 0.95  # the graph mixes: the test is not vacuous


def test_consensus_degrades_as_loss_grows(scenario_factory):
    finals = []
    for p in (0.0, 0.3, 0.6):
        sim, _, _ = run(consensus_scenario(scenario_factory, 30, **{"network.profiles.ethernet.loss.p": p}))
        finals.append(sim.consensus.disagreement())
        if p > 0:
            assert sim.network.stats.messages_dropped.sum() > 0
    assert finals[0] < finals[1] < finals[2]
    assert finals[2] < sim.consensus.initial_disagreement  # still converging, only slower


def test_metropolis_consensus_preserves_the_average_without_loss(scenario_factory):
    sim, x0, _ = run(consensus_scenario(scenario_factory, 20))
    np.testing.assert_allclose(sim.consensus.x.mean(axis=0), x0.mean(axis=0), atol=1e-6)
