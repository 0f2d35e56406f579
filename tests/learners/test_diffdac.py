"""Diff-DAC as published: a device combines its adapted parameters with its neighbours' adapted
parameters of the same round, then adds its next local step (fleet/learners/actor_critic.py:
ψ_i(k+1) = Σ_j c_ij ψ_j(k) + Δ_i(k+1)), and publishes its adapted parameters."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fleet.learners import make_learner
from fleet.learners.base import Deliveries
from fleet.learners.shipped import presets
from fleet.testing import _context, check_learner_contract
from tests.learners.test_batching import T, feed, rollout

N = 5


def published(learner) -> np.ndarray:
    (kind, pub) = learner.outbox(np.ones(N, bool))[0]
    assert kind == "params" and list(pub.sender) == list(range(N))
    return pub.arrays[0]


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_a_round_combines_the_neighbours_adapted_parameters_then_adds_the_local_step(optimizer):
    params = {"n_steps": T, "optimizer": optimizer, "lr": 0.05}
    diffusion = make_learner("diffusion-v1", params, _context(N, 0))
    alone = make_learner("independent-v1", params, _context(N, 0))  # the same draw: Δ without any combine
    topo = diffusion.topology
    # round 1: every device adapts and publishes ψ(1)
    feed(diffusion, rollout(N, 1)), feed(alone, rollout(N, 1))
    diffusion.update(60.0), alone.update(60.0)
    psi_1 = diffusion.core.flat().clone()
    # nothing received yet: ψ(1) = ψ(0) + Δ(1), to float rounding
    torch.testing.assert_close(psi_1, alone.core.flat(), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(published(diffusion), psi_1.numpy())  # the adapted parameters
    alone.core.load_flat(psi_1.clone())  # the same optimizer state already: the same round-2 gradient
    # ψ(1) reaches every neighbour; round 2
    sent = psi_1.numpy()[topo.sender]
    diffusion.inbox("params", Deliveries.one_message_each(topo.receiver, topo.sender, [sent], np.full(len(sent), 60.0)))
    feed(diffusion, rollout(N, 2)), feed(alone, rollout(N, 2))
    diffusion.update(120.0), alone.update(120.0)
    step = alone.core.flat() - psi_1  # Δ(2): the local step from ψ(1) on round 2's rollout
    for i in range(N):
        closed = [i, *topo.sender[topo.receiver == i]]  # ring of degree 2: uniform weights 1/3
        expected = psi_1[closed].mean(0) + step[i]
        torch.testing.assert_close(diffusion.core.flat()[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(published(diffusion), diffusion.core.flat().numpy())


def test_the_reference_settings_are_a_preset():
    diff_dac = presets()["diffusion-v1"]["diff-dac"]
    learner = make_learner("diffusion-v1", diff_dac, replace(_context(N, 0), control_period_s=900.0))
    cfg = learner.cfg
    assert (cfg.optimizer, cfg.lr, cfg.n_steps, cfg.gae_lambda, cfg.normalize_advantages) == (
        "rmsprop",
        7e-4,
        5,
        1.0,
        False,
    )
    assert learner.gamma == pytest.approx(0.99, abs=1e-4)  # at the 15-minute tick of the study scenarios
    assert type(learner.core.optimizer).__name__ == "RMSprop"


def test_the_diff_dac_preset_keeps_the_learner_contract_and_resumes_identically():
    """RMSprop's state (each parameter's mean square and step count) survives a save and load."""
    check_learner_contract("diffusion-v1", params=presets()["diffusion-v1"]["diff-dac"])
