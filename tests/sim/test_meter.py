"""The feeder meters: each site's reading reaches its own devices, bad readings are dropped and
counted, and a cooperative run with meters resumes to exactly the uninterrupted result."""

import filecmp

import numpy as np
import pytest

from fleet.mqtt.codec import DType, Kind, encode_batch
from fleet.net.network import Delivered
from fleet.results import execute, resume
from fleet.sim.engine import Simulation
from fleet.sim.meter import SiteMeters
from tests.sim.test_checkpoint import interrupt_at

TWO_FEEDERS = {
    "fleet.sites": "[{name: a, devices: 3, feeder_kw: 5, network: {ethernet: 1.0}}, "
    "{name: b, devices: 4, feeder_kw: 4, network: {ethernet: 1.0}}]",
    "learner.name": "cooperative-v1",
    "network.churn.failures_per_day": 0,
    "topology.degree": 2,
}


def test_each_device_reads_its_own_feeders_load_of_the_previous_tick(scenario_factory):
    """Ethernet delivers every reading within milliseconds: at each tick a device's reading is
    its feeder's load, capacity and size of the tick before."""
    sim = Simulation(scenario_factory(**TWO_FEEDERS, horizon="1h"))
    learner, w = sim.fleet.controller, sim.world
    sim.start(control=False)
    previous = None
    for k in range(6):
        t = 60.0 * k
        if t > sim.env.now:
            sim.env.run(until=t)
        inputs = sim.sense(t)
        if previous is not None:
            np.testing.assert_allclose(learner.reading[:, 0].numpy(), previous[w.site_of], rtol=1e-6)
            assert learner.reading[:, 1].tolist() == [5.0] * 3 + [4.0] * 4
            assert learner.reading[:, 2].tolist() == [3.0] * 3 + [4.0] * 4
        sim.act(*inputs)
        previous = sim.fleet.site_load.copy()
    assert previous.sum() > 0  # the loads compared were not all 0
    assert all(v == 0 for v in sim.meters.metrics().values())


def test_malformed_foreign_and_impossible_readings_are_dropped_and_counted():
    meters = SiteMeters(6, ["a", "b"], np.array([0, 0, 1]), np.array([5.0, 4.0]))
    good = meters.outgoing(60.0, np.array([3.0, 1.0])).rows  # site a's reading, then site b's
    negative = encode_batch(Kind.METER, [6], [9], 60.0, [np.array([[0, -1.0, 5, 3]], np.float32)], DType.FLOAT32)
    damaged = good[:1].copy()
    damaged[0, -1] ^= 0xFF
    rows = np.concatenate([good, negative, damaged])
    got = Delivered(
        receiver=np.array([0, 2, 1, 1, 0]),  # a's reading to devices 0 (a) and 2 (b: foreign); b's to device 1 (a)
        sender=np.array([6, 6, 7, 6, 6]),
        seq=np.zeros(5, np.int64),
        published_at=np.full(5, 60.0),
        arrived_at=np.full(5, 60.1),
        msg=np.array([0, 0, 1, 2, 3]),
        rows=rows,
    )
    kept = meters.received(got)
    assert kept.receiver.tolist() == [0]
    assert kept.arrays_of()[0].tolist() == [[0.0, 3.0, 5.0, 2.0]]  # site a, 3 kW of 5 kW, 2 devices
    assert meters.metrics() == {
        "meter/dropped_malformed": 1.0,
        "meter/dropped_foreign": 2.0,
        "meter/dropped_bad_value": 1.0,
    }


@pytest.mark.slow
def test_a_cooperative_run_resumes_to_the_uninterrupted_result(scenario_factory, tmp_path):
    sc = scenario_factory(
        **{
            **TWO_FEEDERS,
            "fleet.sites": "[{name: a, devices: 4, feeder_kw: 6, network: {wifi: 1.0}}, "
            "{name: b, devices: 4, feeder_kw: 6, network: {lte-m: 1.0}}]",
            "horizon": "2h",
            "outputs.checkpoint_every": "30min",
            "learner.params.batch": 8,
            "learner.params.macro_batch": 16,
        }
    )
    _, full = execute(sc, tmp_path / "full")
    _, part = execute(sc, tmp_path / "cut", progress=interrupt_at(1.25 * 3600))
    assert part["run"]["status"] == "interrupted"
    _, resumed = resume(tmp_path / "cut")
    for key in ("kpis", "baseline", "comm"):
        assert resumed[key] == full[key]
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", tmp_path / "cut" / "metrics.csv", shallow=False)
