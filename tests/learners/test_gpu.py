"""The CUDA path: the stacked update on a GPU equals the CPU one. Deselected by default
(``pytest -m gpu`` runs it) and skipped where no CUDA device exists."""

import csv
import math

import pytest
import torch
from click.testing import CliRunner

from fleet.cli import main
from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_stacked_update_on_cuda_matches_cpu():
    n, t, levels = 64, 16, 4
    cpu = ActorCritic(ActorCriticConfig(), n, N_FEATURES, levels, torch.Generator().manual_seed(0), "cpu")
    gpu = ActorCritic(ActorCriticConfig(), n, N_FEATURES, levels, torch.Generator(device="cuda").manual_seed(0), "cuda")
    gpu.load_flat(cpu.flat().cuda())
    g = torch.Generator().manual_seed(1)
    r = Rollout(
        torch.randn(t + 1, n, N_FEATURES, generator=g),
        torch.randint(0, levels, (t, n), generator=g),
        -torch.rand(t, n, generator=g),
    )
    cpu.update(r, 0.95)
    gpu.update(Rollout(r.obs.cuda(), r.actions.cuda(), r.rewards.cuda()), 0.95)
    torch.testing.assert_close(gpu.flat().cpu(), cpu.flat(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("learner", ["diffusion-v1", "centralized-v1"])
def test_a_learning_fleet_runs_on_cuda(learner, tiny_scenario_file, tmp_path, device="cuda"):
    """The whole path on the GPU: features, acting, updates, messages through the codec, combine."""
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["run", str(tiny_scenario_file), "-o", str(out), "-q", "--device", device, "--set", f"learner.name={learner}"],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    losses = [float(r["losses/policy"]) for r in rows if r["losses/policy"] != "nan"]
    assert losses and all(math.isfinite(x) for x in losses)
