"""The cloned Vickrey society (Chang et al., ICML 2020) of N devices, batched on [N, P, ...].

On every device a society of P primitives controls one environment: at each step every
primitive's R clones bid in [0, 1], each bid drawn from the primitive's Beta distribution
(mean and concentration from its network, Beta(1, 1) at the start: the mean a sigmoid, the
concentration an exponential where the reference takes a softplus, since Adam moves an output by
about its step size per update: a softplus needs thousands of updates to sharpen a bid, an
exponential a few hundred); the highest bid wins, and the winner's primitive (its index) is the
device's action. The winner is paid by the mechanism
(:data:`~fleet.learners.auction.config.Mechanism`; credit-conserving Vickrey by default), every
loser gets 0, and each primitive learns its bidding policy by PPO on its own utilities, with the
memoryless advantage ``U - V(s)`` of the reference (no bootstrap: the next bid already values
the future). At the equilibrium every primitive bids its Q-value. A primitive that never wins is
paid 0 whatever it bids; agent dropout (``cfg.dropout``) silences bidders in a share of the
auctions, so that it also bids against its own clone and learns its value.

Shapes: observations (N, F); the Beta parameters and values (N, P); bids (N, P, R). A primitive's
networks are slices ``[n, p]`` of weights (N, P, in, out). Every loss is a sum over devices and
primitives of each one's own mean loss, gradient clipping is per (device, primitive) and Adam is
element-wise, so one update of the stack equals N * P separate updates: batching couples
nothing. Minibatches cut the steps in the same order on every device.

The society keeps its experience: :meth:`Society.record` each auction, :meth:`Society.reward`
its reward, and :meth:`Society.update` learns from every step whose successor's auction is
known (or that ended its episode), keeping the newest until its successor comes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fleet.learners.auction.config import SocietyConfig
from fleet.learners.stacked import FusedAdam
from fleet.statefile import StateMismatch, array_list, expect_keys, load_child, within

METRIC_KEYS = ("losses/bid_policy", "losses/bid_value", "losses/bid_entropy", "charts/winning_bid")
BID_EPS = 1e-6
"""Bids are kept in [BID_EPS, 1 - BID_EPS], where a Beta density is finite."""
LOG_NU_INIT = math.log(2.0)
"""exp(LOG_NU_INIT) = 2: with mean 1/2 the concentration of Beta(1, 1)."""
LOG_RATIO_MAX = 20.0
"""Bound of a log probability ratio: a bid far in the tail of a concentrated Beta would make it infinite."""
LOG_NU_MAX = math.log(1e4)
"""The largest concentration, a bid's standard deviation of about 0.005 at mean 1/2."""


@dataclass(frozen=True)
class Auction:
    """One auction on each of N devices."""

    bids: torch.Tensor
    """(N, P, R) every clone's bid; a silenced bidder (agent dropout) holds its draw negated: it takes no part."""
    winner: torch.Tensor
    """(N,) int64: the winning bidder, flat index ``p * R + r`` into a device's bids."""
    first: torch.Tensor
    """(N,) the highest bid."""
    second: torch.Tensor
    """(N,) the second-highest bid, 0 if no other bidder."""

    @classmethod
    def of(cls, bids: torch.Tensor) -> Auction:
        """The auction of given bids (N, P, R) (ties go to the lowest index)."""
        flat = bids.flatten(1)
        top = flat.topk(min(2, flat.shape[1]), dim=1)
        second = top.values[:, 1].clamp(min=0) if flat.shape[1] > 1 else torch.zeros_like(top.values[:, 0])
        return cls(bids, top.indices[:, 0], top.values[:, 0], second)

    @property
    def primitive(self) -> torch.Tensor:
        """(N,) int64 the winning primitive: the action."""
        return self.winner // self.bids.shape[2]


class PrimitiveNets:
    """N x P one-hidden-layer ReLU MLPs, F -> H -> K; weights (N, P, in, out), biases (N, P, out).

    Every device starts from one draw of P networks (the draw a single device makes from the
    same generator), so a fleet and a board agree on it; the last layer starts at zero weights
    and biases ``last_bias`` (K,)."""

    def __init__(
        self, n: int, p: int, sizes: tuple[int, int, int], last_bias: list[float], gen: torch.Generator, device: str
    ) -> None:
        f, h, k = sizes
        w0 = (torch.rand(1, p, f, h, generator=gen, device=device) * 2 - 1) * f**-0.5
        self.w0 = w0.expand(n, -1, -1, -1).contiguous().requires_grad_()
        self.b0 = torch.zeros(n, p, h, device=device, requires_grad=True)
        self.w1 = torch.zeros(n, p, h, k, device=device, requires_grad=True)
        self.b1 = torch.tensor(last_bias, device=device).expand(n, p, k).contiguous().requires_grad_()

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.w0, self.b0, self.w1, self.b1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, B, F) -> (N, P, B, K)."""
        hidden = torch.relu(x.unsqueeze(1) @ self.w0 + self.b0.unsqueeze(2))
        return hidden @ self.w1 + self.b1.unsqueeze(2)


def sample_beta(alpha: torch.Tensor, beta: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Draws from Beta(alpha, beta) (any shape) as X / (X + Y), X ~ Gamma(alpha), Y ~ Gamma(beta), from ``gen``."""
    x = torch._standard_gamma(alpha, generator=gen)
    y = torch._standard_gamma(beta, generator=gen)
    return (x / (x + y)).nan_to_num(0.5).clamp(BID_EPS, 1 - BID_EPS)


def utilities(
    bids: torch.Tensor, reward: torch.Tensor, done: torch.Tensor, gamma: float, mechanism: str
) -> torch.Tensor:
    """Every bidder's utility (T, N, P, R) at T steps from the bids of T + 1 auctions (T + 1, N, P, R),
    the rewards (T, N) and ``done`` (T, N) bool: step t ended its episode, so it looks ahead to no bid.

    The winner pays the price of its own auction, among the bidders that took part; what it looks ahead to
    is priced on every clone's draw, silenced ones included (agent dropout), so that silencing the next
    auction's bidders, which teaches the losers their values, does not lower the winner's revenue."""
    steps = Auction.of(bids.flatten(0, 1))  # the (T + 1) N auctions at once
    winner = steps.winner.view(bids.shape[:2])[:-1]  # (T, N)
    every = Auction.of(bids.abs().flatten(0, 1))  # the same auctions had no bidder been silenced
    first, second = steps.first.view(bids.shape[:2]), steps.second.view(bids.shape[:2])  # (T + 1, N)
    first_all, second_all = every.first.view(bids.shape[:2]), every.second.view(bids.shape[:2])
    ahead = {"ccv": second_all, "vickrey": first_all, "bucket-brigade": first_all, "env": None}[mechanism]
    paid = {"ccv": second, "vickrey": second, "bucket-brigade": first, "env": None}[mechanism]
    won = reward.clone()
    if ahead is not None:
        won += gamma * ahead[1:].masked_fill(done, 0.0) - paid[:-1]
    u = torch.zeros_like(bids[:-1]).flatten(2)
    u.scatter_(2, winner.unsqueeze(2), won.unsqueeze(2))
    return u.view_as(bids[:-1])


class Society:
    """The societies of N devices, each of P primitives with R clones, on observations of F features."""

    def __init__(
        self, cfg: SocietyConfig, n: int, n_features: int, n_primitives: int, gamma: float, gen: torch.Generator
    ) -> None:
        self.cfg, self.gamma, self.gen, self.n = cfg, gamma, gen, n
        device = str(gen.device)
        sizes = (n_features, cfg.hidden)
        self.policy = PrimitiveNets(n, n_primitives, (*sizes, 2), [0.0, LOG_NU_INIT], gen, device)
        self.value = PrimitiveNets(n, n_primitives, (*sizes, 1), [0.0], gen, device)
        self.policy_opt = FusedAdam(self.policy.parameters, lr=cfg.policy_lr)
        self.value_opt = FusedAdam(self.value.parameters, lr=cfg.value_lr)
        self._obs: list[torch.Tensor] = []
        self._bids: list[torch.Tensor] = []
        self._rewards: list[torch.Tensor] = []
        self._done: list[torch.Tensor] = []

    # --- acting ----------------------------------------------------------------------------

    def beta(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Observations (N, B, F) -> the Beta parameters (alpha, beta), each (N, P, B)."""
        out = self.policy(obs)
        mean, nu = torch.sigmoid(out[..., 0]), out[..., 1].clamp(max=LOG_NU_MAX).exp()
        return mean * nu, (1 - mean) * nu

    @torch.no_grad()
    def mean_bids(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (N, F) -> every primitive's mean bid (N, P)."""
        alpha, beta = self.beta(obs.unsqueeze(1))
        return (alpha / (alpha + beta))[..., 0]

    @torch.no_grad()
    def auction(self, obs: torch.Tensor, greedy: bool = False) -> Auction:
        """Run the auction of every device on observations (N, F): each clone draws its bid (``greedy``:
        bids its Beta's mean); in a share ``cfg.dropout`` of the auctions a random subset of bidders is silenced."""
        alpha, beta = self.beta(obs.unsqueeze(1))  # (N, P, 1)
        r = self.cfg.redundancy
        if greedy:
            return Auction.of((alpha / (alpha + beta)).expand(-1, -1, r))
        bids = sample_beta(alpha.expand(-1, -1, r), beta.expand(-1, -1, r), self.gen)
        if self.cfg.dropout:
            bids = bids.where(~self._silenced(bids.shape), -bids)
        return Auction.of(bids)

    def _silenced(self, shape: torch.Size) -> torch.Tensor:
        """(N, P, R) bool: on each device, with probability ``cfg.dropout``, a uniform number in [0, P R - 2] of its
        bidders, chosen uniformly, as the reference's agent dropout; none on the others."""
        n, k = shape[0], shape[1] * shape[2]
        count = torch.randint(0, k - 1, (n, 1), generator=self.gen, device=self.gen.device)
        count *= torch.rand(n, 1, generator=self.gen, device=self.gen.device) < self.cfg.dropout
        rank = torch.rand(n, k, generator=self.gen, device=self.gen.device).argsort(1).argsort(1)
        return (rank < count).view(shape)

    # --- experience ------------------------------------------------------------------------

    def record(self, obs: torch.Tensor, auction: Auction) -> None:
        """Keep an auction held on observations (N, F)."""
        self._obs.append(obs)
        self._bids.append(auction.bids)

    def reward(self, reward: torch.Tensor, done: torch.Tensor | None = None) -> None:
        """The reward (N,) of the last recorded auction's action; ``done`` (N,) bool: it ended the episode."""
        self._rewards.append(reward)
        self._done.append(torch.zeros_like(reward, dtype=torch.bool) if done is None else done)

    def forget(self) -> None:
        """Drop the experience not learned from yet."""
        self._obs, self._bids, self._rewards, self._done = [], [], [], []

    # --- learning ---------------------------------------------------------------------------

    def update(self) -> dict[str, float]:
        """PPO on the utilities of the complete steps: all but the newest, which waits for its successor's
        bids, unless it ended every device's episode. Empty metrics when there is none."""
        steps = len(self._rewards)
        if steps and not bool(self._done[-1].all()):
            steps -= 1
        if steps < 1:
            return {}
        following = self._bids[steps] if steps < len(self._bids) else self._bids[-1]  # ended: not looked at
        bids = torch.stack([*self._bids[:steps], following])
        done = torch.stack(self._done[:steps])
        u = utilities(bids, torch.stack(self._rewards[:steps]), done, self.gamma, self.cfg.mechanism)
        metrics = self.learn(torch.stack(self._obs[:steps]), bids[:-1], u)
        del self._obs[:steps], self._bids[:steps], self._rewards[:steps], self._done[:steps]
        return metrics

    def learn(self, obs: torch.Tensor, bids: torch.Tensor, u: torch.Tensor) -> dict[str, float]:
        """PPO of every primitive on T steps: observations (T, N, F), bids and utilities (T, N, P, R);
        bids below 0 (silenced bidders) are left out."""
        x = obs.transpose(0, 1)  # (N, T, F)
        b, u = bids.permute(1, 2, 0, 3), u.permute(1, 2, 0, 3)  # (N, P, T, R)
        live = b >= 0
        b = b.where(live, 0.5)
        with torch.no_grad():
            old = self._log_prob(x, b)
            adv = normalized(u - self.value(x), live)
        chunk = max(1, self.cfg.batch_size // self.cfg.redundancy)
        for _ in range(self.cfg.epochs):
            order = torch.randperm(x.shape[1], generator=self.gen, device=self.gen.device)
            for idx in order.split(chunk):
                value_loss = self._value_step(x[:, idx], u[:, :, idx], live[:, :, idx])
                policy_loss, entropy = self._policy_step(
                    x[:, idx], b[:, :, idx], old[:, :, idx], adv[:, :, idx], live[:, :, idx]
                )
        won = b.amax((1, 3))
        return {
            "losses/bid_policy": policy_loss,
            "losses/bid_value": value_loss,
            "losses/bid_entropy": entropy,
            "charts/winning_bid": float(won.mean()),
        }

    def _log_prob(self, x: torch.Tensor, bids: torch.Tensor) -> torch.Tensor:
        """Log-densities (N, P, B, R) of bids (N, P, B, R) under the policies on observations (N, B, F)."""
        alpha, beta = self.beta(x)
        return torch.distributions.Beta(alpha.unsqueeze(3), beta.unsqueeze(3), validate_args=False).log_prob(bids)

    def _value_step(self, x: torch.Tensor, u: torch.Tensor, live: torch.Tensor) -> float:
        """One step of every value network towards the utilities (N, P, B, R) on observations (N, B, F)."""
        err = masked_mean((self.value(x) - u) ** 2, live)  # (N, P): each primitive's own loss
        l2 = sum(p.pow(2).sum() for p in self.value.parameters)
        self.value_opt.zero_grad()
        (err.sum() + self.cfg.value_l2 * l2).backward()
        self.value_opt.step()
        return float(err.detach().mean())

    def _policy_step(
        self, x: torch.Tensor, b: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, live: torch.Tensor
    ) -> tuple[float, float]:
        """One clipped PPO step of every bidding network; (policy loss, entropy), means over primitives."""
        if self.cfg.policy_lr_halflife:
            halvings = float(self.policy_opt.step_count) / self.cfg.policy_lr_halflife
            self.policy_opt.lr = self.cfg.policy_lr * 0.5**halvings
        alpha, beta = self.beta(x)
        dist = torch.distributions.Beta(alpha.unsqueeze(3), beta.unsqueeze(3), validate_args=False)
        ratio = (dist.log_prob(b) - old).clamp(-LOG_RATIO_MAX, LOG_RATIO_MAX).exp()
        clipped = ratio.clamp(1 - self.cfg.clip, 1 + self.cfg.clip)
        surrogate = -masked_mean(torch.min(ratio * adv, clipped * adv), live)  # (N, P)
        entropy = dist.entropy().mean((2, 3))
        self.policy_opt.zero_grad()
        (surrogate - self.cfg.entropy_coef * entropy).sum().backward()
        clip_per_primitive(self.policy.parameters, self.cfg.max_grad_norm)
        self.policy_opt.step()
        return float(surrogate.detach().mean()), float(entropy.detach().mean())

    # --- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """``policy`` and ``value`` (their parameters), their optimizers, and ``buffers``: per step
        ``obs`` (N, F), ``bids`` (N, P, R), ``rewards`` (N,) and ``done`` (N,)."""
        buffers = {"obs": self._obs, "bids": self._bids, "rewards": self._rewards, "done": self._done}
        return {
            "policy": self.policy.parameters,
            "value": self.value.parameters,
            "policy_opt": self.policy_opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "buffers": buffers,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore it; a :class:`~fleet.statefile.StateMismatch` naming the first entry that does not fit."""
        expect_keys(state, ("policy", "value", "policy_opt", "value_opt", "buffers"))
        with torch.no_grad():
            for key in ("policy", "value"):
                mine = getattr(self, key).parameters
                for t, saved in zip(mine, array_list(state, key, like=mine)):
                    t.copy_(saved)
        load_child(state, "policy_opt", self.policy_opt)
        load_child(state, "value_opt", self.value_opt)
        with within("buffers"):
            self._load_buffers(state["buffers"])

    def _load_buffers(self, saved: dict) -> None:
        expect_keys(saved, ("obs", "bids", "rewards", "done"))
        n, p, f = self.policy.w0.shape[:3]
        device = self.gen.device
        obs = array_list(saved, "obs", dtype=torch.float32, shape=(n, f))
        bids = array_list(saved, "bids", dtype=torch.float32, shape=(n, p, self.cfg.redundancy))
        rewards = array_list(saved, "rewards", dtype=torch.float32, shape=(n,))
        done = array_list(saved, "done", dtype=torch.bool, shape=(n,))
        if len(bids) != len(obs) or len(done) != len(rewards) or not len(obs) - 1 <= len(rewards) <= len(obs):
            raise StateMismatch(
                "", f"{len(obs)} observations, {len(bids)} auctions and {len(rewards)} rewards do not pair up"
            )
        self._obs, self._bids = [x.to(device) for x in obs], [x.to(device) for x in bids]
        self._rewards, self._done = [x.to(device) for x in rewards], [x.to(device) for x in done]


def masked_mean(x: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Mean of (N, P, B, R) over its live entries per (N, P) -> (N, P)."""
    return (x * live).sum((2, 3)) / live.sum((2, 3)).clamp(min=1)


def normalized(adv: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Advantages (N, P, B, R) standardized over each primitive's live samples, as the reference does over
    its buffer."""
    mean = masked_mean(adv, live)[..., None, None]
    count = live.sum((2, 3)).clamp(min=2)[..., None, None]
    std = (((adv - mean) ** 2 * live).sum((2, 3), keepdim=True) / (count - 1)).sqrt()
    return ((adv - mean) / (std + 1e-7)).where(live, 0.0)


def clip_per_primitive(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients of each (device, primitive), params (N, P, ...), to a norm of at most ``max_norm``."""
    norm = sum(p.grad.pow(2).flatten(2).sum(2) for p in params).sqrt()  # (N, P)
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(*scale.shape, *[1] * (p.dim() - 2)))
