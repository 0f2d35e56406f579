"""The command line: runs land in fresh directories, bad input is one 'error:' paragraph and exit 2."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from devices.weather import write_epw
from fleet.cli import main
from fleet.results import read_metrics
from fleet.scenario import list_scenarios
from tests.waiting import wait_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN_FILES = {"scenario.yaml", "run.json", "metrics.csv", "summary.json", "checkpoint.safetensors"}


def fleet(*args):
    """``fleet ARGS...`` in-process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_usage_error(result, *words):
    """Exit 2 with one 'error:' paragraph on stderr naming ``words``, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    err = result.stderr.strip()
    assert err.startswith("error: ") and err.count("error:") == 1 and "\n\n" not in err, err
    assert "Traceback" not in result.output
    for word in words:
        assert word in err


# --- fleet run -----------------------------------------------------------------------------


def test_run_writes_a_run_directory_that_reproduces_itself(tiny_scenario_file, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = fleet("run", tiny_scenario_file, "-o", first, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"results in {first}" in result.stdout and "energy_kwh" in result.stdout
    assert RUN_FILES <= {p.name for p in first.iterdir()}
    summary = json.loads((first / "summary.json").read_text())
    assert (
        summary["run"]["status"] == "completed" and summary["run"]["simulated_s"] == summary["run"]["horizon_s"] == 7200
    )
    assert {"energy_kwh", "cost", "discomfort_degh", "peak_kw", "ramping_kw"} <= set(summary["kpis"])
    assert {
        "bytes_sent",
        "bytes_received",
        "messages_sent",
        "messages_delivered",
        "messages_dropped",
        "mean_delay_s",
    } <= set(summary["comm"])
    assert {"wall_s", "device_steps_per_s"} <= set(summary["perf"])
    # the baseline is the same rule-based controller on common random numbers
    assert summary["kpis_vs_baseline"] == {k: 1.0 if v else None for k, v in summary["baseline"].items()}
    assert json.loads((first / "run.json").read_text())["device"] == "cpu"

    result = fleet("run", first / "scenario.yaml", "-o", second, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    again = json.loads((second / "summary.json").read_text())
    assert {k: v for k, v in again.items() if k != "perf"} == {k: v for k, v in summary.items() if k != "perf"}
    assert (second / "metrics.csv").read_bytes() == (first / "metrics.csv").read_bytes()
    assert (second / "scenario.yaml").read_bytes() == (first / "scenario.yaml").read_bytes()


def test_the_default_scenario_compares_a_learner_with_the_thermostat(tmp_path):
    result = fleet("run", "thermostats-small-v2", "-o", tmp_path / "run", "--device", "cpu", "--set", "horizon=6h")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["run"]["learner"] == "diffusion-v1" and summary["kpis"] != summary["baseline"]
    assert summary["kpis_vs_baseline"]["energy_kwh"] != 1.0  # not the thermostat against itself
    # its scenario.yaml (preset, shipped policy name and defaults resolved) reproduces it
    assert yaml.safe_load((tmp_path / "run" / "scenario.yaml").read_text())["learner"]["params"]["lr"] == 0.006
    result = fleet("run", tmp_path / "run" / "scenario.yaml", "-o", tmp_path / "again", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (tmp_path / "run" / "metrics.csv").read_bytes()


def test_run_seed_and_set_and_default_directory(tiny_scenario_file, tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fleet("run", tiny_scenario_file, "--seed", 3, "--set", "fleet.sites.0.devices=4", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "thermostats-tiny-seed3" / "summary.json").read_text())
    assert summary["run"]["seed"] == 3 and summary["run"]["n_devices"] == 7
    assert summary["kpis"] != json.loads((tiny_run / "summary.json").read_text())["kpis"]


def test_quiet_prints_nothing_and_otherwise_progress_lines_go_to_stderr(tiny_scenario_file, tmp_path):
    quiet = fleet("run", tiny_scenario_file, "-o", tmp_path / "quiet", "--device", "cpu", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.output
    shown = fleet("run", tiny_scenario_file, "-o", tmp_path / "shown", "--device", "cpu")
    assert shown.exit_code == 0 and f"results in {tmp_path / 'shown'}" in shown.stdout
    # metrics (and progress) every 15 min of 2 h: 12.5 % a step, each passing a 5 % mark
    lines = shown.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"thermostats-tiny: {int(12.5 * k)}%" for k in range(1, 9)]
    assert lines[-1].startswith("thermostats-tiny: 100% (2.0 of 2.0 sim-h) after ")


def test_an_existing_directory_is_left_untouched(tiny_scenario_file, tiny_run, tmp_path):
    out = shutil.copytree(tiny_run, tmp_path / "out")
    before = snapshot(out)
    result = fleet("run", tiny_scenario_file, "-o", out, "--device", "cpu")
    assert_usage_error(result, str(out), "already exists", "-o", "--overwrite")
    assert snapshot(out) == before


def test_overwrite_replaces_an_earlier_run(tiny_scenario_file, tiny_run, tmp_path):
    out = shutil.copytree(tiny_run, tmp_path / "out")
    (out / "notes.txt").write_text("about the earlier run")
    result = fleet("run", tiny_scenario_file, "-o", out, "--device", "cpu", "-q", "--overwrite")
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == RUN_FILES | {"notes.txt"}  # a run deletes only what a run writes
    assert (out / "metrics.csv").read_bytes() == (tiny_run / "metrics.csv").read_bytes()
    assert (out / "notes.txt").read_text() == "about the earlier run"


def test_a_symbolic_link_as_output_is_an_error_not_a_traceback(tiny_scenario_file, tiny_run, tmp_path):
    out = shutil.copytree(tiny_run, tmp_path / "out")
    (tmp_path / "link").symlink_to(out)
    before = snapshot(out)
    result = fleet("run", tiny_scenario_file, "-o", tmp_path / "link", "--device", "cpu", "--overwrite")
    assert_usage_error(result, "symbolic link")
    assert snapshot(out) == before


def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_scenario_file, tmp_path):
    out = tmp_path / "papers"
    out.mkdir()
    (out / "draft.tex").write_text("precious")
    result = fleet("run", tiny_scenario_file, "-o", out, "--device", "cpu", "--overwrite")
    assert_usage_error(result, str(out), "not an earlier run directory")
    assert snapshot(out) == {Path("draft.tex"): b"precious"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_is_a_clear_error(tiny_scenario_file, tmp_path):
    result = fleet("run", tiny_scenario_file, "-o", tmp_path / "out", "--device", "cuda")
    assert_usage_error(result, "--device cuda", "CUDA")
    assert not (tmp_path / "out").exists()


# --- bad input, through run and validate ----------------------------------------------------


def bad_scenario(case, raw, tmp_path, write_scenario):
    """A scenario file with one kind of bad input, and a word its error must contain."""
    if case == "malformed yaml":
        return write_scenario("version: 1\nname: x\nfleet: {sites: [\n"), "malformed YAML at line"
    if case == "list for a mapping":
        raw["fleet"]["building"] = [4, 10]
    elif case == "unknown key":
        raw["fleet"]["sites"][0]["colour"] = "blue"
    elif case == "negative capacitance":
        raw["fleet"]["building"] = {"capacitance_kwh_per_c": -5}
    elif case == "zero bandwidth":
        raw["network"]["profiles"] = {"wifi": {"up_bps": 0}}
    elif case == "missing epw":
        raw["weather"] = {"source": "epw", "path": "missing.epw"}
        return write_scenario(raw), str(tmp_path / "missing.epw")
    elif case == "too many devices":
        for site in raw["fleet"]["sites"]:
            site["devices"] = 600_000
        return write_scenario(raw), "1,200,000 devices in all, more than 1,000,000"
    elif case == "fifo for weather":
        os.mkfifo(tmp_path / "pipe.epw")
        raw["weather"] = {"source": "epw", "path": "pipe.epw"}
        return write_scenario(raw), "pipe.epw is a FIFO (named pipe), not a regular file"
    elif case == "truncated epw":
        write_epw(tmp_path / "short.epw", np.full(8760, 5.0))
        lines = (tmp_path / "short.epw").read_text().splitlines(keepends=True)
        (tmp_path / "short.epw").write_text("".join(lines[:100]))
        raw["weather"] = {"source": "epw", "path": "short.epw"}
        return write_scenario(raw), "truncated"
    elif case == "learner messages too large for a link":
        raw["fleet"]["sites"][0]["network"] = {"wifi": 0.8, "lte-m": 0.2}  # 1 of its 3 devices on LTE-M
        raw["learner"] = {"name": "diffusion-v1"}
        return write_scenario(
            raw
        ), "messages of 15,031 bytes exceed the 'lte-m' link's max_payload_bytes (8,088) of 1 device"
    words = {
        "list for a mapping": "fleet.building",
        "unknown key": "fleet.sites[0].colour: unknown key",
        "negative capacitance": "fleet.building.capacitance_kwh_per_c",
        "zero bandwidth": "network.profiles.wifi.up_bps",
    }
    return write_scenario(raw), words[case]


BAD_CASES = [
    "malformed yaml",
    "list for a mapping",
    "unknown key",
    "negative capacitance",
    "zero bandwidth",
    "missing epw",
    "truncated epw",
    "too many devices",
    "fifo for weather",
    "learner messages too large for a link",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_to_run_writes_nothing(case, tiny_raw, tmp_path, write_scenario):
    path, word = bad_scenario(case, tiny_raw, tmp_path, write_scenario)
    before = snapshot(tmp_path)
    result = fleet("run", path, "-o", tmp_path / "out", "--device", "cpu")
    assert_usage_error(result, word)
    assert result.stdout == "" and snapshot(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_to_validate(case, tiny_raw, tmp_path, write_scenario):
    path, word = bad_scenario(case, tiny_raw, tmp_path, write_scenario)
    assert_usage_error(fleet("validate", path), word)


def test_bad_override_through_run(tiny_scenario_file, tmp_path):
    assert_usage_error(fleet("run", tiny_scenario_file, "-o", tmp_path / "out", "--set", "nokey"), "--set 'nokey'")
    assert_usage_error(
        fleet("run", tiny_scenario_file, "-o", tmp_path / "out", "--set", "topology.degree=3"), "topology.degree"
    )
    assert not (tmp_path / "out").exists()


def test_a_discount_horizon_shorter_than_the_control_period_is_a_usage_error(tiny_scenario_file, tmp_path):
    """The tiny scenario's control period is a minute."""
    args = ("--set", "learner.name=independent-v1", "--set", "learner.params.discount_horizon=30s")
    result = fleet("run", tiny_scenario_file, "-o", tmp_path / "out", *args)
    assert_usage_error(result, "learner.params.discount_horizon", "30 s", "control period (60 s)")
    assert not (tmp_path / "out").exists()


def test_validate_reports_each_file(tiny_scenario_file, tiny_raw, write_scenario):
    tiny_raw["fleet"]["sites"][0]["colour"] = "blue"
    bad = write_scenario(tiny_raw, "bad.yaml")
    result = fleet("validate", tiny_scenario_file, bad, "thermostats-small-v1")
    assert_usage_error(result, str(bad), "fleet.sites[0].colour")
    assert result.stdout.splitlines() == [
        f"ok: {tiny_scenario_file} (thermostats-tiny: 6 devices, {2 / 24:g} days, learner rule-based-v1)",
        "ok: thermostats-small-v1 (thermostats-small-v1: 100 devices, 2 days, learner rule-based-v1)",
    ]


def test_validate_counts_days_in_english(tiny_scenario_file):
    assert ", 1 day, " in fleet("validate", tiny_scenario_file, "--set", "horizon=1d").stdout
    assert ", 2 days, " in fleet("validate", tiny_scenario_file, "--set", "horizon=2d").stdout


def test_validate_accepts_a_readable_epw(tiny_raw, tmp_path, write_scenario):
    write_epw(tmp_path / "site.epw", np.full(8760, 5.0))
    tiny_raw["weather"] = {"source": "epw", "path": "site.epw"}
    result = fleet("validate", write_scenario(tiny_raw))
    assert result.exit_code == 0 and result.stdout.startswith("ok: "), result.output


# --- listings and reports ----------------------------------------------------------------


def test_scenarios_lists_the_shipped_ones_with_descriptions():
    result = fleet("scenarios")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(list_scenarios()) == 6
    for line, (name, description, _) in zip(lines, list_scenarios()):
        assert line.startswith(name) and line.endswith(description) and description


def test_scenarios_as_json():
    result = fleet("scenarios", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [
        "city-10k-v1",
        "feeder-peak-v1",
        "nbiot-lossy-v1",
        "thermostats-cold-v1",
        "thermostats-small-v1",
        "thermostats-small-v2",
    ]
    assert all(r["description"] and "\n" not in r["description"] and r["path"].endswith(".yaml") for r in rows)


def test_learners_lists_the_registry():
    from fleet.learners import REGISTRY

    result = fleet("learners")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == sorted(REGISTRY)
    assert {"rule-based-v1", "independent-v1", "diffusion-v1", "centralized-v1"} <= set(REGISTRY)
    assert "[presets: clone-finetune, diff-dac, planner-teacher]" in next(
        line for line in result.stdout.splitlines() if line.startswith("diffusion-v1")
    )


def test_learners_name_shows_every_parameter_nested_ones_too():
    result = fleet("learners", "diffusion-v1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("diffusion-v1: diffusion actor-critic (Diff-DAC)")
    assert (
        "\n  hidden: int in [1, 1024] = 32\n      Width of the two hidden layers of the actor and of the critic.\n"
        in result.stdout
    )
    assert "\n  comm.dtype: 'float32' | 'float16' | 'int8' = \"float32\"\n" in result.stdout
    assert "\n  learn_until: duration > 0 | None = null\n" in result.stdout
    assert_usage_error(fleet("learners", "nope"), "learner 'nope' is not registered; known: ", "diffusion-v1")


def test_listing_scenarios_and_learners_imports_no_torch():
    code = (
        "import sys; from fleet.cli import main\n"
        "for args in (['scenarios'], ['learners'], ['learners', 'centralized-v1']):\n"
        "    main(args, standalone_mode=False)\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False"


def assert_pngs(paths):
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, path


def test_report_of_one_run(tiny_run, tmp_path):
    result = fleet("report", tiny_run, "-o", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "feeders.png",
        "kpis.png",
        "network.png",
        "temperatures.png",
    ]
    assert result.stdout.split() == [
        str(tmp_path / "plots" / n) for n in ("temperatures.png", "feeders.png", "kpis.png", "network.png")
    ]
    assert_pngs((tmp_path / "plots").iterdir())


def test_report_of_two_runs_compares_them(tiny_run, tmp_path):
    other = shutil.copytree(tiny_run, tmp_path / "other")
    result = fleet("report", tiny_run, other, "-o", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "plots").iterdir()}
    assert len(names) == 9 and {"compare.png", "run-kpis.png", "other-kpis.png"} <= names
    assert_pngs((tmp_path / "plots").iterdir())


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "metrics.csv").write_text("time_s\n0\n")
    result = fleet("report", tmp_path)
    assert_usage_error(result, str(tmp_path), "missing scenario.yaml, summary.json")
    assert not (tmp_path / "report").exists()


# --- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *main.commands])
def test_every_command_has_help_naming_its_options(name):
    command = main if name is None else main.commands[name]
    result = fleet(*([name] if name else []), "--help")
    assert result.exit_code == 0 and result.stdout.startswith("Usage: ")
    for param in command.params:
        if isinstance(param, click.Option):
            assert max(param.opts, key=len) in result.stdout


# --- real processes ------------------------------------------------------------------------


def test_a_real_process_exits_2_without_a_traceback(tiny_raw, tmp_path, write_scenario):
    path, word = bad_scenario("negative capacitance", tiny_raw, tmp_path, write_scenario)
    proc = subprocess.run(
        [sys.executable, "-m", "fleet.cli", "run", path, "-o", tmp_path / "out", "--device", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and word in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_cleanly_and_keeps_partial_results(tiny_scenario_file, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "run",
            tiny_scenario_file,
            "-o",
            out,
            "--device",
            "cpu",
            "--set",
            "horizon=60d",
            "--set",
            "outputs.metrics_period=1h",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell may start background jobs ignoring SIGINT; Python only handles it if it is not ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        metrics = out / "metrics.csv"
        wait_for(
            lambda: proc.poll() is not None or (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3),
            "three metrics rows",
            timeout=60,
            interval=0.05,
        )
        assert proc.poll() is None, f"fleet run ended early: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and f"interrupted; partial results (fleet resume continues) in {out}" in stderr
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["status"] == "interrupted" and 0 < run["simulated_s"] < run["horizon_s"] == 60 * 86400
    columns = read_metrics(metrics)
    assert columns["time_s"][-1] == run["simulated_s"] and np.all(np.diff(columns["time_s"]) >= 0)
