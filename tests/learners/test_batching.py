"""Batching keeps decentralization: the stacked learner equals N separate learners, and a
device's update depends only on its own experience and its own inbox."""

import numpy as np
import pytest
import torch

from fleet.learners.actor_critic import DiffusionConfig, DiffusionLearner
from fleet.learners.base import Deliveries, LearnerContext
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout
from fleet.scenario import TopologyConfig
from fleet.sim.topology import build_topology

N, T, L = 5, 12, 4


def rollout(n, seed):
    g = torch.Generator().manual_seed(seed)
    return Rollout(
        obs=torch.randn(T + 1, n, N_FEATURES, generator=g),
        actions=torch.randint(0, L, (T, n), generator=g),
        rewards=-torch.rand(T, n, generator=g) * 0.05,
    )


def slice_rollout(r, i):
    return Rollout(r.obs[:, i : i + 1], r.actions[:, i : i + 1], r.rewards[:, i : i + 1])


@pytest.mark.parametrize(
    "cfg", [ActorCriticConfig(), ActorCriticConfig(gae_lambda=1.0, max_grad_norm=1e-3, entropy_coef=0.1)]
)
def test_stacked_updates_equal_separate_single_device_updates(cfg):
    batched = ActorCritic(cfg, N, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu")
    singles = []
    for i in range(N):
        single = ActorCritic(cfg, 1, N_FEATURES, L, torch.Generator().manual_seed(99), "cpu")
        single.load_flat(batched.flat()[i : i + 1])
        singles.append(single)
    assert_updates_agree(batched, singles)
    assert not torch.allclose(batched.flat()[0], batched.flat()[1])  # devices really differ


def assert_updates_agree(batched, singles, steps=3):
    """Update the stacked core and the single-device ones on the same rollouts; their parameters agree."""
    for step in range(steps):
        r = rollout(N, seed=step)
        batched.update(r, 0.95)
        for i, single in enumerate(singles):
            single.update(slice_rollout(r, i), 0.95)
    expected = torch.cat([s.flat() for s in singles])
    # float32 sums in another order; Adam turns a gradient differing in its last bits into a step
    # differing by up to ~1e-5 (the steps themselves are lr = 3e-3)
    torch.testing.assert_close(batched.flat(), expected, atol=2e-5, rtol=1e-5)


def diffusion(n=N, **cfg):
    topo = build_topology(TopologyConfig(kind="ring", degree=2), [np.arange(n)], np.random.default_rng(0))
    ctx = LearnerContext(n, L, "heat", np.random.default_rng(1), "cpu", topo)
    return DiffusionLearner(DiffusionConfig(**cfg), ctx), topo


def feed(learner, r):
    """Put a rollout into the learner's buffers as if it had acted and observed."""
    learner._obs = list(r.obs)
    learner._actions = list(r.actions)
    learner._rewards = list(r.rewards) + [r.rewards[-1]]  # the newest step waits for its successor


def test_removing_one_devices_inbox_changes_only_that_devices_update():
    a, topo = diffusion()
    b, _ = diffusion()
    torch.testing.assert_close(a.core.flat(), b.core.flat())
    neighbours = torch.randn(
        len(topo.receiver), a.core.flat().shape[1], generator=torch.Generator().manual_seed(5)
    ).numpy()
    stamps = np.zeros(len(topo.receiver))
    a.inbox("params", Deliveries.one_message_each(topo.receiver, topo.sender, [neighbours], stamps))
    keep = topo.receiver != 2
    b.inbox(
        "params", Deliveries.one_message_each(topo.receiver[keep], topo.sender[keep], [neighbours[keep]], stamps[keep])
    )
    r = rollout(N, seed=3)
    feed(a, r)
    feed(b, r)
    a.update(60.0)
    b.update(60.0)
    differs = (a.core.flat() - b.core.flat()).abs().amax(dim=1) > 0
    assert differs.tolist() == [i == 2 for i in range(N)]


def test_combine_matches_the_hand_formula_with_renormalized_uniform_weights():
    learner, topo = diffusion()
    p = learner.core.flat().shape[1]
    own = torch.randn(N, p)
    values = torch.randn(len(topo.receiver), p)
    learner.edge_params = values.clone()
    learner.edge_time = np.where(topo.sender == 0, -1e9, 0.0)  # messages from device 0 are stale
    out = learner.combine(own, 10.0)
    for i in range(N):
        nbrs = [e for e in range(len(topo.receiver)) if topo.receiver[e] == i and topo.sender[e] != 0]
        c = 1 / 3  # ring: closed neighbourhood of 3, uniform weights
        expected = (c * own[i] + sum(c * values[e] for e in nbrs)) / (c + c * len(nbrs))
        torch.testing.assert_close(out[i], expected)


@pytest.mark.parametrize("robust", ["median", "trimmed-mean", "clip"])
def test_one_hostile_neighbour_cannot_wreck_the_others_with_a_robust_combine(robust):
    """Device 0 sends huge parameters; with the plain combine its neighbours are thrown far off,
    with a robust combine they stay near the honest values."""
    n = 7
    results = {}
    for mode in ("none", robust):
        learner, topo = diffusion(n=n, robust=mode, weights="uniform")
        topo_full = build_topology(TopologyConfig(kind="complete"), [np.arange(n)], np.random.default_rng(0))
        learner.topology = topo_full
        learner.receiver = torch.as_tensor(topo_full.receiver)
        deg = np.bincount(topo_full.receiver, minlength=n)
        learner.weights = torch.as_tensor(1 / (1 + deg[topo_full.receiver]), dtype=torch.float32)
        learner.self_weights = torch.as_tensor(1 / (1 + deg), dtype=torch.float32)
        p = learner.core.flat().shape[1]
        honest = torch.ones(n, p)
        values = torch.ones(len(topo_full.receiver), p)
        values[torch.as_tensor(topo_full.sender) == 0] = 1e6
        learner.edge_params = values
        learner.edge_time = np.zeros(len(topo_full.receiver))
        results[mode] = learner.combine(honest, 1.0)[1:]
    assert results["none"].abs().max() > 1e4
    deviation = (results[robust] - 1).norm(dim=1).max()
    if robust == "clip":  # the hostile deviation is clipped to norm 5, then weighted 1/7
        assert deviation <= 5.0 / 7 + 1e-4
    else:  # median and trimmed mean drop the outlier entirely
        assert deviation < 1e-4


def test_dense_float16_messages_are_kept_in_float16_and_combine_as_in_float32():
    """Dense float16 messages decode to values that float16 holds exactly: storing them so loses nothing."""
    half, topo = diffusion(comm={"dtype": "float16"})
    full, _ = diffusion()
    assert half.edge_params.dtype == torch.float16 and half.reconstruction is None
    p = half.core.flat().shape[1]
    values = torch.randn(len(topo.receiver), p, generator=torch.Generator().manual_seed(6)).half().float().numpy()
    for learner in (half, full):
        learner.inbox(
            "params", Deliveries.one_message_each(topo.receiver, topo.sender, [values], np.zeros(len(topo.receiver)))
        )
    own = torch.randn(N, p)
    assert torch.equal(half.combine(own, 1.0), full.combine(own, 1.0))


FAR = {"guard": {"max_norm_ratio": 100.0}}
"""Lets through the constant test values below, of some 20 times the norm of the learner's own
parameters (the guard itself is tested in test_guard.py)."""


def test_an_edge_given_twice_in_one_inbox_keeps_its_last_message():
    learner, topo = diffusion(**FAR)
    p = learner.core.flat().shape[1]
    first, last = np.ones((1, p), np.float32), np.full((1, p), 2.0, np.float32)
    receiver, sender = topo.receiver[:1].repeat(2), topo.sender[:1].repeat(2)
    learner.inbox(
        "params", Deliveries.one_message_each(receiver, sender, [np.concatenate([first, last])], np.array([5.0, 5.0]))
    )
    assert torch.equal(learner.edge_params[0], torch.full((p,), 2.0)) and learner.edge_time[0] == 5.0
    assert learner.edge_params[1:].abs().sum() == 0


def test_a_message_delivered_to_several_receivers_is_stored_on_each_edge():
    """The engine hands the learner each message once, with the index of the message per delivery."""
    learner, topo = diffusion(**FAR)
    sender = topo.sender[0]
    edges = np.flatnonzero(topo.sender == sender)
    p = learner.core.flat().shape[1]
    messages = np.stack([np.full(p, 7.0, np.float32), np.full(p, 3.0, np.float32)])  # another sender's, then sender's
    got = Deliveries(
        topo.receiver[edges], topo.sender[edges], np.full(len(edges), 5.0), np.ones(len(edges), np.int64), [messages]
    )
    learner.inbox("params", got)
    assert len(edges) > 1 and torch.equal(learner.edge_params[edges], torch.full((len(edges), p), 3.0))
    assert (learner.edge_time[edges] == 5.0).all() and learner.edge_params[
        np.setdiff1d(np.arange(len(topo.receiver)), edges)
    ].abs().sum() == 0


def test_deliveries_check_their_shapes():
    with pytest.raises(ValueError, match="msg must be integers indexing the M = 2 rows"):
        Deliveries(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1), np.array([2]), [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"shape \(D,\) = \(2,\)"):
        Deliveries(np.zeros(2, np.int64), np.zeros(1, np.int64), np.zeros(2), np.zeros(2, np.int64), [np.zeros((2, 3))])


def test_flat_is_handed_out_again_until_the_parameters_change():
    ac = ActorCritic(ActorCriticConfig(), N, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu")
    first = ac.flat()
    assert ac.flat() is first
    ac.update(rollout(N, seed=1), 0.95)
    updated = ac.flat()
    assert updated is not first and not torch.equal(updated, first)
    mixed = updated * 0.5
    ac.load_flat(mixed)
    assert ac.flat() is mixed
    mixed[0, 0] = 7.0  # written to after loading: no longer what the parameters hold
    assert torch.equal(ac.flat(), updated * 0.5)
    with torch.no_grad():
        ac.parameters[0][0, 0, 0] = 3.0
    assert ac.flat()[0, 0] == 3.0
