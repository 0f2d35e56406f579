"""Churn against two-state continuous-time Markov chain theory; scheduled link cuts."""

import numpy as np
import pytest

from fleet.net.churn import Churn, LinkCuts

RATE, DOWNTIME = 0.01, 25.0  # fail every 100 s online on average, 25 s offline
OFFLINE = RATE * DOWNTIME / (1 + RATE * DOWNTIME)  # = 0.2


def history(n, horizon, steps, seed):
    """All transitions of n devices over [0, horizon], collected over `steps` calls."""
    churn = Churn(n, RATE, DOWNTIME, np.random.default_rng(seed))
    calls = [churn.advance(t) for t in np.linspace(0, horizon, steps + 1)[1:]]
    return churn, *(np.concatenate(parts) for parts in zip(*calls))


def test_fraction_offline_follows_the_transient_and_the_stationary_law():
    n = 20_000
    churn = Churn(n, RATE, DOWNTIME, np.random.default_rng(1))
    for t in [20.0, 1_000.0]:
        churn.advance(t)
        # P(offline at t | online at 0) = q (1 - exp(-(rate + 1/downtime) t))
        expected = OFFLINE * (1 - np.exp(-(RATE + 1 / DOWNTIME) * t))
        assert abs((~churn.online).mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_mean_uptime_and_downtime_match_the_rates():
    n, horizon = 2_000, 5_000.0
    churn, device, time, online_after = history(n, horizon, steps=20, seed=2)
    by_device = np.lexsort((time, device))
    device, time, online_after = device[by_device], time[by_device], online_after[by_device]
    first = np.r_[True, device[1:] != device[:-1]]
    start = np.where(first, 0.0, np.r_[0.0, time[:-1]])  # everyone is online from t = 0
    held = time - start  # each transition ends a spell in the state it leaves
    # the spell still running at the horizon is censored: count its time but not its end
    last_transition = np.zeros(n)
    last_transition[device] = time  # sorted by time within a device: the last one wins
    censored = horizon - last_transition
    up_time = held[~online_after].sum() + censored[churn.online].sum()
    down_time = held[online_after].sum() + censored[~churn.online].sum()
    ups_ended, downs_ended = np.count_nonzero(~online_after), np.count_nonzero(online_after)
    # maximum-likelihood mean of censored exponential spells: exposure / completed spells,
    # with standard error mean / sqrt(completed spells)
    assert abs(up_time / ups_ended - 1 / RATE) < 4 * (1 / RATE) / np.sqrt(ups_ended)
    assert abs(down_time / downs_ended - DOWNTIME) < 4 * DOWNTIME / np.sqrt(downs_ended)
    # the time-average fraction offline is the stationary one, less the start-online transient
    # (integral of q exp(-(a + b) t) dt / T); for a two-state chain with correlation time
    # 1 / (a + b) the time average over T has variance 2 q (1 - q) / ((a + b) T), per device
    relax = RATE + 1 / DOWNTIME
    expected = OFFLINE - OFFLINE / relax / horizon
    se = np.sqrt(2 * OFFLINE * (1 - OFFLINE) / (relax * horizon) / n)
    assert abs(down_time / (n * horizon) - expected) < 4 * se


def test_transitions_are_sorted_and_alternate_per_device():
    churn, device, time, online_after = history(300, 2_000.0, steps=7, seed=3)
    assert np.all(np.diff(time) >= 0)
    by_device = np.lexsort((time, device))
    device, online_after = device[by_device], online_after[by_device]
    first = np.r_[True, device[1:] != device[:-1]]
    assert not online_after[first].any()  # everyone starts online, so first goes offline
    assert np.all(online_after[1:][~first[1:]] != online_after[:-1][~first[1:]])
    last = np.r_[first[1:], True]
    np.testing.assert_array_equal(churn.online[device[last]], online_after[last])


def test_each_call_returns_the_transitions_due_since_the_last_one():
    churn = Churn(500, 0.1, 5.0, np.random.default_rng(4))
    _, before, _ = churn.advance(10.0)
    _, after, _ = churn.advance(30.0)
    assert before.max() <= 10.0 < after.min() and after.max() <= 30.0
    assert np.all(np.diff(after) >= 0)


def test_a_device_can_flip_several_times_in_one_call():
    churn = Churn(1, 1.0, 1.0, np.random.default_rng(5))
    device, _, online_after = churn.advance(1_000.0)
    assert len(device) > 100  # ~500 flips expected in 1,000 s at one flip per second each way
    assert np.all(online_after[1::2]) and not np.any(online_after[0::2])


def test_no_failures_means_no_transitions_and_no_draws():
    rng = np.random.default_rng(6)
    state = rng.bit_generator.state
    churn = Churn(100, 0.0, 30.0, rng)
    device, time, online_after = churn.advance(1e9)
    assert len(device) == len(time) == len(online_after) == 0
    assert churn.online.all()
    assert rng.bit_generator.state == state


def test_invalid_rates_are_rejected():
    with pytest.raises(ValueError, match="failure_rate_per_s"):
        Churn(3, -1.0, 10.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mean_downtime_s"):
        Churn(3, 0.1, 0.0, np.random.default_rng(0))


def test_link_cuts_are_half_open_windows():
    cuts = LinkCuts([(10.0, 20.0, np.array([1, 3])), (15.0, 30.0, np.array([0]))])
    assert not cuts.down(9.999, 4).any()
    np.testing.assert_array_equal(cuts.down(10.0, 4), [False, True, False, True])
    np.testing.assert_array_equal(cuts.down(15.0, 4), [True, True, False, True])
    np.testing.assert_array_equal(cuts.down(20.0, 4), [True, False, False, False])
    assert not cuts.down(30.0, 4).any()


def test_link_cut_ending_before_it_starts_is_rejected():
    with pytest.raises(ValueError, match="before it starts"):
        LinkCuts([(5.0, 1.0, np.array([0]))])
