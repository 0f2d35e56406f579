"""Generalized advantage estimation, with and without a terminal step, worked by hand."""

import torch

from fleet.learners.stacked import gae


def test_gae_bootstraps_past_a_truncation_and_not_past_a_termination():
    """One device, two steps, gamma 0.5, lambda 1: rewards (1, 2), values (0.1, 0.2, 0.3)."""
    rewards, values = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.1, 0.2, 0.3]])
    last = 2 + 0.5 * 0.3 - 0.2  # 1.95: the last step bootstraps from the value after it
    go_on = 1 + 0.5 * 0.2 - 0.1 + 0.5 * last  # 1.975
    torch.testing.assert_close(gae(rewards, values, 0.5, 1.0), torch.tensor([[go_on, last]]))
    ended_first = 1 - 0.1  # nothing after a terminal step: neither its value nor the advantage after it
    terminal = torch.tensor([[True, False]])
    torch.testing.assert_close(gae(rewards, values, 0.5, 1.0, terminal), torch.tensor([[ended_first, last]]))
    ended_last = 2 - 0.2
    before = 1 + 0.5 * 0.2 - 0.1 + 0.5 * ended_last
    terminal = torch.tensor([[False, True]])
    torch.testing.assert_close(gae(rewards, values, 0.5, 1.0, terminal), torch.tensor([[before, ended_last]]))
