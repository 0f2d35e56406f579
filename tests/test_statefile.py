"""State files: a tree of arrays and plain data in one safetensors file, loaded without code."""

import json
import math
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.statefile import StateFileError, StateMismatch, create_new, load, load_attrs, load_rng, save
from tests.hostile import RunsACommand, hostile_pickle

LIMIT = 1 << 30


def write(path, kind, state):
    with path.open("wb") as f:
        save(f.write, kind, state)
    return path


def header(path):
    """The file's header (tensor table and metadata) as JSON, and the data after it."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def with_header(path, table, data):
    text = json.dumps(table).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


STATE = {
    "counts": np.arange(5, dtype=np.int64),
    "weights": torch.linspace(-1, 1, 12).reshape(3, 4),
    "flags": np.array([True, False]),
    "empty": np.zeros((0, 3), np.float32),
    "scalar": torch.tensor(2.5, dtype=torch.float64),
    "half": np.array([1.5, -2.0], np.float16),
    "seen": np.array([2**64 - 1], np.uint64),
    "nested": {"list": [np.ones(2), None, "text", 3, 0.1, {"deep": torch.zeros(1, dtype=torch.uint8)}]},
    "numbers": [math.inf, -math.inf, 2**100, True, 1e-310],
}


def test_a_state_comes_back_with_every_value_kind_dtype_and_shape(tmp_path):
    got = load(write(tmp_path / "s.safetensors", "test", STATE), "test", LIMIT)
    assert set(got) == set(STATE)
    for key in ("counts", "flags", "empty", "half", "seen"):
        assert (
            isinstance(got[key], np.ndarray)
            and got[key].dtype == STATE[key].dtype
            and np.array_equal(got[key], STATE[key])
        )
    for key in ("weights", "scalar"):
        assert (
            isinstance(got[key], torch.Tensor)
            and got[key].dtype == STATE[key].dtype
            and torch.equal(got[key], STATE[key])
        )
    assert got["scalar"].shape == ()  # a 0-d tensor stays 0-d
    deep = got["nested"]["list"]
    assert (
        np.array_equal(deep[0], np.ones(2))
        and deep[1:5] == [None, "text", 3, 0.1]
        and torch.equal(deep[5]["deep"], torch.zeros(1, dtype=torch.uint8))
    )
    assert got["numbers"] == [math.inf, -math.inf, 2**100, True, 1e-310] and type(got["numbers"][3]) is bool


def test_the_file_is_plain_safetensors_with_the_arrays_named_by_their_path(tmp_path):
    path = write(tmp_path / "s.safetensors", "test", STATE)
    tensors = safetensors.numpy.load_file(path)
    assert np.array_equal(tensors["nested.list.0"], np.ones(2)) and tensors["weights"].shape == (3, 4)
    table, _ = header(path)
    meta = table["__metadata__"]
    assert (meta["format"], meta["version"], meta["kind"]) == ("fleet-state", "1", "test")
    assert json.loads(meta["tree"])["counts"] == {"@": "counts", "torch": False}
    assert len(struct.pack("<Q", 0)) + len(json.dumps(table)) <= path.stat().st_size


@pytest.mark.parametrize(
    "change, message",
    [
        (("__metadata__", "format", "other"), "not one of fleet's state files"),
        (("__metadata__", "version", "0"), "written in fleet-state version '0'; this version of fleet reads version 1"),
        (("__metadata__", "kind", "agent"), "holds the state of a 'agent', not of a 'test'"),
        (("__metadata__", "tree", "[[["), "the state's tree is not valid JSON"),
        (("__metadata__", "tree", "[" * 100_000 + "]" * 100_000), "not valid JSON (RecursionError"),
        (
            ("__metadata__", "tree", json.dumps({"a": {"@": "nowhere", "torch": False}})),
            "refers to a tensor the file does not hold",
        ),
    ],
)
def test_a_file_of_another_format_version_or_kind_is_refused_naming_it(tmp_path, change, message):
    path = write(tmp_path / "s.safetensors", "test", {"a": np.zeros(3)})
    table, data = header(path)
    *keys, value = change
    table[keys[0]][keys[1]] = value
    with pytest.raises(StateFileError) as e:
        load(with_header(path, table, data), "test", LIMIT)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_a_huge_declared_tensor_is_refused_before_anything_is_allocated(tmp_path):
    path = write(tmp_path / "s.safetensors", "test", {"a": np.zeros(3)})
    table, data = header(path)
    table["a"] = {"dtype": "F64", "shape": [2**40], "data_offsets": [0, 8 * 2**40]}  # 8 TiB declared, 24 bytes there
    with_header(path, table, data)
    tracemalloc.start()
    with pytest.raises(StateFileError, match="not a readable fleet-state file"):
        load(path, "test", LIMIT)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


def test_a_file_larger_than_allowed_or_with_a_header_longer_than_itself_is_refused(tmp_path):
    path = write(tmp_path / "s.safetensors", "test", {"a": np.zeros(1000)})
    with pytest.raises(StateFileError, match="more than a test state file may have"):
        load(path, "test", 1000)
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(StateFileError, match="its first 8 bytes do not give the length of a header it has"):
        load(path, "test", LIMIT)


def test_the_hostile_pickle_of_these_tests_runs_its_command_when_unpickled(tmp_path):
    """So that the tests where nothing runs show something: unpickling it does run it."""
    pickle.loads(hostile_pickle(tmp_path / "ran"))
    assert (tmp_path / "ran").exists()


def test_a_pickle_is_not_a_state_file_and_loading_it_runs_nothing(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_bytes(hostile_pickle(tmp_path / "ran"))
    with pytest.raises(StateFileError, match="not a fleet-state file"):
        load(path, "test", LIMIT)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "state, message",
    [
        ({"f": lambda: None}, "f: a function is not state"),
        ({"o": RunsACommand("x")}, "o: a RunsACommand is not state"),
        ({"a": {1: np.zeros(1)}}, "a: keys must be strings"),
        ({"@": 1}, "keys must be strings not starting with '@'"),
        ({"c": np.zeros(2, np.complex64)}, "c: arrays of dtype complex64 cannot be saved"),
    ],
)
def test_only_arrays_and_plain_data_can_be_saved(tmp_path, state, message):
    written = []
    with pytest.raises(TypeError, match=message):
        save(written.append, "test", state)
    assert written == []  # nothing written


def test_create_new_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "new.tmp").symlink_to(victim)
    with create_new(tmp_path / "new.tmp") as f:
        f.write(b"mine")
    assert victim.read_text() == "precious" and (tmp_path / "new.tmp").read_bytes() == b"mine"
    assert not (tmp_path / "new.tmp").is_symlink()


class _Component:
    STATE = ("a", "n", "x", "rng", "maybe")

    def __init__(self):
        self.a, self.n, self.x, self.rng, self.maybe = np.zeros((2, 3)), 0, 0.5, np.random.default_rng(1), None


@pytest.mark.parametrize(
    "entry, value, message",
    [
        ("a", np.zeros((3, 3)), r"a: shape \(3, 3\), expected \(2, 3\)"),
        ("a", np.zeros((2, 3), np.float32), "a: dtype float32, expected float64"),
        ("a", torch.zeros(2, 3, dtype=torch.float64), "a: expected a numpy array, got Tensor"),
        ("n", 1.5, "n: expected int, got float"),
        ("n", True, "n: expected int, got bool"),
        ("rng", {"bit_generator": "MT19937"}, "rng: expected the state of a PCG64 random generator"),
        ("rng", {"bit_generator": "PCG64", "state": "x"}, "rng: not a valid PCG64 state"),
        ("maybe", np.zeros(1), "maybe: present in the state, absent here"),
        (None, None, "rng: missing"),
    ],
)
def test_a_state_that_does_not_fit_names_the_first_entry_at_fault(entry, value, message):
    state = _fitting()
    if entry is None:
        del state["rng"]
    else:
        state[entry] = value
    with pytest.raises(StateMismatch, match=message):
        load_attrs(_Component(), state, _Component.STATE)


def _fitting():
    return {"a": np.ones((2, 3)), "n": 3, "x": 2, "rng": np.random.default_rng(5).bit_generator.state, "maybe": None}


def test_a_fitting_state_is_copied_into_the_attributes_in_place():
    target = _Component()
    array_before = target.a
    load_attrs(target, _fitting(), _Component.STATE)
    assert (
        target.a is array_before
        and (target.a == 1).all()
        and target.n == 3
        and target.x == 2.0
        and type(target.x) is float
    )
    assert target.rng.random() == np.random.default_rng(5).random()
    with pytest.raises(StateMismatch, match="extra: unexpected"):
        load_attrs(target, {**_fitting(), "extra": 1}, _Component.STATE)


# --- fuzzing: mutated files raise only the project's errors ----------------------------------------------


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory):
    return write(tmp_path_factory.mktemp("state") / "s.safetensors", "test", STATE)


KEYS = st.text(max_size=6)


def json_values(keys=KEYS):
    """JSON data (NaN and infinities as Python writes them), dicts with ``keys``."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


JSON = json_values()


@st.composite
def mutated_files(draw, raw: bytes) -> bytes:
    """``raw`` with its bytes flipped, cut, extended, or its header's JSON changed."""
    how = draw(st.sampled_from(["flip", "truncate", "extend", "header"]))
    if how == "flip":
        out = bytearray(raw)
        for at in draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            out[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "extend":
        return raw + draw(st.binary(min_size=1, max_size=64))
    n = struct.unpack("<Q", raw[:8])[0]
    table = json.loads(raw[8 : 8 + n])
    key = draw(st.sampled_from(sorted(table)))
    if key == "__metadata__":
        field = draw(st.sampled_from(sorted(table[key])))
        table[key][field] = (
            json.dumps(draw(JSON)) if field == "tree" and draw(st.booleans()) else draw(st.text(max_size=20))
        )
    else:
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", None]))
        table[key] = (
            draw(JSON)
            if field is None
            else {
                **table[key],
                field: draw(
                    st.sampled_from(["F64", "BF16", "F8_E4M3", "I4", "X"])
                    if field == "dtype"
                    else st.lists(st.integers(-1, 2**64), max_size=4)
                ),
            }
        )
    text = json.dumps(table).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_file_loads_or_raises_a_state_file_error_in_bounded_memory(sample_file, tmp_path, data):
    raw = sample_file.read_bytes()
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(data.draw(mutated_files(raw)))
    tracemalloc.start()
    try:
        load(path, "test", LIMIT)
    except StateFileError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 16 * len(raw) + (1 << 20)  # the arrays, the header and its JSON: a few times the file


def test_a_generator_state_holding_an_array_is_a_mismatch():
    """Found by the checkpoint fuzz test: numpy raised IndexError for an empty array as the state."""
    rng = np.random.default_rng(0)
    saved = dict(rng.bit_generator.state, state=np.zeros(0))
    with pytest.raises(StateMismatch, match="not a valid PCG64 state"):
        load_rng(rng, saved)
