"""auction-v1 in a simulated fleet: it runs, resumes bit-identically, and refuses bad settings by name."""

import filecmp

import numpy as np
import pytest
from click.testing import CliRunner

from fleet.cli import main
from fleet.results import execute, read_metrics, resume
from fleet.sim.market import auction, clear_site
from tests.sim.conftest import shrink

SETTINGS = {
    "fleet.sites": "[{name: a, devices: 6, feeder_kw: 15, network: {wifi: 1.0}}]",
    "topology.degree": 2,
    "learner.name": "auction-v1",
    "learner.params.n_steps": 30,
    "horizon": "3h",
    "outputs.checkpoint_every": "1h",
}
TIGHT = {
    **SETTINGS,
    "fleet.sites": "[{name: a, devices: 6, feeder_kw: 6, network: {wifi: 1.0}}]",
    "horizon": "2h",
    "network.churn.failures_per_day": 0,
}
"""6 devices of up to 4.5 kW on a 6 kW feeder."""
MARKET = {"learner.params.market.period": "5min"}


def interrupt_at(seconds):
    def progress(t):
        if t >= seconds:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("market", [{}, {"learner.params.market.period": "5min"}])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, market):
    sc = shrink(**SETTINGS, **market)
    _, full = execute(sc, tmp_path / "full")
    _, part = execute(sc, tmp_path / "cut", progress=interrupt_at(2.5 * 3600))
    assert part["run"]["status"] == "interrupted"
    _, resumed = resume(tmp_path / "cut")
    assert resumed["kpis"] == full["kpis"] and resumed["comm"] == full["comm"]
    assert filecmp.cmp(tmp_path / "full" / "metrics.csv", tmp_path / "cut" / "metrics.csv", shallow=False)


@pytest.mark.parametrize(
    "setting, field",
    [
        ("learner.params.redundancy=0", "learner.params.redundancy"),
        ("learner.params.mechanism=dutch", "learner.params.mechanism"),
        ("learner.params.discount_horizon=30s", "learner.params.discount_horizon"),  # the control period is 1 min
        ("learner.params.market.period=30s", "learner.params.market.period"),
        ("learner.params.market={period: 5min, window: 10min}", "learner.params.market.window"),
        ("learner.params.market={period: 5min, grant_hold: 4min}", "learner.params.market.grant_hold"),
    ],
)
def test_bad_settings_exit_2_naming_the_field_and_write_nothing(tmp_path, setting, field):
    out = tmp_path / "run"
    args = ["run", "thermostats-small-v1", "-o", out, "--set", "learner.name=auction-v1", "--set", setting]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 and field in result.stderr and "Traceback" not in result.output
    assert not out.exists()


# --- the feeder market ------------------------------------------------------------------------


def test_the_feeder_goes_to_the_highest_bids_that_fit_at_the_first_rejected_price():
    # capacity 5 kW: 0.9 for 3 kW and 0.7 for 1.5 kW fit (4.5 kW); 0.5 for 1.5 kW does not: it sets the price
    won, price = clear_site(np.array([0.9, 0.5, 0.7, 0.3]), np.array([3.0, 1.5, 1.5, 3.0]), 5.0)
    assert won.tolist() == [True, False, True, False] and price == 0.5
    won, price = clear_site(np.array([0.9, 0.5]), np.array([1.5, 1.5]), 5.0)
    assert won.all() and price == 0.0  # nothing rejected, nothing to pay


def test_the_auctioneer_drops_and_counts_bad_bids_and_clears_the_rest():
    site_of = np.array([0, 0, 1])  # devices 0, 1 at site 0; device 2 at site 1
    sender = np.array([0, 1, 2, 3, 0, 1, 2, 2])
    bids = np.array([[0.8, 3.0], [np.nan, 3.0], [1.2, 3.0], [0.9, 3.0], [0.9, 3.0], [0.6, 9.0], [0.4, 1.5], [0.5, 1.5]])
    stamp = np.array([60.0, 60, 60, 60, 60, 60, 0, 60])  # device 2's first bid is of the round before: late
    c = auction(sender, bids, stamp, 60.0, site_of, np.array([2.0, 4.5]), max_kw=4.5)
    # NaN, a bid above 1 and 9 kW are invalid; endpoint 3 is no device; device 0's second bid is repeated
    assert c.dropped == {"invalid": 3, "foreign": 1, "late": 1, "repeated": 1}
    # site 0: device 0 alone wants 3 kW of 2: rejected, and its bid is the price; site 1: device 2's 1.5 kW fit
    assert c.winner.tolist() == [2] and c.kw.tolist() == [1.5] and c.price.tolist() == [0.0]
    assert c.site_price.tolist() == [0.8, 0.0]


def test_a_bid_for_the_largest_level_as_the_wire_carries_it_is_valid():
    # float32 rounds 3.7 kW up (3.7000000477); a device bidding for its largest level sends that
    wire_kw = float(np.float32(3.7))
    assert wire_kw > 3.7
    c = auction(np.array([0]), np.array([[0.5, wire_kw]]), np.array([0.0]), 0.0, np.array([0]), np.array([5.0]), 3.7)
    assert c.dropped["invalid"] == 0 and c.winner.tolist() == [0]


def test_the_market_keeps_the_feeder_within_its_capacity_and_its_messages_are_counted(tmp_path):
    """6 devices of 4.5 kW on a 6 kW feeder; after the first clearing (10 s in) no tick draws more."""
    _, alone = execute(shrink(**TIGHT), tmp_path / "alone")
    run_dir, traded = execute(shrink(**TIGHT, **MARKET), tmp_path / "market")
    metrics = read_metrics(run_dir.path / "metrics.csv")
    assert metrics["market/rounds"][-1] == 24  # one every 5 min of 2 h
    assert metrics["feeder/a_kw"][1:].max() <= 6.0 + 1e-9
    first_tick = (6 * 4.5 - 6.0) / 60  # the most the tick at 0 s, before any clearing, can overload the feeder
    assert traded["kpis"]["feeder_overload_kwh"] <= first_tick + 1e-9 < alone["kpis"]["feeder_overload_kwh"]
    # every round: 6 bids up, one clearing down (one message from the auctioneer, delivered to each device)
    assert traded["comm"]["messages_sent"] - alone["comm"]["messages_sent"] == 24 * (6 + 1)


def test_devices_that_cannot_reach_the_auctioneer_control_alone(tmp_path):
    """Every link of the site cut for the whole run: no bid leaves, no clearing arrives, and the fleet runs
    exactly as it does without a market."""
    cut = {**TIGHT, "network.link_cuts": "[{start: 0, end: 3h, sites: [a]}]"}
    _, alone = execute(shrink(**cut), tmp_path / "alone")
    run_dir, traded = execute(shrink(**cut, **MARKET), tmp_path / "market")
    metrics = read_metrics(run_dir.path / "metrics.csv")
    assert metrics["market/rounds"][-1] == 24 and traded["kpis"] == alone["kpis"]
