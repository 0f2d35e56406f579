"""A tiny study: the tiny scenario (6 devices, 2 h) with two controllers and two seeds."""

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from fleet.results import MetricsWriter
from fleet.study.engines import Task, run_task
from tests.conftest import tiny_scenario


def tiny_study() -> dict:
    """2 variants x 2 seeds of the tiny scenario, paired against the rule-based thermostat."""
    return {
        "version": 1,
        "name": "tiny-study",
        "scenario": "tiny.yaml",
        "variants": {
            "rule-based": {"learner.name": "rule-based-v1"},
            "independent": {"learner.name": "independent-v1"},
        },
        "seeds": [0, 1],
        "report": {
            "reference": "rule-based",
            "metrics": ["reward", "bytes_sent", "tail.cost", "kpis.peak_kw"],
            "curves": ["reward", "charts/mean_reward"],
        },
    }


@pytest.fixture
def write_study(tmp_path):
    """``write_study(changes)`` writes the tiny scenario and the tiny study, updated with ``changes``."""

    def write(changes: dict | None = None, name: str = "study.yaml") -> Path:
        (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_scenario(), sort_keys=False))
        path = tmp_path / name
        path.write_text(yaml.safe_dump({**tiny_study(), **(changes or {})}, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def local_study(tmp_path_factory) -> Path:
    """The tiny study, run once in local processes; its folder (do not change it)."""
    from fleet.study import Engine, load_study, run_study

    folder = tmp_path_factory.mktemp("local-study")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(tiny_scenario(), sort_keys=False))
    (folder / "study.yaml").write_text(yaml.safe_dump(tiny_study(), sort_keys=False))
    outcome = run_study(load_study(folder / "study.yaml"), folder / "out", Engine("local", num_cpus=2), progress=False)
    assert not outcome.failed and len(outcome.ran) == 4
    return folder / "out"


def killed_once_mid_run(task: Task) -> None:
    """A runner whose first attempt at ``independent-seed1`` kills its own process (SIGKILL) once
    the metrics row of the first hour is written, as an out-of-memory kill or a lost node would;
    a marker beside the study folder makes later attempts plain runs."""
    marker = Path(task.out).parents[2] / f"killed-{task.name}"
    if task.name == "independent-seed1" and not marker.exists():
        marker.touch()
        write = MetricsWriter.write

        def write_then_die(self, row):
            write(self, row)
            if row["time_s"] >= 3600:
                os.kill(os.getpid(), signal.SIGKILL)

        MetricsWriter.write = write_then_die
    run_task(task)


def scenario_changed_under(task: Task) -> None:
    """A runner whose ``independent-seed1`` completes with another resolved scenario, as when fleet's
    code changes (a new learner field) between the study's start and a worker's import."""
    run_task(task)
    if task.name == "independent-seed1":
        scenario = Path(task.out) / "scenario.yaml"
        scenario.write_text(scenario.read_text() + "# a field a newer fleet resolves\n")


def same_run(a: Path, b: Path) -> bool:
    """Two run directories with the same metrics.csv bytes and summary.json but for ``perf``."""

    def summary(p: Path) -> dict:
        s = json.loads((p / "summary.json").read_text())
        s.pop("perf")
        return s

    return (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes() and summary(a) == summary(b)


@pytest.fixture
def fleet_run(tmp_path):
    """``fleet_run(scenario_file)``: ``fleet run FILE -o ...`` in this process; its run directory.
    The thread settings it makes are undone afterwards."""
    import torch
    from click.testing import CliRunner

    from fleet.cli import main
    from fleet.threads import THREAD_ENV

    env = {name: os.environ.pop(name, None) for name in THREAD_ENV}
    threads = torch.get_num_threads()

    def run(scenario_file: Path) -> Path:
        out = tmp_path / "fleet-run" / scenario_file.parent.name
        result = CliRunner().invoke(main, ["run", str(scenario_file), "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        return out

    yield run
    torch.set_num_threads(threads)
    for name, value in env.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value
