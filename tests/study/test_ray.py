"""A study on a real local Ray (num_cpus=2): the same runs as fleet run, a killed run re-made."""

import json
import sys

import pytest

from fleet.study import Engine, load_study, run_study
from tests.study import conftest
from tests.study.conftest import killed_once_mid_run, same_run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two CPUs for this module's studies (run_study uses a Ray it finds started)."""
    # the test runner travels to the workers by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[conftest.__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_killed_run_fails_alone_and_the_study_started_again_makes_it_as_fleet_run_does(
    local_ray, write_study, tmp_path, fleet_run
):
    study = load_study(write_study())
    out = tmp_path / "out"

    first = run_study(study, out, Engine("ray", retries=0), runner=killed_once_mid_run, progress=False)
    assert list(first.failed) == ["independent-seed1"] and "died" in first.failed["independent-seed1"]
    assert sorted(first.ran) == ["independent-seed0", "rule-based-seed0", "rule-based-seed1"]
    killed = out / "runs" / "independent-seed1"
    # killed mid-run
    assert len((killed / "metrics.csv").read_text().splitlines()) > 2 and not (killed / "summary.json").exists()
    assert first.results == [] and not (out / "results").exists()  # no table while a run is missing
    kept = {name: (out / "runs" / name / "summary.json").read_bytes() for name in first.ran}

    second = run_study(study, out, Engine("ray"), progress=False)
    assert second.ran == ["independent-seed1"] and sorted(second.kept) == sorted(first.ran) and not second.failed
    assert {name: (out / "runs" / name / "summary.json").read_bytes() for name in first.ran} == kept
    for run in study.runs:
        made = out / "runs" / run.name
        assert same_run(made, fleet_run(made / "scenario.yaml")), run.name
        assert json.loads((made / "run.json").read_text())["threads"] == 1  # the task's CPU request
    assert (out / "results" / "table.json").is_file()


def test_ray_runs_again_at_once_a_task_whose_worker_died(local_ray, write_study, tmp_path, local_study):
    study = load_study(write_study())
    out = tmp_path / "out"
    outcome = run_study(study, out, Engine("ray", retries=1), runner=killed_once_mid_run, progress=False)
    assert not outcome.failed and len(outcome.ran) == 4 and (tmp_path / "killed-independent-seed1").exists()
    for run in study.runs:  # and local processes made the same runs
        assert same_run(out / "runs" / run.name, local_study / "runs" / run.name), run.name


def test_storage_driver_returns_the_files_of_each_run_to_the_driver(local_ray, write_study, tmp_path, local_study):
    study = load_study(
        write_study({"seeds": [0], "variants": {"independent": {"learner.name": "independent-v1"}}, "report": {}})
    )
    run_study(study, tmp_path / "out", Engine("ray", storage="driver"), progress=False)
    made = tmp_path / "out" / "runs" / "independent-seed0"
    assert {p.name for p in made.iterdir()} >= {"scenario.yaml", "run.json", "metrics.csv", "summary.json"}
    assert same_run(made, local_study / "runs" / "independent-seed0")
