"""The actor-critic learns a thermostat task whose answer is known.

A one-room house: temperature relaxes towards 0 degC outside with a 10 h time constant, each
HVAC level adds 0.247 degC per 15-minute tick, and the reward is minus the energy cost
(0.07 per level) minus 0.25 per degree below 20 degC. Heating pays only later, through the
temperature it leaves behind; a myopic learner stops heating and freezes. Holding 20 degC
needs about 2 levels per tick, so the best average reward is about -0.14 per tick, and
never heating ends near 0 degC at -5 per tick.

Before the critic learned normalized returns (its targets grew to hundreds while its
learning rate stayed fixed) this learner froze the house; these tests pin that down.
"""

import numpy as np
import torch

from fleet.learners import LearnerContext, Observation, make_learner
from fleet.learners.base import PREVIEW_H, persistence

N = 16
H = len(PREVIEW_H)
TAU_H, GAIN, COST, PENALTY = 10.0, 0.247, 0.07, 0.25


def observation(temp: np.ndarray, tick: int) -> Observation:
    lo = np.full(N, 20.0)
    return Observation(
        temp_c=temp.copy(),
        outdoor_c=np.zeros(N),
        band_lo=lo,
        band_hi=lo + 3,
        occupied=np.ones(N, bool),
        price=np.full(N, 0.28),
        feeder_load=np.zeros(N),
        hour=(tick * 0.25) % 24,
        online=np.ones(N, bool),
        band_lo_ahead=np.full((N, H), 20.0),
        band_hi_ahead=np.full((N, H), 23.0),
        price_ahead=np.full((N, H), 0.28),
        **persistence(np.zeros(N)),
    )


def train(params: dict, ticks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean reward per tick (ticks,) and the final temperatures (N,)."""
    torch.manual_seed(seed)
    learner = make_learner(
        "independent-v1", params, LearnerContext(N, 4, "heat", np.random.default_rng(seed), "cpu", None, 900.0)
    )
    rng = np.random.default_rng(seed + 1)
    temp, rewards = np.full(N, 21.0), []
    for tick in range(ticks):
        level = learner.act(observation(temp, tick))
        temp = temp * np.exp(-0.25 / TAU_H) + GAIN * level + rng.normal(0, 0.02, N)
        reward = -(COST * level + PENALTY * np.maximum(20 - temp, 0))
        learner.observe(reward)
        rewards.append(reward.mean())
        if (tick + 1) % learner.update_every == 0:
            learner.update(tick * 900.0)
    return np.array(rewards), temp


def test_learns_to_keep_the_house_warm():
    rewards, temp = train({"gamma": 0.95, "n_steps": 16, "shaping_per_degc": 0.0}, 4000)
    first, last = rewards[:500].mean(), rewards[-500:].mean()
    assert last > first + 0.3, f"no improvement: first 500 ticks {first:.3f}, last 500 {last:.3f}"
    assert last > -0.35, f"last 500 ticks average {last:.3f}; holding 20 degC gives about -0.14"
    assert 18.5 < temp.mean() < 23.5, f"the house ends at {temp.mean():.1f} degC"
