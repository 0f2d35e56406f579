"""The linear-system reproduction's task and tables (no timing): run with ``pytest benchmarks -m benchmark``."""

from __future__ import annotations

import pytest
import torch
from cooperative_linear import FULL, LinearSystem, figures, optimal_path, paired

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


def test_a_tick_that_carries_x_past_the_target_pays_the_overshoot_penalty():
    """0.3 -> -0.2 crosses 0: (0.2 / 4)^2 + 0.5; 0.3 -> 0.05 does not: (0.05 / 4)^2."""
    env = LinearSystem(n=4, gain=0.25, overshoot=0.5)
    x, x_next = torch.tensor([0.3, 0.3, 0.0]), torch.tensor([-0.2, 0.05, -0.25])
    assert env.cost(x, x_next).tolist() == pytest.approx([0.0025 + 0.5, 0.05**2 / 16, 0.25**2 / 16])
    assert env.reward(x, x_next, torch.tensor([1.0, 1.0, 0.0]))[0] == pytest.approx(-0.5025 - 0.01)


def test_figures_of_a_path_worked_by_hand():
    """Four ticks 1 -> -1 -> 1 -> -1 -> 1: every tick crosses; the last two are the settled half."""
    env = LinearSystem(n=4, overshoot=0.5)
    fig = figures(env, [[1.0, -1.0, 1.0, -1.0, 1.0]])
    assert fig == pytest.approx({"cost": 1 / 16 + 0.5, "settled_error": 1.0, "oscillation": 1.0, "crossings": 4.0})


@pytest.mark.parametrize(
    "overshoot, path",
    [
        (0.5, [2.2, 1.2, 0.2, 0.2, 0.2]),  # all four push twice, then crossing to -0.05 costs more than staying
        (0.0, [2.2, 1.2, 0.2, -0.05, -0.05]),  # without the penalty one more push brings x nearer
    ],
)
def test_the_optimal_team_descends_as_fast_as_it_can_and_crosses_only_if_crossing_is_free(overshoot, path):
    env = LinearSystem(n=4, gain=0.25, overshoot=overshoot)
    assert optimal_path(env, 2.2, 4) == pytest.approx(path)
