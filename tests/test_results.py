"""Run directories: never lose results by accident; metrics stream row by row; strict JSON."""

import json
import math

import pytest

from fleet.errors import RunDirError
from fleet.results import RUN_MARKER, MetricsWriter, RunDir, load_run, read_metrics


def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# --- RunDir ------------------------------------------------------------------------------


def test_a_new_directory_is_created_with_its_parents(tmp_path):
    RunDir.check(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()  # check changes nothing
    run = RunDir.create(tmp_path / "a" / "b")
    assert run.path.is_dir() and not any(run.path.iterdir())


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_is_never_a_run_directory(tmp_path, overwrite):
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(RunDirError, match="not a directory"):
        RunDir.create(tmp_path / "out", overwrite=overwrite)
    assert (tmp_path / "out").read_text() == "keep me"


def test_an_existing_directory_is_refused_without_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RUN_MARKER).write_text("{}")
    for folder in (tmp_path / "empty", tmp_path / "run"):
        before = snapshot(folder)
        with pytest.raises(RunDirError, match="already exists; nothing was changed.*--overwrite"):
            RunDir.create(folder)
        assert snapshot(folder) == before


def test_overwrite_replaces_an_earlier_run_directory(tmp_path):
    old = tmp_path / "run"
    (old / "report").mkdir(parents=True)
    (old / RUN_MARKER).write_text("{}")
    (old / "report" / "stale.png").write_bytes(b"x")
    run = RunDir.create(old, overwrite=True)
    assert run.path == old and not any(old.iterdir())


def test_overwrite_accepts_an_empty_directory(tmp_path):
    assert RunDir.create(tmp_path, overwrite=True).path == tmp_path


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("precious")
    before = snapshot(tmp_path / "thesis")
    with pytest.raises(RunDirError, match=f"not an earlier run directory \\(no {RUN_MARKER}\\)"):
        RunDir.create(tmp_path / "thesis", overwrite=True)
    assert snapshot(tmp_path / "thesis") == before


# --- metrics.csv -------------------------------------------------------------------------


def test_metrics_rows_are_readable_while_the_file_is_open(tmp_path):
    path = tmp_path / "metrics.csv"
    writer = MetricsWriter(path)
    writer.write({"time_s": 0.0, "fleet/power_kw": 1.25})
    assert path.read_text().splitlines() == ["time_s,fleet/power_kw", "0,1.25"]
    writer.write({"time_s": 900.0, "fleet/power_kw": 0.1 + 0.2})
    columns = read_metrics(path)
    writer.close()
    assert path.read_text().count("time_s") == 1
    assert list(columns) == ["time_s", "fleet/power_kw"]
    assert columns["time_s"].tolist() == [0.0, 900.0]
    assert columns["fleet/power_kw"].tolist() == [1.25, 0.1 + 0.2]  # floats survive exactly


def test_metrics_without_rows_are_an_error(tmp_path):
    (tmp_path / "metrics.csv").write_text("time_s,fleet/power_kw\n")
    with pytest.raises(RunDirError, match="has no rows"):
        read_metrics(tmp_path / "metrics.csv")


# --- summary.json and load_run ---------------------------------------------------------------


def test_a_completed_run_has_strict_json_and_loads(tiny_run):
    summary = strict_json((tiny_run / "summary.json").read_text())
    scenario, metrics, loaded = load_run(tiny_run)
    assert loaded == summary and summary["run"]["status"] == "completed"
    assert scenario["name"] == "thermostats-tiny"
    assert metrics["time_s"][0] == 0 and metrics["time_s"][-1] == summary["run"]["horizon_s"] == 7200
    assert all(math.isfinite(v) for v in summary["kpis"].values())


def test_write_summary_refuses_nan_and_leaves_no_file(tmp_path):
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(ValueError):
        run.write_summary({"kpis": {"cost": float("nan")}})
    assert not (run.path / "summary.json").exists()
    run.write_summary({"kpis": {"cost": 1.5}})
    assert strict_json((run.path / "summary.json").read_text()) == {"kpis": {"cost": 1.5}}


def test_load_run_names_the_missing_files(tmp_path):
    (tmp_path / "metrics.csv").write_text("time_s\n0\n")
    with pytest.raises(RunDirError, match=r"not a complete run directory \(missing scenario.yaml, summary.json\)"):
        load_run(tmp_path)


def test_load_run_names_a_corrupt_summary(tiny_run, tmp_path):
    for name in ("scenario.yaml", "metrics.csv"):
        (tmp_path / name).write_bytes((tiny_run / name).read_bytes())
    (tmp_path / "summary.json").write_text('{"run": ')
    with pytest.raises(RunDirError, match="summary.json: not valid JSON"):
        load_run(tmp_path)
