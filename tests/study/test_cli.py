"""``fleet study``: bad input exits 2 with one paragraph, and nothing is written or overwritten."""

import json
import socket

import pytest
from click.testing import CliRunner

from fleet.cli import main


def study(*args):
    return CliRunner().invoke(main, ["study", *map(str, args)])


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"axes": {"learner.nmae": ["x"]}}, ["learner.nmae: unknown key", "nothing was run"]),
        (
            {"axes": {"reward.discomfort_per_degh": [1, -1]}},
            ["2 of 4 points", "rule-based_discomfort_per_degh-1", "independent_discomfort_per_degh-1"],
        ),
    ],
)
def test_invalid_points_exit_2_before_anything_runs(write_study, tmp_path, changes, words):
    result = study(write_study(changes), "-o", tmp_path / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert all(w in result.output for w in words) and not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_exits_2_at_once(write_study, tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = study(write_study(), "-o", tmp_path / "out", "--engine", "ray", "--address", f"127.0.0.1:{port}")
    assert result.exit_code == 2 and f"--address 127.0.0.1:{port}: no Ray cluster answers there" in result.output
    assert not (tmp_path / "out").exists()


def test_options_of_ray_alone_are_refused_with_local_processes(write_study, tmp_path):
    result = study(write_study(), "-o", tmp_path / "out", "--engine", "local", "--address", "127.0.0.1:6379")
    assert result.exit_code == 2 and "--address apply only to Ray" in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, words",
    [
        (
            {"study.json": json.dumps({"name": "another-study"}), "runs/x/metrics.csv": "time_s\n0\n"},
            ["holds the study 'another-study'"],
        ),
        ({"notes.txt": "mine"}, ["no study.json, so it is not a study folder"]),
        (
            {
                "study.json": json.dumps({"name": "tiny-study"}),
                "runs/independent-seed0/run.json": "{}",
                "runs/independent-seed0/scenario.yaml": "name: older\n",
            },
            ["runs independent-seed0 were made from other scenarios", "another version"],
        ),
    ],
)
def test_a_folder_holding_something_else_exits_2_and_is_left_as_it_was(write_study, tmp_path, content, words):
    out = tmp_path / "out"
    for name, text in content.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = snapshot(out)
    result = study(write_study(), "-o", out, "--engine", "local")
    assert result.exit_code == 2 and all(w in result.output for w in words), result.output
    assert snapshot(out) == before
