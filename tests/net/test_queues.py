"""FIFO queues: hand-worked cases, a plain-Python reference, and queueing theory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.net.queues import BIG_QUEUE, fifo_departures, iter_ranks, single_server_departures


def reference_departures(queue, ready, service, free_at):
    """FIFO by (ready, index) per queue, one message at a time."""
    free_at = list(free_at)
    depart = [0.0] * len(queue)
    for i in sorted(range(len(queue)), key=lambda i: (ready[i], i)):
        depart[i] = max(ready[i], free_at[queue[i]]) + service[i]
        free_at[queue[i]] = depart[i]
    return depart, free_at


def batch_means_interval(x, batches=50):
    """Mean and standard error of a stationary, autocorrelated series (batch means)."""
    means = x[: len(x) // batches * batches].reshape(batches, -1).mean(axis=1)
    return means.mean(), means.std(ddof=1) / np.sqrt(batches)


# --- worked by hand ---------------------------------------------------------------------


def test_fifo_departures_hand_worked():
    # queue 0: m0 0->2; m1 ready 1 waits to 2 ->3; m3 ready 1 (tie, later index) waits to 3 -> 3.5
    # queue 1: busy until 3, m2 ready 0.5 waits -> 4
    free_at = np.array([0.0, 3.0, 7.0])
    depart = fifo_departures([0, 0, 1, 0], [0.0, 1.0, 0.5, 1.0], [2.0, 1.0, 1.0, 0.5], free_at)
    np.testing.assert_array_equal(depart, [2.0, 3.0, 4.0, 3.5])
    np.testing.assert_array_equal(free_at, [3.5, 4.0, 7.0])


def test_fifo_departures_order_by_ready_not_by_index():
    free_at = np.zeros(1)
    depart = fifo_departures([0, 0], [5.0, 0.0], [1.0, 1.0], free_at)
    np.testing.assert_array_equal(depart, [6.0, 1.0])
    assert free_at[0] == 6.0


def test_single_server_hand_worked():
    # sorted by ready: 0 (busy until 0.5) -> 1.5; 1 -> 2.5; 3 -> 4
    depart, free_at = single_server_departures([3.0, 0.0, 1.0], [1.0, 1.0, 1.0], 0.5)
    np.testing.assert_array_equal(depart, [4.0, 1.5, 2.5])
    assert free_at == 4.0


def test_empty_batches_leave_the_servers_alone():
    free_at = np.array([2.0])
    assert fifo_departures([], [], [], free_at).shape == (0,)
    assert free_at[0] == 2.0
    depart, free = single_server_departures([], [], 2.0)
    assert depart.shape == (0,) and free == 2.0


@pytest.mark.parametrize("k", [1, 2, 7])
def test_back_to_back_messages_finish_at_multiples_of_service(k):
    free_at = np.zeros(1)
    expected = 0.25 * np.arange(1, k + 1)
    np.testing.assert_allclose(fifo_departures(np.zeros(k, int), np.zeros(k), np.full(k, 0.25), free_at), expected)
    depart, _ = single_server_departures(np.zeros(k), np.full(k, 0.25), 0.0)
    np.testing.assert_allclose(depart, expected)


def test_iter_ranks_yields_each_groups_rth_element():
    ranks = [pos.tolist() for pos in iter_ranks(np.array([4, 4, 4, 7, 9, 9]))]
    assert [sorted(r) for r in ranks] == [[0, 3, 4], [1, 5], [2]]


# --- against a plain-Python reference ------------------------------------------------------

times = st.floats(0, 100, allow_nan=False).map(lambda x: round(x, 1))  # rounding makes ties
durations = st.floats(0, 10, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), times, durations), max_size=30), st.lists(times, min_size=4, max_size=4))
def test_fifo_departures_matches_reference(messages, free_at):
    queue, ready, service = (list(c) for c in zip(*messages)) if messages else ([], [], [])
    expected, expected_free = reference_departures(queue, ready, service, free_at)
    free = np.array(free_at, dtype=float)
    np.testing.assert_allclose(fifo_departures(queue, ready, service, free), expected, rtol=1e-12)
    np.testing.assert_allclose(free, expected_free, rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(times, durations), max_size=30), times)
def test_single_server_matches_reference(messages, free_at):
    ready, service = (list(c) for c in zip(*messages)) if messages else ([], [])
    expected, [expected_free] = reference_departures([0] * len(ready), ready, service, [free_at])
    depart, free = single_server_departures(ready, service, free_at)
    # the closed form adds and subtracts cumulative sums: allow rounding of order 1e-12 * total
    np.testing.assert_allclose(depart, expected, rtol=0, atol=1e-9)
    assert free == pytest.approx(expected_free, abs=1e-9)


# --- queueing theory --------------------------------------------------------------------------

ARRIVALS, WARMUP = 200_000, 2_000
LAMBDA, MU = 0.5, 1.0
RHO = LAMBDA / MU


def poisson_arrivals(rng):
    return np.cumsum(rng.exponential(1 / LAMBDA, ARRIVALS))


def test_md1_mean_wait_matches_pollaczek_khinchine():
    rng = np.random.default_rng(1)
    ready = poisson_arrivals(rng)
    service = np.full(ARRIVALS, 1 / MU)
    depart, _ = single_server_departures(ready, service, 0.0)
    wait = (depart - service - ready)[WARMUP:]
    mean, se = batch_means_interval(wait)
    theory = RHO / (2 * MU * (1 - RHO))  # = 0.5
    # batches of ~4000 customers are far longer than the queue's relaxation (~1/(mu(1-sqrt(rho))^2)
    # ~ 12 service times), so batch means are nearly independent; 4 standard errors.
    assert se < 0.02
    assert abs(mean - theory) < 4 * se


def test_mm1_mean_wait_matches_theory():
    rng = np.random.default_rng(2)
    ready = poisson_arrivals(rng)
    service = rng.exponential(1 / MU, ARRIVALS)
    depart = fifo_departures(np.zeros(ARRIVALS, int), ready, service, np.zeros(1))
    wait = (depart - service - ready)[WARMUP:]
    mean, se = batch_means_interval(wait)
    theory = RHO / (MU - LAMBDA)  # = 1.0
    assert se < 0.04
    assert abs(mean - theory) < 4 * se


def test_many_queues_at_once_each_follow_mm1_theory():
    # 2,000 independent M/M/1 queues of 100 customers each: rank loop of ~100 vectorized steps.
    rng = np.random.default_rng(3)
    queues, per_queue = 2_000, 100
    queue = np.repeat(np.arange(queues), per_queue)
    ready = np.cumsum(rng.exponential(1 / LAMBDA, (queues, per_queue)), axis=1).ravel()
    service = rng.exponential(1 / MU, queues * per_queue)
    depart = fifo_departures(queue, ready, service, np.zeros(queues))
    wait = (depart - service - ready).reshape(queues, per_queue)[:, 50:]  # second half of each
    per_queue_mean = wait.mean(axis=1)  # independent across queues
    se = per_queue_mean.std(ddof=1) / np.sqrt(queues)
    # start-empty bias after 50 customers (~100 s, ~8 relaxation times) is below 1 %.
    assert abs(per_queue_mean.mean() - RHO / (MU - LAMBDA)) < 4 * se + 0.01


def test_fifo_departures_mixes_closed_form_big_queues_and_small_ones():
    """A queue longer than BIG_QUEUE (a collector) beside many short ones matches the reference."""
    rng = np.random.default_rng(7)
    queue = np.r_[np.zeros(BIG_QUEUE * 4, int), rng.integers(1, 50, 300)]
    rng.shuffle(queue)
    ready = rng.uniform(0, 10, len(queue))
    service = rng.uniform(0.01, 0.2, len(queue))
    free_at = rng.uniform(0, 5, 50)
    expected, expected_free = reference_departures(queue, ready, service, free_at)
    got = fifo_departures(queue, ready, service, free_at)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(free_at, expected_free, rtol=0, atol=1e-9)
