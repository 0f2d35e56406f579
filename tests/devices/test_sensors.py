"""Noisy temperature readings."""

import numpy as np
import pytest

from devices.sensors import sense_temperature


def test_noise_has_the_requested_std_and_no_bias():
    temp = np.full(200_000, 21.0)
    meas = sense_temperature(temp, 0.3, np.random.default_rng(0))
    assert meas.shape == temp.shape
    assert (meas - temp).std() == pytest.approx(0.3, rel=0.01)
    assert (meas - temp).mean() == pytest.approx(0.0, abs=0.005)


def test_zero_noise_returns_a_copy_and_draws_nothing():
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    temp = np.array([19.0, 22.5])
    meas = sense_temperature(temp, 0.0, rng)
    assert rng.bit_generator.state == before
    np.testing.assert_array_equal(meas, temp)
    meas[0] = 0.0
    assert temp[0] == 19.0


def test_negative_noise_is_rejected():
    with pytest.raises(ValueError, match="noise_std"):
        sense_temperature(np.zeros(2), -0.1, np.random.default_rng(0))
