"""Per-device actor-critic networks stacked on a leading device axis, trained in one pass.

Device i owns its own actor and critic; their parameters are slices ``[i]`` of stacked
tensors, e.g. a layer's weight is ``(N, in, out)``. Forward passes are batched matrix
products (``torch.baddbmm``) and the loss is the *sum* over devices of each device's own
loss, so the gradient with respect to device i's slice is exactly the gradient of device i's
loss: batching adds no coupling. Adam is element-wise and gradient clipping is per device,
so one optimizer step over the stacked tensors equals N separate steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fleet.config import StrictModel
from fleet.errors import ConfigError
from pydantic import Field
from typing import Annotated


class ActorCriticConfig(StrictModel):
    """Hyperparameters of the n-step advantage actor-critic (as in Diff-DAC)."""

    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the two hidden layers of the actor and of the critic."""
    n_steps: Annotated[int, Field(ge=1, le=10_000)] = 16
    """Control ticks per update (rollout length)."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.98
    """Discount factor per control tick."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    """GAE lambda; 1.0 gives plain n-step returns with bootstrapping."""
    lr: Annotated[float, Field(gt=0, le=1)] = 3e-3
    """Adam learning rate (actor and critic)."""
    entropy_coef: Annotated[float, Field(ge=0)] = 0.01
    """Weight of the entropy bonus."""
    value_coef: Annotated[float, Field(ge=0)] = 0.5
    """Weight of the critic's squared error."""
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    """Per-device clipping of the gradient norm."""
    reward_scale: Annotated[float, Field(gt=0)] = 10.0
    """Rewards are multiplied by this before learning (per-tick rewards are small)."""
    normalize_advantages: bool = True
    """Standardize each device's advantages over its own rollout."""


class StackedMLP:
    """N independent tanh MLPs with layer sizes ``sizes``; weights (N, in, out), biases (N, out)."""

    def __init__(self, n: int, sizes: list[int], gen: torch.Generator, device: str, last_scale: float = 1.0) -> None:
        self.sizes = sizes
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = a**-0.5 * (last_scale if k == len(sizes) - 2 else 1.0)
            w = (torch.rand(n, a, b, generator=gen, device=device) * 2 - 1) * bound
            bias = torch.zeros(n, b, device=device)
            self.weights.append(w.requires_grad_())
            self.biases.append(bias.requires_grad_())

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, in) -> (N, B, out); parameters stacked for one device (N = 1) are shared by
        every leading index of ``x``."""
        last = len(self.weights) - 1
        lead = x.shape[0]
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b.unsqueeze(1).expand(lead, -1, -1), x, w.expand(lead, -1, -1))
            if k < last:
                x = torch.tanh(x)
        return x


def flatten(params: list[torch.Tensor]) -> torch.Tensor:
    """Stacked tensors -> (N, P) (a view-free copy)."""
    return torch.cat([p.detach().reshape(p.shape[0], -1) for p in params], dim=1)


def unflatten_into(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write (N, P) back into the stacked tensors, in place."""
    offset = 0
    with torch.no_grad():
        for p in params:
            size = p[0].numel()
            p.copy_(flat[:, offset: offset + size].reshape(p.shape))
            offset += size


@dataclass
class Rollout:
    """T transitions of N devices: obs (T+1, N, F) including the bootstrap observation,
    actions (T, N) int64, rewards (T, N)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor


METRIC_KEYS = ("losses/policy", "losses/value", "losses/entropy", "charts/mean_reward")


class ActorCritic:
    """The stacked actor (F -> H -> H -> L logits) and critic (F -> H -> H -> 1) of N devices."""

    def __init__(self, cfg: ActorCriticConfig, n: int, n_features: int, n_actions: int, gen: torch.Generator, device: str, shared: bool = False) -> None:
        """``shared``: one network (n = 1) trained on the rollouts of many devices at once, the
        loss averaged over them (the centralized learner's cloud model)."""
        self.cfg = cfg
        self.shared = shared
        h = cfg.hidden
        self.actor = StackedMLP(n, [n_features, h, h, n_actions], gen, device, last_scale=0.01)
        self.critic = StackedMLP(n, [n_features, h, h, 1], gen, device)
        self.optimizer = torch.optim.Adam(self.parameters, lr=cfg.lr)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return self.actor.parameters + self.critic.parameters

    def flat(self) -> torch.Tensor:
        """All parameters of each device, (N, P)."""
        return flatten(self.parameters)

    def load_flat(self, flat: torch.Tensor) -> None:
        unflatten_into(self.parameters, flat)

    def state_dict(self) -> dict:
        return {"params": [p.detach().cpu() for p in self.parameters], "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore parameters and optimizer; ConfigError naming the shapes if they differ."""
        params = state["params"]
        mine = [tuple(p.shape) for p in self.parameters]
        if [tuple(p.shape) for p in params] != mine:
            got = [tuple(p.shape) for p in params]
            raise ConfigError(f"checkpoint parameters have shapes {got}, this learner has {mine} (another scenario or learner config?)")
        with torch.no_grad():
            for p, saved in zip(self.parameters, params):
                p.copy_(saved.to(p.device))
        self.optimizer.load_state_dict(state["optimizer"])

    def policy(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        """obs (N, B, F) -> a categorical over actions per (device, sample)."""
        return torch.distributions.Categorical(logits=self.actor(obs))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """obs (N, F) -> sampled actions (N,) int64."""
        probs = torch.softmax(self.actor(obs.unsqueeze(1)).squeeze(1), dim=-1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1)

    def update(self, r: Rollout) -> dict[str, float]:
        """One n-step A2C step with GAE for every device (or, shared, on every rollout of
        ``r``); returns fleet-mean metrics."""
        cfg = self.cfg
        obs = r.obs.transpose(0, 1)  # (N, T+1, F)
        values = self.critic(obs).squeeze(-1)  # (N, T+1)
        rewards = r.rewards.transpose(0, 1) * cfg.reward_scale  # (N, T)
        with torch.no_grad():
            v = values.detach()
            adv = torch.zeros_like(rewards)
            running = torch.zeros(rewards.shape[0], device=rewards.device)
            for t in reversed(range(rewards.shape[1])):
                delta = rewards[:, t] + cfg.gamma * v[:, t + 1] - v[:, t]
                running = delta + cfg.gamma * cfg.gae_lambda * running
                adv[:, t] = running
            returns = adv + v[:, :-1]
            if cfg.normalize_advantages and adv.shape[1] > 1:  # per device: only its own data
                adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        dist = self.policy(obs[:, :-1])
        logp = dist.log_prob(r.actions.transpose(0, 1))
        entropy = dist.entropy()
        per_device = (
            -(logp * adv).mean(1) - cfg.entropy_coef * entropy.mean(1) + cfg.value_coef * ((values[:, :-1] - returns) ** 2).mean(1)
        )
        self.optimizer.zero_grad(set_to_none=True)
        (per_device.mean() if self.shared else per_device.sum()).backward()
        self._clip_per_device()
        self.optimizer.step()
        return {
            "losses/policy": float(-(logp.detach() * adv).mean()),
            "losses/value": float(((values.detach()[:, :-1] - returns) ** 2).mean()),
            "losses/entropy": float(entropy.detach().mean()),
            "charts/mean_reward": float(r.rewards.mean()),
        }

    def _clip_per_device(self) -> None:
        grads = [p.grad for p in self.parameters]
        norm = torch.sqrt(sum((g.reshape(g.shape[0], -1) ** 2).sum(1) for g in grads))
        scale = torch.clamp(self.cfg.max_grad_norm / (norm + 1e-12), max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))
