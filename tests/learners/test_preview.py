"""What a device previews of its own schedule and tariff (``Observation.*_ahead``)."""

import numpy as np

from devices.config import OccupancyConfig, TouPeriod, TouTariffConfig
from devices.occupancy import Occupancy
from devices.tariff import make_tariff
from fleet.learners.base import PREVIEW_H, preview
from fleet.learners.features import N_FEATURES, features
from fleet.testing import _observation

HOUR = 3600.0
TARIFF = make_tariff(
    TouTariffConfig(
        periods=(
            TouPeriod(start_h=0, end_h=7, price_per_kwh=0.18),
            TouPeriod(start_h=7, end_h=17, price_per_kwh=0.28),
            TouPeriod(start_h=17, end_h=21, price_per_kwh=0.40),
            TouPeriod(start_h=21, end_h=24, price_per_kwh=0.28),
        )
    )
)


def test_the_preview_shows_each_devices_band_and_the_price_hours_ahead():
    # Home 0-7 h and 17-24 h (band 20-23), away otherwise (16-26); device 1 runs 2 hours late.
    occupancy = Occupancy(OccupancyConfig(), shift_h=np.array([0.0, 2.0]))
    ahead = preview(occupancy, TARIFF, 14.5 * HOUR, 2)
    assert PREVIEW_H == (1.0, 2.0, 3.0, 4.0)
    # 15.5, 16.5, 17.5, 18.5 h: device 0 comes home at 17 h, device 1 at 19 h (local 17 h).
    np.testing.assert_array_equal(ahead["band_lo_ahead"], [[16, 16, 20, 20], [16, 16, 16, 16]])
    np.testing.assert_array_equal(ahead["band_hi_ahead"], [[26, 26, 23, 23], [26, 26, 26, 26]])
    np.testing.assert_allclose(ahead["price_ahead"], [[0.28, 0.28, 0.40, 0.40]] * 2)


def test_the_preview_wraps_past_midnight():
    occupancy = Occupancy(OccupancyConfig(), shift_h=np.array([0.0]))
    ahead = preview(occupancy, TARIFF, 22.5 * HOUR + 10 * 24 * HOUR, 1)
    np.testing.assert_allclose(ahead["price_ahead"], [[0.28, 0.18, 0.18, 0.18]])
    np.testing.assert_array_equal(ahead["band_lo_ahead"], [[20, 20, 20, 20]])


def test_features_carry_the_preview_in_their_last_columns():
    obs = _observation(3, 0, np.random.default_rng(0))
    x = features(obs, "cpu")
    h = len(PREVIEW_H)
    assert x.shape == (3, N_FEATURES)
    np.testing.assert_allclose(x[:, -h:].numpy(), obs.price_ahead / 0.3, rtol=1e-6)
    np.testing.assert_allclose(x[:, -3 * h : -2 * h].numpy(), (obs.band_lo_ahead - 20) / 5, rtol=1e-6)


def test_a_preheating_thermostat_heats_for_the_band_ahead():
    from dataclasses import replace
    from typing import get_args

    from devices.config import RuleBasedConfig
    from fleet.learners import LearnerContext, make_learner

    # Both houses at 17 degC in a 16-26 band now; the first is due home (20-23) in 3 hours.
    obs = replace(
        _observation(2, 0, np.random.default_rng(0)),
        temp_c=np.array([17.0, 17.0]),
        band_lo=np.full(2, 16.0),
        band_hi=np.full(2, 26.0),
        band_lo_ahead=np.array([[16, 16, 20, 20], [16.0] * 4]),
        band_hi_ahead=np.array([[26, 26, 23, 23], [26.0] * 4]),
    )
    ctx = LearnerContext(2, 4, "heat", np.random.default_rng(0))
    assert set(get_args(RuleBasedConfig.model_fields["preheat_h"].annotation)) == {0, *PREVIEW_H}
    np.testing.assert_array_equal(make_learner("rule-based-v1", {}, ctx).act(obs), [0, 0])
    np.testing.assert_array_equal(make_learner("rule-based-v1", {"preheat_h": 2}, ctx).act(obs), [0, 0])
    np.testing.assert_array_equal(make_learner("rule-based-v1", {"preheat_h": 3}, ctx).act(obs), [3, 0])
