"""The public Python API: ``import fleet`` is cheap, and loads, runs and reads back runs."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fleet
from fleet.results import read_metrics

REPO = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter; its stdout, stderr and exit status."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- imports -------------------------------------------------------------------------------


def test_import_fleet_loads_neither_torch_nor_pydantic_nor_numpy():
    proc = python("import sys, fleet; print(sorted(m for m in ('torch', 'pydantic', 'numpy') if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_loading_a_scenario_and_listing_learners_import_no_torch():
    proc = python(
        "import sys, fleet\n"
        "sc = fleet.load_scenario('thermostats-small-v1', {'learner.name': 'diffusion-v1', 'learner.params.qos': 1, "
        "'learner.params.comm.dtype': 'float16'})\n"
        "print((sc.learner.params['qos'], sc.learner.params['comm']['dtype']), [fleet.LEARNERS[n].summary != '' for n "
        "in fleet.LEARNERS])\n"
        "print('torch' in sys.modules)"
    )
    assert proc.returncode == 0, proc.stderr
    params, torch_imported = proc.stdout.splitlines()
    assert params == "(1, 'float16') [True, True, True, True, True, True]"
    assert torch_imported == "False"


def test_every_public_name_resolves():
    for name in fleet.__all__:
        assert getattr(fleet, name) is not None, name
    assert set(fleet.__all__) <= set(dir(fleet))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = fleet.nothing


# --- scenarios -----------------------------------------------------------------------------


def test_overrides_as_a_mapping_are_the_same_as_set(tiny_scenario_file):
    overrides = {"horizon": "1d", "fleet.sites[0].devices": 4, "description": "yes", "seed": 1}
    given = fleet.load_scenario(tiny_scenario_file, overrides, seed=5)
    assert given.horizon == 86400 and given.n_devices == 4 + 3 and given.seed == 5
    assert given.description == "yes"  # a string, though YAML reads a bare yes as true
    as_set = ["horizon=1d", "fleet.sites[0].devices=4", "description='yes'"]
    assert given == fleet.load_scenario(tiny_scenario_file, as_set, seed=5)


def test_a_bad_override_is_a_config_error_naming_it(tiny_scenario_file):
    with pytest.raises(fleet.ConfigError, match=r"fleet.sites\[0\].devices: Input should be greater than 0"):
        fleet.load_scenario(tiny_scenario_file, {"fleet.sites[0].devices": -1})
    with pytest.raises(fleet.ConfigError, match=r"overrides\['horizon'\]"):
        fleet.load_scenario(tiny_scenario_file, {"horizon": object()})


# --- runs ----------------------------------------------------------------------------------


def test_run_returns_the_result_in_its_directory(tiny_scenario_file, tmp_path):
    times = []
    result = fleet.run(fleet.load_scenario(tiny_scenario_file), tmp_path / "run", device="cpu", progress=times.append)
    assert result.path == tmp_path / "run" and result.status == "completed"
    assert result.summary == json.loads((result.path / "summary.json").read_text())
    # metrics every 15 min over 2 h: rows at 0, 15, ..., 120 min; progress after each period
    np.testing.assert_array_equal(result.metrics["time_s"], np.arange(0, 7201, 900))
    assert times == [900.0 * k for k in range(1, 9)]
    assert result.metrics.keys() == read_metrics(result.path / "metrics.csv").keys()
    assert json.loads((result.path / "run.json").read_text())["device"] == "cpu"
    again = fleet.load_result(result.path)
    assert again.summary == result.summary and again.metrics.keys() == result.metrics.keys()
    assert all(np.array_equal(again.metrics[k], v) for k, v in result.metrics.items())


def test_run_without_out_writes_only_to_a_new_temporary_folder(tiny_scenario_file, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = fleet.run(tiny_scenario_file, device="cpu")
    assert result.path.name == "thermostats-tiny-seed0" and result.path.parent.parent == tmp_path / "tmp"
    assert (result.path / "summary.json").is_file() and not any((tmp_path / "cwd").iterdir())


def test_a_run_directory_is_never_replaced_without_overwrite(tiny_run, tiny_scenario_file):
    with pytest.raises(fleet.RunDirError, match="already exists"):
        fleet.run(tiny_scenario_file, tiny_run, device="cpu")


def test_load_result_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(fleet.RunDirError, match="missing scenario.yaml, metrics.csv, summary.json"):
        fleet.load_result(tmp_path)


def test_metrics_frame_without_pandas_says_how_to_get_it(tiny_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        fleet.load_result(tiny_run).metrics_frame()


def test_metrics_frame_has_the_metrics_columns(tiny_run):
    pytest.importorskip("pandas")
    result = fleet.load_result(tiny_run)
    frame = result.metrics_frame()
    assert list(frame.columns) == list(result.metrics) and len(frame) == len(result.metrics["time_s"])
    np.testing.assert_array_equal(frame["kpi/cost"].to_numpy(), result.metrics["kpi/cost"])


def test_write_report_takes_results_and_refuses_a_tail_without_comm_vs_reward(tiny_run, tmp_path):
    written = fleet.write_report(fleet.load_result(tiny_run), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["feeders.png", "kpis.png", "network.png", "temperatures.png"]
    with pytest.raises(fleet.ConfigError, match="tail applies only with comm_vs_reward"):
        fleet.write_report([tiny_run], tmp_path / "other", tail=0.3)
