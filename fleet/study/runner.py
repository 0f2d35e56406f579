"""Running a study: check everything, run what is not finished, then write the results.

:func:`run_study` first checks, writing nothing, the study folder (:class:`StudyFolder.check`),
the engine and, for a Ray cluster, that its address answers; then it marks the folder as the
study's, runs every run that is not finished yet (:mod:`fleet.study.engines`), with a progress
bar over runs, and, once every run has finished, writes the results (:func:`write_results`).
A run that fails or is interrupted leaves the others be; starting the study again runs it anew.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fleet.cluster import check_address
from fleet.errors import ConfigError
from fleet.scenario import dump_scenario
from fleet.study.engines import Runner, Task, run_local, run_ray, run_task
from fleet.study.export import exported, marl_eval, write_tensorboard
from fleet.study.folder import StudyFolder
from fleet.study.spec import Study
from fleet.study.tables import curves, figures, final_values, load_runs, markdown, plot_curves, table
from fleet.threads import usable_cores


@dataclass(frozen=True)
class Engine:
    """Where and with what share of the machine each run executes."""

    kind: str = "auto"
    """``ray``, ``local`` (processes), or ``auto``: Ray where it is installed."""
    address: str | None = None
    """A running Ray cluster (``host:port``); none: a local Ray (or local processes)."""
    num_cpus: int | None = None
    """CPUs of the local Ray or processes [default: every usable core]."""
    cpus_per_run: int = 1
    """CPUs each run asks for, and its torch, OpenMP and BLAS threads."""
    gpus_per_run: float = 0.0
    """GPUs each run asks for (Ray); above 0 the runs compute on CUDA."""
    retries: int = 1
    """Times Ray runs a task again whose worker died."""
    storage: str = "shared"
    """``shared``: tasks write into the study folder; ``driver``: they return their files (Ray)."""

    def resolved(self) -> Engine:
        """This engine with ``auto`` decided; ConfigError for options that do not fit together."""
        has_ray = importlib.util.find_spec("ray") is not None
        kind = ("ray" if has_ray else "local") if self.kind == "auto" else self.kind
        if kind == "ray" and not has_ray:
            raise ConfigError("--engine ray: Ray is not installed; pip install 'fleet-sim[ray]', or use --engine local")
        if kind == "local" and (self.address or self.storage != "shared" or self.retries != 1):
            options = {"--address": self.address, "--storage": self.storage != "shared", "--retries": self.retries != 1}
            given = ", ".join(o for o, on in options.items() if on)
            install = "" if has_ray else ", after pip install fleet-sim[ray]"
            raise ConfigError(f"{given} apply only to Ray (--engine ray{install})")
        return Engine(
            kind, self.address, self.num_cpus, self.cpus_per_run, self.gpus_per_run, self.retries, self.storage
        )


@dataclass
class Outcome:
    """What a call of :func:`run_study` did."""

    kept: list[str] = field(default_factory=list)
    """Runs finished before, left as they were."""
    ran: list[str] = field(default_factory=list)
    """Runs made now."""
    failed: dict[str, str] = field(default_factory=dict)
    """Runs that failed or were interrupted now, with why."""
    results: list[Path] = field(default_factory=list)
    """The files written under results/ (none while a run is missing)."""


def run_study(
    study: Study, out: str | Path, engine: Engine = Engine(), *, runner: Runner = run_task, progress: bool = True
) -> Outcome:
    """Run the runs of ``study`` that ``out`` lacks, then write its results (see the module docstring).

    ``runner`` makes one run (:func:`fleet.study.engines.run_task`; tests swap in one that
    fails)."""
    from tqdm import tqdm

    folder = StudyFolder(out)
    folder.check(study)
    engine = engine.resolved()
    if engine.kind == "ray" and engine.address:
        check_address(engine.address)
    folder.claim(study)
    outcome = Outcome()
    by_name = {run.name: run for run in study.runs}
    outcome.kept = [run.name for run in study.runs if folder.finished(run)]
    todo = [run for run in study.runs if run.name not in outcome.kept]
    argv = tuple(sys.argv)
    tasks = [
        Task(
            run.name,
            dump_scenario(run.scenario),
            str(folder.run_path(run)),
            engine.cpus_per_run,
            "cuda" if engine.gpus_per_run > 0 else "cpu",
            argv,
        )
        for run in todo
    ]
    bar = tqdm(
        total=len(study.runs),
        initial=len(outcome.kept),
        unit="run",
        desc=study.name,
        disable=not progress or None,
        file=sys.stderr,
    )

    def on_done(task: Task, error: str | None) -> None:
        if error is None:
            error = folder.unfinished(by_name[task.name])
        if error is None:
            outcome.ran.append(task.name)
        else:
            outcome.failed[task.name] = error
            bar.set_postfix(failed=len(outcome.failed))
        bar.update(1)

    try:
        if engine.kind == "ray":
            run_ray(
                tasks,
                runner,
                cpus=engine.cpus_per_run,
                gpus=engine.gpus_per_run,
                retries=engine.retries,
                address=engine.address,
                num_cpus=engine.num_cpus,
                storage=engine.storage,
                on_done=on_done,
            )
        elif tasks:
            workers = max(1, (engine.num_cpus or usable_cores()) // engine.cpus_per_run)
            run_local(tasks, runner, workers, engine.cpus_per_run, on_done)
    finally:
        bar.close()
    if not outcome.failed:
        outcome.results = write_results(study, folder)
    return outcome


def write_results(study: Study, folder: StudyFolder) -> list[Path]:
    """Tables, curves, fleet report's plots and the exports of a finished study, under results/."""
    from fleet.report import write_report

    report = study.spec.report
    runs = load_runs(study, folder)
    values = figures(study, runs)
    doc = table(study, values)
    folder.results.mkdir(parents=True, exist_ok=True)
    written = [folder.results / "table.json", folder.results / "table.md"]
    written[0].write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    written[1].write_text(markdown(doc))
    found = curves(study, runs)
    if any(found.values()):
        written.append(plot_curves(found, [p.name for p in study.points], report, folder.results / "curves.png"))
    if report.comm_vs_reward or len(runs) > 1:
        written += write_report(
            [r.path for r in runs],
            folder.results / "report",
            overwrite=True,
            per_run=False,
            with_comm_vs_reward=report.comm_vs_reward,
            tail=report.tail,
        )
    if report.marl_eval:
        final = final_values(study, runs, exported(found, [p.name for p in study.points]))
        first = runs[0].scenario
        doc = marl_eval(first["name"], study.spec.seeds, float(first["control_period"]), found, final)
        written.append(folder.results / "marl_eval.json")
        written[-1].write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    if report.tensorboard:
        written.append(write_tensorboard(folder.results / "tensorboard", study.spec.seeds, found, values))
    return written
