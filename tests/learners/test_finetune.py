"""Fine-tuning a trained actor with a fresh critic: ``critic_warmup`` trains the critic alone before it."""

import pytest
import torch

from fleet.learners import make_learner
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, flatten
from fleet.testing import TICK_S, _context, _run
from tests.learners.test_batching import L, N, assert_updates_agree, rollout

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


# --- anchor_coef: a trust region around the starting policy ----------------------------------


def _anchor_kl(core, obs):
    """KL(π_0 || π) (N,) of each device's policy from its anchor, mean over the states obs (N, B, F)."""
    with torch.no_grad():
        anchor, now = core.log_policy(obs, core.anchor), core.log_policy(obs)
        return (anchor.exp() * (anchor - now)).sum(-1).mean(1)


def _core(n, anchor_coef, seed=0, optimizer="adam"):
    cfg = ActorCriticConfig(anchor_coef=anchor_coef, optimizer=optimizer)
    core = ActorCritic(cfg, n, N_FEATURES, L, torch.Generator().manual_seed(seed), "cpu")
    core.anchor_here()
    return core


def test_at_its_anchor_the_actor_takes_the_step_it_takes_without_one():
    # KL(π_0 || π) is smallest, 0, at π = π_0: its gradient there is 0, so the first update (the actor
    # still at its anchor) is the plain one; the second, from a moved actor, is not. (SGD: Adam's first step
    # is about lr times the sign of each gradient, so it would turn float rounding of a gradient near 0 into a step.)
    plain, anchored = _core(N, 0.0, optimizer="sgd"), _core(N, 1.0, optimizer="sgd")
    assert plain.anchor is None and anchored.anchor is not None
    plain.update(rollout(N, seed=0), 0.95)
    anchored.update(rollout(N, seed=0), 0.95)
    torch.testing.assert_close(anchored.flat(), plain.flat(), atol=1e-7, rtol=0)
    moved = plain.flat() + 0.3 * torch.randn(plain.flat().shape, generator=torch.Generator().manual_seed(5))
    for core in (plain, anchored):
        core.load_flat(moved)
        core.update(rollout(N, seed=1), 0.95)
    assert (flatten(anchored.actor.parameters) - flatten(plain.actor.parameters)).abs().max() > 1e-4


def test_the_anchor_pulls_a_moved_actor_back_towards_its_starting_policy():
    plain, anchored = _core(N, 0.0), _core(N, 10.0)
    obs = rollout(N, seed=0).obs.transpose(0, 1)  # (N, T+1, F)
    g = torch.Generator().manual_seed(5)
    moved = plain.flat() + 0.3 * torch.randn(plain.flat().shape, generator=g)
    anchor = anchored.anchor
    for core in (plain, anchored):  # both moved the same way from the same start
        core.load_flat(moved)
    plain.anchor = anchor  # to measure its divergence only (with anchor_coef 0 it does not pull)
    start = _anchor_kl(anchored, obs)
    for step in range(10):
        plain.update(rollout(N, seed=step), 0.95)
        anchored.update(rollout(N, seed=step), 0.95)
    assert (_anchor_kl(anchored, obs) < start).all()
    assert (_anchor_kl(anchored, obs) < _anchor_kl(plain, obs)).all()


def test_anchored_stacked_updates_equal_separate_single_device_updates():
    batched = _core(N, 1.0)
    batched.load_flat(
        batched.flat() + 0.1 * torch.randn(batched.flat().shape, generator=torch.Generator().manual_seed(3))
    )
    singles = []
    for i in range(N):
        single = _core(1, 1.0, seed=99)
        single.load_flat(batched.flat()[i : i + 1])
        single.anchor = batched.anchor.frozen_copy()
        single.anchor.weights = [w[i : i + 1] for w in single.anchor.weights]
        single.anchor.biases = [b[i : i + 1] for b in single.anchor.biases]
        singles.append(single)
    assert_updates_agree(batched, singles)


@pytest.mark.parametrize("name", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_every_learner_anchors_to_the_policy_it_starts_from(name):
    learner = make_learner(name, {"anchor_coef": 0.5, "init_policy": "pretrained-v1"}, _context(4, 0))
    model = _model(learner)
    assert torch.equal(flatten(model.anchor.parameters), flatten(model.actor.parameters))
    _run(learner, 4, 32, seed=1)
    assert not torch.equal(flatten(model.anchor.parameters), flatten(model.actor.parameters))
    fresh = make_learner(name, {"anchor_coef": 0.5, "init_policy": "pretrained-v1"}, _context(4, 0))
    assert torch.equal(flatten(model.anchor.parameters), flatten(_model(fresh).anchor.parameters))


# --- temperature: the sampling policy sharpened towards the greedy one --------------------------


def test_at_a_temperature_the_devices_sample_from_the_sharpened_softmax_and_keep_their_greedy_action():
    cold = ActorCritic(ActorCriticConfig(temperature=0.5), N, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu")
    obs = rollout(N, seed=0).obs[0]  # (N, F)
    logits = cold.actor(obs.unsqueeze(1)).squeeze(1).detach()  # (N, L)
    expected = torch.softmax(2 * logits, -1)  # the logits divided by 0.5
    torch.testing.assert_close(cold.log_policy(obs.unsqueeze(1)).squeeze(1).exp(), expected)
    # the draws follow it: each device's action frequencies over 2,000 draws within 4 standard errors
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([cold.act(obs, gen) for _ in range(2_000)])  # (K, N)
    freq = torch.nn.functional.one_hot(draws, L).float().mean(0)  # (N, L)
    assert ((freq - expected).abs() <= 4 * (expected * (1 - expected) / 2_000).sqrt() + 1e-3).all()
    assert torch.equal(cold.act(obs, gen, greedy=True), logits.argmax(-1))
