"""What every device observes of the weather ahead: ``Observation.outdoor_ahead``."""

import numpy as np

from fleet.sim.engine import Simulation


def observe(scenario, t: float):
    """The Observation the scenario's controller gets at ``t``."""
    sim = Simulation(scenario)
    return sim.fleet.sense(*sim.sense(t))


def test_without_a_forecast_every_device_sees_persistence_exactly(scenario_factory):
    obs = observe(scenario_factory(), 0.0)
    assert obs.forecast_lead_h == tuple(float(h) for h in range(1, 25))
    assert obs.outdoor_ahead.shape == (100, 24)
    np.testing.assert_array_equal(obs.outdoor_ahead, np.repeat(obs.outdoor_c[:, None], 24, axis=1))
