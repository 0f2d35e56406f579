"""The versioned binary envelope of every fleet message, simulated or on a real broker.

Layout (all little-endian)::

    offset size  field
    0      2     magic b"FM"
    2      1     version (uint8) = 1
    3      1     kind (uint8): Kind
    4      4     sender (uint32)
    8      4     seq (uint32)
    12     8     timestamp (float64, seconds)
    20     1     n_arrays (uint8), 0..8
    21     ...   per array: dtype (uint8): DType, ndim (uint8, 0..4), shape (uint32 * ndim),
                 scale (float32)
    ...    ...   the arrays' data, concatenated, C order, each in its own dtype
    end-4  4     crc32 (zlib.crc32, uint32) of all bytes before it

A message with one float32 array of shape ``(8,)`` is 21 + 10 + 32 + 4 = 67 bytes. Each
array carries its own dtype, so a sparse message can send UINT32 indices next to INT8 values.
(An earlier draft had one dtype byte for the whole message; it was never deployed, so the
layout changed without a version bump.)

``scale`` is 1.0 for every dtype but INT8. INT8 is symmetric per-array quantization: ``scale =
max|x| / 127`` (1.0 if all zero), ``q = clip(round(x / scale), -127, 127)``, decoded as
``q * scale``. UINT32 carries integers in ``[0, 2**32)`` exactly (e.g. indices) and is
decoded as int64; every other dtype is decoded as float32.

:func:`encode` / :func:`decode` handle one message as ``bytes``; :func:`encode_batch` /
:func:`decode_batch` handle M messages of one layout as an ``(M, L)`` uint8 array whose
rows are byte-identical to what :func:`encode` gives; :func:`as_decoded` gives what a receiver
decodes without encoding (for a sender that tracks its receivers' view). Wherever a ``dtype``
is asked for, one :class:`DType` applies to every array and a sequence gives one per array.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from math import prod

import numpy as np

from fleet.errors import WireError

try:  # ISA-L's crc32 is zlib's CRC-32 (same polynomial and result), three times as fast on a 7.5 kB message
    from isal.isal_zlib import crc32
except ImportError:  # a machine without an isal wheel (see pyproject.toml)
    from zlib import crc32


class Kind(IntEnum):
    """What a message carries; ``Kind(i + 1)`` is published on topic kind ``topics.KINDS[i]``."""

    TELEMETRY = 1
    STATUS = 2
    CONSENSUS = 3
    PARAMS = 4
    EXPERIENCE = 5
    CMD = 6
    METER = 7
    BID = 8
    """A device's bid in its site's feeder market: [valuation in [0, 1], kW wanted] (:mod:`fleet.sim.market`)."""
    CLEARING = 9
    """The auctioneer's clearing of a market round: prices per site, winners, kW granted (:mod:`fleet.sim.market`)."""


class DType(IntEnum):
    """How array values are written on the wire."""

    FLOAT32 = 0
    FLOAT16 = 1
    INT8 = 2
    UINT32 = 3


DTypes = DType | Sequence[DType]
"""One :class:`DType` for every array, or one per array."""

MAGIC = b"FM"
VERSION = 1
DEFAULT_MAX_BYTES = 256 * 1024
MAX_ARRAYS = 8
MAX_NDIM = 4
_UINT32_MAX = 2**32 - 1

_HEADER = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("kind", "u1"),
        ("sender", "<u4"),
        ("seq", "<u4"),
        ("timestamp", "<f8"),
        ("n_arrays", "u1"),
    ]
)
HEADER_BYTES = _HEADER.itemsize
"""Bytes before the first array descriptor (21)."""
CRC_BYTES = 4

_WIRE = {
    DType.FLOAT32: np.dtype("<f4"),
    DType.FLOAT16: np.dtype("<f2"),
    DType.INT8: np.dtype("i1"),
    DType.UINT32: np.dtype("<u4"),
}
_DECODED = {DType.FLOAT32: np.float32, DType.FLOAT16: np.float32, DType.INT8: np.float32, DType.UINT32: np.int64}
_MAX_SCALE = np.nextafter(np.float32(np.finfo(np.float32).max) / np.float32(127), np.float32(0))
"""Largest int8 scale for which ``127 * scale`` is still a finite float32."""
_FLOAT16_OVERFLOW = np.float32(65520)
"""Float32 values at least this large in magnitude round to inf in float16 (halfway between its
largest value, 65504, and 2**16); smaller ones stay finite."""


@dataclass(frozen=True, eq=False)
class Message:
    """One decoded message; ``arrays`` have the shapes that were sent, int64 for UINT32, else float32."""

    kind: Kind
    sender: int
    seq: int
    timestamp: float
    dtypes: tuple[DType, ...]
    """One per array."""
    arrays: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class BatchDecoded:
    """M decoded rows; fields of invalid rows are zero. Shapes: ``(M,)`` and ``(M, *shape)``.

    ``arrays`` are int64 where the layout's dtype is UINT32, else float32.
    """

    valid: np.ndarray
    kind: np.ndarray
    sender: np.ndarray
    seq: np.ndarray
    timestamp: np.ndarray
    arrays: tuple[np.ndarray, ...]


# --- layout -----------------------------------------------------------------------------------


def _enum(cls: type[IntEnum], value: int, name: str) -> IntEnum:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(f"{m.name}={m.value}" for m in cls)
        raise WireError(f"{name} {value!r} is not one of {allowed}") from None


def _dtypes(dtype: DTypes, n_arrays: int) -> tuple[DType, ...]:
    """One checked DType per array from one DType or a sequence of them."""
    if isinstance(dtype, (int, np.integer)):
        return (_enum(DType, dtype, "dtype"),) * n_arrays
    dtypes = tuple(_enum(DType, d, f"dtype of array {i}") for i, d in enumerate(dtype))
    if len(dtypes) != n_arrays:
        raise WireError(f"{len(dtypes)} dtypes for {n_arrays} arrays; give one DType, or one per array")
    return dtypes


def _descriptor_bytes(ndim: int) -> int:
    return 2 + 4 * ndim + 4


def _data_offset(shapes: Sequence[tuple[int, ...]]) -> int:
    return HEADER_BYTES + sum(_descriptor_bytes(len(shape)) for shape in shapes)


def encoded_size(dtype: DTypes, shapes: Sequence[tuple[int, ...]]) -> int:
    """Bytes of a message with arrays of these shapes (per message, without a batch axis)."""
    data = sum(prod(shape) * _WIRE[d].itemsize for d, shape in zip(_dtypes(dtype, len(shapes)), shapes))
    return _data_offset(shapes) + data + CRC_BYTES


def _scale_offsets(shapes: Sequence[tuple[int, ...]]) -> list[int]:
    """Byte offset of each array's scale."""
    offsets, offset = [], HEADER_BYTES
    for shape in shapes:
        offsets.append(offset + 2 + 4 * len(shape))
        offset += _descriptor_bytes(len(shape))
    return offsets


def _cast_float(array: np.ndarray, to: str) -> np.ndarray:
    """float16 values as float32, or float32 as float16 (``to``: "float32" or "float16"): a new
    array, as ``array.astype`` gives.

    numpy converts float16 one value at a time; torch's vectorized conversion rounds the same
    way (to nearest even, overflowing to inf) and is 3 to 9 times faster on a batch of
    parameters (``tests/mqtt/test_codec.py`` compares the two). torch is imported here, when a
    message is first coded: reading a scenario, which sizes messages, needs no torch.
    """
    import torch

    if not array.flags.writeable or min(array.strides, default=0) < 0:  # as torch.from_numpy needs
        array = array.copy()
    return torch.from_numpy(array).to(getattr(torch, to)).numpy()


def _scale_ok(dtype: DType, scale: np.ndarray) -> np.ndarray:
    """Elementwise: is ``scale`` a scale an encoder of ``dtype`` writes?"""
    if dtype == DType.INT8:
        return np.isfinite(scale) & (scale > 0) & (scale <= _MAX_SCALE)
    return scale == 1.0


def _values_ok(dtype: DType, wire: np.ndarray) -> np.ndarray:
    """Elementwise: is ``wire`` (values as stored) a value an encoder of ``dtype`` writes?"""
    if dtype == DType.INT8:
        return wire != -128
    if dtype == DType.UINT32:
        return np.ones(wire.shape, dtype=bool)
    if dtype == DType.FLOAT16:  # isfinite on the bits (exponent not all ones): numpy's float16 isfinite is slow
        return (wire.view(np.uint16) & 0x7C00) != 0x7C00
    return np.isfinite(wire)


def _decoded(dtype: DType, wire: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Decoded values (M, K) from stored values (M, K) and scales (M,): int64 for UINT32, else float32.

    Only INT8 is scaled: every other dtype's scale is 1.0 (``_scale_ok``), which changes no value.
    """
    if dtype == DType.UINT32:
        return wire.astype(np.int64)
    if dtype == DType.FLOAT16:
        return _cast_float(wire, "float32")
    if dtype != DType.INT8:
        return wire.astype(np.float32)
    return wire.astype(np.float32) * scale.astype(np.float32)[:, None]


# --- encoding ---------------------------------------------------------------------------------


def _uint32_column(values: np.ndarray, name: str, m: int | None = None) -> np.ndarray:
    """``values`` as (M,) int64, checked to be integers in the uint32 range."""
    values = np.asarray(values)
    ok = values.dtype.kind in "iu" and values.ndim == 1 and (m is None or len(values) == m)
    if not ok or (values.size and (values.min() < 0 or values.max() > _UINT32_MAX)):
        shape = "(M,)" if m is None else f"({m},)"
        raise WireError(f"{name} must be integers in [0, {_UINT32_MAX}] with shape {shape}, got {values!r}")
    return values.astype(np.int64)


def _require(ok: np.ndarray, original: np.ndarray, what: str, problem: str) -> None:
    """Raise naming the first entry of ``original`` (M, K) where ``ok`` (M, K) is False."""
    if ok.all():
        return
    i, j = np.argwhere(~ok)[0]
    row = f" (row {i})" if len(original) > 1 else ""
    raise WireError(f"{what}{row}: value {original[i, j].item()!r} at flat index {j} {problem}")


def _quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization of float32 rows ``x`` (M, K): values (M, K) int8, scales (M,) float32."""
    max_abs = np.abs(x).max(axis=1, initial=np.float32(0))
    scale = np.where(max_abs > 0, max_abs / np.float32(127), np.float32(1))
    # tiny arrays would round the scale to 0; huge ones would overflow 127 * scale
    scale = np.clip(scale, np.finfo(np.float32).smallest_subnormal, _MAX_SCALE).astype(np.float32)
    return np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8), scale


def _flat(array: np.ndarray, index: int, m: int) -> np.ndarray:
    """Array ``index`` of a batch, (M, *shape), as (M, K) after checking its shape."""
    if array.ndim < 1 or array.shape[0] != m or array.ndim - 1 > MAX_NDIM:
        raise WireError(f"array {index} has shape {array.shape}; expected ({m}, ...) with at most {MAX_NDIM} more dims")
    if any(n > _UINT32_MAX for n in array.shape):
        raise WireError(f"array {index} has shape {array.shape}; every dimension must fit uint32")
    return array.reshape(m, prod(array.shape[1:]))


def _wire_values(array: np.ndarray, index: int, m: int, dtype: DType) -> tuple[np.ndarray, np.ndarray]:
    """Array ``index`` of a batch, (M, *shape), as stored values (M, K) and scales (M,) float32."""
    array = np.asarray(array)
    if dtype == DType.UINT32:
        if array.dtype.kind not in "iu":
            raise WireError(
                f"array {index} has dtype {array.dtype}; UINT32 arrays must hold integers in [0, {_UINT32_MAX}]"
            )
        flat = _flat(array, index, m)
        _require((flat >= 0) & (flat <= _UINT32_MAX), flat, f"array {index}", f"is outside [0, {_UINT32_MAX}] (UINT32)")
        return flat.astype(_WIRE[dtype]), np.ones(m, dtype=np.float32)
    if array.dtype.kind not in "biuf":
        raise WireError(f"array {index} has dtype {array.dtype}; only real numbers can be sent")
    flat = _flat(array, index, m)
    low, high = _range(flat)
    if not (np.isfinite(low) and np.isfinite(high)):  # a NaN or an infinity somewhere: name it
        _require(np.isfinite(flat), flat, f"array {index}", "is not finite")
    with np.errstate(over="ignore"):
        x = flat.astype(np.float32, copy=False)
    if x is not flat:
        _require(np.isfinite(x), flat, f"array {index}", "overflows float32")
        low, high = _range(x)
    if dtype == DType.INT8:
        return _quantize(x)
    wire = _cast_float(x, "float16") if dtype == DType.FLOAT16 else x.astype(_WIRE[dtype], copy=False)
    if dtype == DType.FLOAT16 and max(high, -low) >= _FLOAT16_OVERFLOW:
        _require(np.isfinite(wire), flat, f"array {index}", "overflows float16")
    return wire, np.ones(m, dtype=np.float32)


def _range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of real ``values``, (0, 0) if empty; both are finite exactly when every value
    is (a NaN propagates through both): two passes where a finiteness check and a range took four."""
    return (values.min(), values.max()) if values.size else (0.0, 0.0)


def as_decoded(array: np.ndarray, dtype: DType) -> np.ndarray:
    """What a receiver decodes, bit for bit, when each row of ``array`` (M, *shape) is sent as ``dtype``.

    Lets a sender track the quantized values its receivers hold without encoding. Returns
    ``(M, *shape)``, int64 for UINT32, else float32; raises :class:`WireError` like :func:`encode_batch`.
    """
    array = np.asarray(array)
    if array.ndim == 0:
        raise WireError("as_decoded needs a batch of rows (M, *shape), got a scalar")
    dtype = _enum(DType, dtype, "dtype")
    wire, scale = _wire_values(array, 0, len(array), dtype)
    return _decoded(dtype, wire, scale).reshape(array.shape)


def _row_crcs(rows: np.ndarray) -> np.ndarray:
    """(M,) uint32: the crc32 of each row of C-contiguous ``rows`` (M, L) uint8, without its last
    CRC_BYTES (slices of one memoryview: cheaper than a numpy row per message)."""
    data, width = memoryview(rows.reshape(-1)), rows.shape[1]
    return np.array([crc32(data[at : at + width - CRC_BYTES]) for at in range(0, rows.size, width)], dtype=np.uint32)


def _column_bytes(values: np.ndarray, wire: str) -> np.ndarray:
    """(M,) values as (M, itemsize) little-endian bytes."""
    values = np.ascontiguousarray(values, dtype=wire)
    return values.view(np.uint8).reshape(len(values), values.itemsize)


def encode_batch(
    kind: Kind,
    senders: np.ndarray,
    seqs: np.ndarray,
    timestamps: np.ndarray | float,
    arrays: Sequence[np.ndarray],
    dtype: DTypes = DType.FLOAT32,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """M messages of one kind and layout as an (M, L) uint8 array, one encoded message per row.

    ``senders`` and ``seqs`` (M,), ``timestamps`` (M,) or one float for all, each array
    ``(M, *shape)``; ``dtype`` one DType or one per array. Row ``i`` equals ``encode(kind,
    senders[i], seqs[i], timestamps[i], [a[i] for a in arrays], dtype)``.
    """
    kind = _enum(Kind, kind, "kind")
    senders = _uint32_column(senders, "sender")
    m = len(senders)
    seqs = _uint32_column(seqs, "seq", m)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.shape not in ((), (m,)):
        raise WireError(f"timestamps must be one float or have shape ({m},), got shape {timestamps.shape}")
    timestamps = np.broadcast_to(timestamps, (m,))
    if not np.isfinite(timestamps).all():
        raise WireError(f"timestamp {timestamps[~np.isfinite(timestamps)][0]} is not finite")
    if len(arrays) > MAX_ARRAYS:
        raise WireError(f"{len(arrays)} arrays in one message; at most {MAX_ARRAYS}")
    dtypes = _dtypes(dtype, len(arrays))
    values = [_wire_values(a, i, m, d) for i, (a, d) in enumerate(zip(arrays, dtypes))]
    shapes = [np.shape(a)[1:] for a in arrays]
    size = encoded_size(dtypes, shapes)
    if size > max_bytes:
        names = "/".join(d.name for d in dtypes)
        raise WireError(f"message of {size} bytes exceeds the limit of {max_bytes} bytes (shapes {shapes}, {names})")

    # --- header, descriptors, data, crc ---
    rows = np.zeros((m, size), dtype=np.uint8)
    header = np.zeros(m, dtype=_HEADER)
    header["magic"], header["version"], header["kind"], header["n_arrays"] = MAGIC, VERSION, kind, len(arrays)
    header["sender"], header["seq"], header["timestamp"] = senders, seqs, timestamps
    rows[:, :HEADER_BYTES] = header.view(np.uint8).reshape(m, HEADER_BYTES)
    for d, shape, at, (_, scale) in zip(dtypes, shapes, _scale_offsets(shapes), values):
        descriptor = struct.pack(f"<BB{len(shape)}I", d, len(shape), *shape)
        rows[:, at - len(descriptor) : at] = np.frombuffer(descriptor, dtype=np.uint8)
        rows[:, at : at + 4] = _column_bytes(scale, "<f4")
    offset = _data_offset(shapes)
    for wire, _ in values:
        nbytes = wire.shape[1] * wire.itemsize
        rows[:, offset : offset + nbytes] = wire.view(np.uint8).reshape(m, nbytes)
        offset += nbytes
    rows[:, -CRC_BYTES:] = _column_bytes(_row_crcs(rows), "<u4")
    return rows


def encode(
    kind: Kind,
    sender: int,
    seq: int,
    timestamp: float,
    arrays: Sequence[np.ndarray],
    dtype: DTypes = DType.FLOAT32,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """One message as bytes; raises :class:`WireError` if it cannot be encoded."""
    batch = [np.asarray(a)[None] for a in arrays]
    return encode_batch(kind, np.array([sender]), np.array([seq]), timestamp, batch, dtype, max_bytes)[0].tobytes()


# --- decoding ---------------------------------------------------------------------------------


def _check_length(length: int, max_bytes: int) -> None:
    if length < HEADER_BYTES + CRC_BYTES:
        raise WireError(f"message of {length} bytes is too short; the smallest is {HEADER_BYTES + CRC_BYTES} bytes")
    if length > max_bytes:
        raise WireError(f"message of {length} bytes exceeds the limit of {max_bytes} bytes")


def _check_header(data: bytes) -> np.void:
    """The header fields, after checking magic, version, crc, kind, timestamp and n_arrays."""
    header = np.frombuffer(data, dtype=_HEADER, count=1)[0]
    if header["magic"] != MAGIC:
        raise WireError(f"byte 0: bad magic {header['magic']!r}, expected {MAGIC!r} (not a fleet message)")
    if header["version"] != VERSION:
        raise WireError(f"byte 2: unsupported version {header['version']} (this build reads version {VERSION})")
    stored, computed = int.from_bytes(data[-CRC_BYTES:], "little"), crc32(data[:-CRC_BYTES])
    if stored != computed:
        raise WireError(
            f"byte {len(data) - CRC_BYTES}: crc32 is 0x{stored:08x} but the message hashes to 0x{computed:08x} "
            "(corrupted)"
        )
    _enum(Kind, int(header["kind"]), "byte 3: kind")
    if not np.isfinite(header["timestamp"]):
        raise WireError(f"byte 12: timestamp {header['timestamp']} is not finite")
    if header["n_arrays"] > MAX_ARRAYS:
        raise WireError(f"byte 20: n_arrays is {header['n_arrays']}; at most {MAX_ARRAYS}")
    return header


def _read_layout(data: bytes, n_arrays: int) -> tuple[list[DType], list[tuple[int, ...]]]:
    """The arrays' dtypes and shapes from the descriptors after the header, checking they fit the
    message. An empty array's other extents count too: ``(0, 2**32 - 1, 2**32 - 1)`` holds no value
    but is no array numpy can make, so no extent may reach past the message's own length."""
    dtypes, shapes, offset, end = [], [], HEADER_BYTES, len(data) - CRC_BYTES
    for i in range(n_arrays):
        if offset >= end:
            raise WireError(f"byte {offset}: the message ends before the descriptor of array {i} (truncated)")
        dtypes.append(_enum(DType, data[offset], f"byte {offset}: array {i} dtype"))
        ndim = data[offset + 1] if offset + 1 < end else 0
        if ndim > MAX_NDIM:
            raise WireError(f"byte {offset + 1}: array {i} has ndim {ndim}; at most {MAX_NDIM}")
        if offset + _descriptor_bytes(ndim) > end:
            raise WireError(f"byte {offset}: the message ends inside the descriptor of array {i} (truncated)")
        shape = struct.unpack_from(f"<{ndim}I", data, offset + 2)
        if prod(max(d, 1) for d in shape) > len(data):
            raise WireError(f"byte {offset + 2}: array {i} has shape {shape}, larger than the message can hold")
        shapes.append(shape)
        offset += _descriptor_bytes(ndim)
    return dtypes, shapes


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """The message in ``data``; raises :class:`WireError` naming the byte where it is malformed."""
    data = bytes(data)
    _check_length(len(data), max_bytes)
    header = _check_header(data)
    dtypes, shapes = _read_layout(data, int(header["n_arrays"]))
    expected = encoded_size(dtypes, shapes)
    if expected != len(data):
        raise WireError(
            f"byte {_data_offset(shapes)}: shapes {shapes} need a {expected}-byte message but it has {len(data)} bytes"
            " (truncated or trailing bytes)"
        )
    arrays, offset = [], _data_offset(shapes)
    for i, (dtype, shape, scale_at) in enumerate(zip(dtypes, shapes, _scale_offsets(shapes))):
        scale = np.frombuffer(data, dtype="<f4", count=1, offset=scale_at)
        if not _scale_ok(dtype, scale)[0]:
            allowed = f"in (0, {_MAX_SCALE:.4g}]" if dtype == DType.INT8 else "1.0"
            raise WireError(
                f"byte {scale_at}: array {i} has scale {scale[0]}; {dtype.name} data needs a scale {allowed}"
            )
        wire = np.frombuffer(data, dtype=_WIRE[dtype], count=prod(shape), offset=offset)
        bad = np.flatnonzero(~_values_ok(dtype, wire))
        if len(bad):
            at = offset + bad[0] * wire.itemsize
            raise WireError(f"byte {at}: array {i} holds {wire[bad[0]]}, which a {dtype.name} encoder never writes")
        arrays.append(_decoded(dtype, wire[None], scale).reshape(shape))
        offset += wire.nbytes
    kind, sender, seq, timestamp = (header[f].item() for f in ("kind", "sender", "seq", "timestamp"))
    return Message(Kind(kind), sender, seq, timestamp, tuple(dtypes), tuple(arrays))


def read_header(data: bytes) -> tuple[Kind, int, int]:
    """``(kind, sender, seq)`` from the header of a message, unchecked (:func:`decode` checks it
    all): for a broker re-sending a payload that it accepted before."""
    header = np.frombuffer(data, dtype=_HEADER, count=1)[0]
    return Kind(int(header["kind"])), int(header["sender"]), int(header["seq"])


def _first_valid(rows: np.ndarray, max_bytes: int) -> Message | None:
    for row in rows:
        try:
            return decode(row.tobytes(), max_bytes)
        except WireError:
            continue
    return None


def decode_batch(rows: np.ndarray, max_bytes: int = DEFAULT_MAX_BYTES) -> BatchDecoded:
    """Decode M encoded messages of one layout, rows (M, L) uint8, without raising for bad rows.

    The layout (each array's dtype and shape) is read from the first row that :func:`decode`
    accepts. Row ``i`` is valid exactly when ``decode(rows[i])`` succeeds with that layout;
    the fields and arrays of invalid rows are zero. When no row is valid, every row is
    marked invalid and ``arrays`` is empty.
    """
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    if rows.ndim != 2:
        raise ValueError(f"rows must have shape (M, L), got {rows.shape}")
    m = len(rows)
    first = _first_valid(rows, max_bytes)
    if first is None:
        zeros = np.zeros(m, dtype=np.int64)
        return BatchDecoded(np.zeros(m, dtype=bool), zeros, zeros, zeros, np.zeros(m), ())
    dtypes, shapes = first.dtypes, [a.shape for a in first.arrays]
    scale_at = _scale_offsets(shapes)

    # --- header, descriptors and crc ---
    zeros = [np.zeros(s, dtype=_DECODED[d]) for d, s in zip(dtypes, shapes)]
    template = np.frombuffer(encode(Kind.TELEMETRY, 0, 0, 0.0, zeros, dtypes, max_bytes), dtype=np.uint8)
    fixed = np.ones(_data_offset(shapes), dtype=bool)
    fixed[3:20] = False  # kind, sender, seq, timestamp
    for at in scale_at:
        fixed[at : at + 4] = False
    header = rows[:, :HEADER_BYTES].copy().view(_HEADER)[:, 0]
    valid = (rows[:, : len(fixed)][:, fixed] == template[: len(fixed)][fixed]).all(axis=1)
    valid &= np.isin(header["kind"], [k.value for k in Kind]) & np.isfinite(header["timestamp"])
    valid &= _row_crcs(rows) == rows[:, -CRC_BYTES:].copy().view("<u4")[:, 0]

    # --- scales and values ---
    scales, wires, offset = [], [], _data_offset(shapes)
    for dtype, shape, at in zip(dtypes, shapes, scale_at):
        scale = rows[:, at : at + 4].copy().view("<f4")[:, 0]
        nbytes = prod(shape) * _WIRE[dtype].itemsize
        wire = rows[:, offset : offset + nbytes].copy().view(_WIRE[dtype])
        valid &= _scale_ok(dtype, scale) & _values_ok(dtype, wire).all(axis=1)
        scales.append(scale)
        wires.append(wire)
        offset += nbytes

    if not valid.all():
        wires = [np.where(valid[:, None], wire, 0) for wire in wires]
        scales = [np.where(valid, scale, 1) for scale in scales]
    arrays = tuple(
        _decoded(dtype, wire, scale).reshape(m, *shape)
        for dtype, wire, scale, shape in zip(dtypes, wires, scales, shapes)
    )
    fields = [np.where(valid, header[f], 0) for f in ("kind", "sender", "seq", "timestamp")]
    return BatchDecoded(valid, *(f.astype(np.int64) for f in fields[:3]), fields[3].astype(np.float64), arrays)
