"""The wire envelope: hand-worked bytes, validation with byte offsets, batches, fuzzing."""

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fleet.errors import WireError
from fleet.mqtt.codec import (
    DEFAULT_MAX_BYTES,
    HEADER_BYTES,
    VERSION,
    DType,
    Kind,
    Message,
    as_decoded,
    decode,
    decode_batch,
    encode,
    encode_batch,
    encoded_size,
    read_header,
)
from fleet.mqtt.topics import KINDS

F32_MAX = float(np.finfo(np.float32).max)


def signed(body: bytes) -> bytes:
    """``body`` followed by its crc32, as the encoder writes it."""
    return body + struct.pack("<I", zlib.crc32(body))


def resign(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by a correct crc32 (so other checks are reached)."""
    return signed(data[:-4])


def header(kind, sender, seq, timestamp, n_arrays) -> bytes:
    return b"FM" + struct.pack("<BBIIdB", VERSION, kind, sender, seq, timestamp, n_arrays)


def descriptor(dtype, shape, scale=1.0) -> bytes:
    return struct.pack(f"<BB{len(shape)}If", dtype, len(shape), *shape, scale)


# --- hand-worked bytes --------------------------------------------------------------------------


def test_float32_message_bytes():
    x = np.arange(8, dtype=np.float32) / 4
    expected = signed(header(4, 7, 3, 1.5, 1) + b"\x00\x01" + struct.pack("<If", 8, 1.0) + struct.pack("<8f", *x))
    data = encode(Kind.PARAMS, 7, 3, 1.5, [x])
    assert data == expected
    assert len(data) == 67 == encoded_size(DType.FLOAT32, [(8,)]) == HEADER_BYTES + 10 + 32 + 4
    message = decode(data)
    assert (message.kind, message.sender, message.seq, message.timestamp, message.dtypes) == (
        Kind.PARAMS,
        7,
        3,
        1.5,
        (DType.FLOAT32,),
    )
    assert message.arrays[0].dtype == np.float32 and np.array_equal(message.arrays[0], x)


def test_int8_message_bytes():
    # max|x| = 254 gives scale 2; -63.5 and 0.5 round half to even (to -64 and 0)
    x = np.array([[254.0, -127.0], [1.0, 0.0]])
    expected = signed(
        header(1, 0, 9, 0.0, 1) + struct.pack("<BBIIf", 2, 2, 2, 2, 2.0) + bytes([0x7F, 0xC0, 0x00, 0x00])
    )
    data = encode(Kind.TELEMETRY, 0, 9, 0.0, [x], DType.INT8)
    assert data == expected
    assert decode(data).arrays[0].tolist() == [[254.0, -128.0], [0.0, 0.0]]


def test_float16_and_scalar_and_empty_arrays():
    data = encode(
        Kind.CMD, 2**32 - 1, 0, -3.25, [np.float32(1.0), np.array([65504.0, -0.5]), np.zeros((0, 3))], DType.FLOAT16
    )
    descriptors = descriptor(1, ()) + descriptor(1, (2,)) + descriptor(1, (0, 3))
    assert data == signed(header(6, 2**32 - 1, 0, -3.25, 3) + descriptors + struct.pack("<3e", 1.0, 65504.0, -0.5))
    arrays = decode(data).arrays
    assert [a.shape for a in arrays] == [(), (2,), (0, 3)]
    assert arrays[1].tolist() == [65504.0, -0.5]


def test_sparse_message_bytes_with_a_dtype_per_array():
    # indices as UINT32 (scale 1.0), values as INT8: max|x| = 254 gives scale 2, -63.5 -> -64
    data = encode(Kind.PARAMS, 1, 2, 0.5, [np.array([3, 0]), np.array([254.0, -127.0])], [DType.UINT32, DType.INT8])
    body = descriptor(3, (2,)) + descriptor(2, (2,), 2.0) + struct.pack("<2I", 3, 0) + bytes([0x7F, 0xC0])
    assert data == signed(header(4, 1, 2, 0.5, 2) + body)
    assert len(data) == encoded_size([DType.UINT32, DType.INT8], [(2,), (2,)]) == HEADER_BYTES + 2 * 10 + 8 + 2 + 4
    message = decode(data)
    assert message.dtypes == (DType.UINT32, DType.INT8)
    indices, values = message.arrays
    assert indices.dtype == np.int64 and indices.tolist() == [3, 0]
    assert values.dtype == np.float32 and values.tolist() == [254.0, -128.0]


def test_uint32_carries_the_whole_range_exactly():
    x = np.array([[0, 1], [2**31, 2**32 - 1]], dtype=np.uint64)
    data = encode(Kind.EXPERIENCE, 0, 0, 0.0, [x], DType.UINT32)
    assert data[HEADER_BYTES + 14 :][:16] == struct.pack("<4I", 0, 1, 2**31, 2**32 - 1)
    assert decode(data).arrays[0].tolist() == x.tolist()


def test_all_zero_int8_array_has_scale_one():
    data = encode(Kind.STATUS, 1, 1, 0.0, [np.zeros(3)], DType.INT8)
    assert data[HEADER_BYTES + 6 : HEADER_BYTES + 10] == struct.pack("<f", 1.0)


def test_kinds_follow_topic_kinds():
    assert [Kind(i + 1).name.lower() for i in range(len(KINDS))] == list(KINDS)


def test_message_with_no_arrays():
    assert len(encode(Kind.STATUS, 1, 2, 3.0, [])) == encoded_size(DType.FLOAT32, []) == HEADER_BYTES + 4
    assert decode(encode(Kind.STATUS, 1, 2, 3.0, [])).arrays == ()


def test_the_crc_is_zlibs_crc32():
    """The codec's crc32 (ISA-L's where installed) gives zlib's CRC-32 on every length up to
    two parameter messages and at every alignment of a slice, as the layout specifies."""
    from fleet.mqtt import codec

    data = np.random.default_rng(0).integers(0, 256, 16_000, dtype=np.uint8).tobytes()
    view = memoryview(data)
    for length in [*range(70), *range(70, 16_000, 997)]:
        for start in range(0, 9, 3):
            assert codec.crc32(view[start : start + length]) == zlib.crc32(data[start : start + length])


def test_zlib_fallback_writes_the_same_bytes():
    """Without isal (a board without its wheel) the codec falls back to zlib: same messages."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['isal'] = None\n"
        "import numpy as np, zlib\n"
        "from fleet.mqtt import codec\n"
        "assert codec.crc32 is zlib.crc32\n"
        "x = np.arange(3749, dtype=np.float32)\n"
        "sys.stdout.write(codec.encode(codec.Kind.PARAMS, 7, 3, 1.5, [x], codec.DType.FLOAT16).hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert bytes.fromhex(out) == encode(Kind.PARAMS, 7, 3, 1.5, [np.arange(3749, dtype=np.float32)], DType.FLOAT16)


# --- encode errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        ({"arrays": [np.array([1.0, np.nan])]}, "nan at flat index 1 is not finite"),
        ({"arrays": [np.array([np.inf])]}, "not finite"),
        ({"arrays": [np.array([70000.0])], "dtype": DType.FLOAT16}, "overflows float16"),
        ({"arrays": [np.array([1e39])], "dtype": DType.INT8}, "overflows float32"),
        ({"arrays": [np.array([1 + 1j])]}, "real numbers"),
        ({"arrays": [np.zeros(1)] * 9}, "9 arrays"),
        ({"arrays": [np.zeros((1, 1, 1, 1, 1))]}, "at most 4"),
        ({"arrays": [np.zeros(65536)]}, "262179 bytes exceeds the limit of 262144 bytes .*FLOAT32"),
        ({"sender": -1}, "sender"),
        ({"sender": 2**32}, "sender"),
        ({"seq": 2**64}, "seq"),
        ({"seq": True}, "seq"),
        ({"kind": len(Kind) + 1}, f"kind {len(Kind) + 1} is not one of"),
        ({"dtype": 4}, "dtype 4 is not one of"),
        ({"dtype": [DType.FLOAT32, 7]}, "dtype of array 1 7 is not one of"),
        ({"dtype": [DType.FLOAT32] * 2}, "2 dtypes for 1 arrays"),
        ({"dtype": DType.UINT32}, "dtype float64; UINT32 arrays must hold integers"),
        (
            {"arrays": [np.array([5, -1])], "dtype": DType.UINT32},
            r"value -1 at flat index 1 is outside \[0, 4294967295\]",
        ),
        ({"arrays": [np.array([2**32])], "dtype": DType.UINT32}, "value 4294967296 at flat index 0 is outside"),
        ({"timestamp": float("nan")}, "timestamp"),
    ],
)
def test_encode_refuses(change, match):
    args = {
        "kind": Kind.PARAMS,
        "sender": 1,
        "seq": 1,
        "timestamp": 0.0,
        "arrays": [np.zeros(2)],
        "dtype": DType.FLOAT32,
    } | change
    with pytest.raises(WireError, match=match):
        encode(**args)


def test_max_bytes_is_configurable():
    with pytest.raises(WireError, match="67 bytes exceeds the limit of 66"):
        encode(Kind.PARAMS, 0, 0, 0.0, [np.zeros(8)], max_bytes=66)
    with pytest.raises(WireError, match="67 bytes exceeds the limit of 66"):
        decode(encode(Kind.PARAMS, 0, 0, 0.0, [np.zeros(8)]), max_bytes=66)


# --- decode errors, each at its byte --------------------------------------------------------------

GOOD = encode(Kind.PARAMS, 7, 3, 1.5, [np.arange(8.0)])  # 67 bytes: dtype at 21, ndim 22, shape 23, scale 27, data 31
EMPTY = encode(Kind.STATUS, 1, 1, 0.0, [])  # 25 bytes
GOOD_INT8 = encode(Kind.PARAMS, 7, 3, 1.5, [np.arange(8.0)], DType.INT8)  # data at 31, crc at 39
GOOD_UINT32 = encode(Kind.PARAMS, 7, 3, 1.5, [np.arange(8)], DType.UINT32)  # same offsets as GOOD


def patched(data: bytes, at: int, new: bytes) -> bytes:
    return resign(data[:at] + new + data[at + len(new) :])


@pytest.mark.parametrize(
    "data, match",
    [
        (GOOD[:24], "24 bytes is too short"),
        (GOOD + bytes(DEFAULT_MAX_BYTES), "exceeds the limit of 262144"),
        (b"XM" + GOOD[2:], "byte 0: bad magic"),
        (GOOD[:2] + b"\x07" + GOOD[3:], r"byte 2: unsupported version 7 \(this build reads version 1\)"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), "byte 63: crc32"),
        (GOOD[:40] + b"\xff" + GOOD[41:], "byte 63: crc32"),
        (patched(GOOD, 3, bytes([len(Kind) + 1])), f"byte 3: kind {len(Kind) + 1}"),
        (patched(GOOD, 12, struct.pack("<d", np.inf)), "byte 12: timestamp inf"),
        (patched(GOOD, 20, b"\x09"), "byte 20: n_arrays is 9"),
        # the second descriptor is read from the data: dtype 0, ndim 0 (a scalar)
        (patched(GOOD, 20, b"\x02"), r"byte 37: shapes \[\(8,\), \(\)\] need a 77-byte message"),
        (patched(EMPTY, 20, b"\x01"), "byte 21: the message ends before the descriptor of array 0"),
        (resign(patched(EMPTY, 20, b"\x01")[:-4] + b"\x00" + bytes(4)), "byte 21: the message ends inside"),
        (resign(patched(EMPTY, 20, b"\x01")[:-4] + b"\x00\x01\x00\x00" + bytes(4)), "byte 21: the message ends inside"),
        (patched(GOOD, 21, b"\x04"), "byte 21: array 0 dtype 4 is not one of"),
        (patched(GOOD, 21, b"\x02"), r"byte 31: shapes \[\(8,\)\] need a 43-byte message but it has 67"),
        (patched(GOOD, 22, b"\x05"), "byte 22: array 0 has ndim 5"),
        (patched(GOOD, 23, struct.pack("<I", 9)), "byte 31: shapes .* need a 71-byte message but it has 67"),
        (patched(GOOD, 23, struct.pack("<I", 2**32 - 1)), r"byte 23: array 0 has shape \(4294967295,\), larger than"),
        (resign(GOOD[:-5] + GOOD[-4:]), "byte 31: .*truncated or trailing"),
        (resign(GOOD[:-4] + b"\x00" + GOOD[-4:]), "byte 31: .*truncated or trailing"),
        (patched(GOOD, 27, struct.pack("<f", 2.0)), "byte 27: array 0 has scale 2.0; FLOAT32 data needs a scale 1.0"),
        (patched(GOOD, 35, struct.pack("<f", np.nan)), "byte 35: array 0 holds nan"),
        (patched(GOOD_INT8, 27, struct.pack("<f", 0.0)), "byte 27: .* INT8 data needs a scale in"),
        (patched(GOOD_INT8, 27, struct.pack("<f", -1.0)), "byte 27"),
        (patched(GOOD_INT8, 27, struct.pack("<f", np.inf)), "byte 27"),
        (patched(GOOD_INT8, 27, struct.pack("<f", F32_MAX / 100)), "byte 27"),
        (patched(GOOD_INT8, 33, b"\x80"), "byte 33: array 0 holds -128"),
        (
            patched(GOOD_UINT32, 27, struct.pack("<f", 2.0)),
            "byte 27: array 0 has scale 2.0; UINT32 data needs a scale 1.0",
        ),
    ],
)
def test_decode_names_the_byte(data, match):
    with pytest.raises(WireError, match=match):
        decode(data)


def test_int8_extremes_round_trip_finite():
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    for x in ([F32_MAX, -F32_MAX, 1.0], [tiny, -tiny, 0.0]):
        out = decode(encode(Kind.PARAMS, 0, 0, 0.0, [np.array(x)], DType.INT8)).arrays[0]
        assert np.isfinite(out).all() and out[0] == pytest.approx(x[0], rel=1e-6) and out[1] == -out[0]


# --- round trip and fuzz -----------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def array_of(dtype: DType):
    """Arrays that ``dtype`` can carry: integers in the uint32 range, or floats within its range."""
    if dtype == DType.UINT32:
        return hnp.arrays(st.sampled_from([np.uint32, np.int64]), shapes, elements=st.integers(0, 2**32 - 1))
    limit = 65504.0 if dtype == DType.FLOAT16 else F32_MAX
    elements = st.floats(-limit, limit, width=32) | st.sampled_from(
        [0.0, -0.0, float(np.finfo(np.float32).smallest_subnormal), limit]
    )
    return hnp.arrays(np.float32, shapes, elements=elements)


@st.composite
def messages(draw):
    """encode's arguments; ``dtype`` is one DType for all arrays or a list with one per array."""
    n = draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(DType) | st.lists(st.sampled_from(DType), min_size=n, max_size=n))
    arrays = [draw(array_of(d)) for d in per_array(dtype, n)]
    kind = draw(st.sampled_from(Kind))
    sender, seq = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    timestamp = draw(st.floats(allow_nan=False, allow_infinity=False))
    return kind, sender, seq, timestamp, arrays, dtype


def per_array(dtype, n: int) -> list[DType]:
    return [dtype] * n if isinstance(dtype, DType) else list(dtype)


def assert_close(message: Message, arrays, dtypes):
    for out, x, dtype in zip(message.arrays, arrays, dtypes, strict=True):
        assert out.shape == x.shape
        assert out.dtype == (np.int64 if dtype == DType.UINT32 else np.float32)
        if dtype in (DType.FLOAT32, DType.UINT32):
            np.testing.assert_array_equal(out, x)
        elif dtype == DType.FLOAT16:
            np.testing.assert_array_equal(out, x.astype(np.float16).astype(np.float32))
        else:
            scale = np.abs(x).max(initial=0) / 127
            tolerance = scale / 2 * (1 + 1e-6) + float(np.finfo(np.float32).smallest_subnormal)
            assert np.all(np.abs(out.astype(np.float64) - x) <= tolerance)


@settings(max_examples=200, deadline=None)
@given(messages())
def test_round_trip(message):
    kind, sender, seq, timestamp, arrays, dtype = message
    dtypes = per_array(dtype, len(arrays))
    data = encode(kind, sender, seq, timestamp, arrays, dtype)
    assert (
        len(data) == encoded_size(dtype, [a.shape for a in arrays]) == encoded_size(dtypes, [a.shape for a in arrays])
    )
    decoded = decode(data)
    assert (decoded.kind, decoded.sender, decoded.seq, decoded.timestamp) == (kind, sender, seq, timestamp)
    assert decoded.dtypes == tuple(dtypes)
    assert_close(decoded, arrays, dtypes)


def decode_or_wire_error(data: bytes) -> Message | None:
    """decode, where WireError is an allowed outcome and any other exception fails the test."""
    try:
        return decode(data)
    except WireError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: signed(b"FM\x01" + b)))
def test_decode_arbitrary_bytes(data):
    decode_or_wire_error(data)


@st.composite
def damaged(draw):
    """A valid message with a few bytes flipped, cut off or appended, its crc often fixed again."""
    data = bytearray(encode(*draw(messages())))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    for _ in range(rng.integers(0, 4)):
        data[rng.integers(len(data))] ^= int(rng.integers(1, 256))
    cut = int(rng.integers(-8, 9)) if rng.random() < 0.3 else 0
    data = data[: len(data) + cut] if cut < 0 else data + rng.bytes(cut)
    return resign(bytes(data)) if rng.random() < 0.75 and len(data) >= 4 else bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_decode_damaged_messages(data):
    decode_or_wire_error(data)


def test_an_empty_array_with_huge_extents_is_a_wire_error():
    """Found by the test above: shape (0, 2**32 - 1, ...) passes the size check (it holds no value)
    but numpy cannot make such an array ("array is too big")."""
    data = (
        b"FM\x01\x01" + b"\x00" * 16 + b"\x04\x00\x00\x00\x00\x80?\x00\x00\x00\x00\x80?\x00\x03\x00\x00\x00"
        b"\x9a\x00\x00\x00\xb1\x00\x00\x00\x00\x00\x00\x80?\x02\x00\x00\x00\x80?" + b"\x00" * 9 + b"\x9d\xed]j"
    )
    with pytest.raises(WireError, match="larger than the message can hold"):
        decode(resign(data))


# --- batches ---------------------------------------------------------------------------------


def batch_arrays(rng, m: int, dtypes, shapes) -> list[np.ndarray]:
    """Random (m, *shape) arrays that each dtype can carry."""
    return [
        rng.integers(0, 2**32, size=(m, *shape)) if dtype == DType.UINT32 else rng.normal(size=(m, *shape)) * 100
        for dtype, shape in zip(dtypes, shapes, strict=True)
    ]


@pytest.mark.parametrize("dtype", [*DType, [DType.UINT32, DType.INT8, DType.FLOAT16]], ids=str)
@pytest.mark.parametrize("scalar_time", [True, False])
def test_batch_rows_equal_single_encodes(dtype, scalar_time):
    rng = np.random.default_rng(7)
    m = 7
    senders, seqs = rng.integers(0, 2**32, m), rng.integers(0, 2**32, m)
    timestamps = 12.5 if scalar_time else rng.normal(size=m) * 1e6
    dtypes = per_array(dtype, 3)
    arrays = [*batch_arrays(rng, m, dtypes[:2], [(3, 2), ()]), np.zeros((m, 4), int)]
    rows = encode_batch(Kind.CONSENSUS, senders, seqs, timestamps, arrays, dtype)
    assert rows.shape == (m, encoded_size(dtype, [(3, 2), (), (4,)])) and rows.dtype == np.uint8
    for i in range(m):
        t = timestamps if scalar_time else timestamps[i]
        assert rows[i].tobytes() == encode(Kind.CONSENSUS, senders[i], seqs[i], t, [a[i] for a in arrays], dtype)

    batch = decode_batch(rows)
    assert batch.valid.all()
    assert batch.sender.tolist() == senders.tolist() and batch.seq.tolist() == seqs.tolist()
    for i in range(m):
        single = decode(rows[i].tobytes())
        assert batch.kind[i] == single.kind and batch.timestamp[i] == single.timestamp
        for got, want, d in zip(batch.arrays, single.arrays, dtypes, strict=True):
            assert got.dtype == want.dtype == (np.int64 if d == DType.UINT32 else np.float32)
            assert np.array_equal(got[i], want)


def test_as_decoded_matches_the_decoded_rows():
    rng = np.random.default_rng(3)
    for dtype in DType:
        (x,) = batch_arrays(rng, 5, [dtype], [(6,)])
        rows = encode_batch(Kind.PARAMS, np.arange(5), np.arange(5), 0.0, [x], dtype)
        got = decode_batch(rows).arrays[0]
        want = as_decoded(x, dtype)
        assert want.dtype == got.dtype and want.tobytes() == got.tobytes()


def test_float16_rounds_as_numpy_does():
    """The codec converts float16 with torch (faster than numpy); values must round exactly as
    numpy's ``astype`` rounds them: every float16, the ties between neighbours and beside them."""
    half = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    half = np.unique(half[np.isfinite(half)].astype(np.float32))
    ties = (half[:-1] + half[1:]) / 2  # exact in float32
    x = np.concatenate(
        [half, ties, np.nextafter(ties, -np.inf), np.nextafter(ties, np.inf), [-0.0, 65519.99, -65519.99]]
    )
    rows = encode_batch(
        Kind.PARAMS, [0, 1], [0, 0], 0.0, [np.stack([x, -x]).astype(np.float32)], DType.FLOAT16, max_bytes=2**21
    )
    got = decode(rows[0].tobytes(), max_bytes=2**21).arrays[0]
    assert got.tobytes() == x.astype(np.float16).astype(np.float32).tobytes()
    assert (
        decode_batch(rows, max_bytes=2**21).arrays[0].tobytes()
        == np.stack([x, -x]).astype(np.float16).astype(np.float32).tobytes()
    )


def test_read_header_gives_kind_sender_and_seq():
    assert read_header(encode(Kind.STATUS, 2**32 - 1, 9, 1.5, [np.ones(1)])) == (Kind.STATUS, 2**32 - 1, 9)


def test_empty_batch():
    rows = encode_batch(Kind.PARAMS, np.zeros(0, int), np.zeros(0, int), 0.0, [np.zeros((0, 3))], DType.INT8)
    assert rows.shape == (0, encoded_size(DType.INT8, [(3,)]))
    assert decode_batch(rows).valid.shape == (0,)


def test_encode_batch_names_the_row():
    with pytest.raises(WireError, match=r"array 1 \(row 2\): value nan"):
        encode_batch(Kind.PARAMS, np.arange(3), np.arange(3), 0.0, [np.zeros((3, 2)), np.array([0, 1, np.nan])])
    with pytest.raises(WireError, match=r"shape \(3,\)"):
        encode_batch(Kind.PARAMS, np.arange(3), np.arange(2), 0.0, [])
    with pytest.raises(WireError, match="timestamps"):
        encode_batch(Kind.PARAMS, np.arange(3), np.arange(3), np.zeros(2), [])


def expected_row(row: np.ndarray, layout) -> Message | None:
    """What decode makes of ``row`` if it has ``layout`` (dtypes, shapes), else None."""
    message = decode_or_wire_error(row.tobytes())
    if message is None or (message.dtypes, [a.shape for a in message.arrays]) != layout:
        return None
    return message


def corrupt(rng, rows):
    """Damage some rows in place: random flips, with the crc fixed for half of them."""
    for i in rng.choice(len(rows), size=len(rows) // 2, replace=False):
        for _ in range(rng.integers(1, 3)):
            rows[i, rng.integers(0, rows.shape[1])] ^= int(rng.integers(1, 256))
        if rng.random() < 0.5:
            rows[i] = np.frombuffer(resign(rows[i].tobytes()), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(30))
def test_decode_batch_agrees_with_decode_on_damaged_rows(seed):
    rng = np.random.default_rng(seed)
    dtypes, m = (DType(seed % 4), DType(seed // 4 % 4)), 12
    arrays = batch_arrays(rng, m, dtypes, [(2, 2), (3,)])
    rows = encode_batch(Kind.EXPERIENCE, np.arange(m), rng.integers(0, 100, m), rng.random(m), arrays, dtypes)
    corrupt(rng, rows)
    # rows with a different layout of the same length decode alone but not in this batch
    zeros = [np.zeros((4, 1), int), np.zeros(3, int)]
    rows[m - 1] = np.frombuffer(encode(Kind.EXPERIENCE, 1, 1, 0.0, zeros, dtypes), dtype=np.uint8)
    same_size = {DType.FLOAT32: DType.UINT32, DType.UINT32: DType.FLOAT32}
    if dtypes[0] in same_size:
        other = (same_size[dtypes[0]], dtypes[1])
        rows[m - 2] = np.frombuffer(
            encode(Kind.EXPERIENCE, 1, 1, 0.0, [np.zeros((2, 2), int), zeros[1]], other), dtype=np.uint8
        )
        assert decode_or_wire_error(rows[m - 2].tobytes()) is not None and not decode_batch(rows).valid[m - 2]

    batch = decode_batch(rows)
    layout = (dtypes, [(2, 2), (3,)])
    for i, row in enumerate(rows):
        message = expected_row(row, layout)
        assert batch.valid[i] == (message is not None)
        if message is None:
            assert (batch.kind[i], batch.sender[i], batch.seq[i], batch.timestamp[i]) == (0, 0, 0, 0)
            assert all(not a[i].any() for a in batch.arrays)
        else:
            assert (batch.kind[i], batch.sender[i], batch.seq[i], batch.timestamp[i]) == (
                message.kind,
                message.sender,
                message.seq,
                message.timestamp,
            )
            assert all(np.array_equal(a[i], b) for a, b in zip(batch.arrays, message.arrays, strict=True))
    assert not batch.valid[m - 1]


def test_decode_batch_reads_the_layout_from_the_first_valid_row():
    rows = encode_batch(Kind.PARAMS, np.arange(3), np.arange(3), 0.0, [np.ones((3, 5))])
    rows[0, 0] = 0
    batch = decode_batch(rows)
    assert batch.valid.tolist() == [False, True, True]
    assert batch.arrays[0].shape == (3, 5) and batch.arrays[0][0].tolist() == [0.0] * 5


def test_decode_batch_with_no_valid_row():
    batch = decode_batch(np.zeros((4, 30), dtype=np.uint8))
    assert batch.valid.tolist() == [False] * 4 and batch.arrays == ()
    assert decode_batch(np.zeros((0, 30), dtype=np.uint8)).valid.shape == (0,)


def test_decode_batch_respects_max_bytes():
    rows = encode_batch(Kind.PARAMS, np.arange(2), np.arange(2), 0.0, [np.ones((2, 8))])
    assert not decode_batch(rows, max_bytes=66).valid.any()
