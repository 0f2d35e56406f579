"""Advantages standardized over more than one device's few samples: a shared network over its
whole batch, a device's own network by the running moments of its own advantages."""

import torch

from fleet.learners.stacked import RunningMoments, standardized


def test_a_shared_network_standardizes_over_all_devices_and_steps():
    adv = torch.tensor([[1.0, 3.0], [5.0, 7.0]])  # 2 devices' rollouts of 2 steps
    # mean 4, sample standard deviation sqrt((9 + 1 + 1 + 9) / 3)
    expected = (adv - 4.0) / (20 / 3) ** 0.5
    torch.testing.assert_close(standardized(adv, None), expected)


def test_a_devices_quiet_rollout_after_loud_ones_stays_quiet():
    """Device 0 saw advantages of scale 1, then a rollout where nothing is at stake (scale 0.01).
    Standardized per rollout it would be blown up to scale 1; by its running moments it stays
    about 100 times smaller than its loud rollouts. Device 1, always quiet, is standardized to
    scale 1: devices do not share their moments."""
    g = torch.Generator().manual_seed(0)
    moments = RunningMoments(2, decay=0.99, device="cpu")
    for _ in range(50):
        loud = torch.randn(2, 8, generator=g) * torch.tensor([[1.0], [0.01]])
        standardized(loud, moments)
    quiet = torch.randn(2, 8, generator=g) * 0.01
    out = standardized(quiet, moments)
    assert out[0].std() < 0.05  # about 0.01 / 1
    assert 0.3 < out[1].std() < 3.0  # about 1


def test_running_moments_fold_in_before_standardizing():
    """After one update the debiased moments are that update's own: mean 2, variance 2/3 (population)."""
    moments = RunningMoments(1, decay=0.9, device="cpu")
    out = standardized(torch.tensor([[1.0, 2.0, 3.0]]), moments)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0, 1.0]]) / (2 / 3) ** 0.5)
