"""Packet loss chains against Markov-chain theory."""

import numpy as np
import pytest

from fleet.net.loss import LossProcess
from fleet.net.profiles import GilbertElliottLoss, IndependentLoss

ENDPOINTS, PACKETS = 200, 1_000  # 200,000 packets per test


def loss_matrix(process, calls=1):
    """Losses (ENDPOINTS, PACKETS): every endpoint sends PACKETS packets, interleaved in time."""
    per_call = PACKETS // calls
    rows = [process.lost(np.tile(np.arange(ENDPOINTS), per_call)).reshape(per_call, ENDPOINTS) for _ in range(calls)]
    return np.concatenate(rows).T


def ge_process(config, seed):
    return LossProcess.from_configs([config], np.zeros(ENDPOINTS, int), np.random.default_rng(seed))


def ge_rate_standard_error(config, n):
    """Standard error of the loss rate over n stationary packets of one or more GE chains.

    Losses L_t have Var = q (1 - q) and Cov(L_t, L_t+k) = (lb - lg)^2 pi (1 - pi) lam^k with
    lam = 1 - p_gb - p_bg, so the asymptotic variance of the mean is
    [q (1 - q) + 2 (lb - lg)^2 pi (1 - pi) lam / (1 - lam)] / n.
    """
    q, pi = config.stationary_loss, config.stationary_bad
    lam = 1 - config.p_good_to_bad - config.p_bad_to_good
    var = q * (1 - q) + 2 * (config.loss_bad - config.loss_good) ** 2 * pi * (1 - pi) * lam / (1 - lam)
    return np.sqrt(var / n)


def lag1_correlation(losses):
    x = losses - losses.mean()
    return (x[:, 1:] * x[:, :-1]).mean() / x.var()


def run_lengths(losses):
    """Lengths of the runs of losses that end before the last packet, pooled over endpoints.

    Runs cut by the start are kept: by memorylessness their observed part has the same
    geometric law; runs cut by the end are dropped.
    """
    padded = np.pad(losses.astype(np.int8), ((0, 0), (1, 0)))
    edges = np.diff(padded, axis=1)
    starts = np.flatnonzero(edges.ravel() == 1)
    ends = np.flatnonzero(edges.ravel() == -1)
    width = losses.shape[1]
    # pair each completed run's end with the latest start before it in the same row
    starts_of_ends = starts[np.searchsorted(starts, ends) - 1]
    same_row = starts_of_ends // width == ends // width
    return (ends - starts_of_ends)[same_row]


def test_independent_loss_rate_is_p():
    p = 0.1
    losses = ge_process(IndependentLoss(p=p), seed=1)
    rate = loss_matrix(losses).mean()
    n = ENDPOINTS * PACKETS
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_independent_losses_are_uncorrelated():
    losses = loss_matrix(ge_process(IndependentLoss(p=0.2), seed=2))
    # the lag-1 sample autocorrelation of iid data has standard error ~ 1/sqrt(n)
    assert abs(lag1_correlation(losses)) < 4 / np.sqrt(losses.size)


@pytest.mark.parametrize(
    "config",
    [
        GilbertElliottLoss(p_good_to_bad=0.01, p_bad_to_good=0.25, loss_good=0.005, loss_bad=0.5),
        GilbertElliottLoss(p_good_to_bad=0.05, p_bad_to_good=0.2),
    ],
)
def test_gilbert_elliott_long_run_rate_is_stationary_loss(config):
    losses = loss_matrix(ge_process(config, seed=3), calls=4)  # chains carry over between calls
    se = ge_rate_standard_error(config, losses.size)
    assert abs(losses.mean() - config.stationary_loss) < 4 * se


def test_gilbert_elliott_lag1_correlation_matches_theory():
    config = GilbertElliottLoss(p_good_to_bad=0.05, p_bad_to_good=0.2, loss_good=0.0, loss_bad=1.0)
    losses = loss_matrix(ge_process(config, seed=4))
    # with loss = state indicator, corr(L_t, L_t+1) = 1 - p_gb - p_bg = 0.75
    theory = 1 - config.p_good_to_bad - config.p_bad_to_good
    # autocorrelations theory^k as for AR(1): Bartlett's se of r_1 is sqrt((1 - theory^2) / n)
    se = np.sqrt((1 - theory**2) / losses.size)
    assert abs(lag1_correlation(losses) - theory) < 4 * se


def test_gilbert_elliott_bursts_have_mean_length_one_over_p_bad_to_good():
    config = GilbertElliottLoss(p_good_to_bad=0.05, p_bad_to_good=0.2, loss_good=0.0, loss_bad=1.0)
    runs = run_lengths(loss_matrix(ge_process(config, seed=5)))
    # run lengths are iid Geometric(p_bg): variance (1 - p) / p^2
    p = config.p_bad_to_good
    assert abs(runs.mean() - config.mean_burst_length) < 4 * np.sqrt((1 - p) / p**2 / len(runs))


def test_each_endpoint_follows_its_own_config():
    rng = np.random.default_rng(6)
    configs = [IndependentLoss(p=0.0), IndependentLoss(p=0.5)]
    process = LossProcess.from_configs(configs, np.tile([0, 1], ENDPOINTS // 2), rng)
    losses = loss_matrix(process)
    assert not losses[0::2].any()
    n = losses[1::2].size
    assert abs(losses[1::2].mean() - 0.5) < 4 * np.sqrt(0.25 / n)


def test_initial_states_follow_the_stationary_distribution():
    config = GilbertElliottLoss(p_good_to_bad=0.1, p_bad_to_good=0.3)
    n = 100_000
    bad = LossProcess.from_configs([config], np.zeros(n, int), np.random.default_rng(7)).bad
    assert abs(bad.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)


def test_parameters_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match=r"loss_bad must have shape \(3,\)"):
        LossProcess(np.zeros(3), np.ones(3), np.zeros(3), np.ones(2), np.random.default_rng(0))


@pytest.mark.parametrize(
    "config",
    [IndependentLoss(p=0.3), GilbertElliottLoss(p_good_to_bad=0.2, p_bad_to_good=0.3, loss_good=0.05, loss_bad=0.8)],
)
def test_the_single_packet_path_steps_the_chains_as_the_batch_path(config):
    """A single packet (the path of a status, a will, an acknowledgement) takes a short cut;
    it loses what the general path loses with the same draws, and leaves the same chain states."""
    endpoints = np.random.default_rng(1).integers(0, 5, 2000)
    fast, general = (LossProcess.from_configs([config], np.zeros(5, int), np.random.default_rng(7)) for _ in range(2))
    for e in endpoints:
        packet = np.array([e])
        assert fast.lost(packet)[0] == general._many(packet, *general.rng.random((2, 1)))[0]
        assert (fast.bad == general.bad).all()
    assert 0.1 < np.mean([fast.lost(np.array([0]))[0] for _ in range(2000)]) < 0.6  # losses happen, not always
