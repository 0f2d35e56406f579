"""Thread settings: one thread for a small fleet, the CPU share given, recorded in run.json."""

import json
import os

import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.threads import SMALL_FLEET, THREAD_ENV, set_threads, threads_for_fleet, usable_cores


@pytest.fixture
def restore_threads(monkeypatch):
    """Undo what set_threads does to this process."""
    for name in THREAD_ENV:
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_small_fleet_computes_on_one_thread_and_a_large_one_on_every_core(restore_threads):
    assert threads_for_fleet(SMALL_FLEET - 1) == 1
    assert threads_for_fleet(SMALL_FLEET) == usable_cores()


def test_omp_num_threads_in_the_environment_wins(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_for_fleet(10) == 3


def test_set_threads_sets_torch_and_the_environment_of_later_processes(restore_threads):
    set_threads(2)
    assert torch.get_num_threads() == 2 and all(os.environ[name] == "2" for name in THREAD_ENV)


@pytest.mark.parametrize("option, expected", [([], 1), (["--threads", "2"], 2)])
def test_fleet_run_records_its_threads_in_run_json(restore_threads, tiny_scenario_file, tmp_path, option, expected):
    result = CliRunner().invoke(
        main, ["run", str(tiny_scenario_file), "-o", str(tmp_path / "run"), "-q", "--set", "horizon=15min", *option]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["threads"] == expected
