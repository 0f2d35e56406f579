"""State files: checkpoints and policies in a format that loads data, never code.

A state is a tree of dicts (string keys), lists, JSON scalars (``None``, bool, int, float,
str) and arrays (numpy arrays or torch tensors). :func:`save` writes it as one
`safetensors <https://huggingface.co/docs/safetensors>`_ file:

- every array is a tensor named by its dotted path in the tree (``simulation.fleet.temp``,
  ``simulation.network.pending.params.0.rows``), little-endian, in the order of the tree;
- the header's ``__metadata__`` holds ``format`` (``fleet-state``), ``version`` (:data:`VERSION`),
  ``kind`` (what the file is: ``simulation``, ``agent``, ``policy``) and ``tree``: the tree as
  JSON, each array replaced by ``{"@": name, "torch": true|false}`` (a tensor or a numpy
  array when loaded). Floats keep every bit (JSON's shortest repr; NaN and infinities as
  Python writes them).

:func:`load` checks the format, version and kind, bounds the header and the file, and
returns the tree with new arrays: nothing in the file is ever called or imported. The
safetensors parser refuses tensors whose declared size does not match the bytes the file
has, so memory is bounded by the file's size.

What each kind holds is what its components' ``state_dict()`` give: ``simulation``
(:attr:`fleet.sim.engine.Simulation.STATE` and down), ``agent``
(:meth:`fleet.edge.agent.EdgeAgent.checkpoint`), ``policy``
(:func:`fleet.learners.stacked.policy_state`).

Components say what their state is with ``state_dict()`` (arrays may be the live ones: a
state is saved at once, before the component changes) and ``load_state_dict(state)``, which
checks every entry against the component as constructed and raises :class:`StateMismatch`
naming the first entry that does not fit. To add state to a component, add the attribute to
its ``STATE`` names (:func:`attrs_state` / :func:`load_attrs`: arrays keep dtype and shape,
scalars their type, random generators their kind), or save and check it explicitly in its
two methods with :func:`entry`, :func:`array` and :func:`load_child`; then bump
:data:`VERSION` if older files no longer fit.

Files are created exclusively and never through a symbolic link (:func:`create_new`).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from fleet.errors import ConfigError, FleetError

FORMAT = "fleet-state"
VERSION = 1
"""Version of the layout of every kind of state; files of another version are refused."""
MAX_HEADER_BYTES = 16 << 20
"""Largest header (tensor table and tree) a file may declare."""
MAX_DEPTH = 32
"""Deepest nesting of dicts and lists in a tree."""

_DTYPES = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint8): "U8",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint16): "U16",
    np.dtype(np.int16): "I16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint64): "U64",
    np.dtype(np.int64): "I64",
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
}
_SCALARS = (type(None), bool, int, float, str)


class StateFileError(FleetError):
    """A state file cannot be read: not this format, version or kind, damaged, or too large."""


class StateMismatch(ConfigError):
    """A saved state does not fit the component it is loaded into; ``path`` is the dotted key."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path, self.problem = path, problem

    def within(self, key: str) -> StateMismatch:
        """The same mismatch, one level further down from ``key``."""
        return StateMismatch(f"{key}.{self.path}" if self.path else key, self.problem)


# --- writing -----------------------------------------------------------------------------------


def _flatten(node: Any, path: str, arrays: list[tuple[str, np.ndarray]], depth: int = 0) -> Any:
    """The JSON tree of ``node``; its arrays go to ``arrays`` as (name, little-endian array)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: the state nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, (np.ndarray, torch.Tensor)):
        is_torch = isinstance(node, torch.Tensor)
        a = node.detach().cpu().numpy() if is_torch else node
        little = a.dtype.newbyteorder("<")
        if little not in _DTYPES:
            raise TypeError(f"{path}: arrays of dtype {a.dtype} cannot be saved (saved: {sorted(map(str, _DTYPES))})")
        arrays.append((path, np.asarray(a, dtype=little, order="C")))  # 0-d stays 0-d
        return {"@": path, "torch": is_torch}
    if isinstance(node, Mapping):
        bad = [k for k in node if not isinstance(k, str) or k.startswith("@")]
        if bad:
            raise TypeError(f"{path}: keys must be strings not starting with '@', got {bad[0]!r}")
        return {k: _flatten(v, f"{path}.{k}" if path else k, arrays, depth + 1) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_flatten(v, f"{path}.{i}", arrays, depth + 1) for i, v in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    if isinstance(node, _SCALARS):
        return node
    raise TypeError(f"{path}: a {type(node).__name__} is not state (arrays, JSON scalars, lists and dicts are)")


def _header(kind: str, tree: Any, arrays: list[tuple[str, np.ndarray]]) -> bytes:
    """The safetensors header: length, JSON padded with spaces to a multiple of 8 bytes."""
    table: dict[str, Any] = {
        "__metadata__": {"format": FORMAT, "version": str(VERSION), "kind": kind, "tree": json.dumps(tree)}
    }
    offset = 0
    for name, a in arrays:
        if name in table:
            raise ValueError(f"{name}: two arrays of the state have this name")
        table[name] = {
            "dtype": _DTYPES[a.dtype.newbyteorder("<")],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        offset += a.nbytes
    text = json.dumps(table).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def save(write: Callable[[bytes | memoryview], Any], kind: str, state: Mapping) -> None:
    """Write ``state`` as a state file of ``kind`` through ``write`` (a file's ``write``):
    the header, then every array's bytes. The whole state is encoded before the first byte
    is written, so a state that cannot be saved writes nothing."""
    arrays: list[tuple[str, np.ndarray]] = []
    tree = _flatten(state, "", arrays)
    write(_header(kind, tree, arrays))
    for _, a in arrays:
        if a.nbytes:
            write(memoryview(a.reshape(-1)).cast("B"))


def create_new(path: Path) -> BinaryIO:
    """A new file at ``path`` for writing, opened exclusively and not through a symbolic link.

    A leftover entry of that name (a temporary file a crash left, or a link someone planted)
    is removed first, never followed: what a link points to is not touched."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        os.unlink(path)
        fd = os.open(path, flags, 0o644)
    return os.fdopen(fd, "wb")


# --- reading -----------------------------------------------------------------------------------


def load(path: Path, kind: str, max_bytes: int) -> dict:
    """The state saved in ``path`` by :func:`save` as ``kind``: a dict of plain data and new
    arrays. :class:`StateFileError` naming the file if it is not one, of another version or
    kind, damaged, or larger than ``max_bytes``."""
    import safetensors

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise StateFileError(f"{path}: cannot read it: {e.strerror}") from None
    if size > max_bytes:
        raise StateFileError(f"{path}: {size} bytes, more than a {kind} state file may have ({max_bytes})")
    if len(head) < 8 or struct.unpack("<Q", head)[0] > min(MAX_HEADER_BYTES, size - 8):
        raise StateFileError(
            f"{path}: not a {FORMAT} file (its first 8 bytes do not give the length of a header it has)"
        )
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            meta = _checked_metadata(path, f.metadata(), kind)
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except StateFileError:
        raise
    except Exception as e:  # the parser's errors on a damaged file (SafetensorError, TypeError for unknown dtypes...)
        raise StateFileError(f"{path}: not a readable {FORMAT} file ({type(e).__name__}: {e})") from None
    try:
        tree = json.loads(meta["tree"])
    except (ValueError, RecursionError) as e:
        raise StateFileError(f"{path}: the state's tree is not valid JSON ({type(e).__name__}: {e})") from None
    state = _unflatten(path, tree, arrays, 0)
    if arrays:
        raise StateFileError(f"{path}: tensor {next(iter(arrays))!r} belongs to no entry of the state")
    if not isinstance(state, dict):
        raise StateFileError(f"{path}: the state is a {type(state).__name__}, not a mapping of entries")
    return state


def _checked_metadata(path: Path, meta: dict | None, kind: str) -> dict:
    meta = meta or {}
    if meta.get("format") != FORMAT or "tree" not in meta:
        raise StateFileError(f"{path}: a safetensors file, but not one of fleet's state files (no {FORMAT} metadata)")
    if meta.get("version") != str(VERSION):
        raise StateFileError(
            f"{path}: written in {FORMAT} version {meta.get('version')!r}; this version of fleet reads version "
            f"{VERSION}"
        )
    if meta.get("kind") != kind:
        raise StateFileError(f"{path}: holds the state of a {meta.get('kind')!r}, not of a {kind!r}")
    return meta


def _unflatten(path: Path, node: Any, arrays: dict[str, np.ndarray], depth: int) -> Any:
    """The tree with its array references replaced by the arrays (each taken once)."""
    if depth > MAX_DEPTH:
        raise StateFileError(f"{path}: the state nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict) and "@" in node:
        name, is_torch = node.get("@"), node.get("torch")
        if (
            set(node) != {"@", "torch"}
            or not isinstance(is_torch, bool)
            or not isinstance(name, str)
            or name not in arrays
        ):
            raise StateFileError(f"{path}: the state refers to a tensor the file does not hold (once): {node!r:.200}")
        a = arrays.pop(name)
        return torch.from_numpy(a) if is_torch else a
    if isinstance(node, dict):
        return {k: _unflatten(path, v, arrays, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_unflatten(path, v, arrays, depth + 1) for v in node]
    return node


# --- checking a state against a component ---------------------------------------------------------


@contextmanager
def within(key: str) -> Iterator[None]:
    """Mismatches raised inside name their path from ``key`` on."""
    try:
        yield
    except StateMismatch as e:
        raise e.within(key) from None


def entry(state: Any, key: str, kind: type | tuple[type, ...] = object) -> Any:
    """``state[key]``, checked to be an instance of ``kind``."""
    if not isinstance(state, Mapping):
        raise StateMismatch("", f"expected a mapping of entries, got {type(state).__name__}")
    if key not in state:
        raise StateMismatch(key, "missing")
    value = state[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise StateMismatch(key, f"expected {names}, got {type(value).__name__}")
    return value


def expect_keys(state: Any, names: tuple[str, ...] | list[str]) -> None:
    """The entries of ``state`` are exactly ``names``."""
    if not isinstance(state, Mapping):
        raise StateMismatch("", f"expected a mapping of entries, got {type(state).__name__}")
    missing = [n for n in names if n not in state]
    if missing:
        raise StateMismatch(missing[0], "missing")
    extra = [k for k in state if k not in names]
    if extra:
        raise StateMismatch(str(extra[0]), "unexpected (a state of another version or component?)")


def array(
    value: Any,
    like: np.ndarray | torch.Tensor | None = None,
    dtype: Any = None,
    shape: tuple[int | None, ...] | None = None,
):
    """``value`` checked to be an array of ``like``'s kind (numpy or torch), dtype and shape, or
    of ``dtype`` and ``shape`` (``None`` entries: any length). Raises a mismatch at path ''."""
    if like is not None:
        dtype, shape = like.dtype, tuple(like.shape)
    want_torch = isinstance(like, torch.Tensor) or isinstance(dtype, torch.dtype)
    if not isinstance(value, torch.Tensor if want_torch else np.ndarray):
        raise StateMismatch("", f"expected a {'tensor' if want_torch else 'numpy array'}, got {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        raise StateMismatch("", f"dtype {value.dtype}, expected {dtype}")
    got = tuple(value.shape)
    if shape is not None and (len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise StateMismatch("", f"shape {got}, expected {want}")
    return value


def indices(value: np.ndarray, high: int) -> np.ndarray:
    """``value`` (an integer array) checked to lie in ``[0, high)``."""
    if value.size and (value.min() < 0 or value.max() >= high):
        raise StateMismatch("", f"indices must lie in [0, {high}), got values in [{value.min()}, {value.max()}]")
    return value


def load_child(state: Any, key: str, component: Any) -> None:
    """``component.load_state_dict(state[key])``, mismatches named from ``key`` on."""
    sub = entry(state, key)
    with within(key):
        component.load_state_dict(sub)


def array_list(
    state: Any, key: str, like: list | None = None, dtype: Any = None, shape: tuple[int | None, ...] | None = None
) -> list:
    """``state[key]``: a list of arrays, each like ``like[i]`` (same length) or of ``dtype`` and ``shape``."""
    values = entry(state, key, list)
    if like is not None and len(values) != len(like):
        raise StateMismatch(key, f"{len(values)} arrays, expected {len(like)}")
    out = []
    for i, v in enumerate(values):
        with within(f"{key}.{i}"):
            out.append(array(v, like[i] if like is not None else None, dtype, shape))
    return out


# --- "these attributes are my state" ------------------------------------------------------------


def attrs_state(obj: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The attributes ``names`` of ``obj`` as a state: the live arrays and scalars, generators as
    their state, components (anything with ``load_state_dict``) as their ``state_dict()``."""
    return {name: _value_state(getattr(obj, name)) for name in names}


def _value_state(value: Any) -> Any:
    if hasattr(value, "load_state_dict"):
        return value.state_dict()
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    if isinstance(value, torch.Generator):
        return value.get_state()
    return value


def load_attrs(obj: object, state: Any, names: tuple[str, ...]) -> None:
    """Restore what :func:`attrs_state` saved into ``obj``, checking every entry against the
    attribute as it is now: arrays keep their kind, dtype and shape (copied in place, so that
    whatever holds them sees the new values), scalars their type (an int may be a float),
    ``None`` stays ``None``, generators take the saved state of their kind, components load theirs."""
    expect_keys(state, names)
    for name in names:
        with within(name):
            setattr(obj, name, _loaded(getattr(obj, name), state[name]))


def _loaded(current: Any, saved: Any) -> Any:
    if hasattr(current, "load_state_dict"):
        current.load_state_dict(saved)
        return current
    if isinstance(current, np.random.Generator):
        return load_rng(current, saved)
    if isinstance(current, torch.Generator):
        current.set_state(array(saved, current.get_state()))
        return current
    if isinstance(current, (np.ndarray, torch.Tensor)):
        saved = array(saved, current)
        if isinstance(current, torch.Tensor):
            with torch.no_grad():
                current.copy_(saved)
        else:
            current[...] = saved
        return current
    if current is None or saved is None:
        if current is not saved:
            raise StateMismatch(
                "",
                f"{'absent' if saved is None else 'present'} in the state, "
                f"{'absent' if current is None else 'present'} here (another configuration?)",
            )
        return None
    if isinstance(current, float) and isinstance(saved, int) and not isinstance(saved, bool):
        return float(saved)
    if type(saved) is not type(current):
        raise StateMismatch("", f"expected {type(current).__name__}, got {type(saved).__name__}")
    return saved


def load_rng(rng: np.random.Generator, saved: Any) -> np.random.Generator:
    """Set ``rng`` to the ``bit_generator.state`` saved; a mismatch if it is not one of its kind."""
    kind = type(rng.bit_generator).__name__
    if not isinstance(saved, dict) or not isinstance(saved.get("bit_generator"), str) or saved["bit_generator"] != kind:
        raise StateMismatch("", f"expected the state of a {kind} random generator")
    try:
        rng.bit_generator.state = saved
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
        raise StateMismatch("", f"not a valid {kind} state ({e})") from None
    return rng
