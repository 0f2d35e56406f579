"""Diffusion pulls the devices' parameters together; independent learning does not.

Devices start from different random parameters (``common_init: false``) so that there is a
disagreement to remove. Under diffusion each update mixes a device's parameters with its
neighbours' through the simulated network, so the relative spread across a site shrinks
geometrically (a contraction at the rate of the weight matrix's second eigenvalue, slowed by
one update period of message delay and by the local steps); independent learners only move
by their own small gradient steps and stay about as far apart as they started.
"""

import numpy as np
import pytest
import torch

from fleet.sim.engine import Simulation, param_disagreement
from tests.sim.conftest import shrink


def disagreement(learner: str) -> np.ndarray:
    sc = shrink(
        horizon="12h",
        control_period="5min",
        **{
            "learner.name": learner,
            "learner.params": "{common_init: false, n_steps: 6}",
            "fleet.sites[0].devices": 8,
            "fleet.sites[1].devices": 8,
            "outputs.metrics_period": "30min",
            "network.churn.failures_per_day": 0.0,
            "fleet.sites[0].network": "{wifi: 1.0}",
        },
    )
    rows = []
    Simulation(sc).run(on_row=rows.append)
    return np.array([r["learner/param_disagreement"] for r in rows])


def test_diffusion_shrinks_disagreement_and_independent_does_not():
    diffusion, independent = disagreement("diffusion-v1"), disagreement("independent-v1")
    assert diffusion[-1] < 0.1 * diffusion[0], f"diffusion: {diffusion[0]:.3f} -> {diffusion[-1]:.3f}"
    assert independent[-1] > 0.8 * independent[0], f"independent: {independent[0]:.3f} -> {independent[-1]:.3f}"


def test_param_disagreement_is_the_relative_spread_within_each_group():
    # group 0: mean (3, 4) (norm 5), deviations (+-1, 0): RMS distance 1 -> 0.2;
    # group 1: every device equal -> 0; the metric averages the groups: 0.1
    params = torch.tensor([[4.0, 4.0], [7.0, 1.0], [2.0, 4.0], [7.0, 1.0]])
    assert param_disagreement(params, np.array([0, 1, 0, 1])) == pytest.approx(0.1, rel=1e-6)
    # a tiny spread on a large mean (what diffusion leaves), against the same in float64
    x = torch.full((1, 1000), 100.0) + torch.randn(50, 1000, generator=torch.Generator().manual_seed(0)) * 1e-3
    d = x.double() - x.double().mean(0)
    expected = float(d.square().sum(1).mean().sqrt() / x.double().mean(0).norm())
    assert param_disagreement(x, np.zeros(50, int)) == pytest.approx(expected, rel=1e-4)
