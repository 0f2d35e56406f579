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


def test_received_parameters_are_rejected_per_delivery_when_unsound_or_much_larger_than_the_receivers_own():
    """Ring of 5; edges 0, 1 go to device 0, edges 2, 3 to device 1, whose own parameters are
    shrunk to a tenth: the same message can fit one receiver and not the other."""
    learner, topo = diffusion(guard={"max_param": 1.0})  # one value can break it, the norm fitting (own: 0.21 at most)
    own = learner.core.flat().clone()
    own[1] *= 0.1
    learner.core.load_flat(own)
    r = learner.cfg.guard.max_norm_ratio
    ones = np.full(own.shape[1], 1 / own.shape[1] ** 0.5, np.float32)  # norm 1, each value small
    size = float(own[0].norm())
    messages = np.stack(
        [
            0.9
            * r
            * size
            * ones,  # to device 0 (edge 0): within r x its norm, taken; to device 1 (edge 2): 9 r, rejected
            alternating(own.shape[1], HUGE),  # to device 0: finite, but beyond max_param and its norm overflows
            # device 1: one value > max_param
            np.where(np.arange(own.shape[1]) == 0, 2.0, own[1].numpy()).astype(np.float32),
            0.5 * own[1].numpy(),  # to device 1: smaller than its own, taken
        ]
    )
    assert topo.receiver[:4].tolist() == [0, 0, 1, 1]
    got = Deliveries(topo.receiver[:4], topo.sender[:4], np.full(4, 5.0), np.array([0, 1, 2, 3]), [messages])
    learner.inbox("params", got)
    again = Deliveries(topo.receiver[2:3], topo.sender[2:3], np.full(1, 6.0), np.array([0]), [messages])
    learner.inbox("params", again)  # message 0, to device 1 this time
    assert learner.guard.rejected == 3
    assert torch.equal(learner.edge_params[0], torch.as_tensor(messages[0]))
    assert torch.equal(learner.edge_params[3], torch.as_tensor(messages[3]))
    stored = np.isfinite(learner.edge_time)
    assert stored.tolist() == [True, False, False, True] + [False] * (len(topo.receiver) - 4)  # no trace of the rest


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
    policy = np.stack([1.1 * own[0].numpy(), alternating(p, HUGE)])
    learner.inbox("params", Deliveries(np.array([0, 1]), np.array([N, N]), np.zeros(2), np.array([0, 1]), [policy]))
    assert learner.guard.rejected == 1
    assert torch.equal(learner.core.flat()[0], torch.as_tensor(policy[0])) and torch.equal(
        learner.core.flat()[1:], own[1:]
    )
    # a hostile device uploads rewards of -3e38: the cloud's update overflows, and is undone
    cloud_before = learner.cloud.flat().clone()
    r = rollout(N, seed=3)
    r.rewards[:, 0] = -HUGE
    logp = np.full(r.rewards.T.shape, np.log(1 / 4), np.float32)
    experience = [r.obs.transpose(0, 1).numpy(), r.actions.T.float().numpy(), r.rewards.T.numpy(), logp]
    learner.inbox("experience", Deliveries.one_message_each(np.full(N, N), np.arange(N), experience, np.zeros(N)))
    learner.update(60.0)
    assert learner.guard.rollbacks == 1 and torch.equal(learner.cloud.flat(), cloud_before)
    assert all(np.isfinite(pub.arrays[0]).all() for kind, pub in learner.outbox(np.ones(N, bool)) if kind == "params")


@pytest.mark.parametrize(
    "field, value", [("max_param", 0.0), ("max_param", float("inf")), ("max_norm_ratio", -1.0), ("max_ratio", 2.0)]
)
def test_guard_thresholds_are_checked(field, value):
    with pytest.raises(ValidationError, match=field):
        GuardConfig(**{field: value})
