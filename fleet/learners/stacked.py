"""Per-device actor-critic networks stacked on a leading device axis, trained in one pass.

Device i owns its own actor and critic; their parameters are slices ``[i]`` of stacked
tensors, e.g. a layer's weight is ``(N, in, out)``. Forward passes are batched matrix
products (``torch.baddbmm``) and the loss is the *sum* over devices of each device's own
loss, so the gradient with respect to device i's slice is exactly the gradient of device i's
loss: batching adds no coupling. Adam, RMSprop and SGD are element-wise and gradient clipping
is per device, so one optimizer step over the stacked tensors equals N separate steps.

Advantages are standardized (``normalize_advantages``) without coupling devices either. A
shared network (the centralized learner's cloud model) standardizes over its whole batch, every
device and step of one update, as PPO does: it is one model, so that batch is its own data. A
device's own network standardizes by the running mean and variance of its own advantages over
its recent updates (:class:`RunningMoments`, decaying by ``value_norm_decay`` per update, about a
hundred updates), not over its current rollout of a few samples: per rollout, a window in which
nothing is at stake (advantages of pure noise) would be amplified to the size of one that
decides the day's cost. Standardizing a device's advantages over all devices of the batch would
make device i's step depend on device j's data, which the batched learner must not (it must
equal N separate learners; ``tests/learners/test_batching.py``), and which a device could not do
without the others' experience anyway.

The discount per step ``gamma`` is an argument of :meth:`ActorCritic.update`: the learners derive
it from their ``discount_horizon`` and the control period
(:meth:`fleet.learners.configs.ActorCriticConfig.discount`); the core knows no time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from fleet.errors import ConfigError
from fleet.learners.configs import ActorCriticConfig, layer_sizes
from fleet.statefile import StateFileError, StateMismatch, array, array_list, entry, expect_keys, load_child, within
from fleet.statefile import load as load_state


class _SigmoidTanh(torch.autograd.Function):
    """tanh as ``2 sigmoid(2x) - 1``, with tanh's backward from the output. The same function to
    float rounding (within 2e-7), at half the time of ``torch.tanh`` forward and backward on
    the CPU: there torch's tanh takes four times as long as its sigmoid (AVX2)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(2 * x).mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """The hidden layers' activation: ``torch.tanh`` on a GPU, :class:`_SigmoidTanh` on the CPU."""
    return _SigmoidTanh.apply(x) if x.device.type == "cpu" else torch.tanh(x)


class FusedAdam:
    """Adam over a fixed list of tensors with PyTorch's fused kernel: the parameters that
    ``torch.optim.Adam(params, lr, fused=True)`` computes, bit for bit (a test holds it to that).

    Fused: one pass over each tensor instead of six, a third of an update's time at N = 1k on
    the CPU; it differs from the for-loop Adam by float rounding only. Not ``torch.optim``'s
    class: creating the first ``torch.optim`` optimizer imports ``torch._dynamo``, two seconds
    at the start of every run. The kernel does not bump the parameters' version counters."""

    def __init__(
        self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.params = params
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.step_count = torch.zeros((), device=params[0].device)
        """Steps taken (float32, as torch's fused Adam keeps it), shared by every tensor."""

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One Adam step on every tensor from its ``.grad``."""
        self.step_count.add_(1)
        torch._fused_adam_(
            self.params,
            [p.grad for p in self.params],
            self.exp_avg,
            self.exp_avg_sq,
            [],
            [self.step_count] * len(self.params),
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def state_dict(self) -> dict:
        """``step`` () and the moments ``exp_avg``, ``exp_avg_sq``: one tensor per parameter."""
        return {"step": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        """Restore the moments and step count; :class:`~fleet.statefile.StateMismatch` if they do
        not fit the parameters."""
        expect_keys(state, ("step", "exp_avg", "exp_avg_sq"))
        with within("step"):
            self.step_count.copy_(array(state["step"], self.step_count))
        for key in ("exp_avg", "exp_avg_sq"):
            for t, saved in zip(getattr(self, key), array_list(state, key, like=getattr(self, key))):
                t.copy_(saved)


class _BufferState:
    """The state of a torch optimizer whose state per parameter is buffers of its shape (none
    before the first step): ``state_dict()`` is ``{name: [buffer or None per parameter]}`` for
    each of :attr:`BUFFERS`, and, with :attr:`COUNTED`, ``{"steps": [() tensor or None, ...]}``;
    the parameters' order is the config's."""

    BUFFERS: ClassVar[dict[str, str]]
    """Saved name -> torch's key of each buffer."""
    COUNTED: ClassVar[bool] = False
    """Whether torch also keeps a step count per parameter (RMSprop)."""

    def state_dict(self) -> dict:
        return {name: [self.state.get(p, {}).get(key) for p in self._params] for name, key in self._keys.items()}

    def load_state_dict(self, state: dict) -> None:
        keys = self._keys
        expect_keys(state, tuple(keys))
        saved = {name: entry(state, name, list) for name in keys}
        for name, buffers in saved.items():
            if len(buffers) != len(self._params):
                raise StateMismatch(name, f"{len(buffers)} buffers, expected {len(self._params)}")
        for i, p in enumerate(self._params):
            self.state.pop(p, None)
            for name, key in keys.items():
                if saved[name][i] is not None:
                    with within(f"{name}.{i}"):
                        like = torch.zeros(()) if key == "step" else p
                        self.state[p][key] = array(saved[name][i], like).to(like.device, copy=True)

    @property
    def buffers(self) -> list[torch.Tensor]:
        """The buffers of every parameter that has them, each of its parameter's shape."""
        return [s[key] for s in self.state.values() for key in self.BUFFERS.values() if key in s]

    @property
    def _keys(self) -> dict[str, str]:
        """Saved name -> torch's key of everything it keeps per parameter."""
        return {**self.BUFFERS, **({"steps": "step"} if self.COUNTED else {})}

    @property
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]


class MomentumSGD(_BufferState, torch.optim.SGD):
    """torch's SGD; its state is one momentum buffer per parameter (``{"momentum": [...]}``)."""

    BUFFERS: ClassVar[dict[str, str]] = {"momentum": "momentum_buffer"}


RMSPROP_ALPHA = 0.99
"""Decay of RMSprop's running mean of squared gradients (Diff-DAC's reference code and torch's default)."""
RMSPROP_EPS = 1e-5
"""RMSprop's epsilon, added to the root mean square (Diff-DAC's reference code)."""


class RMSprop(_BufferState, torch.optim.RMSprop):
    """torch's RMSprop (Diff-DAC's optimizer); its state is each parameter's mean square and step count."""

    BUFFERS: ClassVar[dict[str, str]] = {"square_avg": "square_avg"}
    COUNTED: ClassVar[bool] = True


class StackedMLP:
    """N independent tanh MLPs with layer sizes ``sizes``; weights (N, in, out), biases (N, out).

    ``common``: every device starts from one draw, the draw of a single device (N = 1) from the
    same generator, so that a fleet of any size (and a board, alone) starts from the same
    parameters."""

    def __init__(
        self, n: int, sizes: list[int], gen: torch.Generator, device: str, last_scale: float = 1.0, common: bool = False
    ) -> None:
        self.sizes = sizes
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        drawn = 1 if common else n
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = a**-0.5 * (last_scale if k == len(sizes) - 2 else 1.0)
            w = ((torch.rand(drawn, a, b, generator=gen, device=device) * 2 - 1) * bound).expand(n, -1, -1).contiguous()
            bias = torch.zeros(n, b, device=device)
            self.weights.append(w.requires_grad_())
            self.biases.append(bias.requires_grad_())

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def frozen_copy(self) -> StackedMLP:
        """The same networks with parameters of their own that take no gradient (a fixed snapshot)."""
        snapshot = copy.copy(self)
        snapshot.weights = [w.detach().clone() for w in self.weights]
        snapshot.biases = [b.detach().clone() for b in self.biases]
        return snapshot

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, in) -> (N, B, out); parameters stacked for one device (N = 1) are shared by
        every leading index of ``x``."""
        last = len(self.weights) - 1
        lead = x.shape[0]
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b.unsqueeze(1).expand(lead, -1, -1), x, w.expand(lead, -1, -1))
            if k < last:
                x = tanh(x)
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
            p.copy_(flat[:, offset : offset + size].reshape(p.shape))
            offset += size


@dataclass
class Rollout:
    """T transitions of N devices: obs (T+1, N, F) including the bootstrap observation,
    actions (T, N) int64, rewards (T, N); ``terminal`` (T, N) bool or None (never): the
    episode ended at step t by termination, so nothing after it is bootstrapped (an episode cut
    by a time limit is not terminal: its last observation is bootstrapped as any other);
    ``logp`` (T, N) or None: the log-probability of each action under the policy that took it,
    where that may not be the one being updated (None: it is)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminal: torch.Tensor | None = None
    logp: torch.Tensor | None = None


METRIC_KEYS = ("losses/policy", "losses/value", "losses/entropy", "charts/mean_reward")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float, terminal: torch.Tensor | None = None
) -> torch.Tensor:
    """Generalized advantage estimates (N, T) from rewards (N, T) and values (N, T+1);
    ``terminal`` (N, T) bool: after a terminal step t neither the value nor the advantages of
    what follows count."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    go_on = None if terminal is None else (~terminal).to(rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        after, carried = (
            (values[:, t + 1], running) if go_on is None else (values[:, t + 1] * go_on[:, t], running * go_on[:, t])
        )
        running = rewards[:, t] + gamma * after - values[:, t] + gamma * lam * carried
        adv[:, t] = running
    return adv


class RunningMoments:
    """Running mean and variance of each device's samples, (N,) each (as MAPPO's ValueNorm).

    For returns: the critic learns returns in normalized units; without this a critic with a
    fixed learning rate cannot follow returns in the hundreds, its bootstrap values stay near
    zero and the advantages are dominated by the critic's error. For advantages: a device's
    advantages are standardized by their moments over its recent updates (module docstring).
    """

    def __init__(self, n: int, decay: float, device: str) -> None:
        self.decay = decay
        self.stats = torch.zeros(3, n, device=device)  # mean, mean of squares, debiasing weight

    def update(self, x: torch.Tensor, shared: bool) -> None:
        """Fold in samples x (N, T); ``shared``: one model, all rows are its samples."""
        x = x.double()
        dims = (0, 1) if shared else (1,)
        batch = torch.stack([x.mean(dims), (x * x).mean(dims)]).float().reshape(2, -1)  # (2, N) or (2, 1)
        self.stats[:2].mul_(self.decay).add_((1 - self.decay) * batch)
        self.stats[2].mul_(self.decay).add_(1 - self.decay)

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.stats[2].clamp(min=1e-5)
        mean, sq = self.stats[0] / w, self.stats[1] / w
        return mean.unsqueeze(1), (sq - mean**2).clamp(min=1e-4).sqrt().unsqueeze(1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._moments()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._moments()
        return x * std + mean


def standardized(adv: torch.Tensor, moments: RunningMoments | None) -> torch.Tensor:
    """Advantages (N, T) standardized: with ``moments``, each device's by the running mean and
    variance of its own advantages, these folded in first; without, over the whole batch (one
    shared model's)."""
    if moments is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
    moments.update(adv, shared=False)
    return moments.normalize(adv)


def _optimizer(cfg: ActorCriticConfig, params: list[torch.Tensor]) -> FusedAdam | MomentumSGD | RMSprop:
    """The per-device optimizer that ``cfg.optimizer`` names, over ``params``."""
    if cfg.optimizer == "adam":
        return FusedAdam(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        return RMSprop(params, lr=cfg.lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS)
    return MomentumSGD(params, lr=cfg.lr, momentum=cfg.momentum)


class ActorCritic:
    """The stacked actor (F -> H -> H -> L logits) and critic (F -> H -> H -> 1) of N devices."""

    fleet_rows: tuple[int, slice] | None = None
    """``(N_fleet, rows)`` where these N devices are the rows ``rows`` of a fleet of N_fleet whose
    draws they reproduce (a shard of a split run, :mod:`fleet.sim.split`): each act then draws for
    the whole fleet and keeps its rows. None: the devices are the fleet."""
    last_terms: dict[str, torch.Tensor] | None = None
    """The per-device terms of the last update's metrics, (N, T) each (:func:`fleet_means`)."""

    _flat: tuple[torch.Tensor, tuple[int, ...]] | None = None
    """The (N, P) tensor ``flat()`` gives while the version counters (of it, then of each
    parameter) are still these: until something writes to it or to a parameter."""

    def __init__(
        self,
        cfg: ActorCriticConfig,
        n: int,
        n_features: int,
        n_actions: int,
        gen: torch.Generator,
        device: str,
        shared: bool = False,
    ) -> None:
        """``shared``: one network (n = 1) trained on the rollouts of many devices at once, the
        loss averaged over them (the centralized learner's cloud model). With ``cfg.common_init``
        every device starts from the parameters a single device would draw."""
        self.cfg = cfg
        self.shared = shared
        actor, critic = layer_sizes(cfg.hidden, n_features, n_actions)
        self.actor = StackedMLP(n, actor, gen, device, last_scale=0.01, common=cfg.common_init)
        self.critic = StackedMLP(n, critic, gen, device, common=cfg.common_init)
        self.optimizer = _optimizer(cfg, self.parameters)
        self.value_norm = RunningMoments(n, cfg.value_norm_decay, device)
        self.advantage_norm = RunningMoments(n, cfg.value_norm_decay, device)
        """Each device's running advantage moments (unused by a shared network: it standardizes over its batch)."""
        self.anchor: StackedMLP | None = None
        """The actor as :meth:`anchor_here` found it, which ``anchor_coef`` pulls back to; None: no anchor."""

    def anchor_here(self) -> None:
        """Keep the actor's parameters now as the policy π_0 of the ``anchor_coef`` trust region (the learner
        calls it once the actor holds its starting policy); nothing without an anchor."""
        if self.cfg.anchor_coef > 0:
            self.anchor = self.actor.frozen_copy()

    @property
    def parameters(self) -> list[torch.Tensor]:
        return self.actor.parameters + self.critic.parameters

    def flat(self) -> torch.Tensor:
        """All parameters of each device, (N, P). The same tensor again while the parameters are
        unchanged (it takes a copy of every parameter to make): read it, edit a clone."""
        if self._flat is None or self._flat[1] != self._versions(self._flat[0]):
            flat = flatten(self.parameters)
            self._flat = (flat, self._versions(flat))
        return self._flat[0]

    def load_flat(self, flat: torch.Tensor) -> None:
        """Write (N, P) into the parameters; a contiguous ``flat`` of their dtype is what ``flat()`` gives next."""
        unflatten_into(self.parameters, flat)
        first = self.parameters[0]
        same = flat.is_contiguous() and flat.dtype == first.dtype and flat.device == first.device
        self._flat = (flat, self._versions(flat)) if same else None

    @torch.no_grad()
    def restart(self, rows: torch.Tensor) -> None:
        """Restart the optimizer state (Adam's moments, SGD's momentum) of the devices ``rows`` (N,)
        bool, and their value norm where it is no longer finite: after their parameters were
        rolled back, that state may still hold what made their update fail."""
        if isinstance(self.optimizer, FusedAdam):
            buffers = self.optimizer.exp_avg + self.optimizer.exp_avg_sq
        else:
            buffers = self.optimizer.buffers
        for buffer in buffers:
            buffer[rows] = 0
        for norm in (self.value_norm, self.advantage_norm):
            norm.stats[:, rows & ~torch.isfinite(norm.stats).all(0)] = 0

    def _versions(self, flat: torch.Tensor) -> tuple[int, ...]:
        return (flat._version, *(p._version for p in self.parameters))

    def state_dict(self) -> dict:
        """``params`` (actor's layers, then the critic's), ``optimizer``, ``value_norm`` and
        ``advantage_norm`` (3, N)."""
        return {
            "params": self.parameters,
            "optimizer": self.optimizer.state_dict(),
            "value_norm": self.value_norm.stats,
            "advantage_norm": self.advantage_norm.stats,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore parameters, optimizer and the running moments; a
        :class:`~fleet.statefile.StateMismatch` naming the first tensor that does not fit."""
        expect_keys(state, ("params", "optimizer", "value_norm", "advantage_norm"))
        with torch.no_grad():
            for p, saved in zip(self.parameters, array_list(state, "params", like=self.parameters)):
                p.copy_(saved)
        load_child(state, "optimizer", self.optimizer)
        for key in ("value_norm", "advantage_norm"):
            with within(key):
                stats = getattr(self, key).stats
                stats.copy_(array(state[key], stats))

    def log_policy(self, obs: torch.Tensor, actor: StackedMLP | None = None) -> torch.Tensor:
        """obs (N, B, F) -> log-probabilities of the actions (N, B, L) per (device, sample), under
        ``actor`` (default: the learner's own), its logits divided by ``temperature``. (What
        ``torch.distributions.Categorical`` computes, without its softmax over the last axis: with
        L = 4 actions that kernel took longer than the actor's matrix products.)"""
        logits = (actor or self.actor)(obs)
        if self.cfg.temperature != 1:
            logits = logits / self.cfg.temperature
        return logits - logits.logsumexp(-1, keepdim=True)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator, greedy: bool = False) -> torch.Tensor:
        """obs (N, F) -> sampled actions (N,) int64: by inverse transform, the number of the
        policy's cumulative probabilities (but the last) at or below one uniform draw per device.
        ``greedy``: each device's most probable action instead (no draw)."""
        if greedy:
            return self.actor(obs.unsqueeze(1)).squeeze(1).argmax(-1)
        return self.sample(obs, gen)[0]

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (N, F) -> sampled actions (N,) int64 (as :meth:`act`) and their log-probabilities (N,)."""
        log_pi = self.log_policy(obs.unsqueeze(1)).squeeze(1)  # (N, L)
        cdf = log_pi.exp().cumsum(-1)
        n, rows = self.fleet_rows or (cdf.shape[0], slice(None))
        u = torch.rand(n, 1, generator=gen, device=cdf.device)[rows]
        action = (u >= cdf[:, :-1]).sum(-1)
        return action, log_pi.gather(-1, action.unsqueeze(-1)).squeeze(-1)

    def update(self, r: Rollout, gamma: float, actor: bool = True) -> dict[str, float]:
        """``epochs`` actor-critic steps with GAE on one rollout for every device (or, shared,
        on every rollout of ``r``), discounting by ``gamma`` per step; returns fleet-mean metrics.
        ``actor`` False: the critic's steps alone (the actor's loss weighs 0: its gradient is 0, and
        so are the steps of every optimizer here while its moments are still 0)."""
        cfg = self.cfg
        obs = r.obs.transpose(0, 1)  # (N, T+1, F)
        rewards = r.rewards.transpose(0, 1)  # (N, T)
        actions = r.actions.transpose(0, 1)  # (N, T)
        values = self.critic(obs).squeeze(-1)  # (N, T+1); the first epoch's value loss reuses it
        with torch.no_grad():
            v = self.value_norm.denormalize(values.detach())
            adv = gae(rewards, v, gamma, cfg.gae_lambda, None if r.terminal is None else r.terminal.transpose(0, 1))
            returns = adv + v[:, :-1]
            if cfg.normalize_advantages:
                adv = standardized(adv, None if self.shared else self.advantage_norm)
            self.value_norm.update(returns, self.shared)
            target = self.value_norm.normalize(returns)
        old_logp = None if r.logp is None else r.logp.transpose(0, 1)  # else the first epoch's: the data's own
        anchor = self._anchor_policy(obs[:, :-1])
        for _ in range(cfg.epochs):
            log_pi = self.log_policy(obs[:, :-1])  # (N, T, L)
            logp = log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            if old_logp is None:
                old_logp = logp.detach()
            ratio = torch.exp(logp - old_logp)
            surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip) * adv)
            entropy = -(log_pi.exp() * log_pi).sum(-1)
            if values is None:
                values = self.critic(obs).squeeze(-1)
            value_err = (values[:, :-1] - target) ** 2
            values = None
            actor_loss = -surrogate.mean(1) - cfg.entropy_coef * entropy.mean(1)
            if anchor is not None:
                actor_loss = actor_loss + cfg.anchor_coef * (anchor.exp() * (anchor - log_pi)).sum(-1).mean(1)
            per_device = (actor_loss if actor else 0 * actor_loss) + cfg.value_coef * value_err.mean(1)
            self._step(per_device.mean() if self.shared else per_device)
        self.last_terms = {
            "losses/policy": -surrogate.detach(),
            "losses/value": value_err.detach(),
            "losses/entropy": entropy.detach(),
            "charts/mean_reward": r.rewards.transpose(0, 1),
        }
        return fleet_means(self.last_terms)

    def imitate(self, obs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``epochs`` steps of every device's actor towards a teacher's actions: obs (N, T, F), labels (N, T)
        int64, -1 where the teacher gave none. A device's loss is its mean cross-entropy over its labelled
        samples (0 without any); the critic is not trained. Returns the labelled share, and where there are
        labels the loss and the share where the policy's likeliest action was the label, before the steps."""
        labelled = labels >= 0
        count = labelled.sum(1).clamp(min=1)
        target = labels.clamp(min=0).unsqueeze(-1)
        metrics = {"teacher/labelled": float(labelled.float().mean())}
        for epoch in range(self.cfg.epochs):
            log_pi = self.log_policy(obs)  # (N, T, L)
            loss = -(log_pi.gather(-1, target).squeeze(-1) * labelled).sum(1) / count  # (N,)
            if epoch == 0 and labelled.any():  # before the steps
                agree = (log_pi.argmax(-1) == labels)[labelled]
                metrics["losses/imitation"] = float(loss.detach().sum() / labelled.any(1).sum())
                metrics["teacher/agreement"] = float(agree.float().mean())
            self._step(loss)
        return metrics

    def _step(self, loss: torch.Tensor) -> None:
        """One optimizer step on every device's ``loss`` (N,) (a shared network: its loss ()); the
        parameters it does not depend on get a gradient of 0 (so no step while their moments are 0)."""
        self.optimizer.zero_grad()  # FusedAdam, or torch's SGD (which sets the gradients to None too)
        (loss.sum() if loss.dim() else loss).backward()
        for p in self.parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self._clip_per_device()
        self.optimizer.step()
        self._flat = None  # fused Adam writes the parameters without bumping their version counters

    @torch.no_grad()
    def _anchor_policy(self, obs: torch.Tensor) -> torch.Tensor | None:
        """obs (N, T, F) -> the anchor's log-probabilities (N, T, L), or None without an anchor."""
        return None if self.anchor is None else self.log_policy(obs, self.anchor)

    def _clip_per_device(self) -> None:
        grads = [p.grad for p in self.parameters]
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads]), dim=0
        )
        scale = torch.clamp(self.cfg.max_grad_norm / (norm + 1e-12), max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))


def fleet_means(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """An update's metrics: the mean of each of its per-device terms (N, T) over every device and step."""
    return {key: float(term.mean()) for key, term in terms.items()}


MAX_POLICY_BYTES = 64 << 20
"""Largest policy file read."""


def policy_state(actor: StackedMLP, layout: str, device_index: int = 0) -> dict:
    """One device's actor as a policy file's state (:mod:`fleet.statefile`, kind ``policy``):
    the name of the observation ``layout`` it observes (the adapter's, e.g.
    :data:`fleet.learners.features.LAYOUT`; the core knows no features), ``n_features`` F, ``n_actions`` A
    and its ``layers``, each ``{"weight": (in, out), "bias": (out,)}`` float32, from F to A."""
    return {
        "layout": layout,
        "n_features": actor.sizes[0],
        "n_actions": actor.sizes[-1],
        "layers": [
            {"weight": w[device_index].detach(), "bias": b[device_index].detach()}
            for w, b in zip(actor.weights, actor.biases)
        ],
    }


def load_actor(path: str, into: list[torch.Tensor], layout: str) -> None:
    """Copy the policy saved at ``path`` (:func:`policy_state`) into every device's slice of the
    stacked actor parameters ``into`` (weight, bias, weight... each (N, ...)), if it observes
    ``layout``; ConfigError naming
    the file and what in it does not fit if it is unreadable, not a policy, or another network."""
    try:
        saved = load_state(Path(path), "policy", MAX_POLICY_BYTES)
    except StateFileError as e:
        raise ConfigError(
            f"learner.params.init_policy: {e} (fleet.imitation.save_policy writes policy files)"
        ) from None
    try:
        layers = _policy_layers(saved, into, layout)
    except StateMismatch as e:
        raise ConfigError(f"learner.params.init_policy: {path}: {e}") from None
    with torch.no_grad():
        for mine, theirs in zip(into, layers):
            mine.copy_(theirs.to(mine).expand_as(mine))


def _policy_layers(saved: dict, into: list[torch.Tensor], layout: str) -> list[torch.Tensor]:
    """The saved policy's tensors, in the order of ``into``, checked against them."""
    n_features, n_actions = into[0].shape[1], into[-1].shape[-1]
    expect_keys(saved, ("layout", "n_features", "n_actions", "layers"))
    if entry(saved, "layout", str) != layout:
        raise StateMismatch("layout", f"a policy observing {saved['layout']!r}; these learners observe {layout!r}")
    if entry(saved, "n_features", int) != n_features:
        raise StateMismatch(
            "n_features", f"a policy of {saved['n_features']} features; these learners observe {n_features}"
        )
    if entry(saved, "n_actions", int) != n_actions:
        raise StateMismatch(
            "n_actions", f"a policy choosing among {saved['n_actions']} HVAC levels; this scenario has {n_actions}"
        )
    layers = entry(saved, "layers", list)
    if len(layers) != len(into) // 2:
        raise StateMismatch(
            "layers", f"{len(layers)} layers; this actor has {len(into) // 2} (another learner config?)"
        )
    out = []
    for i, layer in enumerate(layers):
        with within(f"layers.{i}"):
            expect_keys(layer, ("weight", "bias"))
            for key, mine in zip(("weight", "bias"), into[2 * i : 2 * i + 2]):
                with within(key):
                    out.append(array(layer[key], dtype=torch.float32, shape=tuple(mine.shape[1:])))
    return out
