"""The cloned Vickrey society: utilities worked by hand, batching that couples nothing, the bandit's
equilibrium, and the auction-v1 learner's config."""

import math

import numpy as np
import pytest
import torch

from fleet.errors import ConfigError
from fleet.learners import Deliveries, LearnerContext, Observation, make_learner
from fleet.learners.auction.config import SocietyConfig
from fleet.learners.auction.society import Auction, Society, utilities
from fleet.learners.auction.tasks import BANDIT, CHAIN, Bandit, Chain, equilibrium_bids, train
from fleet.learners.base import PREVIEW_H, persistence


def observation(n):
    h = len(PREVIEW_H)
    return Observation(
        temp_c=np.full(n, 19.0),
        outdoor_c=np.full(n, -5.0),
        band_lo=np.full(n, 20.0),
        band_hi=np.full(n, 23.0),
        occupied=np.ones(n, bool),
        price=np.full(n, 0.3),
        feeder_load=np.full(n, 0.5),
        hour=8.0,
        online=np.ones(n, bool),
        band_lo_ahead=np.full((n, h), 20.0),
        band_hi_ahead=np.full((n, h), 23.0),
        price_ahead=np.full((n, h), 0.3),
        **persistence(np.full(n, -5.0)),
    )


def society(n, cfg=None, f=5, p=3, gamma=0.9, seed=0):
    return Society(cfg or SocietyConfig(), n, f, p, gamma, torch.Generator().manual_seed(seed))


# --- the mechanisms ---------------------------------------------------------------------------

# bids at t: primitive 1 wins with 0.5, the second-highest is 0.3; at t+1: 0.6 and 0.2; r = 0.1, γ = 0.9
WORKED = {
    "ccv": 0.1 + 0.9 * 0.2 - 0.3,
    "vickrey": 0.1 + 0.9 * 0.6 - 0.3,
    "bucket-brigade": 0.1 + 0.9 * 0.6 - 0.5,
    "env": 0.1,
}


@pytest.mark.parametrize("mechanism", sorted(WORKED))
def test_only_the_winner_is_paid_as_its_mechanism_says(mechanism):
    bids = torch.tensor([[[[0.3], [0.5]]], [[[0.6], [0.2]]]])  # (T + 1, N, P, R) = (2, 1, 2, 1)
    u = utilities(bids, torch.tensor([[0.1]]), torch.tensor([[False]]), 0.9, mechanism)
    assert u.shape == (1, 1, 2, 1)
    assert u[0, 0, 0, 0] == 0 and u[0, 0, 1, 0].item() == pytest.approx(WORKED[mechanism], abs=1e-6)


def test_after_the_end_of_an_episode_nothing_is_looked_ahead_to():
    bids = torch.tensor([[[[0.3], [0.5]]], [[[0.6], [0.2]]]])
    u = utilities(bids, torch.tensor([[0.1]]), torch.tensor([[True]]), 0.9, "ccv")
    assert u[0, 0, 1, 0].item() == pytest.approx(0.1 - 0.3)


@pytest.mark.parametrize(
    ("mechanism", "expected"), [("ccv", 0.1 + 0.9 * 0.2 - 0.3), ("vickrey", 0.1 + 0.9 * 0.6 - 0.3)]
)
def test_the_winner_looks_ahead_to_the_next_auction_as_if_no_bidder_were_silenced(mechanism, expected):
    """At t+1 primitive 1 is silenced (it drew 0.6, held as -0.6) and primitive 0 wins alone for nothing; the winner
    at t is still paid on both draws: the second-highest 0.2 (ccv) or the highest 0.6 (vickrey)."""
    bids = torch.tensor([[[[0.3], [0.5]]], [[[0.2], [-0.6]]]])
    u = utilities(bids, torch.tensor([[0.1]]), torch.tensor([[False]]), 0.9, mechanism)
    assert u[0, 0, 1, 0].item() == pytest.approx(expected, abs=1e-6)
    assert Auction.of(bids[1]).second.item() == 0  # in its own auction the lone bidder pays nothing


def test_clones_compete_and_a_lone_bidder_pays_nothing():
    a = Auction.of(torch.tensor([[[0.2, 0.7], [0.4, 0.6]], [[0.9, -1.0], [-1.0, -1.0]]]))  # (N, P, R) = (2, 2, 2)
    assert a.winner.tolist() == [1, 0] and a.primitive.tolist() == [0, 0]
    assert a.second.tolist() == pytest.approx([0.6, 0.0])  # a silenced bidder (-1) sets no price


# --- batching ---------------------------------------------------------------------------------


def feed(soc, obs, bids, rewards, done):
    for t in range(len(rewards)):
        soc.record(obs[t], Auction.of(bids[t]))
        soc.reward(rewards[t], done[t])
    soc.record(obs[-1], Auction.of(bids[-1]))
    return soc.update()


def test_the_batched_society_equals_separate_ones():
    """Three devices in one society end with the parameters of three societies of one device fed the same."""
    n, t, p, r = 3, 12, 3, 2
    cfg = SocietyConfig(redundancy=r, batch_size=8, epochs=2, policy_lr=1e-2, dropout=True)
    g = torch.Generator().manual_seed(7)
    obs = torch.randn(t + 1, n, 5, generator=g)
    bids = torch.rand(t + 1, n, p, r, generator=g).where(torch.rand(t + 1, n, p, r, generator=g) < 0.8, -1.0)
    rewards, done = torch.rand(t, n, generator=g), torch.rand(t, n, generator=g) < 0.2
    batched = society(n, cfg, p=p)
    feed(batched, obs, bids, rewards, done)
    for i in range(n):
        alone = society(1, cfg, p=p)
        feed(alone, obs[:, i : i + 1], bids[:, i : i + 1], rewards[:, i : i + 1], done[:, i : i + 1])
        for mine, theirs in zip(
            batched.policy.parameters + batched.value.parameters, alone.policy.parameters + alone.value.parameters
        ):
            torch.testing.assert_close(mine[i : i + 1], theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(batched.policy.w0[0], society(1, cfg, p=p).policy.w0[0])  # it did learn


def test_dropout_silences_bidders_in_its_share_of_auctions():
    """With ``dropout`` 0.3, 30 % of the auctions draw a number of silenced bidders uniform in 0..P R - 2: with
    P R = 4 bidders, 0, 1 or 2, so 0.3 x 2/3 = 20 % of the auctions silence someone, and never more than two."""
    n = 60_000
    auction = society(n, SocietyConfig(dropout=0.3), p=2).auction(torch.zeros(n, 5))
    silenced = (auction.bids < 0).flatten(1).sum(1)
    assert (silenced > 0).float().mean().item() == pytest.approx(0.3 * 2 / 3, abs=0.01)
    assert silenced.max().item() == 2


def test_the_policy_step_halves_every_halflife_of_policy_steps():
    """With ``policy_lr_halflife`` 4 the k-th policy step (k from 0) is taken at ``policy_lr * 0.5 ** (k / 4)``."""
    n, t, p, r = 2, 12, 3, 2
    cfg = SocietyConfig(redundancy=r, batch_size=4, epochs=2, policy_lr=1e-2, policy_lr_halflife=4)
    g = torch.Generator().manual_seed(3)
    soc = society(n, cfg, p=p)
    feed(
        soc,
        torch.randn(t + 1, n, 5, generator=g),
        torch.rand(t + 1, n, p, r, generator=g),
        torch.rand(t, n),
        torch.zeros(t, n, dtype=torch.bool),
    )
    last = float(soc.policy_opt.step_count) - 1  # 12 steps in minibatches of 2, twice: 12 policy steps
    assert last == 11 and soc.policy_opt.lr == pytest.approx(1e-2 * 0.5 ** (11 / 4))


def test_primitives_start_at_beta_one_one():
    alpha, beta = society(2).beta(torch.randn(2, 4, 5))
    assert torch.allclose(alpha, torch.ones(())) and torch.allclose(beta, torch.ones(()))


# --- the equilibrium --------------------------------------------------------------------------


# --- auction-v1 -------------------------------------------------------------------------------


def test_the_discount_per_tick_falls_to_1_over_e_over_the_horizon():
    ctx = LearnerContext(2, 4, "heat", np.random.default_rng(0), control_period_s=900.0)
    learner = make_learner("auction-v1", {"discount_horizon": "6h"}, ctx)
    assert learner.gamma == pytest.approx(math.exp(-900 / 21600)) and learner.gamma**24 == pytest.approx(math.exp(-1))
    with pytest.raises(ConfigError, match="learner.params.discount_horizon"):
        make_learner("auction-v1", {"discount_horizon": "59s"}, LearnerContext(2, 4, "heat", np.random.default_rng(0)))


LEVELS = (0.0, 1.5, 3.0, 4.5)


def cleared_learner(**market):
    """Three devices with a market; the round at 0 s bid by devices 0 and 1, cleared at 10 s and heard at 60 s:
    device 0 won 1.5 kW at 0.5 per kWh, device 1 nothing; device 2 never bid. Returns the learner, an
    observation and what the society chose at its last auction."""
    ctx = LearnerContext(
        3, 4, "heat", np.random.default_rng(0), control_period_s=60.0, levels_kw=np.tile(LEVELS, (3, 1))
    )
    learner = make_learner("auction-v1", {"market": {"period": "5min", "window": "10s", **market}}, ctx)
    obs = observation(3)
    chosen = lambda: Auction.of(learner.society._bids[-1]).primitive.numpy()  # noqa: E731 (what the society chose)
    assert (learner.act(obs) == chosen()).all()  # no clearing yet: every device on its own
    sender, bids = learner.market_bids(0.0, np.array([True, True, False]))
    assert sender.tolist() == [0, 1] and bids[:, 1].tolist() == [LEVELS[i] for i in chosen()[:2]]
    one = np.ones((3, 1), np.float32)
    clearing = Deliveries.one_message_each(
        np.arange(3), np.full(3, 3), [0 * one, 1.5 * one, 0.5 * one], np.full(3, 10.0)
    )
    learner.market_inbox(60.0, [clearing])
    return learner, obs, chosen


def test_under_a_capping_grant_a_device_draws_at_most_its_kw_pays_the_price_and_is_alone_once_it_expires():
    learner, obs, chosen = cleared_learner(grant="cap", grant_hold="5min")  # a grant of one period
    for _ in range(5):
        level = learner.act(obs)
        want = chosen()
        assert level[0] == min(want[0], 1) and level[1] == 0 and level[2] == want[2]
        bids = learner.market_bids(60.0, np.ones(3, bool))[1]
        assert bids[:, 1].tolist() == [LEVELS[i] for i in want]  # a device asks for what it wants, capped or not
    learner.observe(np.zeros(3))
    paid = 0.5 * 1.0 * LEVELS[level[0]] / 60  # price x price_per_kwh x kWh of one minute
    expected = (1 - learner.gamma) * (1 - paid / learner.reward_range)
    assert learner.society._rewards[-1][0].item() == pytest.approx(expected)
    assert learner.society._rewards[-1][1].item() == pytest.approx(1 - learner.gamma)  # drew nothing, paid nothing
    learner.market_inbox(0.0 + 300 + 10, [])  # the next round's clearing is due: none came
    assert (learner.act(obs) == chosen()).all()


def test_by_default_a_device_runs_at_the_power_it_was_granted():
    learner, obs, chosen = cleared_learner()
    for _ in range(5):
        level = learner.act(obs)
        assert level.tolist()[:2] == [1, 0] and level[2] == chosen()[2]  # 1.5 kW is level 1; nothing is level 0


def test_a_grant_holds_through_a_lost_clearing_for_grant_hold_then_the_device_is_alone():
    learner, obs, chosen = cleared_learner(grant_hold="10min")  # the round at 0 s, cleared at 10 s
    learner.market_inbox(300 + 10, [])  # the next round's clearing is due and lost: the grant still holds
    assert learner.act(obs).tolist()[:2] == [1, 0]
    learner.market_inbox(600 + 10 - 1, [])
    assert learner.act(obs).tolist()[:2] == [1, 0]
    learner.market_inbox(600 + 10, [])  # 10 minutes after its clearing was due: alone
    assert (learner.act(obs) == chosen()).all()


def test_a_grant_of_a_levels_kw_as_the_wire_carries_it_holds_that_level():
    """A heat pump's levels need not be round numbers; the clearing carries the kW it won as float32, which
    may round below the level's float64 kW: the device still runs that level, not the one below."""
    levels = np.array([0.0, 1.4177, 2.8354, 4.2531])
    assert np.float32(levels[3]) < levels[3]  # float32 rounds this one down
    ctx = LearnerContext(1, 4, "heat", np.random.default_rng(0), control_period_s=60.0, levels_kw=levels[None])
    learner = make_learner("auction-v1", {"market": {"period": "5min", "window": "10s"}}, ctx)
    learner.act(observation(1))
    learner.market_bids(0.0, np.ones(1, bool))
    arrays = [np.zeros((1, 1), np.float32), np.full((1, 1), levels[3], np.float32), np.zeros((1, 1), np.float32)]
    learner.market_inbox(60.0, [Deliveries.one_message_each(np.arange(1), np.full(1, 1), arrays, np.full(1, 10.0))])
    assert learner.act(observation(1)).tolist() == [3]


def test_a_device_can_offer_its_margin_over_its_lowest_level():
    """With ``market.valuation: margin`` a device offers its winning bid less the best bid of its lowest level
    (what it loses without power), not its winning bid: a device that wants nothing offers nothing."""
    ctx = LearnerContext(
        8, 4, "heat", np.random.default_rng(0), control_period_s=60.0, levels_kw=np.tile((0.0, 1.5, 3.0, 4.5), (8, 1))
    )
    learner = make_learner("auction-v1", {"market": {"period": "5min", "valuation": "margin"}}, ctx)
    learner.act(observation(8))
    bids = learner.society._bids[-1]  # (N, P, R)
    first, off = bids.flatten(1).amax(1), bids[:, 0].amax(1)
    offer = learner.market_bids(0.0, np.ones(8, bool))[1][:, 0]
    assert offer == pytest.approx((first - off).numpy(), abs=1e-6)
    wants_nothing = Auction.of(bids).primitive.numpy() == 0
    assert (offer[wants_nothing] == 0).all() and (offer[~wants_nothing] > 0).all()


@pytest.fixture
def one_thread():
    """Torch on one thread: on tensors this small, more threads only wait on each other (4x the CPU time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_bandits_bids_converge_to_the_arms_values(one_thread):
    """Eight devices each learn the 4-arm bandit alone; their mean bids come within 0.06 of 0.2, 0.4, 0.6, 0.8.

    The issue's target is 0.03 for the mean of 5 seeds after a long run; in 12,000 episodes (seconds) the bids
    have reached the equilibrium but still wander about it by up to 0.03 (measured over checkpoints 10,000 to
    20,000 episodes), hence 0.03 more. A society that does not price its bids (e.g. paid the plain reward,
    ``env``) bids towards 1 and fails; one whose weaker arms never win (no dropout) leaves them far below."""
    n, bandit = 8, Bandit(8)
    soc = Society(BANDIT, n, bandit.obs_dim, bandit.arms, 0.99, torch.Generator().manual_seed(0))
    train(soc, bandit, 12_000, update_every=256)
    bids = equilibrium_bids(soc, bandit).mean(0)  # (S, P) = (1, 4)
    assert (bids - bandit.q_values()).abs().max() < 0.06, bids


def test_on_the_chain_the_losing_primitive_bids_up_to_its_value(one_thread):
    """Four devices learn the 6-state chain for 40,000 steps; both primitives' mean bids come within 0.08 of their
    Q-values in every state, "left" (which never wins at the equilibrium) included.

    The benchmark's 80,000 steps bring them within 0.03; half as many leave them short by up to 0.05 (this seed),
    hence 0.03 more. Without dropout (the settings before, ``FAST``) "left" only ever learns to lose: 0.6 below."""
    n, chain = 4, Chain(4)
    soc = Society(CHAIN, n, chain.obs_dim, 2, 0.99, torch.Generator().manual_seed(0))
    train(soc, chain, 40_000, update_every=256)
    bids = equilibrium_bids(soc, chain).mean(0)  # (S, P) = (5, 2)
    assert (bids - chain.q_values(0.99)).abs().max() < 0.08, bids


def test_a_learner_told_nothing_of_its_power_levels_refuses_the_market():
    """A board's agent gives its learner no power levels: the market is refused by name, not silently off."""
    ctx = LearnerContext(1, 4, "heat", np.random.default_rng(0), control_period_s=60.0)
    with pytest.raises(ConfigError, match="learner.params.market.period"):
        make_learner("auction-v1", {"market": {"period": "15min"}}, ctx)
