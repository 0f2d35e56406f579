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

from fleet.config import PositiveDuration, StrictModel
from fleet.errors import ConfigError
from fleet.learners.features import indoor_c, price_now
from pydantic import Field
from typing import Annotated, Literal


LearningRate = Annotated[float, Field(gt=0, le=1)]
Optimizer = Literal["adam", "sgd"]
Epochs = Annotated[int, Field(ge=1, le=100)]
Coefficient = Annotated[float, Field(ge=0)]


class ActorCriticConfig(StrictModel):
    """Hyperparameters of the n-step advantage actor-critic (as in Diff-DAC).

    The defaults are the learning study's settings from a random start (docs/studies/learning.md:
    40 days at a 15-minute control period; ``gamma`` and ``n_steps`` count control ticks, so
    they were chosen for that period). Each learner's own config sets its optimizer and step.
    """

    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the two hidden layers of the actor and of the critic."""
    n_steps: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Control ticks per update (rollout length)."""
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.95
    """Discount factor per control tick."""
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    """GAE lambda; 1.0 gives plain n-step returns with bootstrapping."""
    lr: LearningRate = 3e-3
    """Learning rate of the optimizer (actor and critic)."""
    entropy_coef: Coefficient = 0.01
    """Weight of the entropy bonus."""
    value_coef: Annotated[float, Field(ge=0)] = 0.5
    """Weight of the critic's squared error."""
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    """Per-device clipping of the gradient norm."""
    normalize_advantages: bool = True
    """Standardize each device's advantages over its own rollout."""
    epochs: Epochs = 1
    """Gradient steps per rollout. With 1 this is A2C; with more, the later steps use PPO's
    clipped surrogate so that the policy cannot move far from the one that collected the data."""
    clip: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """PPO clip range of the probability ratio (used when epochs > 1)."""
    shaping_per_degc: Annotated[float, Field(ge=0)] = 0.6
    """Potential-based reward shaping (Ng, Harada and Russell 1999): the learner adds
    ``gamma * phi(next) - phi(now)`` with ``phi = shaping_per_degc * indoor temperature`` to each
    reward, crediting heat when it is stored rather than hours later when it prevents
    discomfort. Any potential leaves the optimal policy unchanged; it changes what is learnable
    from few samples. In money per degree C; 0 turns it off."""
    shaping_kwh_per_degc: Annotated[float, Field(ge=0)] = 0.0
    """Shaping priced by the tariff: adds ``shaping_kwh_per_degc * price now`` to the potential's
    money per degree C. One kWh of electricity warms a house by COP / C degrees; with this near
    C / COP (1-4 kWh per degree C for the scenario's houses, 2.3 on average) heat is credited at
    the price paid for it when it is bought, so heating costs nothing until the heat is lost,
    and the stored heat is revalued whenever the price changes: heat carried into the 17:00 peak
    gains value, heat carried from the evening into the cheap night loses it. 0 turns it off."""
    common_init: bool = True
    """Start every device from the same parameters: those a single device draws from the
    scenario's seed, so that boards (N = 1) and simulated devices agree on them without
    talking. Diffusion needs it: averaging independently initialized networks cancels their
    features and leaves a uniform policy."""
    optimizer: Optimizer = "adam"
    """Per-device optimizer. ``sgd`` (with ``momentum``) is linear in the gradient, so a
    diffusion combine averages the neighbours' gradient steps as Diff-DAC assumes. Adam divides
    each device's step by that device's own gradient scale: on one house's 8-16 noisy samples
    the steps are mostly noise of full size, and averaging them cancels the policy's learning
    signal (measured: the diffusion policy stayed uniform for 20 days). Adam suits one network
    trained on many devices' data (``centralized``)."""
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    """Heavy-ball momentum with ``optimizer: sgd``."""
    init_policy: str | None = None
    """A file of actor parameters (one device's) that every device's actor starts from instead
    of the seed's draw; the critic still starts from the draw. A path relative to the working
    directory, or the name of a policy shipped with fleet: ``clone-v1``, the actor that imitates
    the perfect-information optimum (``python benchmarks/study_learning.py imitate`` writes it,
    :mod:`fleet.imitation`; :mod:`fleet.learners.shipped`). A board given the same file starts
    where the simulated devices do."""
    frozen: bool = False
    """Never update: every device acts with the policy it starts from (``init_policy``, or the
    seed's draw) for the whole run and records no experience, to evaluate that policy on a
    scenario. ``independent-v1`` only: a frozen policy has nothing to exchange."""
    learn_until: PositiveDuration | None = None
    """Train, then test: the update at or after this time on the run's clock (simulated time
    from the start; a board's agent clock) is the last. From then on every device acts with the
    policy it has, records no experience, and sends and takes no learner messages (a centralized
    fleet keeps the policy each device last received). So the rest of the run evaluates the
    learned policies on the same houses and days as a baseline's run. None: learn to the end."""
    evaluate: Literal["sample", "greedy"] = "sample"
    """How a policy that no longer learns acts (``frozen``, or after ``learn_until``): ``sample``
    its actions from its softmax, as while learning, or ``greedy``: take its most probable
    action, with no exploration left."""
    value_norm_decay: Annotated[float, Field(gt=0, lt=1)] = 0.99
    """Decay per update of the running mean and variance of each device's returns; the critic
    predicts returns in these normalized units, so it can follow values of any scale."""


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

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
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
            self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [], [self.step_count] * len(self.params),
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False,
        )

    def state_dict(self) -> dict:
        return {"step": self.step_count.cpu(), "exp_avg": [t.cpu() for t in self.exp_avg], "exp_avg_sq": [t.cpu() for t in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        """Restore the moments and step count; ConfigError if they do not fit the parameters."""
        mine = [tuple(p.shape) for p in self.params]
        for key in ("exp_avg", "exp_avg_sq"):
            got = [tuple(t.shape) for t in state[key]]
            if got != mine:
                raise ConfigError(f"checkpoint optimizer {key} has shapes {got}, this learner's parameters {mine}")
            for t, saved in zip(getattr(self, key), state[key]):
                t.copy_(saved)
        self.step_count.copy_(state["step"])


class StackedMLP:
    """N independent tanh MLPs with layer sizes ``sizes``; weights (N, in, out), biases (N, out).

    ``common``: every device starts from one draw, the draw of a single device (N = 1) from the
    same generator, so that a fleet of any size (and a board, alone) starts from the same
    parameters."""

    def __init__(self, n: int, sizes: list[int], gen: torch.Generator, device: str, last_scale: float = 1.0, common: bool = False) -> None:
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


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimates (N, T) from rewards (N, T) and values (N, T+1)."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * values[:, t + 1] - values[:, t] + gamma * lam * running
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

    def __init__(self, cfg: ActorCriticConfig, n: int, n_features: int, n_actions: int, gen: torch.Generator, device: str, shared: bool = False) -> None:
        """``shared``: one network (n = 1) trained on the rollouts of many devices at once, the
        loss averaged over them (the centralized learner's cloud model). With ``cfg.common_init``
        every device starts from the parameters a single device would draw."""
        self.cfg = cfg
        self.shared = shared
        actor, critic = self.layer_sizes(cfg.hidden, n_features, n_actions)
        self.actor = StackedMLP(n, actor, gen, device, last_scale=0.01, common=cfg.common_init)
        self.critic = StackedMLP(n, critic, gen, device, common=cfg.common_init)
        self.optimizer = (FusedAdam(self.parameters, lr=cfg.lr) if cfg.optimizer == "adam"
                          else torch.optim.SGD(self.parameters, lr=cfg.lr, momentum=cfg.momentum))
        self.value_norm = ValueNorm(n, cfg.value_norm_decay, device)

    @staticmethod
    def layer_sizes(hidden: int, n_features: int, n_actions: int) -> tuple[list[int], list[int]]:
        """Layer sizes of the actor (F -> H -> H -> L logits) and of the critic (F -> H -> H -> 1)."""
        return [n_features, hidden, hidden, n_actions], [n_features, hidden, hidden, 1]

    @classmethod
    def param_count(cls, hidden: int, n_features: int, n_actions: int) -> int:
        """P: one device's parameters, actor and critic, weights and biases (the width of :meth:`flat`)."""
        layers = cls.layer_sizes(hidden, n_features, n_actions)
        return sum(a * b + b for sizes in layers for a, b in zip(sizes[:-1], sizes[1:]))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_flat": None}  # a checkpoint need not hold the parameters twice

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

    def _versions(self, flat: torch.Tensor) -> tuple[int, ...]:
        return (flat._version, *(p._version for p in self.parameters))

    def state_dict(self) -> dict:
        return {"params": [p.detach().cpu() for p in self.parameters], "optimizer": self.optimizer.state_dict(), "value_norm": self.value_norm.stats.cpu()}

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
        self.value_norm.stats.copy_(state["value_norm"])

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
        if cfg.shaping_per_degc or cfg.shaping_kwh_per_degc:
            phi = (cfg.shaping_per_degc + cfg.shaping_kwh_per_degc * price_now(obs)) * indoor_c(obs)  # (N, T+1)
            rewards = rewards + cfg.gamma * phi[:, 1:] - phi[:, :-1]
        actions = r.actions.transpose(0, 1)  # (N, T)
        values = self.critic(obs).squeeze(-1)  # (N, T+1); the first epoch's value loss reuses it
        with torch.no_grad():
            v = self.value_norm.denormalize(values.detach())
            adv = gae(rewards, v, cfg.gamma, cfg.gae_lambda)
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
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads]), dim=0)
        scale = torch.clamp(self.cfg.max_grad_norm / (norm + 1e-12), max=1.0)
        for g in grads:
            g.mul_(scale.reshape(-1, *([1] * (g.dim() - 1))))


def load_actor(path: str, into: list[torch.Tensor]) -> None:
    """Copy the actor saved at ``path`` (one device's tensors) into every device's slice of the
    stacked actor parameters ``into`` (N, ...); ConfigError if it is unreadable or does not fit."""
    try:
        saved = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as e:
        raise ConfigError(f"learner.params.init_policy: cannot read {path}: {e}") from None
    shapes = [(1, *t.shape[1:]) for t in into]
    got = [tuple(t.shape) for t in saved] if isinstance(saved, list) and all(isinstance(t, torch.Tensor) for t in saved) else None
    if got != shapes:
        raise ConfigError(f"learner.params.init_policy: {path} holds {got or type(saved).__name__}, this learner's actor needs {shapes}")
    with torch.no_grad():
        for mine, theirs in zip(into, saved):
            mine.copy_(theirs.to(mine).expand_as(mine))
