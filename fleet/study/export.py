"""A study's runs in the formats other tools read: marl-eval's JSON, and TensorBoard.

**marl-eval** (InstaDeep's ``marl-eval``, the evaluation protocol of Gorsane et al. 2022, whose
tools and rliable plots much of the MARL community reads) takes one JSON file nested
environment -> task -> algorithm -> run -> step -> metric, as its README ("Data Structure for
Raw Experiment data") documents, its ``JsonLogger`` writes and
``marl_eval/utils/data_processing_utils.py::data_process_pipeline`` reads::

    {"fleet": {"<base scenario>": {"<point>": {"seed_<k>": {
        "step_0": {"step_count": <control ticks so far>, "reward": [v], ...},
        ...,
        "absolute_metrics": {"reward": [v], "bytes_sent": [v], ...}}}}}}

Every step holds each curve of ``report.curves`` that every point has at every metrics row
(marl-eval needs the same metrics at every step of every run; a curve with gaps, such as a
learner's losses before its first update or a rule-based run's, is left out), each as a
one-element list. ``absolute_metrics`` holds the same metrics (marl-eval's ``DiagnoseData``
requires it), each the run's final value: for ``reward`` the reward over the last
``report.tail`` of the run (the ``reward`` figure), for a column its last row. Keys are
lower case with ``/`` and ``.`` written ``_`` (marl-eval lower-cases keys and splits metric
names on ``_`` only for its ``mean_``/``norm_`` prefixes). The point is the algorithm, so that
marl-eval compares the points of a study on its one task.

**TensorBoard**: ``tensorboard/<point>/seed<k>/`` per run, tags ``curves/<curve>`` at every
metrics row (step: simulated seconds) and ``figures/<figure>`` at the last.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from fleet.study.tables import Curves, PerRun

ENVIRONMENT = "fleet"


def key(name: str) -> str:
    """A metric or algorithm name as a marl-eval key: lower case, ``/`` and ``.`` as ``_``."""
    return re.sub(r"[^a-z0-9_-]", "_", name.lower())


def exported(found: Curves, points: list[str]) -> list[str]:
    """The curves of ``found`` that every one of ``points`` has at every row, as marl-eval needs."""
    return [
        name
        for name, by_point in found.items()
        if set(by_point) == set(points) and all(np.isfinite(values).all() for _, values in by_point.values())
    ]


def marl_eval(task: str, seeds: tuple[int, ...], control_period: float, found: Curves, final: PerRun) -> dict:
    """The marl-eval document of a study on ``task``: ``found`` curve -> point -> (time_s (T,),
    values (T, n seeds)) as :func:`fleet.study.tables.curves` finds them, ``final`` point ->
    seed -> curve -> its final value (of every :func:`exported` curve)."""
    points = list(final)
    shared = {name: found[name] for name in exported(found, points)}
    algorithms = {}
    for point in points:
        runs = {}
        for j, seed in enumerate(seeds):
            steps = {}
            for name, by_point in shared.items():
                time_s, values = by_point[point]
                for i, (t, v) in enumerate(zip(time_s, values[:, j])):
                    step = steps.setdefault(f"step_{i}", {"step_count": int(round(float(t) / control_period))})
                    step[key(name)] = [float(v)]
            absolute = {key(name): [final[point][seed][name]] for name in shared}
            runs[f"seed_{seed}"] = {**steps, "absolute_metrics": absolute}
        algorithms[key(point)] = runs
    return {ENVIRONMENT: {key(task): algorithms}}


def write_tensorboard(path: Path, seeds: tuple[int, ...], found: Curves, figures: PerRun) -> Path:
    """tensorboard/ under ``path``, replacing an earlier one (arguments as for :func:`marl_eval`)."""
    from torch.utils.tensorboard import SummaryWriter

    if path.exists():
        shutil.rmtree(path)
    for point, by_seed in figures.items():
        for j, seed in enumerate(seeds):
            writer = SummaryWriter(str(path / point / f"seed{seed}"))
            last = 0
            for name, by_point in found.items():
                if point in by_point:
                    time_s, values = by_point[point]
                    for t, v in zip(time_s, values[:, j]):
                        writer.add_scalar(f"curves/{name}", float(v), round(float(t)))
                    last = max(last, round(float(time_s[-1])))
            for name, value in by_seed[seed].items():
                writer.add_scalar(f"figures/{name}", value, last)
            writer.close()
    return path
