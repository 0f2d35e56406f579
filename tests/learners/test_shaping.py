"""Potential-based reward shaping: the thermostat learners' update on shaped rewards equals an
unshaped update on rewards shaped by hand from the measured temperatures and prices; the generic
core takes rewards as given."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fleet.learners.features import N_FEATURES, features, shape_rewards
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout
from fleet.testing import _observation

N, T, L = 5, 8, 4


def rollout_of(rng: np.random.Generator) -> tuple[Rollout, np.ndarray, np.ndarray]:
    """A rollout of random observations, with the indoor temperatures and prices (T+1, N) behind it."""
    observations = [replace(_observation(N, t, rng), price=rng.choice([0.18, 0.28, 0.40], N)) for t in range(T + 1)]
    obs = torch.stack([features(o, "cpu") for o in observations])
    actions = torch.as_tensor(rng.integers(0, L, (T, N)))
    rewards = torch.as_tensor(-rng.random((T, N)), dtype=torch.float32)
    temp = np.stack([o.temp_c for o in observations])
    price = np.stack([o.price for o in observations])
    return Rollout(obs, actions, rewards), temp, price


@pytest.mark.parametrize("per_degc, kwh_per_degc", [(0.6, 0.0), (0.0, 3.0), (0.2, 1.5)])
def test_shaping_adds_gamma_phi_next_minus_phi_with_phi_priced_per_degree(per_degc, kwh_per_degc):
    r, temp, price = rollout_of(np.random.default_rng(1))
    gamma = 0.9
    phi = (per_degc + kwh_per_degc * price) * temp  # (T+1, N): money per degree, times degrees
    by_hand = r.rewards + torch.as_tensor(gamma * phi[1:] - phi[:-1], dtype=torch.float32)

    def updated(shaping: dict, rewards: torch.Tensor) -> torch.Tensor:
        # SGD: a step linear in the gradient, so float rounding of the rewards stays rounding (Adam's
        # first step is lr * sign(gradient): a gradient near 0 may flip by a whole lr)
        cfg = ActorCriticConfig(**shaping, optimizer="sgd")
        core = ActorCritic(cfg, N, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu")
        core.update(shape_rewards(Rollout(r.obs, r.actions, rewards), cfg, gamma), gamma)
        return core.flat()

    shaped = updated({"shaping_per_degc": per_degc, "shaping_kwh_per_degc": kwh_per_degc}, r.rewards)
    unshaped = {"shaping_per_degc": 0.0}
    torch.testing.assert_close(shaped, updated(unshaped, by_hand), atol=2e-5, rtol=1e-4)
    assert (shaped - updated(unshaped, r.rewards)).abs().max() > 1e-4  # the shaping changed the step


def test_the_core_takes_rewards_as_given_whatever_the_shaping_weights():
    """Shaping is the thermostat adapter's: a core on other observations is not shaped."""
    r, _, _ = rollout_of(np.random.default_rng(2))

    def updated(cfg: ActorCriticConfig) -> torch.Tensor:
        core = ActorCritic(cfg, N, N_FEATURES, L, torch.Generator().manual_seed(0), "cpu")
        core.update(r, 0.95)
        return core.flat()

    assert torch.equal(
        updated(ActorCriticConfig(shaping_per_degc=0.6, shaping_kwh_per_degc=3.0)), updated(ActorCriticConfig())
    )
