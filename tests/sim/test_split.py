"""A run split by site across Ray actors: the same files as the single run, and what it refuses."""

import csv
import json
import socket
import sys

import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.sim.split import gather_rows, site_groups


@pytest.mark.parametrize(
    ("devices_per_site", "k", "groups"),
    [
        ([3, 3], 2, [[0], [1]]),
        ([5, 1, 1, 1], 2, [[0], [1, 2, 3]]),  # 5 | 3: the cut nearest to 4 devices is after site 0
        ([1, 1, 1, 5], 2, [[0, 1, 2], [3]]),  # nearest to 4 is after site 2 (3 devices), not after site 3 (8)
        ([2] * 6, 3, [[0, 1], [2, 3], [4, 5]]),
        ([9, 1, 1, 1], 4, [[0], [1], [2], [3]]),  # every group keeps at least one site
    ],
)
def test_sites_are_cut_into_contiguous_groups_of_about_equal_devices(devices_per_site, k, groups):
    assert [list(g) for g in site_groups(devices_per_site, k)] == groups


def test_gathered_rows_are_laid_out_as_the_shards_rows_so_that_a_mean_adds_up_in_the_same_order():
    """A learner's rewards (N, T) are a transposed (T, N) tensor: step-major in memory, as a mean
    over them adds up. Gathered from shards of 3 and 1 devices, the fleet's are step-major too."""
    fleet = torch.arange(8.0).reshape(2, 4).T  # (N=4, T=2), strides (1, 4)
    shards = [
        fleet[:3].contiguous().T.contiguous().T,
        fleet[3:].contiguous().T.contiguous().T,
    ]  # strides (1, 3), (1, 1)
    gathered = gather_rows(shards)
    assert torch.equal(gathered, fleet)
    assert gathered.stride() == (1, 4)


def _summary(run_dir) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("perf")
    return summary


@pytest.mark.parametrize("learner", ["rule-based-v1", "independent-v1", "diffusion-v1", "centralized-v1"])
def test_split_across_two_actors_writes_the_single_runs_metrics_summary_and_checkpoint(
    tiny_raw, write_scenario, tmp_path, learner
):
    """Churn (statuses, wills, retained re-sends), telemetry, the consensus workload and the
    sampled devices all cross the split; the fleet (rule-based, learning alone with its
    exploration, updates and loss means, diffusing parameters to neighbours anywhere in the
    fleet through the coordinator's network, or sending experience to the coordinator's cloud and
    receiving its broadcast) and its baseline are on the actors. The learner's sites
    hold 4 and 3 devices: shards of unequal size. The cloud's guard is tight enough that devices
    reject some broadcasts (counted on the shards) and the cloud rolls back some updates (counted
    in the coordinator)."""
    pytest.importorskip("ray")
    tiny_raw["network"]["churn"] = {"failures_per_day": 24, "mean_downtime": "10min"}
    tiny_raw["learner"] = {"name": learner}
    if learner == "centralized-v1":
        tiny_raw["learner"]["params"] = {"guard": {"max_param": 0.2, "max_norm_ratio": 1.0}}
    if learner != "rule-based-v1":
        tiny_raw["fleet"]["sites"][0]["devices"] = 4
        tiny_raw["topology"]["scope"] = "fleet"  # diffusion's parameter messages cross the shards
    scenario = write_scenario(tiny_raw)
    runs = {}
    for actors in (1, 2):
        runs[actors] = tmp_path / f"actors{actors}"
        result = CliRunner().invoke(
            main, ["run", str(scenario), "-o", str(runs[actors]), "-q", "--actors", str(actors)]
        )
        assert result.exit_code == 0, result.output
    single, split = runs[1], runs[2]
    assert _summary(split) == _summary(single)
    assert _summary(single)["comm"]["messages_sent"] > 0 and "consensus" in _summary(single)
    assert (split / "metrics.csv").read_bytes() == (single / "metrics.csv").read_bytes()
    assert (split / "checkpoint.safetensors").read_bytes() == (single / "checkpoint.safetensors").read_bytes()
    if learner != "rule-based-v1":  # it learned: its loss means are in the rows
        rows = list(csv.DictReader((single / "metrics.csv").open()))
        assert any(row["losses/policy"] not in ("", "nan") for row in rows)
    if learner == "centralized-v1":
        assert float(rows[-1]["learner/rejected_params"]) > 0 and float(rows[-1]["learner/rollbacks"]) > 0


@pytest.mark.parametrize(
    ("args", "changes", "named"),
    [
        (["--actors", "3"], {}, "--actors 3: scenario 'thermostats-tiny' has 2 site(s) in fleet.sites"),
        (["--actors", "0"], {}, "--actors 0: must be at least 1"),
        (["--actors", "2"], {"learner": {"name": "auction-v1"}}, "learner.name: 'auction-v1' cannot run split"),
        (
            ["--actors", "2"],
            {"learner": {"name": "diffusion-v1", "params": {"weights": "metropolis"}}},
            "learner.params.weights: metropolis",
        ),
        (
            ["--actors", "2"],
            {"learner": {"name": "diffusion-v1", "params": {"comm": {"topk": 0.1}}}},
            "learner.params.comm.topk",
        ),
        (
            ["--actors", "2"],
            {"learner": {"name": "independent-v1", "params": {"common_init": False}}},
            "learner.params.common_init: false",
        ),
        (
            ["--actors", "2"],
            {"learner": {"name": "independent-v1", "params": {"discomfort_limit": {"degh_per_day": 1.0}}}},
            "learner.params.discomfort_limit: a split run",
        ),
        (
            ["--actors", "2"],
            {"learner": {"name": "independent-v1", "params": {"teacher": "planner"}}},
            "learner.params.teacher: a split run",
        ),
        (["--actors", "2", "--realtime", "--broker", "mqtt://127.0.0.1:1"], {}, "a real-time (mixed) run is not split"),
    ],
)
def test_what_a_split_cannot_run_exactly_is_refused_and_nothing_is_written(
    tiny_raw, write_scenario, tmp_path, args, changes, named
):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(write_scenario({**tiny_raw, **changes})), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert named in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_split_without_ray_installed_is_refused_naming_what_to_install(
    tiny_raw, write_scenario, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as where it is not installed
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(write_scenario(tiny_raw)), "-o", str(out), "--actors", "2"])
    assert result.exit_code == 2, result.output
    assert "--actors 2: a split run needs Ray" in result.output and "pip install fleet-sim[ray]" in result.output
    assert not out.exists()


def test_an_unreachable_cluster_in_ray_address_exits_2_naming_it(tiny_raw, write_scenario, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", str(write_scenario(tiny_raw)), "-o", str(out), "--actors", "2"])
    assert result.exit_code == 2, result.output
    assert f"RAY_ADDRESS 127.0.0.1:{port}: no Ray cluster answers there" in result.output
    assert not out.exists()
