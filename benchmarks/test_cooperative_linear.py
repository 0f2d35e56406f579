"""The linear-system reproduction's task and tables (no timing): run with ``pytest benchmarks -m benchmark``."""

from __future__ import annotations

import pytest
import torch
from cooperative_linear import FULL, LinearSystem, paired

from fleet.learners.cooperative.replay import Batch

pytestmark = pytest.mark.benchmark


def test_the_system_with_inertia_and_its_ier_model_agree_with_a_step_worked_by_hand():
    """x = 2, v = 1, controls (1, -1, 1, 1): v' = 0.5 * 1 + 0.5 * 2 = 1.5, x' = 3.5."""
    env = LinearSystem(n=4, gain=0.5, inertia=0.5)
    u = torch.tensor([1.0, -1.0, 1.0, 1.0])
    others = u.sum() - u
    x, v = env.step(torch.full((4,), 2.0), torch.ones(4), u.sum().expand(4))
    assert x.tolist() == [3.5] * 4 and v.tolist() == [1.5] * 4
    reward = env.reward(torch.full((4,), 2.0), x, u)
    assert reward.tolist() == pytest.approx([-((3.5 / 4) ** 2) - 0.01] * 4)
    obs = env.observe(torch.full((4,), 2.0), torch.ones(4), torch.zeros(4))
    assert env.n_features == 3 and obs[0].tolist() == [0.5, 0.25, 0.0]
    lived = Batch(obs.unsqueeze(1), torch.zeros(4, 1), reward.unsqueeze(1), obs.unsqueeze(1), others.unsqueeze(1))
    nxt, imagined = env.imagine(lived, u.unsqueeze(1), others.unsqueeze(1))  # the lived controls: the lived step
    torch.testing.assert_close(nxt.squeeze(1), env.observe(x, v, others))
    torch.testing.assert_close(imagined.squeeze(1), reward)


def test_a_blind_agent_observes_the_state_only():
    env = LinearSystem(n=3, blind=True)
    assert env.n_features == 1
    assert env.observe(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])).tolist() == [[0.5]]


def test_paired_differences_are_taken_seed_by_seed_against_the_full_method():
    results = {
        FULL: {"runs": {0: {"cost": 1.0}, 1: {"cost": 3.0}}},
        "independent DQN": {"runs": {0: {"cost": 2.0}, 1: {"cost": 5.0}}},
    }
    d = paired(results)[f"independent DQN - {FULL}"]["cost"]
    assert d["per_seed"] == [1.0, 2.0] and d["mean"] == 1.5
    assert d["high"] - d["mean"] == pytest.approx(12.706 / 2, rel=1e-3)  # t(0.975, 1) * s / sqrt(2), s = 1 / sqrt(2)
