"""Fine-tuning a trained actor with a fresh critic: ``critic_warmup`` trains the critic alone before it."""

import pytest
import torch

from fleet.learners import make_learner
from fleet.learners.stacked import flatten
from fleet.testing import TICK_S, _context, _run

UPDATE_S = 16 * TICK_S
"""Seconds between updates in ``_run``: n_steps of 16 ticks."""


def _model(learner):
    """The network that learns: the cloud's for centralized, the devices' otherwise."""
    return learner.cloud if learner.name == "centralized-v1" else learner.core


@pytest.mark.parametrize(
    "name, optimizer",
    [("independent-v1", "adam"), ("independent-v1", "rmsprop"), ("diffusion-v1", "sgd"), ("centralized-v1", "adam")],
)
def test_the_actor_keeps_its_policy_until_the_critic_warmup_ends(name, optimizer):
    # updates at 1 and 2 update periods train the critic alone (a centralized cloud gets its first
    # rollouts with the second); the one at 3, the warm-up's end, trains the actor too
    params = {"n_steps": 16, "optimizer": optimizer, "critic_warmup": 3 * UPDATE_S}
    learner = make_learner(name, params, _context(4, 0))
    model = _model(learner)
    actor, critic = flatten(model.actor.parameters), flatten(model.critic.parameters)
    _run(learner, 4, 32, seed=1)
    # the actor's gradient is 0 and so is every optimizer's step; a diffusion combine of equal actors
    # gives them back to float rounding (weights of 1/3 on the ring)
    assert torch.allclose(flatten(model.actor.parameters), actor, rtol=0, atol=1e-6)
    assert (flatten(model.critic.parameters) - critic).abs().max() > 1e-3
    _run(learner, 4, 16, seed=2, start=32)
    assert (flatten(model.actor.parameters) - actor).abs().max() > 1e-4


def test_without_a_warmup_the_actor_learns_from_the_first_update():
    learner = make_learner("independent-v1", {"n_steps": 16}, _context(4, 0))
    actor = flatten(learner.core.actor.parameters)
    _run(learner, 4, 16, seed=1)
    assert (flatten(learner.core.actor.parameters) - actor).abs().max() > 1e-4
