"""Run directories: never lose results by accident; metrics stream row by row; strict JSON."""

import json
import math
import shutil
import sys
import time
import types

import numpy as np
import pytest
import yaml

from fleet.errors import RunDirError
from fleet.results import RUN_MARKER, MetricsWriter, RunDir, load_run, read_metrics
from fleet.scenario import load_scenario


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


def earlier_run(folder, scenario_file, argv=("fleet", "run")):
    """``folder`` as a run leaves it: scenario.yaml and run.json of a real start, and the other
    files a run writes (with stand-in contents)."""
    run = RunDir.create(folder)
    run.write_start(load_scenario(scenario_file), "cpu", list(argv))
    for name in ("metrics.csv", "summary.json", "checkpoint.pt", "tensorboard/events.out.tfevents.1.host.2.0"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(b"old")
    return run


def test_overwrite_deletes_only_the_files_of_the_earlier_run(tmp_path, tiny_scenario_file):
    old = tmp_path / "run"
    earlier_run(old, tiny_scenario_file)
    (old / "report").mkdir()
    (old / "report" / "feeders.png").write_bytes(b"plot")
    (old / "thesis.tex").write_text("precious")
    (old / "tensorboard" / "notes.txt").write_text("mine")
    kept = {p: b for p, b in snapshot(old).items() if p.name in ("feeders.png", "thesis.tex", "notes.txt")}
    run = RunDir.create(old, overwrite=True)
    assert run.path == old and snapshot(old) == kept


def test_overwrite_removes_an_emptied_tensorboard_folder(tmp_path, tiny_scenario_file):
    earlier_run(tmp_path / "run", tiny_scenario_file)
    RunDir.create(tmp_path / "run", overwrite=True)
    assert not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("record", [b"{}", b"[]", b"not json", b"\xff\xfe", b'{"command": "fleet run", "seed": 0}'])
def test_overwrite_refuses_a_run_json_that_is_not_a_run_record(tmp_path, record):
    folder = tmp_path / "thesis"
    (folder / "figures").mkdir(parents=True)
    (folder / RUN_MARKER).write_bytes(record)
    (folder / "thesis.tex").write_text("precious")
    (folder / "figures" / "plot.pdf").write_bytes(b"%PDF")
    before = snapshot(folder)
    with pytest.raises(
        RunDirError, match=f"not an earlier run directory \\({RUN_MARKER} is not .*even with --overwrite"
    ):
        RunDir.create(folder, overwrite=True)
    assert snapshot(folder) == before


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("target", ["a run directory", "nothing"])
def test_a_symbolic_link_is_never_a_run_directory(tmp_path, tiny_scenario_file, overwrite, target):
    real = tmp_path / "real"
    if target == "a run directory":
        earlier_run(real, tiny_scenario_file)
    (tmp_path / "link").symlink_to(real)
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError, match="link: is a symbolic link"):
        RunDir.create(tmp_path / "link", overwrite=overwrite)
    assert snapshot(tmp_path) == before and (tmp_path / "link").is_symlink()


@pytest.mark.parametrize("name", ["metrics.csv", "tensorboard", "tensorboard/events.out.tfevents.1"])
def test_overwrite_refuses_a_link_where_a_run_writes_a_file(tmp_path, tiny_scenario_file, name):
    old = tmp_path / "run"
    earlier_run(old, tiny_scenario_file)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "events.out.tfevents.1").write_text("precious")
    if name == "tensorboard":
        shutil.rmtree(old / name)
    (old / name).unlink(missing_ok=True)
    (old / name).symlink_to(elsewhere if name == "tensorboard" else elsewhere / "events.out.tfevents.1")
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError, match=f"{name}: is not .* a run writes"):
        RunDir.create(old, overwrite=True)
    assert snapshot(tmp_path) == before


def test_run_json_hides_broker_passwords(tmp_path, tiny_scenario_file):
    argv = [
        "fleet",
        "run",
        "x",
        "--broker",
        "mqtts://bridge:s3cr@t/pw@broker.example:8883",
        "--broker=mqtt://u:hunter2@h",
    ]
    earlier_run(tmp_path / "run", tiny_scenario_file, argv)
    record = json.loads((tmp_path / "run" / RUN_MARKER).read_text())
    assert record["command"] == [*argv[:4], "mqtts://bridge:***@broker.example:8883", "--broker=mqtt://u:***@h"]
    assert not [p for p, b in snapshot(tmp_path / "run").items() if b"s3cr" in b or b"hunter2" in b]


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


# --- TensorBoard -----------------------------------------------------------------------------


def tensorboard_scalars(run):
    """{tag: [(step, value), ...]} of the event files in ``run/tensorboard``, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected_scalars(run):
    """metrics.csv as TensorBoard should hold it: a tag per column but the time, step = simulated
    second, values as float32, non-finite values left out."""
    columns = read_metrics(run / "metrics.csv")
    steps = [round(t) for t in columns.pop("time_s")]
    columns.pop("time_h")
    return {
        tag: [(s, float(np.float32(v))) for s, v in zip(steps, values) if math.isfinite(v)]
        for tag, values in columns.items()
    }


def test_tensorboard_gets_every_metrics_row_under_its_column_name(tiny_scenario_file, tmp_path):
    from click.testing import CliRunner

    from fleet.cli import main

    out = tmp_path / "run"
    args = [
        "run",
        tiny_scenario_file,
        "-o",
        out,
        "--device",
        "cpu",
        "-q",
        "--tensorboard",
        "--set",
        "learner.name=diffusion-v1",
        "--set",
        "horizon=1h",
        "--set",
        "outputs.baseline=false",
    ]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "scenario.yaml").read_text())["outputs"]["tensorboard"] is True
    got, want = tensorboard_scalars(out), expected_scalars(out)
    assert {"kpi/cost", "net/bytes_sent", "losses/value", "charts/mean_reward", "feeder/north_kw"} <= set(got)
    assert got == want
    assert got["kpi/cost"][0][0] == 0 and got["kpi/cost"][-1][0] == 3600
    assert got["losses/value"][0][0] > 0  # no loss before the first update: left out, not NaN


@pytest.fixture
def tensorboard_scenario(tiny_scenario_file):
    """The tiny scenario with TensorBoard output and a checkpoint every hour."""
    from fleet.scenario import load_scenario

    return load_scenario(
        tiny_scenario_file, ["outputs.tensorboard=true", "outputs.checkpoint_every=1h", "outputs.baseline=false"]
    )


def interrupt_at(seconds):
    """A progress callback that stops the run (as Ctrl-C would) once it reaches ``seconds``."""

    def progress(t):
        if t >= seconds:
            raise KeyboardInterrupt

    return progress


def test_a_resumed_run_continues_its_tensorboard_scalars(tensorboard_scenario, tmp_path):
    from fleet.results import execute, resume

    sc = tensorboard_scenario
    _, part = execute(sc, tmp_path / "run", progress=interrupt_at(5400))
    assert part["run"]["status"] == "interrupted"
    before = tensorboard_scalars(tmp_path / "run")
    assert before["kpi/cost"][-1][0] == 5400  # the row at the interruption, after the checkpoint at 1 h
    time.sleep(1)  # as a later process would: the resumed event file's name (it starts with the time) sorts after
    resume(tmp_path / "run")
    got = tensorboard_scalars(tmp_path / "run")
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 2
    assert got == expected_scalars(tmp_path / "run")  # one value per step: the earlier ones after 1 h are purged


def test_tensorboard_without_the_package_is_a_clear_error_and_writes_nothing(
    tiny_scenario_file, tiny_run, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from fleet.cli import main

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    for extra in (["--tensorboard"], ["--set", "outputs.tensorboard=true"]):
        result = CliRunner().invoke(
            main, ["run", str(tiny_scenario_file), "-o", str(tmp_path / "out"), "--device", "cpu", *extra]
        )
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "outputs.tensorboard" in result.stderr and "pip install 'fleet-sim[tensorboard]'" in result.stderr
        assert not (tmp_path / "out").exists()
    run = shutil.copytree(tiny_run, tmp_path / "run")
    scenario = yaml.safe_load((run / "scenario.yaml").read_text())
    scenario["outputs"]["tensorboard"] = True
    (run / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    before = snapshot(run)
    result = CliRunner().invoke(main, ["resume", str(run)])
    assert result.exit_code == 2 and "pip install 'fleet-sim[tensorboard]'" in result.stderr
    assert snapshot(run) == before


class _State:
    """What save_checkpoint needs of a simulation: a scenario to dump and a state."""

    def __init__(self, value):
        self.value = value
        self.scenario = types.SimpleNamespace(model_dump=lambda mode: {"name": "test"})

    def state_dict(self):
        return {"value": self.value}


def test_each_checkpoint_replaces_the_last_and_leaves_no_other_file(tmp_path):
    run = RunDir.create(tmp_path / "run")
    for value in range(4):
        run.save_checkpoint(_State(np.full(1000, value)))
        assert (load_value(run) == value).all()  # once the thread has written it and deleted the one before
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.safetensors"]


def load_value(run: RunDir):
    from fleet.statefile import load

    run.finish_checkpoint()
    return load(run.path / "checkpoint.safetensors", "simulation", 1 << 30)["simulation"]["value"]


def test_a_checkpoint_holds_the_state_when_it_was_saved_not_when_it_was_written(tmp_path, monkeypatch):
    """The thread writes after save_checkpoint returns, while the simulation changes its arrays;
    with a write-ahead budget smaller than the state, the encoder also waits for the thread."""
    import fleet.results

    monkeypatch.setattr(fleet.results, "WRITE_AHEAD_BYTES", 64 << 10)
    run = RunDir.create(tmp_path / "run")
    state = np.arange(1_000_000, dtype=np.float64)  # 8 MB: many times the budget
    run.save_checkpoint(_State(state))
    state[:] = -1  # in place, as the engine's arrays change
    assert (load_value(run) == np.arange(1_000_000)).all()


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tmp_path, monkeypatch):
    import fleet.results

    run = RunDir.create(tmp_path / "run")
    run.save_checkpoint(_State(np.full(10, 1.0)))
    run.finish_checkpoint()
    # every write fails: no space left
    monkeypatch.setattr(fleet.results, "create_new", lambda path: open("/dev/full", "wb"))
    run.save_checkpoint(_State(np.full(10, 2.0)))
    with pytest.raises(RunDirError, match="could not write the checkpoint"):
        run.finish_checkpoint()
    assert (load_value(run) == 1.0).all()
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.safetensors"]


def test_a_state_that_cannot_be_saved_keeps_the_previous_checkpoint(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.save_checkpoint(_State(np.full(10, 1.0)))
    with pytest.raises(TypeError, match="value.1: a function is not state"):
        run.save_checkpoint(_State([np.zeros(100_000), lambda: None]))
    assert (load_value(run) == 1.0).all()
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.safetensors"]


def test_a_checkpoint_is_never_written_through_a_planted_link(tmp_path):
    """A link where the temporary file goes (by any version's name) is replaced, not followed:
    its target stays as it was."""
    run = RunDir.create(tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("checkpoint.pt.tmp", "checkpoint.safetensors.tmp"):
        (run.path / name).symlink_to(victim)
    run.save_checkpoint(_State(np.full(10, 3.0)))
    assert (load_value(run) == 3.0).all()
    assert victim.read_text() == "precious"
