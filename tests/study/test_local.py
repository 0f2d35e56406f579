"""Studies in local processes (no Ray): a killed process loses only its run, made again on resume."""

from fleet.study import Engine, load_study, run_study
from tests.study.conftest import killed_once_mid_run, same_run, scenario_changed_under


def test_a_killed_local_process_fails_alone_and_the_study_started_again_makes_its_run(
    write_study, tmp_path, local_study
):
    study = load_study(
        write_study({"variants": {"independent": {"learner.name": "independent-v1"}}, "seeds": [0, 1], "report": {}})
    )
    out = tmp_path / "out"
    first = run_study(study, out, Engine("local", num_cpus=2), runner=killed_once_mid_run, progress=False)
    assert list(first.failed) == ["independent-seed1"] and "exit status -9" in first.failed["independent-seed1"]
    assert first.ran == ["independent-seed0"] and not (out / "results").exists()
    second = run_study(study, out, Engine("local", num_cpus=2), progress=False)
    assert second.ran == ["independent-seed1"] and second.kept == ["independent-seed0"]
    for run in study.runs:
        assert same_run(out / "runs" / run.name, local_study / "runs" / run.name), run.name


def test_a_finished_study_started_again_runs_nothing_and_rewrites_its_results(local_study, tmp_path):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(local_study, copy)
    (copy / "results" / "table.md").unlink()
    outcome = run_study(load_study(local_study.parent / "study.yaml"), copy, Engine("local"), progress=False)
    assert outcome.ran == [] and len(outcome.kept) == 4 and (copy / "results" / "table.md").is_file()


def test_a_run_that_completes_from_another_scenario_fails_saying_so(write_study, tmp_path):
    study = load_study(
        write_study({"variants": {"independent": {"learner.name": "independent-v1"}}, "seeds": [0, 1], "report": {}})
    )
    outcome = run_study(
        study, tmp_path / "out", Engine("local", num_cpus=1), runner=scenario_changed_under, progress=False
    )
    assert outcome.ran == ["independent-seed0"] and list(outcome.failed) == ["independent-seed1"]
    assert "completed, but its scenario.yaml differs" in outcome.failed["independent-seed1"]
    assert "fleet was changed" in outcome.failed["independent-seed1"]
