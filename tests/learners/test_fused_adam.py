"""FusedAdam: torch.optim.Adam(fused=True)'s parameters bit for bit, without torch.optim."""

import subprocess
import sys

import pytest
import torch

from fleet.errors import ConfigError
from fleet.learners.stacked import FusedAdam


def pair(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    mine = [
        torch.randn(shape, generator=g).requires_grad_() for shape in [(40, 22, 32), (40, 32), (40, 32, 4), (40, 4)]
    ]
    return mine, [p.detach().clone().requires_grad_() for p in mine]


def step_both(ours: FusedAdam, theirs: torch.optim.Adam, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for k in range(steps):
        for p, q in zip(ours.params, theirs.param_groups[0]["params"]):
            p.grad = torch.randn(p.shape, generator=g) * 10.0 ** (k % 5 - 2)  # gradients of changing scale
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()


def test_same_parameters_and_moments_as_torch_fused_adam():
    mine, theirs = pair()
    ours, reference = FusedAdam(mine, lr=3e-3), torch.optim.Adam(theirs, lr=3e-3, fused=True)
    step_both(ours, reference, 25, seed=1)
    for p, q, m, v in zip(mine, theirs, ours.exp_avg, ours.exp_avg_sq):
        assert torch.equal(p, q)
        assert torch.equal(m, reference.state[q]["exp_avg"]) and torch.equal(v, reference.state[q]["exp_avg_sq"])
    assert float(ours.step_count) == 25


def test_state_dict_round_trip_continues_identically():
    mine, theirs = pair()
    ours, reference = FusedAdam(mine, lr=1e-2), torch.optim.Adam(theirs, lr=1e-2, fused=True)
    step_both(ours, reference, 5, seed=2)
    resumed = FusedAdam([p.detach().clone().requires_grad_() for p in mine], lr=1e-2)
    resumed.load_state_dict(ours.state_dict())
    step_both(resumed, reference, 5, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(resumed.params, theirs))


def test_refuses_moments_of_other_shapes():
    mine, _ = pair()
    state = FusedAdam(mine[:2], lr=1e-3).state_dict()
    with pytest.raises(ConfigError, match=r"exp_avg.0: shape \(40, 22, 32\), expected \(40, 32, 4\)"):
        FusedAdam(mine[2:], lr=1e-3).load_state_dict(state)


def test_a_learner_update_does_not_import_torch_dynamo():
    """The reason for the class: torch.optim's first optimizer imports torch._dynamo (seconds)."""
    script = (
        "import sys, torch\n"
        "from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout\n"
        "core = ActorCritic(ActorCriticConfig(shaping_per_degc=0), 3, 5, 4, torch.Generator().manual_seed(0), 'cpu')\n"
        "before = core.flat().clone()\n"
        "core.update(Rollout(torch.randn(4, 3, 5), torch.randint(0, 4, (3, 3)), torch.randn(3, 3)), 0.95)\n"
        "assert not torch.equal(core.flat(), before)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
