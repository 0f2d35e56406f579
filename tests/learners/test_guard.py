"""The guard: received parameters are checked against the receiver's own, per delivery; a device whose
update (or combine) leaves its parameters unsound goes back alone, with its optimizer restarted."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from fleet.learners.actor_critic import IndependentLearner
from fleet.learners.base import Deliveries, LearnerContext
from fleet.learners.centralized import CentralizedConfig, CentralizedLearner
from fleet.learners.guard import GuardConfig
from fleet.learners.stacked import ActorCriticConfig
from tests.learners.test_batching import N, diffusion, feed, rollout

HUGE = 3e38
"""What the compromised device of the issue published: finite, so the codec carries it."""


def alternating(p: int, value: float) -> np.ndarray:
    return np.where(np.arange(p) % 2 == 0, value, -value).astype(np.float32)


def away(own: torch.Tensor, distance: float) -> np.ndarray:
    """``own`` (P,) moved by ``distance`` along the all-ones direction."""
    return (own + distance / own.numel() ** 0.5).numpy()


def test_received_parameters_are_rejected_per_delivery_when_unsound_or_too_far_from_the_receivers_own():
    learner, topo = diffusion()
    own = learner.core.flat()
    norm = float(own[0].norm())  # common init: every device's own parameters are the same
    r = learner.cfg.guard.max_deviation
    messages = np.stack([
        away(own[0], 0.9 * r * norm),  # far, but within max_deviation: taken
        alternating(own.shape[1], HUGE),  # finite, but its distance overflows to inf
        away(own[0], 1.1 * r * norm),  # finite, small values, too far
        np.where(np.arange(own.shape[1]) == 0, 2e3, own[0].numpy()).astype(np.float32),  # near, one value beyond max_param
    ])
    edges = np.arange(4)  # four edges with four receivers: 0, 0, 1, 1 on the ring
    got = Deliveries.one_message_each(topo.receiver[edges], topo.sender[edges], [messages], np.full(4, 5.0))
    learner.inbox("params", got)
    assert learner.guard.rejected == 3
    assert torch.equal(learner.edge_params[0], torch.as_tensor(messages[0]))
    assert np.isfinite(learner.edge_time).tolist() == [True] + [False] * (len(topo.receiver) - 1)  # no trace of the rest
    assert learner.edge_params[1:].abs().sum() == 0


def test_a_device_whose_update_is_not_finite_alone_goes_back_and_restarts_its_optimizer():
    """NaN rewards of device 2 (a broken sensor) make its update NaN; the others learn as without it."""
    cfg = ActorCriticConfig()
    guarded, twin = (IndependentLearner(cfg, LearnerContext(N, 4, "heat", np.random.default_rng(1))) for _ in range(2))
    before = guarded.core.flat().clone()
    feed(twin, rollout(N, seed=3))
    r = rollout(N, seed=3)
    r.rewards[:, 2] = float("nan")
    feed(guarded, r)
    guarded.update(60.0)
    twin.update(60.0)
    after, honest = guarded.core.flat(), twin.core.flat()
    others = [0, 1, 3, 4]
    assert torch.equal(after[2], before[2]) and torch.equal(after[others], honest[others])  # batching adds no coupling
    assert not torch.equal(honest[2], before[2])  # device 2 would have learned with finite rewards
    assert guarded.guard.rollbacks == 1
    opt = guarded.core.optimizer
    assert all(m[2].abs().sum() == 0 and m[others].abs().sum() > 0 for m in opt.exp_avg + opt.exp_avg_sq)
    assert guarded.core.value_norm.stats[:, 2].abs().sum() == 0 and torch.isfinite(guarded.core.value_norm.stats).all()
    feed(guarded, rollout(N, seed=4))
    guarded.update(120.0)
    again = guarded.core.flat()
    assert torch.isfinite(again).all() and not torch.equal(again[2], before[2])  # it learns again


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_combine_that_throws_devices_out_of_bounds_is_undone_for_them_alone(optimizer):
    """Parameters of 5e3 held from device 0 reach its ring neighbours 1 and 4 through the plain
    combine, which leaves them beyond max_param (1e3); they go back to their parameters before the
    update, the others keep theirs. (The inbox rejects such values, and a convex combine of sound
    values is sound: held directly, they stand for whatever else could make a combine unsound.)"""
    learner, topo = diffusion(optimizer=optimizer)
    before = learner.core.flat().clone()
    from_0 = topo.sender == 0
    learner.edge_params = torch.where(torch.as_tensor(from_0)[:, None], 5e3, before[topo.receiver])
    learner.edge_time = np.zeros(len(topo.receiver))
    feed(learner, rollout(N, seed=3))
    learner.update(60.0)
    after = learner.core.flat()
    hit = np.isin(np.arange(N), topo.receiver[from_0])
    assert hit.tolist() == [False, True, False, False, True] and learner.guard.rollbacks == 2
    assert torch.equal(after[hit], before[hit])
    assert (after[~hit] - before[~hit]).abs().amax(1).gt(0).all() and after.abs().max() < 10


def test_a_device_rejects_a_cloud_policy_that_fails_the_check_and_the_cloud_never_broadcasts_one():
    learner = CentralizedLearner(CentralizedConfig(), LearnerContext(N, 4, "heat", np.random.default_rng(1)))
    own = learner.core.flat().clone()
    p = own.shape[1]
    policy = np.stack([away(own[0], 0.5), alternating(p, HUGE)])
    learner.inbox("params", Deliveries(np.array([0, 1]), np.array([N, N]), np.zeros(2), np.array([0, 1]), [policy]))
    assert learner.guard.rejected == 1
    assert torch.equal(learner.core.flat()[0], torch.as_tensor(policy[0])) and torch.equal(learner.core.flat()[1:], own[1:])
    # a hostile device uploads rewards of -3e38: the cloud's update overflows, and is undone
    cloud_before = learner.cloud.flat().clone()
    r = rollout(N, seed=3)
    r.rewards[:, 0] = -HUGE
    experience = [r.obs.transpose(0, 1).numpy(), r.actions.T.float().numpy(), r.rewards.T.numpy()]
    learner.inbox("experience", Deliveries.one_message_each(np.full(N, N), np.arange(N), experience, np.zeros(N)))
    learner.update(60.0)
    assert learner.guard.rollbacks == 1 and torch.equal(learner.cloud.flat(), cloud_before)
    assert all(np.isfinite(pub.arrays[0]).all() for kind, pub in learner.outbox(np.ones(N, bool)) if kind == "params")


@pytest.mark.parametrize("field, value", [("max_param", 0.0), ("max_param", float("inf")), ("max_deviation", -1.0),
                                          ("max_ratio", 2.0)])
def test_guard_thresholds_are_checked(field, value):
    with pytest.raises(ValidationError, match=field):
        GuardConfig(**{field: value})
