"""The cooperative-control core: a deep Q-network per device, stacked, with TER, IER and IQL.

Generic over plain tensors: observations (N, F), actions (N,) indices into each device's
``controls`` (N, A) (the device's contribution to the joint control, e.g. kW), rewards (N,) and
the sum of the other devices' controls (N,), which a device deduces after the fact (e.g. from a
meter). It knows nothing of thermostats.

One update per device (all at once, :class:`~fleet.learners.stacked.StackedMLP`):

1. sample a mini-batch of t transitions from the device's replay memory, by TER
   (:meth:`~.replay.ReplayMemory.temporal`) or uniformly;
2. with IER, add one imagined twin per transition (:func:`~.imagine.imagine`);
3. TD errors ``delta = r + gamma Q_target(s', a') - Q(s, a)``, ``a'`` the action the followed policy
   takes greedily at ``s'``: the one a shield forces there (the transition's ``next_forced``), else
   ``argmax_a' Q_target(s', a')``, or with ``double_q`` ``argmax_a' Q(s', a')`` (Double DQN, van Hasselt
   et al. 2016: the network that picks ``a'`` is not the one that values it, so one network's
   overestimate of a level is not also its pick) (:meth:`CooperativeQ.td_target`);
4. with IQL, each sample's squared TD error is weighted by its rate (:func:`iql_rates`), relative
   to alpha; without, every weight is 1; Adam takes one step on the sum over devices of each
   device's weighted mean, so devices do not interact (as :mod:`fleet.learners.stacked` explains).

Choices the paper leaves open (arXiv 1910.13196; no public code):

- TER's temporal priority is "the t newest of a uniform macro-batch of b" (drawn with
  replacement), b growing linearly in 1 - epsilon from t to ``macro_batch``;
- IER: one imagined twin per sampled transition; the copied controls are snapped to the nearest
  control the device has; ``psi`` gates coordination scenarios as :mod:`.imagine` says;
- IQL: rates act as weights on the squared TD error under Adam (a deep network has no per-entry
  learning rate), alpha's weight being 1; the rate table is :func:`iql_rates`; the impact is a
  multiple of the fair share (:func:`~.imagine.impact`), so thresholds do not depend on N; a
  device idle while others act has impact 0 (its share) unless ``idle_impact`` says otherwise;
- a target network copied every ``target_every`` updates; epsilon-greedy exploration falling
  linearly in time; a tanh MLP F -> H -> H -> A.
"""

from __future__ import annotations

import torch

from fleet.learners.cooperative.config import CooperativeConfig
from fleet.learners.cooperative.imagine import AdditiveDynamics, coordination, imagine, impact
from fleet.learners.cooperative.replay import Batch, ReplayMemory
from fleet.learners.stacked import FusedAdam, StackedMLP
from fleet.statefile import array_list, attrs_state, expect_keys, load_attrs

METRIC_KEYS = ("losses/td", "charts/epsilon", "charts/mean_q")


def iql_rates(delta: torch.Tensor, impact: torch.Tensor, psi: torch.Tensor, cfg: CooperativeConfig) -> torch.Tensor:
    """Each sample's rate (..., same shape) from its TD error ``delta``, the device's ``impact``
    (fair share = 1) and the coordination coefficient ``psi``:

    ====================  ===========================  ==========================
    outcome               impact                       rate
    ====================  ===========================  ==========================
    good (delta > 0)      >= lambda_high (credited)    alpha
    good                  between the thresholds       sigma; alpha if psi = 1
    any                   < lambda_low (not credited)  beta
    bad (delta <= 0)      >= lambda_low (responsible)  sigma; alpha if psi = 1
    ====================  ===========================  ==========================
    """
    shared = torch.where(psi > 0, cfg.alpha, cfg.sigma)
    credited = (delta > 0) & (impact >= cfg.lambda_high)
    rate = torch.where(credited, cfg.alpha, shared)
    return torch.where(impact < cfg.lambda_low, cfg.beta, rate)


class CooperativeQ:
    """N devices' Q-networks (F -> H -> H -> A), target networks and replay memories."""

    def __init__(
        self,
        cfg: CooperativeConfig,
        controls: torch.Tensor,
        n_others: torch.Tensor,
        n_features: int,
        period_s: float,
        gen: torch.Generator,
        dynamics: AdditiveDynamics | None = None,
    ) -> None:
        """``controls`` (N, A): each action's control per device; ``n_others`` (N,): how many
        other devices share the system; ``dynamics``: the system's response, needed with IER."""
        if cfg.ier and dynamics is None:
            raise ValueError("IER imagines transitions from the system's dynamics: pass dynamics, or set ier off")
        n, a = controls.shape
        device = controls.device
        self.cfg, self.gen, self.period_s, self.dynamics = cfg, gen, period_s, dynamics
        self.controls = controls
        self.n_others = n_others.reshape(n, 1).to(controls.dtype)
        self.gamma = cfg.gamma(period_s)
        self.q = StackedMLP(n, [n_features, cfg.hidden, cfg.hidden, a], gen, str(device))
        self.target = StackedMLP(n, self.q.sizes, gen, str(device))
        self._sync_target()
        self.optimizer = FusedAdam(self.q.parameters, lr=cfg.lr)
        self.memory = ReplayMemory(n, cfg.capacity, n_features, str(device))
        self.ticks = 0
        """Actions taken (control ticks), for the exploration schedule."""
        self.updates = 0

    @property
    def epsilon(self) -> float:
        return self.cfg.epsilon(self.ticks * self.period_s)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """obs (N, F) -> actions (N,) int64: epsilon-greedy on each device's Q-values."""
        best = self.q(obs.unsqueeze(1)).squeeze(1).argmax(-1)
        eps = 0.0 if greedy else self.epsilon
        self.ticks += not greedy
        n, a = self.controls.shape
        explore = torch.rand(n, generator=self.gen, device=obs.device) < eps
        random = torch.randint(a, (n,), generator=self.gen, device=obs.device)
        return torch.where(explore, random, best)

    def store(self, transition: Batch) -> None:
        """One lived transition per device (B = 1)."""
        self.memory.push(transition)

    def sample(self) -> Batch | None:
        """A mini-batch (N, t) by TER or uniformly, with its imagined twins under IER; None while
        the memory holds fewer than a batch."""
        cfg, mem = self.cfg, self.memory
        if mem.size < cfg.batch:
            return None
        eps = self.epsilon
        b = cfg.macro_size(eps)
        batch = mem.gather(mem.temporal(cfg.batch, b, self.gen) if cfg.ter else mem.uniform(cfg.batch, self.gen))
        if not cfg.ier:
            return batch
        twin = imagine(batch, self.dynamics, self.controls, self.n_others, eps, self.gen, cfg.ier_next_obs)
        return Batch(*(torch.cat([getattr(batch, f), getattr(twin, f)], 1) for f in ReplayMemory.FIELDS))

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """(N, B) ``r + gamma Q_target(s', a')``: ``a'`` the action a shield forces at ``s'`` where it forces
        one, else the best by the target network (by the online one with ``double_q``). The shielded policy
        runs the forced action there, so the values of the others, never run there, must not be bootstrapped
        from (a max over them learns a policy it does not follow)."""
        q_next = self.target(batch.next_obs)
        greedy = (self.q(batch.next_obs) if self.cfg.double_q else q_next).argmax(-1)
        a_next = torch.where(batch.next_forced >= 0, batch.next_forced, greedy)
        return batch.reward + self.gamma * q_next.gather(-1, a_next.unsqueeze(-1)).squeeze(-1)

    def learn(self, batch: Batch) -> dict[str, float]:
        """One Adam step of every device on its own ``batch`` (N, B)."""
        target = self.td_target(batch)
        q = self.q(batch.obs).gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)
        delta = target - q
        weight = self._weights(batch, delta.detach())
        per_device = (weight * delta.square()).mean(1) / 2
        self.optimizer.zero_grad()
        per_device.sum().backward()
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.cfg.target_every == 0:
            self._sync_target()
        return {
            "losses/td": float(delta.detach().square().mean()),
            "charts/epsilon": self.epsilon,
            "charts/mean_q": float(q.detach().mean()),
        }

    def update(self) -> dict[str, float]:
        """Sample and learn; no metrics while the memory holds fewer than a batch."""
        batch = self.sample()
        return {} if batch is None else self.learn(batch)

    def _weights(self, batch: Batch, delta: torch.Tensor) -> torch.Tensor:
        """(N, B) each sample's weight: its IQL rate relative to alpha, or 1."""
        if not self.cfg.iql:
            return torch.ones_like(delta)
        own = self.controls.gather(1, batch.action)
        lam = impact(own, batch.others, self.n_others)
        lam = torch.where((own == 0) & (batch.others != 0), self.cfg.idle_impact, lam)
        return iql_rates(delta, lam, coordination(own, batch.others), self.cfg) / self.cfg.alpha

    @torch.no_grad()
    def _sync_target(self) -> None:
        for t, p in zip(self.target.parameters, self.q.parameters):
            t.copy_(p)

    STATE = ("optimizer", "memory", "gen", "ticks", "updates")
    """What changes as it learns (:mod:`fleet.statefile`), besides the networks' parameters."""
    NETS = ("q", "target")

    def state_dict(self) -> dict:
        """:attr:`STATE`, and ``q`` and ``target``: each network's stacked tensors."""
        return {**{k: getattr(self, k).parameters for k in self.NETS}, **attrs_state(self, self.STATE)}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, (*self.NETS, *self.STATE))
        for key in self.NETS:
            params = getattr(self, key).parameters
            with torch.no_grad():
                for p, saved in zip(params, array_list(state, key, like=params)):
                    p.copy_(saved)
        load_attrs(self, {k: state[k] for k in self.STATE}, self.STATE)
