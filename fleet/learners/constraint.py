"""Discomfort as a constraint: one Lagrange multiplier per device, moved by dual ascent.

A learner with ``discomfort_limit`` (:class:`~fleet.learners.configs.DiscomfortLimit`) solves, per device
i, "least cost subject to a running discomfort D_i of at most the limit L" by its Lagrangian: it learns on
the reward with the discomfort priced at the scenario's price plus λ_i ≥ 0, and moves λ_i after each
update, up while D_i > L and down while D_i < L (dual ascent; Altman 1999, as in PPO-Lagrangian). At an
update that ends a rollout of T ticks of ``period_s`` seconds, Δ = T period_s:

1. the rollout's discomfort rate, degree-hours per day: r_i = Σ_t v_ti period_s / 3600 / (Δ / 1 d), with
   v_ti (degree C) how far device i's measured temperature at the end of tick t lay outside that tick's
   comfort band (what the adapter reads from its own features: a device needs no other's data);
2. the running discomfort, an exponential average of time constant ``window`` W:
   D_i ← D_i + (1 - exp(-Δ / W)) (r_i - D_i), starting at L (no evidence: λ does not move);
3. λ_i ← clip(λ_i + ρ (Δ / 1 d) λ_max (D_i - L) / L, 0, λ_max), ρ ``multiplier_rate`` per day: at twice the
   limit λ rises by ρ λ_max per day, at no discomfort it falls as fast;
4. the rollout's rewards less λ_i v_ti period_s / 3600, each tick's measured degree-hours at the new price.

All of it is element-wise over the device axis, so the batched learner equals N separate ones. The
multiplier and the running discomfort are the learner's state (checkpointed), and its metrics say
where they stand: ``constraint/multiplier_mean``, ``constraint/multiplier_max`` and
``constraint/discomfort_degh_per_day`` (the fleet's mean running discomfort).
"""

from __future__ import annotations

import math

import torch

from fleet.learners.configs import DiscomfortLimit
from fleet.statefile import array, expect_keys, within

METRIC_KEYS = ("constraint/multiplier_mean", "constraint/multiplier_max", "constraint/discomfort_degh_per_day")

DAY_S = 86400.0


class DiscomfortMultiplier:
    """Every device's multiplier λ (N,) and running discomfort (N,), degree-hours per day."""

    def __init__(self, cfg: DiscomfortLimit, n: int, period_s: float, device: str) -> None:
        self.cfg = cfg
        self.period_s = period_s
        self.multiplier = torch.full((n,), cfg.initial_multiplier, device=device)
        """λ (N,), money per degree-hour, in [0, max_multiplier]."""
        self.running = torch.full((n,), cfg.degh_per_day, device=device)
        """D (N,): each device's running discomfort, degree-hours per day."""

    def penalized(self, rewards: torch.Tensor, violation_c: torch.Tensor) -> torch.Tensor:
        """Rewards (T, N) of one rollout, after the multipliers move on its ``violation_c`` (T, N), degree C
        outside the band at the end of each tick (steps 1-3 of the module docstring): less λ_i times each
        tick's degree-hours (step 4)."""
        degh = violation_c * (self.period_s / 3600.0)  # (T, N)
        self._step(degh)
        return rewards - self.multiplier * degh

    @torch.no_grad()
    def _step(self, degh: torch.Tensor) -> None:
        cfg = self.cfg
        days = degh.shape[0] * self.period_s / DAY_S
        rate = degh.sum(0) / days
        self.running += (1 - math.exp(-days * DAY_S / cfg.window)) * (rate - self.running)
        excess = (self.running - cfg.degh_per_day) / cfg.degh_per_day
        self.multiplier += cfg.multiplier_rate * days * cfg.max_multiplier * excess
        self.multiplier.clamp_(0.0, cfg.max_multiplier)

    def metrics(self) -> dict[str, float]:
        """Where the multipliers stand: :data:`METRIC_KEYS`."""
        return dict(
            zip(METRIC_KEYS, (float(self.multiplier.mean()), float(self.multiplier.max()), float(self.running.mean())))
        )

    def state_dict(self) -> dict:
        """``multiplier`` and ``running``, (N,) each."""
        return {"multiplier": self.multiplier, "running": self.running}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("multiplier", "running"))
        for key in ("multiplier", "running"):
            with within(key):
                mine = getattr(self, key)
                mine.copy_(array(state[key], mine))
