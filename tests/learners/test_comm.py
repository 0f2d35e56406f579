"""Communication policies: period, event trigger, quantization, top-k with error feedback, through the real codec."""

import numpy as np
import pytest
from pydantic import ValidationError

from fleet.errors import ConfigError
from fleet.learners.comm import CommConfig, ParamPublisher, ParamReceiver, Publication
from fleet.mqtt.codec import DType, Kind, decode_batch, encode_batch, encoded_size

ALL = np.ones(1, bool)


def wire(pub: Publication) -> list[np.ndarray]:
    """The publication's arrays as a receiver decodes them: encode_batch -> decode_batch."""
    m = len(pub.sender)
    rows = encode_batch(Kind.PARAMS, pub.sender, np.arange(m), 0.0, pub.arrays, pub.dtypes)
    assert rows.shape[1] == encoded_size(pub.dtypes, [a.shape[1:] for a in pub.arrays])
    decoded = decode_batch(rows)
    assert decoded.valid.all() and decoded.sender.tolist() == pub.sender.tolist()
    return list(decoded.arrays)


def deliver(receiver: ParamReceiver, pub: Publication | None) -> None:
    """The publication reaches the receiver; edge i is sender i's only edge."""
    if pub is not None:
        arrays = wire(pub)
        assert pub.dense == (len(arrays) == 1)
        receiver.apply(pub.sender, arrays, dense=len(arrays) == 1)


# --- config ---------------------------------------------------------------------------------


def test_config_defaults_are_dense_float32_every_update():
    cfg = CommConfig()
    assert (cfg.period, cfg.dtype, cfg.topk, cfg.error_feedback, cfg.event_threshold, cfg.full_every) == (
        1,
        "float32",
        1.0,
        True,
        0.0,
        0,
    )
    assert cfg.wire_dtype == DType.FLOAT32 and CommConfig(dtype="int8").wire_dtype == DType.INT8


@pytest.mark.parametrize(
    "values",
    [
        {"period": 0},
        {"topk": 0},
        {"topk": 1.5},
        {"dtype": "int4"},
        {"event_threshold": -0.1},
        {"full_every": -1},
        {"bogus": 1},
    ],
)
def test_config_refuses(values):
    with pytest.raises(ValidationError):
        CommConfig.model_validate(values)


@pytest.mark.parametrize("topk, p, k", [(0.1, 1000, 100), (0.07, 50, 4), (0.7, 10, 7), (1e-6, 10, 1), (1.0, 5, 5)])
def test_k_is_the_ceiling_of_the_fraction(topk, p, k):
    assert CommConfig(topk=topk).k(p) == k


# --- dense and quantized --------------------------------------------------------------------


def test_dense_float32_round_trip_is_exact():
    params = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32) * 1e3
    publisher, receiver = ParamPublisher(CommConfig(), 5, 7), ParamReceiver(5, 7)
    pub = publisher.outgoing(0, params, np.ones(5, bool))
    assert pub.dense and pub.dtypes == [DType.FLOAT32] and pub.sender.tolist() == [0, 1, 2, 3, 4]
    values, ok = receiver.apply(pub.sender, wire(pub), dense=True)
    assert ok.all() and values.tobytes() == params.tobytes() == publisher.sent.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_quantization_error_is_within_half_a_step(dtype):
    rng = np.random.default_rng(1)
    params = (rng.normal(size=(4, 50)) * rng.uniform(0.01, 100, size=(4, 1))).astype(np.float32)
    publisher = ParamPublisher(CommConfig(dtype=dtype), 4, 50)
    (got,) = wire(publisher.outgoing(0, params, np.ones(4, bool)))
    error = np.abs(got.astype(np.float64) - params)
    if dtype == "float16":  # 10 mantissa bits: a step is at most 2^-10 relative, 2^-24 among subnormals
        step = np.maximum(np.abs(params) * 2.0**-10, 2.0**-24)
    else:  # one scale per message: max|x| / 127
        step = np.abs(params).max(axis=1, keepdims=True) / 127
    assert np.all(error <= step / 2 * (1 + 1e-6))
    assert np.array_equal(publisher.sent, got)  # the sender tracks what receivers decoded


# --- top-k ----------------------------------------------------------------------------------


def test_topk_sends_exactly_k_entries_the_largest_in_magnitude():
    rng = np.random.default_rng(2)
    n, p = 3, 50
    publisher = ParamPublisher(CommConfig(topk=0.1), n, p)
    before = rng.normal(size=(n, p)).astype(np.float32)
    assert publisher.outgoing(0, before, np.ones(n, bool)).dense
    after = before + rng.normal(size=(n, p)).astype(np.float32)
    pub = publisher.outgoing(1, after, np.ones(n, bool))
    assert not pub.dense and pub.dtypes == [DType.UINT32, DType.FLOAT32]
    index, values = pub.arrays
    assert index.shape == values.shape == (n, 5)
    change = after - before
    for i in range(n):
        assert len(set(index[i])) == 5
        others = np.delete(np.abs(change[i]), index[i])
        assert np.abs(change[i, index[i]]).min() >= others.max()
        assert values[i].tolist() == change[i, index[i]].tolist()


def fixed_target_rounds(error_feedback: bool, rounds: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Publish zeros once, then a fixed target every round; returns (receiver view, target, k)."""
    rng = np.random.default_rng(3)
    n, p = 3, 20
    target = (rng.uniform(1, 2, size=(n, p)) * rng.choice([-1, 1], size=(n, p))).astype(np.float32)
    cfg = CommConfig(dtype="int8", topk=0.1, error_feedback=error_feedback)
    publisher, receiver = ParamPublisher(cfg, n, p), ParamReceiver(n, p)
    deliver(receiver, publisher.outgoing(0, np.zeros((n, p), np.float32), np.ones(n, bool)))
    for r in range(1, rounds + 1):
        deliver(receiver, publisher.outgoing(r, target, np.ones(n, bool)))
    return receiver.params, target, cfg.k(p)


def test_with_error_feedback_the_receiver_converges_to_a_fixed_target():
    got, target, _ = fixed_target_rounds(error_feedback=True, rounds=60)
    # each pass over the 20 entries (10 rounds of k = 2) shrinks the error by the int8 step, 1/254
    np.testing.assert_allclose(got, target, atol=1e-5)


def test_without_error_feedback_small_entries_are_never_sent():
    got, target, k = fixed_target_rounds(error_feedback=False, rounds=60)
    # the jump from zeros is sent once as its top k; afterwards the change is zero
    assert ((got == 0).sum(axis=1) == target.shape[1] - k).all()
    sent = got != 0
    assert np.all(np.abs(got[sent] - target[sent]) <= 2 / 127 / 2 * (1 + 1e-6))


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("error_feedback", [True, False])
def test_without_loss_the_receiver_matches_the_sender_bit_for_bit(dtype, error_feedback):
    rng = np.random.default_rng(4)
    n, p = 6, 30
    cfg = CommConfig(dtype=dtype, topk=0.2, error_feedback=error_feedback, full_every=3)
    publisher, receiver = ParamPublisher(cfg, n, p), ParamReceiver(n, p)
    params = rng.normal(size=(n, p)).astype(np.float32)
    kinds = []
    for r in range(20):
        params += rng.normal(size=(n, p)).astype(np.float32) * rng.uniform(0.001, 1)
        pub = publisher.outgoing(r, params, rng.random(n) < 0.7)
        kinds.append(pub.dense)
        deliver(receiver, pub)
        assert receiver.params.tobytes() == publisher.sent.tobytes()
        assert receiver.synced.tolist() == (publisher.publishes > 0).tolist()
    assert 0 < sum(kinds) < len(kinds)


def test_a_lost_sparse_message_desynchronises_until_the_next_full_message():
    rng = np.random.default_rng(5)
    cfg = CommConfig(topk=0.25, full_every=4)
    publisher, receiver = ParamPublisher(cfg, 1, 8), ParamReceiver(1, 8)
    params = rng.normal(size=(1, 8)).astype(np.float32)
    in_sync, dense = [], []
    for r in range(9):
        params += rng.normal(size=(1, 8)).astype(np.float32)
        pub = publisher.outgoing(r, params, ALL)
        dense.append(pub.dense)
        if r != 1:  # round 1's sparse message is lost
            deliver(receiver, pub)
        in_sync.append(np.array_equal(receiver.params, publisher.sent))
    assert dense == [True, False, False, False, True, False, False, False, True]
    assert in_sync == [True, False, False, False, True, True, True, True, True]


# --- when to publish ------------------------------------------------------------------------


def test_event_threshold_publishes_only_after_enough_relative_change():
    publisher = ParamPublisher(CommConfig(event_threshold=0.05), 3, 4)
    base = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    published = {0: [], 1: [], 2: []}
    for r in range(10):
        params = np.stack([base, base * (1.1**r), base * (1 + 0.02 * r)]).astype(np.float32)
        for d in publisher.outgoing(r, params, np.ones(3, bool)).sender:
            published[d].append(r)
    assert published[0] == [0]  # never moves
    assert published[1] == list(range(10))  # moves 10% each round
    # drifts 2% of base per round: relative change 0.02 * (r - s) / (1 + 0.02 * s) since the send at s
    assert published[2] == [0, 3, 6, 9]
    assert publisher.suppressed.tolist() == [9, 0, 6]


def test_period_publishes_on_every_kth_update():
    publisher = ParamPublisher(CommConfig(period=3), 2, 4)
    rounds = [
        r for r in range(10) if publisher.outgoing(r, np.full((2, 4), r, np.float32), np.ones(2, bool)) is not None
    ]
    assert rounds == [0, 3, 6, 9] and publisher.publishes.tolist() == [4, 4]


def test_a_device_due_a_dense_message_makes_the_round_dense():
    publisher = ParamPublisher(CommConfig(topk=0.5), 2, 4)
    params = np.arange(8, dtype=np.float32).reshape(2, 4)
    rounds = []
    for r, active in enumerate([[True, False], [True, False], [True, True], [True, True], [False, False]]):
        pub = publisher.outgoing(r, params + r, np.array(active))
        rounds.append(None if pub is None else (pub.dense, pub.sender.tolist()))
    # device 1's first publish (round 2) is dense, so device 0 sends dense in that round too
    assert rounds == [(True, [0]), (False, [0]), (True, [0, 1]), (False, [0, 1]), None]


@pytest.mark.parametrize("full_every", [1, 2, 5])
def test_every_device_is_dense_at_least_every_full_every_publishes(full_every):
    rng = np.random.default_rng(7)
    n = 8
    publisher = ParamPublisher(CommConfig(topk=0.1, full_every=full_every, event_threshold=0.02), n, 20)
    params = rng.normal(size=(n, 20)).astype(np.float32)
    since = np.zeros(n, int)  # publishes since each device's last dense one
    for r in range(60):
        params += (rng.normal(size=(n, 20)) * rng.choice([0.0, 0.1], size=(n, 1))).astype(np.float32)
        pub = publisher.outgoing(r, params, rng.random(n) < 0.8)
        if pub is not None:
            since[pub.sender] = 0 if pub.dense else since[pub.sender] + 1
            assert since.max() < full_every


# --- receiver -------------------------------------------------------------------------------


def test_receiver_needs_a_dense_message_first_and_ignores_bad_indices():
    receiver = ParamReceiver(3, 4)
    sparse = [np.array([[1, 2]]), np.array([[5.0, 6.0]], np.float32)]
    _, ok = receiver.apply(np.array([0]), sparse, dense=False)
    assert ok.tolist() == [False]
    _, ok = receiver.apply(np.array([0, 2, 0]), [np.arange(12, dtype=np.float32).reshape(3, 4)], dense=True)
    assert ok.all() and receiver.params[0].tolist() == [8, 9, 10, 11]  # the later of two dense messages wins
    values, ok = receiver.apply(
        np.array([0, 0, 2]), [np.array([[1, 2], [1, 7], [0, 1]]), np.ones((3, 2), np.float32)], dense=False
    )
    assert ok.tolist() == [True, False, True] and values.tolist() == [[8, 10, 11, 11], [8, 10, 11, 11], [5, 6, 6, 7]]
    assert receiver.params[0].tolist() == [8, 10, 11, 11] and receiver.params[2].tolist() == [5, 6, 6, 7]
    assert not receiver.synced[1]


def test_inputs_are_checked_with_the_expected_shape():
    publisher = ParamPublisher(CommConfig(), 2, 3)
    with pytest.raises(ValueError, match=r"\(N, P\) = \(2, 3\)"):
        publisher.outgoing(0, np.zeros((3, 2)), np.ones(2, bool))
    with pytest.raises(ValueError, match=r"\(N,\) = \(2,\)"):
        publisher.outgoing(0, np.zeros((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="device 1"):
        publisher.outgoing(0, np.array([[0, 0, 0], [0, np.nan, 0]]), np.ones(2, bool))
    with pytest.raises(ValueError, match=r"a dense message needs arrays \[values \(1, 3\)\]"):
        ParamReceiver(2, 3).apply(np.array([0]), [np.zeros((1, 4))], dense=True)
    with pytest.raises(ValueError, match=r"a sparse message needs arrays \[indices \(1, k\), values \(1, k\)\]"):
        ParamReceiver(2, 3).apply(np.array([0]), [np.zeros((1, 3))], dense=False)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ParamReceiver(2, 3).apply(np.array([2]), [np.zeros((1, 3))], dense=True)


def test_state_round_trips_through_a_checkpoint():
    rng = np.random.default_rng(8)
    cfg = CommConfig(dtype="int8", topk=0.25, full_every=3, event_threshold=0.01)
    publisher, receiver = ParamPublisher(cfg, 4, 8), ParamReceiver(4, 8)
    params = rng.normal(size=(4, 8)).astype(np.float32)
    for r in range(5):
        params += rng.normal(size=(4, 8)).astype(np.float32)
        deliver(receiver, publisher.outgoing(r, params, rng.random(4) < 0.7))
    twin, twin_receiver = ParamPublisher(cfg, 4, 8), ParamReceiver(4, 8)
    twin.load_state_dict(publisher.state_dict())
    twin_receiver.load_state_dict(receiver.state_dict())
    for r in range(5, 10):
        params += rng.normal(size=(4, 8)).astype(np.float32)
        a, b = publisher.outgoing(r, params, np.ones(4, bool)), twin.outgoing(r, params, np.ones(4, bool))
        assert a.dense == b.dense and all(np.array_equal(x, y) for x, y in zip(a.arrays, b.arrays, strict=True))
        deliver(receiver, a)
        deliver(twin_receiver, b)
    assert twin_receiver.params.tobytes() == receiver.params.tobytes() == publisher.sent.tobytes()
    with pytest.raises(ConfigError, match=r"reconstructed: shape \(4, 8\), expected \(4, 9\)"):
        ParamPublisher(cfg, 4, 9).load_state_dict(publisher.state_dict())


def test_a_dense_policy_keeps_no_reconstruction_so_a_top_k_checkpoint_does_not_fit_it():
    dense, topk = ParamPublisher(CommConfig(dtype="float16"), 3, 6), ParamPublisher(CommConfig(topk=0.5), 3, 6)
    assert dense.reconstructed is None and topk.reconstructed is not None
    with pytest.raises(ConfigError, match="reconstructed: present in the state, absent here"):
        dense.load_state_dict(topk.state_dict())


# --- cost -----------------------------------------------------------------------------------


def test_topk_int8_costs_an_eighth_of_dense_float32_plus_headers():
    p = 10_000
    publisher = ParamPublisher(CommConfig(dtype="int8", topk=0.1), 1, p)
    rng = np.random.default_rng(6)
    first = publisher.outgoing(0, rng.normal(size=(1, p)).astype(np.float32), ALL)
    pub = publisher.outgoing(1, rng.normal(size=(1, p)).astype(np.float32), ALL)
    dense_f32 = encoded_size(DType.FLOAT32, [(p,)])
    sparse_i8 = encoded_size(pub.dtypes, [a.shape[1:] for a in pub.arrays])
    # header 21 + crc 4, and a 10-byte descriptor per 1-d array; indices 4 bytes, int8 values 1 byte
    assert dense_f32 == 21 + 10 + 4 * p + 4
    assert sparse_i8 == 21 + 2 * 10 + 1000 * (4 + 1) + 4
    assert sparse_i8 / dense_f32 == pytest.approx(0.1 * (4 + 1) / 4, abs=0.002)  # 0.126
    assert encoded_size(first.dtypes, [a.shape[1:] for a in first.arrays]) == 21 + 10 + p + 4  # dense int8


@pytest.mark.parametrize(
    "cfg, p, largest",
    [
        (CommConfig(), 10, 21 + 10 + 4 * 10 + 4),  # dense float32: 75
        # the first (dense) message: 235, not k = 10 sparse (85)
        (CommConfig(dtype="float16", topk=0.1), 100, 21 + 10 + 2 * 100 + 4),
        (CommConfig(topk=0.9), 10, 21 + 20 + 9 * (4 + 4) + 4),  # 9 indices and values (117) outweigh 10 values (75)
    ],
)
def test_the_largest_message_is_what_the_publisher_sends_at_most(cfg, p, largest):
    assert cfg.largest_message_bytes(p) == largest
    publisher, rng = ParamPublisher(cfg, 2, p), np.random.default_rng(0)
    pubs = [publisher.outgoing(i, rng.normal(size=(2, p)).astype(np.float32), np.ones(2, bool)) for i in range(3)]
    assert max(encoded_size(pub.dtypes, [a.shape[1:] for a in pub.arrays]) for pub in pubs) == largest
