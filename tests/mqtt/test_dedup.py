"""SeqDeduplicator against brute-force references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.mqtt.dedup import WINDOW, SeqDeduplicator


def accept(dedup, triples):
    receiver, sender, seq = (
        (np.array(column, dtype=np.int64) for column in zip(*triples)) if triples else [np.zeros(0, int)] * 3
    )
    return dedup.accept(receiver, sender, seq).tolist()


def test_duplicates_in_one_call_and_across_calls():
    dedup = SeqDeduplicator()
    assert accept(dedup, [(0, 1, 5), (0, 1, 5), (1, 1, 5), (0, 2, 5), (0, 1, 4)]) == [True, False, True, True, True]
    assert accept(dedup, [(0, 1, 4), (0, 1, 6), (1, 1, 5)]) == [False, True, False]
    assert len(dedup) == 3
    assert accept(dedup, []) == []


def test_window_edge():
    dedup = SeqDeduplicator()
    top = 1000
    assert accept(dedup, [(0, 0, top)]) == [True]
    # top - 63 is the oldest seq still in the window; top - 64 is too old and counts as seen
    assert accept(dedup, [(0, 0, top - WINDOW + 1), (0, 0, top - WINDOW), (0, 0, top - WINDOW + 1)]) == [
        True,
        False,
        False,
    ]
    # a jump of exactly WINDOW forgets everything below the new top
    assert accept(dedup, [(0, 0, top + WINDOW), (0, 0, top + 1), (0, 0, top)]) == [True, True, False]


def test_large_seqs_and_ids():
    dedup = SeqDeduplicator()
    big = 2**32 - 1
    assert accept(dedup, [(2**31 - 1, big, big), (2**31 - 1, big, big), (0, big, 0)]) == [True, False, True]


@pytest.mark.parametrize(
    "receiver, sender, seq",
    [
        ([-1], [0], [0]),
        ([0], [2**32], [0]),
        ([0], [0], [-5]),
        ([0.5], [0], [0]),
        ([0, 1], [0], [0]),
        ([[0]], [[0]], [[0]]),
    ],
)
def test_bad_input_is_refused(receiver, sender, seq):
    with pytest.raises(ValueError):
        SeqDeduplicator().accept(np.array(receiver), np.array(sender), np.array(seq))


def reordered_stream(rng, pairs, per_pair, max_delay):
    """Each pair sends seqs 0..per_pair-1 at times 0, 1, ..., a third of them twice; every copy
    arrives up to ``max_delay`` late, so a seq arrives less than ``max_delay`` below the highest seen."""
    arrivals, triples = [], []
    for receiver, sender in pairs:
        seqs = np.concatenate([np.arange(per_pair), rng.choice(per_pair, per_pair // 3, replace=False)])
        arrivals.append(seqs + rng.uniform(0, max_delay, len(seqs)))
        triples += [(receiver, sender, int(q)) for q in seqs]
    return [triples[i] for i in np.argsort(np.concatenate(arrivals), kind="stable")]


@pytest.mark.parametrize("seed", range(20))
def test_matches_a_set_when_reordering_stays_in_the_window(seed):
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(r), int(s)) for r, s in rng.integers(0, 5, (6, 2))})
    stream = reordered_stream(rng, pairs, per_pair=150, max_delay=WINDOW)
    seen, expected = set(), []
    for triple in stream:
        expected.append(triple not in seen)
        seen.add(triple)
    assert sum(expected) == 150 * len(pairs) and not all(expected)

    dedup, got, start = SeqDeduplicator(), [], 0
    while start < len(stream):
        size = int(rng.integers(1, 60))
        got += accept(dedup, stream[start : start + size])
        start += size
    assert got == expected


def windowed_reference(stream):
    """Accept (receiver, sender, seq) iff never seen and within WINDOW of the highest seq seen so far."""
    seen, top, out = set(), {}, []
    for receiver, sender, seq in stream:
        highest = top.get((receiver, sender), -1)
        fresh = (receiver, sender, seq) not in seen and seq > highest - WINDOW
        out.append(fresh)
        if fresh:
            seen.add((receiver, sender, seq))
            top[(receiver, sender)] = max(highest, seq)
    return out


triples = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 200))


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(st.lists(triples, max_size=30), max_size=6))
def test_matches_the_windowed_reference(calls):
    dedup = SeqDeduplicator()
    got = [flag for call in calls for flag in accept(dedup, call)]
    assert got == windowed_reference([t for call in calls for t in call])
