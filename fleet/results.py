"""Run directories: the resolved scenario, metrics.csv, summary.json and run.json.

A run directory is created only if it does not exist (or, with ``overwrite``, if it is an
earlier run directory or empty), so results are never lost by accident. ``metrics.csv`` is
flushed row by row and ``summary.json`` is written even when a run is interrupted, so a
stopped run leaves valid partial results. Re-running ``scenario.yaml`` from a run directory
reproduces the run bit for bit (except the ``perf`` figures). With ``outputs.tensorboard`` the
same rows also go to ``tensorboard/`` as TensorBoard scalars.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import queue
import resource
import shutil
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fleet import __version__
from fleet.errors import ConfigError, RunDirError
from fleet.scenario import Scenario, dump_scenario

if TYPE_CHECKING:
    from fleet.sim.bridge import RealtimeOptions
    from fleet.sim.engine import Simulation

RUN_MARKER = "run.json"


WRITE_AHEAD_BYTES = 256 << 20
"""At most this many pickled bytes of a checkpoint wait for the thread that writes them."""


class _CheckpointWriter:
    """A file object for ``pickle.dump`` whose bytes a thread writes to ``tmp``; once all are
    written, the thread renames ``tmp`` to ``path``, replacing the previous checkpoint.

    ``write`` keeps each chunk (a copy, where it is a view of memory the simulation will go on
    changing) and returns; it waits only while ``WRITE_AHEAD_BYTES`` are queued. Replacing a
    large file makes the kernel free its pages there and then (about 0.1 s per 100 MB): the
    thread does that too. Python waits for the thread before it exits."""

    def __init__(self, tmp: Path, path: Path) -> None:
        self.tmp, self.path = tmp, path
        self.error: BaseException | None = None
        self._file = tmp.open("wb")
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
            self.error = self.error or RuntimeError("pickling stopped half-way")
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
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory; choose another output with -o")
        if path.exists():
            if not overwrite:
                raise RunDirError(f"{path}: already exists; nothing was changed. Choose another output with -o, or pass --overwrite to replace it")
            if any(path.iterdir()) and not (path / RUN_MARKER).is_file():
                raise RunDirError(f"{path}: is not an earlier run directory (no {RUN_MARKER}); refusing to delete it even with --overwrite")

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> "RunDir":
        """Make a fresh run directory; refuse to touch an existing one unless ``overwrite``."""
        path = Path(path)
        cls.check(path, overwrite)
        if path.exists() and any(path.iterdir()):
            shutil.rmtree(path)
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
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": argv,
            "seed": scenario.seed,
            "device": device,
            "threads": torch.get_num_threads(),
        }
        (self.path / RUN_MARKER).write_text(json.dumps(info, indent=2) + "\n")

    def save_checkpoint(self, sim: "Simulation") -> None:
        """checkpoint.pt: the whole simulation state now, replaced atomically once written.

        The state is pickled here and now; a thread writes the bytes and then puts the file in
        place of the last one (:class:`_CheckpointWriter`), while the simulation goes on: on
        the CPU, writing 100 MB into the page cache takes longer than pickling it. Plain
        pickle streams array by array (``torch.save`` would first build the whole pickle in
        memory, doubling the peak memory of a large fleet); at most ``WRITE_AHEAD_BYTES`` wait
        for the thread. A second checkpoint, or :meth:`finish_checkpoint`, first waits for
        the one being written."""
        import pickle

        self.finish_checkpoint()
        writer = _CheckpointWriter(self.path / "checkpoint.pt.tmp", self.path / "checkpoint.pt")
        try:
            pickle.dump(sim.checkpoint_state(), writer, protocol=pickle.HIGHEST_PROTOCOL)
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

    def load_checkpoint(self, scenario: Scenario) -> "Simulation":
        """The simulation saved in checkpoint.pt, checked against the run's scenario."""
        import pickle

        path = self.path / "checkpoint.pt"
        if not path.is_file():
            raise RunDirError(f"{path}: no checkpoint to resume from (checkpoints are written every outputs.checkpoint_every)")
        try:
            with path.open("rb") as f:
                saved = pickle.load(f)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, KeyError, ValueError, TypeError) as e:
            raise RunDirError(f"{path}: not a readable checkpoint of this version of fleet ({e})") from None
        if not isinstance(saved, dict) or saved.get("scenario") != scenario.model_dump(mode="json"):
            raise ConfigError(f"{path}: the checkpoint belongs to another scenario than {self.path / 'scenario.yaml'}; refusing to resume")
        return saved["simulation"]

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


def _row_writers(run_dir: RunDir, scenario: Scenario, after: float | None = None) -> list[MetricsWriter | TensorBoardWriter]:
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


def summarize(sim: "Simulation", status: str, end: float, wall_s: float) -> dict[str, Any]:
    """summary.json for a simulation stopped at ``end``."""
    s, w, st = sim.scenario, sim.world, sim.network.stats
    dev = slice(0, w.n)
    kpis = sim.fleet.kpis.as_dict()
    delivered = float(st.messages_delivered.sum())
    days = max(end, 1e-9) / 86400.0
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
        "bytes_per_device_per_day": float((st.bytes_sent[dev].sum() + st.bytes_received[dev].sum()) / w.n / days),
    }
    if s.workloads.consensus.enabled:
        c = sim.consensus
        final = c.disagreement()
        rounds = sim.consensus_rounds
        out["consensus"] = {
            "rounds": rounds,
            "initial_disagreement": c.initial_disagreement,
            "final_disagreement": final,
            "mean_rate_per_round": _json_number((final / c.initial_disagreement) ** (1 / rounds)) if rounds and final > 0 else None,
        }
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
    realtime: "RealtimeOptions | None" = None,
) -> tuple[RunDir, dict]:
    """Run ``scenario`` into a new run directory; returns it with the summary. With
    ``realtime``, on the wall clock with the learner's messages through a real broker (a mixed
    fleet, :mod:`fleet.sim.bridge`): no checkpoints are written then."""
    from fleet.sim.bridge import attach, check_realtime
    from fleet.sim.engine import Simulation

    RunDir.check(out_dir, overwrite)
    check_realtime(scenario, realtime is not None)
    sim = Simulation(scenario, device=device)
    bridge = None if realtime is None else attach(sim, realtime)
    try:
        run_dir = RunDir.create(out_dir, overwrite=overwrite)
        run_dir.write_start(scenario, device, argv or [])
        return run_dir, _run_into(run_dir, sim, _row_writers(run_dir, scenario), progress, checkpoints=bridge is None)
    finally:
        if bridge is not None:
            bridge.close()


def _run_into(run_dir: RunDir, sim: "Simulation", writers: list[MetricsWriter | TensorBoardWriter], progress, checkpoints: bool = True) -> dict:
    def write(row: dict[str, float]) -> None:
        for writer in writers:
            writer.write(row)

    try:
        summary = sim.run(on_row=write, progress=progress, on_checkpoint=run_dir.save_checkpoint if checkpoints else None)
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
    sim = run_dir.load_checkpoint(scenario)
    return run_dir, _run_into(run_dir, sim, _row_writers(run_dir, scenario, after=sim.checkpoint_time), progress)


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
