"""Horizons in time: the discount per tick follows from ``discount_horizon`` and the control
period, so a scenario that changes its tick keeps what its learners optimize."""

import math
from dataclasses import replace

import numpy as np
import pytest

from fleet.errors import ConfigError
from fleet.learners import LearnerContext, make_learner
from fleet.learners.configs import ActorCriticConfig, CentralizedConfig, DiffusionConfig
from fleet.testing import _context


def test_the_discount_falls_to_1_over_e_over_the_horizon():
    cfg = ActorCriticConfig(discount_horizon="24h")
    assert cfg.discount_horizon == 86400.0
    assert cfg.discount(900.0) == pytest.approx(math.exp(-1 / 96))  # 96 quarter-hours in a day
    assert cfg.discount(900.0) ** 96 == pytest.approx(1 / math.e)
    assert cfg.discount(86400.0) == pytest.approx(1 / math.e)


def test_the_default_is_the_studys_discount_of_095_per_quarter_hour():
    """The learning study tuned a discount of 0.95 per 15-minute tick: -900 s / ln 0.95 = 4.87 h."""
    assert ActorCriticConfig().discount(900.0) == pytest.approx(0.95, abs=1e-4)


@pytest.mark.parametrize("name", ["independent-v1", "diffusion-v1", "centralized-v1"])
def test_a_shorter_tick_discounts_less_per_tick_and_the_same_per_hour(name):
    def gamma(period_s: float) -> float:
        ctx = replace(_context(2, 0), control_period_s=period_s)
        return make_learner(name, {"discount_horizon": "6h"}, ctx).gamma

    assert gamma(60.0) ** 15 == pytest.approx(gamma(900.0))
    assert gamma(900.0) ** 4 == pytest.approx(math.exp(-1 / 6))


@pytest.mark.parametrize("cls", [ActorCriticConfig, DiffusionConfig, CentralizedConfig])
def test_a_horizon_shorter_than_the_control_period_names_the_field(cls):
    cfg = cls(discount_horizon="10min")
    assert cfg.discount(600.0) == pytest.approx(1 / math.e)  # one tick: allowed
    with pytest.raises(ConfigError, match=r"learner\.params\.discount_horizon \(600 s\) is shorter than the control "):
        cfg.discount(900.0)
    with pytest.raises(ConfigError, match="learner.params.discount_horizon"):
        make_learner(
            "independent-v1",
            {"discount_horizon": "10min"},
            LearnerContext(2, 4, "heat", np.random.default_rng(0), control_period_s=900.0),
        )


def test_gamma_per_tick_is_no_longer_a_field():
    with pytest.raises(Exception, match="gamma"):
        ActorCriticConfig(gamma=0.95)
