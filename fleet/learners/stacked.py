"""Per-device actor-critic networks stacked on a leading device axis, trained in one pass.

Device i owns its own actor and critic; their parameters are slices ``[i]`` of stacked
tensors, e.g. a layer's weight is ``(N, in, out)``. Forward passes are batched matrix
products (``torch.baddbmm``) and the loss is the *sum* over devices of each device's own
loss, so the gradient with respect to device i's slice is exactly the gradient of device i's
loss: batching adds no coupling. Adam and RMSprop are element-wise and gradient clipping is per
device, so one optimizer step over the stacked tensors equals N separate steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


class RMSprop:
    """RMSprop over a fixed list of tensors: ``torch.optim.RMSprop(params, lr, alpha, eps)``
    (not centred, no momentum), element-wise, so over stacked tensors it is N separate ones.
    Diff-DAC's optimizer, with its defaults (IanRDavies/Diff-DAC, ``diffdac/arguments.py``)."""

    def __init__(self, params: list[torch.Tensor], lr: float, alpha: float = 0.99, eps: float = 1e-5) -> None:
        self.params = params
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.square_avg = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """``v <- alpha v + (1 - alpha) g^2``, ``p <- p - lr g / (sqrt(v) + eps)`` on every tensor."""
        for p, v in zip(self.params, self.square_avg):
            v.mul_(self.alpha).addcmul_(p.grad, p.grad, value=1 - self.alpha)
            p.addcdiv_(p.grad, v.sqrt().add_(self.eps), value=-self.lr)

    def state_dict(self) -> dict:
        """``square_avg``: one tensor per parameter."""
        return {"square_avg": self.square_avg}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("square_avg",))
        for t, saved in zip(self.square_avg, array_list(state, "square_avg", like=self.square_avg)):
            t.copy_(saved)


class MomentumSGD(torch.optim.SGD):
    """torch's SGD whose state is one momentum buffer per parameter (``None`` before the first
    step): ``state_dict()`` is ``{"momentum": [...]}``, the parameters' order is the config's."""

    def state_dict(self) -> dict:
        return {"momentum": [self.state.get(p, {}).get("momentum_buffer") for p in self._params]}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("momentum",))
        saved = entry(state, "momentum", list)
        if len(saved) != len(self._params):
            raise StateMismatch("momentum", f"{len(saved)} buffers, expected {len(self._params)}")
        for i, (p, buffer) in enumerate(zip(self._params, saved)):
            if buffer is None:
                self.state.pop(p, None)
                continue
            with within(f"momentum.{i}"):
                self.state[p]["momentum_buffer"] = array(buffer, p).to(p.device, copy=True)

    @property
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]


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
    by a time limit is not terminal: its last observation is bootstrapped as any other)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminal: torch.Tensor | None = None


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


class ValueNorm:
    """Running mean and variance of each device's returns (as MAPPO's ValueNorm), (N,) each.

    The critic learns returns in normalized units; without this a critic with a fixed learning
    rate cannot follow returns in the hundreds, its bootstrap values stay near zero and the
    advantages are dominated by the critic's error.
    """

    def __init__(self, n: int, decay: float, device: str) -> None:
        self.decay = decay
        self.stats = torch.zeros(3, n, device=device)  # mean, mean of squares, debiasing weight

    def update(self, x: torch.Tensor, shared: bool) -> None:
        """Fold in returns x (N, T); ``shared``: one model, all rows are its samples."""
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


class ActorCritic:
    """The stacked actor (F -> H -> H -> L logits) and critic (F -> H -> H -> 1) of N devices."""

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
        self.optimizer = (
            FusedAdam(self.parameters, lr=cfg.lr)
            if cfg.optimizer == "adam"
            else RMSprop(self.parameters, lr=cfg.lr)
            if cfg.optimizer == "rmsprop"  # a config's value where it allows it (fleet.env.train.EnvLearnerConfig)
            else MomentumSGD(self.parameters, lr=cfg.lr, momentum=cfg.momentum)
        )
        self.value_norm = ValueNorm(n, cfg.value_norm_decay, device)

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
        """Restart the optimizer state (Adam's moments, RMSprop's mean square, SGD's momentum) of the
        devices ``rows`` (N,) bool, and their value norm where it is no longer finite: after their parameters were
        rolled back, that state may still hold what made their update fail."""
        if isinstance(self.optimizer, FusedAdam):
            buffers = self.optimizer.exp_avg + self.optimizer.exp_avg_sq
        elif isinstance(self.optimizer, RMSprop):
            buffers = self.optimizer.square_avg
        else:
            states = self.optimizer.state.values()
            buffers = [s["momentum_buffer"] for s in states if s.get("momentum_buffer") is not None]
        for buffer in buffers:
            buffer[rows] = 0
        self.value_norm.stats[:, rows & ~torch.isfinite(self.value_norm.stats).all(0)] = 0

    def _versions(self, flat: torch.Tensor) -> tuple[int, ...]:
        return (flat._version, *(p._version for p in self.parameters))

    def state_dict(self) -> dict:
        """``params`` (actor's layers, then the critic's), ``optimizer`` and ``value_norm`` (3, N)."""
        return {
            "params": self.parameters,
            "optimizer": self.optimizer.state_dict(),
            "value_norm": self.value_norm.stats,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore parameters, optimizer and value normalization; a
        :class:`~fleet.statefile.StateMismatch` naming the first tensor that does not fit."""
        expect_keys(state, ("params", "optimizer", "value_norm"))
        with torch.no_grad():
            for p, saved in zip(self.parameters, array_list(state, "params", like=self.parameters)):
                p.copy_(saved)
        load_child(state, "optimizer", self.optimizer)
        with within("value_norm"):
            self.value_norm.stats.copy_(array(state["value_norm"], self.value_norm.stats))

    def log_policy(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, B, F) -> log-probabilities of the actions (N, B, L) per (device, sample).
        (What ``torch.distributions.Categorical`` computes, without its softmax over the last
        axis: with L = 4 actions that kernel took longer than the actor's matrix products.)"""
        logits = self.actor(obs)
        return logits - logits.logsumexp(-1, keepdim=True)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, gen: torch.Generator, greedy: bool = False) -> torch.Tensor:
        """obs (N, F) -> sampled actions (N,) int64: by inverse transform, the number of the
        policy's cumulative probabilities (but the last) at or below one uniform draw per device.
        ``greedy``: each device's most probable action instead (no draw)."""
        if greedy:
            return self.actor(obs.unsqueeze(1)).squeeze(1).argmax(-1)
        cdf = self.log_policy(obs.unsqueeze(1)).squeeze(1).exp().cumsum(-1)  # (N, L)
        u = torch.rand(cdf.shape[0], 1, generator=gen, device=cdf.device)
        return (u >= cdf[:, :-1]).sum(-1)

    def update(self, r: Rollout) -> dict[str, float]:
        """``epochs`` actor-critic steps with GAE on one rollout for every device (or, shared,
        on every rollout of ``r``); returns fleet-mean metrics."""
        cfg = self.cfg
        obs = r.obs.transpose(0, 1)  # (N, T+1, F)
        rewards = r.rewards.transpose(0, 1)  # (N, T)
        actions = r.actions.transpose(0, 1)  # (N, T)
        values = self.critic(obs).squeeze(-1)  # (N, T+1); the first epoch's value loss reuses it
        with torch.no_grad():
            v = self.value_norm.denormalize(values.detach())
            adv = gae(rewards, v, cfg.gamma, cfg.gae_lambda, None if r.terminal is None else r.terminal.transpose(0, 1))
            returns = adv + v[:, :-1]
            if cfg.normalize_advantages and adv.shape[1] > 1:  # per device: only its own data
                adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
            self.value_norm.update(returns, self.shared)
            target = self.value_norm.normalize(returns)
        old_logp = None  # the collecting policy's log-probabilities: the first epoch's
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
            per_device = -surrogate.mean(1) - cfg.entropy_coef * entropy.mean(1) + cfg.value_coef * value_err.mean(1)
            self.optimizer.zero_grad()  # FusedAdam, or torch's SGD (which sets the gradients to None too)
            (per_device.mean() if self.shared else per_device.sum()).backward()
            self._clip_per_device()
            self.optimizer.step()
            self._flat = None  # fused Adam writes the parameters without bumping their version counters
        return {
            "losses/policy": float(-surrogate.detach().mean()),
            "losses/value": float(value_err.detach().mean()),
            "losses/entropy": float(entropy.detach().mean()),
            "charts/mean_reward": float(r.rewards.mean()),
        }

    def _clip_per_device(self) -> None:
        grads = [p.grad for p in self.parameters]
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads]), dim=0
        )
        scale = torch.clamp(self.cfg.max_grad_norm / (norm + 1e-12), max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))


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
