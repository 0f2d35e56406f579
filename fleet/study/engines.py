"""Where a study's runs execute: Ray tasks, or local processes when Ray is not installed.

Each run is one :class:`Task`, made by :func:`run_task` wherever it lands: it sets the run's
threads from its CPU request (:mod:`fleet.threads`), removes what an interrupted attempt left
and runs the scenario into its run directory, exactly as ``fleet run`` would.

- **Ray** (:func:`run_ray`): one Ray task per run, asking for ``cpus`` CPUs and ``gpus`` GPUs,
  its worker started with the OpenMP and BLAS variables of that CPU share (``runtime_env``). A
  local Ray is started (``ray.init(num_cpus=...)``) unless ``address`` names a running cluster,
  whose reachability is checked first (Ray itself would wait for minutes). A worker that dies
  mid-run (``WorkerCrashedError``) is retried up to ``retries`` times and otherwise loses only
  its run. With ``storage="shared"`` the tasks write into the study folder, which every node
  must then see at the same path (NFS or similar); with ``storage="driver"`` each task runs
  into a temporary folder on its node and returns the files to the driver, which writes them.
- **Local processes** (:func:`run_local`): one fresh process per run (``spawn``), ``workers``
  at a time; a process that dies loses only its run.

Both call ``on_done(task, error)`` as each run ends, ``error`` None or one line.
"""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path

import yaml

from fleet.cluster import join_ray
from fleet.errors import FleetError
from fleet.threads import set_threads, thread_env


@dataclass(frozen=True)
class Task:
    """One run of a study, as a worker needs it."""

    name: str
    """The run's name, ``<point>-seed<k>``."""
    scenario_yaml: str
    """Its resolved scenario (:func:`fleet.scenario.dump_scenario`)."""
    out: str
    """Its run directory."""
    threads: int
    device: str
    """``cpu`` or ``cuda``."""
    argv: tuple[str, ...] = ()
    """The command recorded in run.json."""


Runner = Callable[[Task], None]
OnDone = Callable[[Task, "str | None"], None]


def run_task(task: Task) -> None:
    """Run ``task`` into its directory, removing first whatever an interrupted attempt left there."""
    from fleet.results import execute
    from fleet.scenario import parse_scenario

    set_threads(task.threads)
    out = Path(task.out)
    if out.exists():
        shutil.rmtree(out)
    scenario = parse_scenario(yaml.safe_load(task.scenario_yaml), str(out / "scenario.yaml"), out)
    execute(scenario, out, device=task.device, argv=list(task.argv))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if isinstance(error, FleetError) and text else f"{type(error).__name__}: {' '.join(text)}"[:500]


# --- local processes -------------------------------------------------------------------------


def _child(runner: Runner, task: Task, conn) -> None:
    try:
        runner(task)
    except BaseException as e:  # noqa: BLE001 - reported to the driver, which goes on with the others
        conn.send(_one_line(e))
    else:
        conn.send(None)


def run_local(tasks: list[Task], runner: Runner, workers: int, threads: int, on_done: OnDone) -> None:
    """Run ``tasks`` in fresh local processes, ``workers`` at a time, each started with the
    thread environment of ``threads``."""
    import os

    ctx = multiprocessing.get_context("spawn")
    os.environ.update(thread_env(threads))  # a spawned process starts with the driver's environment
    pending, running = list(tasks), {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child, args=(runner, task, send), name=f"fleet study {task.name}")
                process.start()
                send.close()
                running[process.sentinel] = (process, task, receive)
            for sentinel in wait(list(running)):
                process, task, receive = running.pop(sentinel)
                process.join()  # it has ended: its sentinel is ready
                try:
                    error = receive.recv()
                except EOFError:  # it died without a word
                    error = f"the process ended with exit status {process.exitcode} before the run did"
                receive.close()
                on_done(task, error)
    finally:
        for process, _, _ in running.values():
            process.terminate()
            process.join()


# --- Ray -------------------------------------------------------------------------------------


def _ray_task(runner: Runner, task: Task, collect: bool) -> dict[str, bytes] | None:
    """Run ``task`` in a Ray worker; with ``collect``, in a temporary folder whose files it returns."""
    if not collect:
        runner(task)
        return None
    with tempfile.TemporaryDirectory(prefix="fleet-study-") as tmp:
        out = Path(tmp) / task.name
        runner(replace(task, out=str(out)))
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}


def _write_files(out: Path, files: dict[str, bytes]) -> None:
    if out.exists():
        shutil.rmtree(out)
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)


def run_ray(
    tasks: list[Task],
    runner: Runner,
    *,
    cpus: float,
    gpus: float,
    retries: int,
    address: str | None,
    num_cpus: int | None,
    storage: str,
    on_done: OnDone,
) -> None:
    """Run ``tasks`` as Ray tasks (see the module docstring); a Ray this process already joined is used as it is."""
    import ray

    started = join_ray(address, num_cpus)
    try:
        remote = ray.remote(_ray_task).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, runtime_env={"env_vars": thread_env(max(1, int(cpus)))}
        )
        refs = {remote.remote(runner, task, storage == "driver"): task for task in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            task = refs.pop(done[0])
            try:
                files = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                on_done(task, _one_line(e.cause) if e.cause is not None else _one_line(e))
            except ray.exceptions.RayError as e:
                on_done(task, _one_line(e))
            else:
                if files is not None:
                    _write_files(Path(task.out), files)
                on_done(task, None)
    finally:
        if started:
            ray.shutdown()
