"""The examples of docs/environments.md, run tiny: the study on mpe2's simple_spread and SB3's PPO."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def script(path: str):
    """The module of a script that is not in a package."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads():
    """The scripts set torch's thread count for their process; give the test process its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_simple_spread_study_writes_every_curve_and_the_plot(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when run as a script: it imports bench_engine beside it
    study = script("benchmarks/train_simple_spread.py")
    out, png = tmp_path / "simple-spread.json", tmp_path / "spread.png"
    study.main(
        [
            "--steps",
            "100",
            "--seeds",
            "2",
            "--points",
            "2",
            "--random-episodes",
            "2",
            "--out",
            str(tmp_path),
            "--png",
            str(png),
        ]
    )
    result = json.loads(out.read_text())
    assert set(result["curves"]) == {"independent-v1", "diffusion-v1"}
    for by_seed in result["curves"].values():
        assert list(by_seed) == ["0", "1"]
        for curve in by_seed.values():  # episodes of 25 steps: two of each of the 3 agents end in each 50 steps
            assert [(row["step"], row["episodes"]) for row in curve] == [(50, 6), (100, 6)]
    assert len(result["random_mean_return"]) == 2 and all(r < 0 for r in result["random_mean_return"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sb3_ppo_trains_on_the_thermostat_env_and_is_compared_with_the_rule_based_one():
    example = script("docs/examples/sb3_ppo_thermostat.py")
    kpis = example.main(["--timesteps", "256", "--n-steps", "128", "--horizon", "3h"])
    assert set(kpis) == {f"{who}/{k}" for who in ("kpi", "baseline") for k in example.KPIS}
    assert kpis["baseline/energy_kwh"] > 0 and all(v >= 0 for v in kpis.values())
