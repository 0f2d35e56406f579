"""Run directories: the resolved scenario, metrics.csv, summary.json and run.json.

A run directory is created only if it does not exist (or, with ``overwrite``, if it is empty
or an earlier run directory: one whose run.json is a run record of this tool), so results are
never lost by accident; ``overwrite`` deletes only the files a run writes (:data:`RUN_FILES`
and TensorBoard's event files) and leaves anything else. ``-o`` must not be a symbolic link.
run.json records the command line with the password of any URL in it replaced by ``***``.
``metrics.csv`` is flushed row by row and ``summary.json`` is written even when a run is
interrupted, so a stopped run leaves valid partial results. Re-running ``scenario.yaml`` from a run directory
reproduces the run bit for bit (except the ``perf`` figures). With ``outputs.tensorboard`` the
same rows also go to ``tensorboard/`` as TensorBoard scalars. :class:`Result` is a run
directory read back, as the Python API (:mod:`fleet`) returns it.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import queue
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fleet import __version__
from fleet.errors import ConfigError, RunDirError
from fleet.kpis import summary_figures
from fleet.mqtt.url import redact
from fleet.provenance import git_revision
from fleet.scenario import Scenario, dump_scenario
from fleet.statefile import StateFileError, StateMismatch, create_new, expect_keys, load_child
from fleet.statefile import load as load_state
from fleet.statefile import save as save_state

if TYPE_CHECKING:
    import pandas

    from fleet.sim.bridge import RealtimeOptions
    from fleet.sim.engine import Simulation

RUN_MARKER = "run.json"
CHECKPOINT = "checkpoint.safetensors"
"""The run's checkpoint: a :mod:`fleet.statefile` file of kind ``simulation`` holding
``scenario`` (as in scenario.yaml) and ``simulation`` (:meth:`Simulation.state_dict`)."""
OLD_CHECKPOINT = "checkpoint.pt"
"""Where earlier versions pickled the whole simulation: never loaded (a pickle can run code)."""
MAX_CHECKPOINT_BYTES = 64 << 30
"""Largest checkpoint file read."""
RUN_RECORD_KEYS = {"fleet_version": str, "started_utc": str, "command": list, "seed": int, "device": str}
"""What every run.json holds: a folder whose run.json lacks one of these is not a run directory."""
RUN_FILES = (
    "scenario.yaml",
    RUN_MARKER,
    "metrics.csv",
    "summary.json",
    "summary.json.tmp",
    CHECKPOINT,
    CHECKPOINT + ".tmp",
    OLD_CHECKPOINT,
    OLD_CHECKPOINT + ".tmp",
)
"""The files a run writes at the top of its directory; with ``overwrite`` these go, and nothing else."""
TENSORBOARD, TENSORBOARD_EVENTS = "tensorboard", "events.out.tfevents."
"""The folder of ``outputs.tensorboard`` and the start of the names of the event files written there."""
MAX_RUN_RECORD_BYTES = 1 << 20
"""A run.json larger than this is not a run record (it is a few hundred bytes)."""


WRITE_AHEAD_BYTES = 256 << 20
"""At most this many bytes of a checkpoint wait for the thread that writes them."""


class _CheckpointWriter:
    """A ``write`` for :func:`fleet.statefile.save` whose bytes a thread writes to ``tmp``; once
    all are written, the thread renames ``tmp`` to ``path``, replacing the previous checkpoint.
    ``tmp`` is created anew, never through a link (:func:`fleet.statefile.create_new`).

    ``write`` keeps each chunk (a copy, where it is a view of memory the simulation will go on
    changing) and returns; it waits only while ``WRITE_AHEAD_BYTES`` are queued. Replacing a
    large file makes the kernel free its pages there and then (about 0.1 s per 100 MB): the
    thread does that too. Python waits for the thread before it exits."""

    def __init__(self, tmp: Path, path: Path) -> None:
        self.tmp, self.path = tmp, path
        self.error: BaseException | None = None
        try:
            self._file = create_new(tmp)
        except OSError as e:
            raise RunDirError(f"{tmp}: cannot create the checkpoint: {e.strerror}") from None
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._queued = 0
        self._room = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="write the checkpoint")
        self._thread.start()

    def write(self, data) -> int:
        chunk = data if isinstance(data, bytes) else bytes(data)  # bytes are immutable; a view is copied
        with self._room:
            self._room.wait_for(lambda: self._queued == 0 or self._queued + len(chunk) <= WRITE_AHEAD_BYTES)
            self._queued += len(chunk)
        self._chunks.put(chunk)
        return len(chunk)

    def close(self, complete: bool = True) -> None:
        """No more chunks: the thread finishes writing and puts the file in place; if not
        ``complete``, it deletes the file instead, and this waits for that."""
        if not complete:
            self.error = self.error or RuntimeError("encoding stopped half-way")
        self._chunks.put(None)
        if not complete:
            self._thread.join()

    def wait(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise RunDirError(f"{self.path}: could not write the checkpoint ({self.error})")

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            if self.error is None:
                try:
                    self._file.write(chunk)
                except OSError as e:  # keep taking chunks, so that write() never waits for ever
                    self.error = e
            with self._room:
                self._queued -= len(chunk)
                self._room.notify()
        try:
            self._file.close()  # flushes: a full disk may only show here
        except OSError as e:
            self.error = self.error or e
        try:
            if self.error is None:
                self.tmp.replace(self.path)  # the kernel frees the previous file's pages here, off the main thread
            else:
                self.tmp.unlink(missing_ok=True)
        except OSError as e:
            self.error = e


class RunDir:
    """A run's output directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writing: _CheckpointWriter | None = None

    @staticmethod
    def check(path: str | Path, overwrite: bool = False) -> None:
        """Raise RunDirError, changing nothing, if ``create`` would refuse ``path``."""
        path = Path(path)
        if path.is_symlink():
            raise RunDirError(f"{path}: is a symbolic link; give the folder itself (or another) with -o")
        if not path.exists():
            return
        if not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory; choose another output with -o")
        if not overwrite:
            raise RunDirError(
                f"{path}: already exists; nothing was changed. Choose another output with -o, "
                "or pass --overwrite to replace it"
            )
        if any(path.iterdir()):
            check_run_record(path)
            files_of_a_run(path)

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> RunDir:
        """Make a fresh run directory; refuse to touch an existing one unless ``overwrite``, and
        then delete only the files an earlier run wrote there (anything else stays)."""
        path = Path(path)
        cls.check(path, overwrite)
        if path.exists():
            for f in files_of_a_run(path):
                f.unlink()
            if (path / TENSORBOARD).is_dir() and not any((path / TENSORBOARD).iterdir()):
                (path / TENSORBOARD).rmdir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{path}: cannot create the run directory: {e.strerror}") from None
        return cls(path)

    def write_start(self, scenario: Scenario, device: str, argv: list[str]) -> None:
        """scenario.yaml, and run.json with the command, the seed and where and on how many
        threads (torch's, :mod:`fleet.threads`) the run computes."""
        import torch

        (self.path / "scenario.yaml").write_text(dump_scenario(scenario))
        info = {
            "fleet_version": __version__,
            "git": git_revision(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": [redact(arg) for arg in argv],
            "seed": scenario.seed,
            "device": device,
            "threads": torch.get_num_threads(),
        }
        (self.path / RUN_MARKER).write_text(json.dumps(info, indent=2) + "\n")

    def save_checkpoint(self, sim: Simulation) -> None:
        """checkpoint.safetensors: the simulation's state now, replaced atomically once written.

        The state is encoded here and now, array by array; a thread writes the bytes and then
        puts the file in place of the last one (:class:`_CheckpointWriter`), while the
        simulation goes on: on the CPU, writing 100 MB into the page cache takes longer than
        copying it. At most ``WRITE_AHEAD_BYTES`` wait for the thread, so the peak memory of a
        large fleet does not double. A second checkpoint, or :meth:`finish_checkpoint`, first
        waits for the one being written."""
        self.finish_checkpoint()
        writer = _CheckpointWriter(self.path / f"{CHECKPOINT}.tmp", self.path / CHECKPOINT)
        try:
            state = {"scenario": sim.scenario.model_dump(mode="json"), "simulation": sim.state_dict()}
            save_state(writer.write, "simulation", state)
        except BaseException:  # the previous checkpoint stays; the partial file goes
            writer.close(complete=False)
            raise
        writer.close()
        self._writing = writer

    def finish_checkpoint(self) -> None:
        """Wait until the checkpoint being written is in place; RunDirError if it failed."""
        writer, self._writing = self._writing, None
        if writer is not None:
            writer.wait()

    def load_checkpoint(self, scenario: Scenario, device: str = "cpu") -> Simulation:
        """A new simulation of ``scenario`` (the run's) on ``device``, continuing from
        checkpoint.safetensors. RunDirError or ConfigError naming the file, and what in it,
        if it is missing, damaged, of an older version, or of another scenario."""
        from fleet.sim.engine import Simulation

        path = self.path / CHECKPOINT
        if not path.is_file():
            if (self.path / OLD_CHECKPOINT).exists():
                raise RunDirError(
                    f"{self.path / OLD_CHECKPOINT}: a checkpoint written by an older version of fleet, as a pickle, "
                    "which "
                    f"can run code when it is loaded; it was not loaded. Run the scenario again: fleet run "
                    f"{self.path / 'scenario.yaml'}"
                )
            raise RunDirError(
                f"{path}: no checkpoint to resume from (checkpoints are written every outputs.checkpoint_every)"
            )
        try:
            saved = load_state(path, "simulation", MAX_CHECKPOINT_BYTES)
        except StateFileError as e:
            raise RunDirError(
                f"{e}: not a readable checkpoint of this version of fleet; nothing was run or changed"
            ) from None
        if saved.get("scenario") != scenario.model_dump(mode="json"):
            raise ConfigError(
                f"{path}: the checkpoint belongs to another scenario than {self.path / 'scenario.yaml'}; refusing to "
                "resume"
            )
        sim = Simulation(scenario, device=device)
        try:
            expect_keys(saved, ("scenario", "simulation"))
            load_child(saved, "simulation", sim)
        except StateMismatch as e:
            raise RunDirError(
                f"{path}: {e}; the checkpoint does not fit this run's simulation (damaged, or written by another "
                "version "
                "of fleet); nothing was run or changed"
            ) from None
        return sim

    def write_summary(self, summary: dict) -> None:
        tmp = self.path / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        tmp.replace(self.path / "summary.json")


class MetricsWriter:
    """Streams metrics rows into CSV, flushing each one; the first row fixes the columns.

    ``after``: append to an existing file, first dropping its rows later than that time (a
    resumed run rewrites what came after its checkpoint).
    """

    def __init__(self, path: Path, after: float | None = None) -> None:
        self._writer: csv.DictWriter | None = None
        if after is None:
            self._file = path.open("w", newline="")
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            kept = [row for row in reader if float(row["time_s"]) <= after]
            fields = reader.fieldnames or []
        self._file = path.open("w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields)
        self._writer.writeheader()
        self._writer.writerows(kept)

    def write(self, row: dict[str, float]) -> None:
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardWriter:
    """Writes every metrics row as TensorBoard scalars into ``path`` (``RUN_DIR/tensorboard/``).

    Tags are the metrics.csv column names (``kpi/cost``, ``net/bytes_sent``, ``losses/value``,
    ``charts/mean_reward``...); the step is the simulated time in whole seconds (``time_s``,
    which with ``time_h`` is not written as a tag). Values that are not finite (a learner's
    losses before its first update) are left out. ``after``: a resumed run writes a new event
    file whose ``purge_step`` hides the earlier events later than that time, as metrics.csv
    drops its rows after the checkpoint.
    """

    def __init__(self, path: Path, after: float | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(path), purge_step=None if after is None else math.floor(after) + 1)

    def write(self, row: dict[str, float]) -> None:
        step = round(row["time_s"])
        for key, value in row.items():
            if key not in ("time_s", "time_h") and math.isfinite(value):
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._writer.close()


def _row_writers(
    run_dir: RunDir, scenario: Scenario, after: float | None = None
) -> list[MetricsWriter | TensorBoardWriter]:
    """metrics.csv, and the TensorBoard event files when ``outputs.tensorboard`` is on."""
    writers: list[MetricsWriter | TensorBoardWriter] = [MetricsWriter(run_dir.path / "metrics.csv", after=after)]
    if scenario.outputs.tensorboard:
        writers.append(TensorBoardWriter(run_dir.path / "tensorboard", after=after))
    return writers


def _fmt(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() or abs(v) > 1e15 else str(int(v))


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _ratio(a: float, b: float) -> float | None:
    return _json_number(a / b) if b else None


def summarize(sim: Simulation, status: str, end: float, wall_s: float) -> dict[str, Any]:
    """summary.json for a simulation stopped at ``end``: its sections and units are described in :mod:`fleet.kpis`."""
    s, w, st = sim.scenario, sim.world, sim.network.stats
    dev = slice(0, w.n)
    kpis = sim.fleet.kpis.as_dict()
    delivered = float(st.messages_delivered.sum())
    out: dict[str, Any] = {
        "run": {
            "scenario": s.name,
            "seed": s.seed,
            "status": status,
            "simulated_s": end,
            "horizon_s": s.horizon,
            "n_devices": w.n,
            "learner": s.learner.name,
            "fleet_version": __version__,
        },
        "kpis": kpis,
    }
    if sim.baseline is not None:
        base = sim.baseline.kpis.as_dict()
        out["baseline"] = base
        out["kpis_vs_baseline"] = {k: _ratio(kpis[k], base[k]) for k in kpis}
    out["comm"] = {
        "bytes_sent": float(st.bytes_sent[dev].sum()),
        "bytes_received": float(st.bytes_received[dev].sum()),
        "payload_bytes_sent": float(st.payload_bytes_sent[dev].sum()),
        "messages_sent": float(st.messages_sent.sum()),
        "messages_delivered": delivered,
        "messages_dropped": float(st.messages_dropped.sum()),
        "duplicates": float(st.duplicates.sum()),
        "messages_invalid": float(sim.collector_invalid + sim.consensus.invalid + sim.learner_invalid),
        "mean_delay_s": _json_number(st.delay_sum_s.sum() / delivered) if delivered else None,
        "radio_s": float(st.radio_s[dev].sum()),
    }
    out.update(summary_figures(kpis, out.get("baseline"), out["comm"], w.n, end, s.tariff.currency))
    if s.workloads.consensus.enabled:
        c = sim.consensus
        final = c.disagreement()
        rounds = sim.consensus_rounds
        out["consensus"] = {
            "rounds": rounds,
            "initial_disagreement": c.initial_disagreement,
            "final_disagreement": final,
            "mean_rate_per_round": _json_number((final / c.initial_disagreement) ** (1 / rounds))
            if rounds and final > 0
            else None,
        }
    if sim.installs is not None:
        installs = zip(sim.installs.at, sim.installs.devices)
        out["installs"] = [{"at_s": float(at), "devices": len(d)} for at, d in installs]
    if sim.bridge is not None:
        out["mixed"] = sim.bridge.summary()
    out["perf"] = {
        "wall_s": wall_s,
        "control_ticks": sim.ticks,
        "device_steps_per_s": w.n * sim.ticks / wall_s if wall_s > 0 else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    return out


def execute(
    scenario: Scenario,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    device: str = "cpu",
    argv: list[str] | None = None,
    progress: Callable[[float], None] | None = None,
    realtime: RealtimeOptions | None = None,
    actors: int = 1,
) -> tuple[RunDir, dict]:
    """Run ``scenario`` into a new run directory; returns it with the summary. With
    ``realtime``, on the wall clock with the learner's messages through a real broker (a mixed
    fleet, :mod:`fleet.sim.bridge`): no checkpoints are written then. With ``actors`` above 1,
    split by site across that many Ray actors (:mod:`fleet.sim.split`), with the same results."""
    from fleet.sim.bridge import attach, check_realtime
    from fleet.sim.engine import Simulation
    from fleet.sim.split import SplitSimulation, check_split

    RunDir.check(out_dir, overwrite)
    check_realtime(scenario, realtime is not None)
    check_split(scenario, actors, realtime is not None)
    sim = Simulation(scenario, device=device) if actors == 1 else SplitSimulation(scenario, actors, device)
    bridge = None if realtime is None else attach(sim, realtime)
    try:
        run_dir = RunDir.create(out_dir, overwrite=overwrite)
        run_dir.write_start(scenario, device, argv or [])
        return run_dir, _run_into(run_dir, sim, _row_writers(run_dir, scenario), progress, checkpoints=bridge is None)
    finally:
        if bridge is not None:
            bridge.close()
        if isinstance(sim, SplitSimulation):
            sim.close()


def _run_into(
    run_dir: RunDir,
    sim: Simulation,
    writers: list[MetricsWriter | TensorBoardWriter],
    progress,
    checkpoints: bool = True,
) -> dict:
    def write(row: dict[str, float]) -> None:
        for writer in writers:
            writer.write(row)

    try:
        summary = sim.run(
            on_row=write, progress=progress, on_checkpoint=run_dir.save_checkpoint if checkpoints else None
        )
    finally:
        for writer in writers:
            writer.close()
    run_dir.finish_checkpoint()
    run_dir.write_summary(summary)
    return summary


def resume(path: str | Path, progress: Callable[[float], None] | None = None) -> tuple[RunDir, dict]:
    """Continue an interrupted run from its last checkpoint; the result is the same as if it
    had never stopped (except ``perf``)."""
    from fleet.scenario import load_scenario

    run_dir = RunDir(Path(path))
    if not (run_dir.path / RUN_MARKER).is_file():
        raise RunDirError(f"{run_dir.path}: not a run directory (no {RUN_MARKER})")
    scenario = load_scenario(run_dir.path / "scenario.yaml")
    sim = run_dir.load_checkpoint(scenario, _run_device(run_dir))
    return run_dir, _run_into(run_dir, sim, _row_writers(run_dir, scenario, after=sim.checkpoint_time), progress)


def _run_device(run_dir: RunDir) -> str:
    """The device the run was started on (run.json), where it continues: a resumed run equals
    an uninterrupted one only on the same kind of device."""
    import torch

    try:
        device = json.loads((run_dir.path / RUN_MARKER).read_text()).get("device", "cpu")
    except (OSError, ValueError, AttributeError) as e:
        raise RunDirError(f"{run_dir.path / RUN_MARKER}: not readable ({e})") from None
    if device not in ("cpu", "cuda"):
        raise RunDirError(f"{run_dir.path / RUN_MARKER}: device {device!r} is neither cpu nor cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunDirError(
            f"{run_dir.path}: the run was started on a CUDA device and this machine has none; resume it where one is"
        )
    return device


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """metrics.csv as columns of floats."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RunDirError(f"{path}: has no rows")
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def load_run(path: str | Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(resolved scenario as a mapping, metrics columns, summary) of a run directory."""
    import yaml

    path = Path(path)
    need = ["scenario.yaml", "metrics.csv", "summary.json"]
    missing = [n for n in need if not (path / n).is_file()]
    if missing:
        raise RunDirError(f"{path}: not a complete run directory (missing {', '.join(missing)})")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path / 'summary.json'}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return yaml.safe_load((path / "scenario.yaml").read_text()), read_metrics(path / "metrics.csv"), summary


@dataclass(frozen=True, eq=False)
class Result:
    """A run directory as read back: what :func:`fleet.run`, :func:`fleet.resume` and
    :func:`fleet.load_result` return."""

    path: Path
    """The run directory (scenario.yaml, run.json, metrics.csv, summary.json...)."""
    summary: dict[str, Any] = field(repr=False)
    """summary.json: ``run`` (status, seed, ...), ``kpis``, ``baseline``, ``comm``, ``perf``..."""
    metrics: dict[str, np.ndarray] = field(repr=False)
    """metrics.csv as columns, each (T,) float over the T metrics rows: ``time_s``,
    ``kpi/cost``, ``net/bytes_sent``, ``losses/value``..."""

    @classmethod
    def read(cls, path: str | Path) -> Result:
        """The run in ``path``; RunDirError if it is not a complete run directory."""
        _, metrics, summary = load_run(path)
        return cls(Path(path), summary, metrics)

    @property
    def status(self) -> str:
        """``completed``, or ``interrupted`` (Ctrl-C: the results so far, which resume continues)."""
        return self.summary["run"]["status"]

    def metrics_frame(self) -> pandas.DataFrame:
        """The metrics as a pandas DataFrame, one row per metrics row, one column per metric."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Result.metrics_frame() needs pandas, which is not installed (pip install pandas); "
                "Result.metrics holds the same columns as numpy arrays"
            ) from None
        return pandas.DataFrame(self.metrics)


# --- earlier run directories (what --overwrite may delete) --------------------------------------


def check_run_record(path: Path) -> None:
    """RunDirError unless ``path/run.json`` is a run record of this tool (:data:`RUN_RECORD_KEYS`)."""
    problem = _run_record_problem(path / RUN_MARKER)
    if problem:
        raise RunDirError(
            f"{path}: is not an earlier run directory ({problem}); refusing to delete anything in it, "
            "even with --overwrite"
        )


def _run_record_problem(marker: Path) -> str | None:
    if not marker.is_symlink() and not marker.exists():
        return f"no {RUN_MARKER}"
    if marker.is_symlink() or not marker.is_file():
        return f"{RUN_MARKER} is not a plain file"
    if marker.stat().st_size > MAX_RUN_RECORD_BYTES:
        return f"{RUN_MARKER} is larger than a run record"
    try:
        record = json.loads(marker.read_bytes())
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return f"{RUN_MARKER} is not readable JSON"
    if not isinstance(record, dict):
        return f"{RUN_MARKER} is not a run record of fleet: not a JSON object"
    wrong = [key for key, kind in RUN_RECORD_KEYS.items() if not isinstance(record.get(key), kind)]
    return (
        f"{RUN_MARKER} is not a run record of fleet: {', '.join(wrong)} missing or of the wrong type" if wrong else None
    )


def files_of_a_run(path: Path) -> list[Path]:
    """The files in ``path`` that a run writes (:data:`RUN_FILES`, tensorboard/events.out.tfevents.*);
    RunDirError, naming it, for an entry of such a name that is not a plain file (a link, a folder...)."""
    found = [f for f in (path / name for name in RUN_FILES) if _plain_file(f)]
    board = path / TENSORBOARD
    if board.is_symlink() or (board.exists() and not board.is_dir()):
        raise RunDirError(
            f"{board}: is not the folder a run writes (a link or a file); move it away or choose another output with -o"
        )
    if board.is_dir():
        found += [f for f in board.iterdir() if f.name.startswith(TENSORBOARD_EVENTS) and _plain_file(f)]
    return found


def _plain_file(f: Path) -> bool:
    """Whether ``f`` is a plain file; False if there is nothing; RunDirError for anything else."""
    if not f.is_symlink() and not f.exists():
        return False
    if f.is_symlink() or not f.is_file():
        kind = "symbolic link" if f.is_symlink() else "folder or device"
        raise RunDirError(f"{f}: is not a file a run writes (a {kind}); move it away or choose another output with -o")
    return True
