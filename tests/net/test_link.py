"""Link directions: serialization, queueing, latency and jitter, loss, cut links."""

import numpy as np
import pytest

from fleet.net.link import LinkDirection
from fleet.net.loss import LossProcess
from fleet.net.profiles import DEFAULT_PROFILES, GilbertElliottLoss, IndependentLoss, LinkProfile


def lossless(n, seed=0):
    return LossProcess.from_configs([IndependentLoss()], np.zeros(n, int), np.random.default_rng(seed))


def link(n=1, latency_s=0.0, jitter_s=0.0, bps=8_000.0, overhead_bytes=0, duty_cycle=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return LinkDirection(latency_s, jitter_s, bps, overhead_bytes, lossless(n, seed), rng, duty_cycle=duty_cycle)


def test_one_message_is_serialized_in_size_times_8_over_bps():
    out = link(bps=8_000.0).send(ready=[2.0], endpoint=[0], size_bytes=[100])
    assert out.airtime_s[0] == 0.1  # 100 B * 8 / 8000 bit/s
    assert out.depart[0] == 2.1
    assert out.arrive[0] == 2.1  # no latency, no jitter
    assert not out.lost[0]


def test_overhead_counts_on_the_air():
    out = link(bps=8_000.0, overhead_bytes=60, latency_s=0.5).send([0.0], [0], [40])
    assert out.airtime_s[0] == pytest.approx(0.1)
    assert out.arrive[0] == pytest.approx(0.6)


def test_back_to_back_messages_arrive_one_service_apart():
    k = 5
    out = link(latency_s=0.3).send(np.zeros(k), np.zeros(k, int), np.full(k, 100))
    np.testing.assert_allclose(out.depart, 0.1 * np.arange(1, k + 1))
    np.testing.assert_allclose(np.diff(out.arrive), 0.1)


def test_queue_carries_over_between_calls():
    direction = link(n=2)
    direction.send([0.0], [0], [1_000])  # endpoint 0 busy until 1.0
    out = direction.send([0.5, 0.5], [0, 1], [100, 100])
    np.testing.assert_allclose(out.depart, [1.1, 0.6])  # endpoint 0 waits; endpoint 1 does not
    np.testing.assert_allclose(direction.free_at, [1.1, 0.6])


def test_duty_cycle_keeps_the_endpoint_silent_after_each_message():
    # airtime 0.1 s at 1 % duty cycle: the next message may start only 10 s after the first
    out = link(duty_cycle=0.01).send([0.0, 0.0], [0, 0], [100, 100])
    np.testing.assert_allclose(out.airtime_s, [0.1, 0.1])
    np.testing.assert_allclose(out.depart, [0.1, 10.1])


def test_down_endpoints_lose_everything():
    direction = link(n=3)
    endpoint = np.tile([0, 1, 2], 100)
    out = direction.send(np.zeros(300), endpoint, np.full(300, 10), down=np.array([False, True, False]))
    np.testing.assert_array_equal(out.lost, endpoint == 1)


def test_mean_delay_after_departure_is_latency_plus_jitter():
    n, m = 1_000, 50_000
    latency, jitter = np.linspace(0.01, 0.2, n), 0.05
    direction = link(n=n, latency_s=latency, jitter_s=jitter, seed=3)
    endpoint = np.random.default_rng(4).integers(0, n, m)
    out = direction.send(np.zeros(m), endpoint, np.full(m, 20))
    excess = out.arrive - out.depart - latency[endpoint]
    assert excess.min() >= 0
    # exponential jitter: standard deviation = mean
    assert abs(excess.mean() - jitter) < 4 * jitter / np.sqrt(m)


def test_zero_jitter_draws_nothing():
    direction = link(n=2, latency_s=0.1, jitter_s=0.0)
    state = direction.rng.bit_generator.state
    direction._jitter(np.array([0, 1, 1]))
    assert direction.rng.bit_generator.state == state


def test_empirical_loss_matches_the_profile():
    profile = DEFAULT_PROFILES["wifi"].model_copy(update={"loss": IndependentLoss(p=0.2)})
    n, m = 500, 100_000
    direction = LinkDirection.from_profiles([profile], np.zeros(n, int), "up", np.random.default_rng(5))
    out = direction.send(np.linspace(0, 100, m), np.arange(m) % n, np.full(m, 50))
    assert abs(out.lost.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / m)


def test_from_profiles_picks_each_endpoints_profile_and_direction():
    fast = LinkProfile(latency_s="5ms", jitter_s=0, up_bps=8e3, down_bps=16e3, max_payload_bytes=500, overhead_bytes=0)
    slow = fast.model_copy(update={"up_bps": 800.0, "down_bps": 1600.0, "latency_s": 1.0})
    profile_of = np.array([0, 1])
    for direction, expected_airtime in [("up", [0.1, 1.0]), ("down", [0.05, 0.5])]:
        out = LinkDirection.from_profiles([fast, slow], profile_of, direction, np.random.default_rng(0)).send(
            [0.0, 0.0], [0, 1], [100, 100]
        )
        np.testing.assert_allclose(out.airtime_s, expected_airtime)
        np.testing.assert_allclose(out.arrive - out.depart, [0.005, 1.0])


def test_default_lora_profile_enforces_its_duty_cycle():
    direction = LinkDirection.from_profiles([DEFAULT_PROFILES["lora"]], [0], "up", np.random.default_rng(0))
    out = direction.send([0.0, 0.0], [0, 0], [51, 51])
    # the second message waits 99 airtimes of silence after the first
    assert out.depart[1] - out.depart[0] == pytest.approx(100 * out.airtime_s[0])


def test_loss_chain_steps_in_order_of_departure():
    # p_gb = p_bg = 1: the chain alternates good/bad every packet, so losses alternate in
    # the order packets leave, whatever the order of the arrays.
    alternating = GilbertElliottLoss(p_good_to_bad=1.0, p_bad_to_good=1.0)
    loss = LossProcess.from_configs([alternating], [0], np.random.default_rng(0))
    direction = LinkDirection(0.0, 0.0, 8_000.0, 0, loss, np.random.default_rng(1))
    ready = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0])
    out = direction.send(ready, np.zeros(6, int), np.full(6, 10))
    in_departure_order = out.lost[np.argsort(out.depart)]
    assert np.all(in_departure_order[1:] != in_departure_order[:-1])
