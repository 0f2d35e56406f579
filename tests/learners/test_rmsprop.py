"""RMSprop over stacked tensors: N separate torch.optim.RMSprop steps (bit for bit), one per device's slice."""

import torch

from fleet.learners.configs import ActorCriticConfig
from fleet.learners.stacked import ActorCritic, RMSprop

N = 5
SHAPES = [(6, 64), (64,), (64, 3), (3,)]
"""One device's layers (weight, bias, ...)."""


def test_a_stacked_step_is_n_separate_torch_rmsprop_steps():
    g = torch.Generator().manual_seed(0)
    stacked = [torch.randn(N, *shape, generator=g).requires_grad_() for shape in SHAPES]
    ours = RMSprop(stacked, lr=7e-4)
    alone = [[p[i].detach().clone().requires_grad_() for p in stacked] for i in range(N)]
    theirs = [torch.optim.RMSprop(params, lr=7e-4, alpha=0.99, eps=1e-5, foreach=False) for params in alone]
    for k in range(20):
        for p in stacked:
            p.grad = torch.randn(p.shape, generator=g) * 10.0 ** (k % 5 - 2)  # gradients of changing scale
        for i, device in enumerate(alone):
            for p, q in zip(stacked, device):
                q.grad = p.grad[i].clone()
        ours.step()
        for optimizer in theirs:
            optimizer.step()
    for i, device in enumerate(alone):
        for p, q, v in zip(stacked, device, ours.square_avg):
            torch.testing.assert_close(p[i].detach(), q.detach(), rtol=0, atol=0)
            torch.testing.assert_close(v[i], theirs[i].state[q]["square_avg"], rtol=0, atol=0)


def test_the_learner_takes_it_by_name_and_restarts_its_rows():
    cfg = ActorCriticConfig.model_construct(**{**ActorCriticConfig().model_dump(), "optimizer": "rmsprop"})
    core = ActorCritic(cfg, N, 6, 3, torch.Generator().manual_seed(0), "cpu")
    assert isinstance(core.optimizer, RMSprop) and core.optimizer.params == core.parameters
    for v in core.optimizer.square_avg:
        v.fill_(1.0)
    rows = torch.tensor([True, False, True, False, False])
    core.restart(rows)
    assert all((v[rows] == 0).all() and (v[~rows] == 1).all() for v in core.optimizer.square_avg)
