"""Why diffusion learners use SGD: averaging the devices' SGD steps is one step on the pooled
data (what Diff-DAC's combine relies on); averaging their Adam steps is not."""

import pytest
import torch

from fleet.learners.features import N_FEATURES
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, Rollout

N, T, L = 6, 10, 4


def actor_flat(core: ActorCritic) -> torch.Tensor:
    """The actor's parameters of each device, (N, P_actor)."""
    return torch.cat([p.detach().reshape(p.shape[0], -1) for p in core.actor.parameters], dim=1)


def one_step_each_and_pooled(optimizer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parameters before, the mean over devices of one step each on its own data, and one step of a shared network
    on all of it, from the same parameters; actors only (the critics' value normalization pools
    differently by design). Gradient clipping and the standardization of advantages off (a shared
    network standardizes over its batch, a device over its own updates), so that both see the
    raw gradients."""
    cfg = ActorCriticConfig(optimizer=optimizer, lr=0.05, momentum=0.0, max_grad_norm=1e9, normalize_advantages=False)
    g = torch.Generator().manual_seed(0)
    shared = ActorCritic(cfg, 1, N_FEATURES, L, g, "cpu", shared=True)
    fleet = ActorCritic(cfg, N, N_FEATURES, L, g, "cpu")
    fleet.load_flat(shared.flat().expand(N, -1))
    before = actor_flat(shared)[0]
    r = Rollout(
        torch.randn(T + 1, N, N_FEATURES, generator=g),
        torch.randint(0, L, (T, N), generator=g),
        -torch.rand(T, N, generator=g),
    )
    fleet.update(r, 0.95)
    shared.update(r, 0.95)
    return before, actor_flat(fleet).mean(0), actor_flat(shared)[0]


def test_the_mean_of_per_device_sgd_steps_is_one_sgd_step_on_the_pooled_data():
    before, averaged, pooled = one_step_each_and_pooled("sgd")
    assert (pooled - before).abs().max() > 1e-3  # a real step
    torch.testing.assert_close(averaged, pooled, atol=1e-6, rtol=1e-5)


def test_the_mean_of_per_device_adam_steps_is_not():
    _, averaged, pooled = one_step_each_and_pooled("adam")
    assert (averaged - pooled).abs().max() > 1e-3


@pytest.mark.parametrize("bad", [{"optimizer": "adagrad"}, {"momentum": 1.0}])
def test_unknown_optimizers_and_momentum_of_one_are_refused(bad):
    with pytest.raises(ValueError):
        ActorCriticConfig(**bad)
