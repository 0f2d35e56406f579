"""Bounded replay memory per device, preallocated on a leading device axis, and TER sampling.

Every device stores one transition per control tick, so all devices write the same slot: one
write counter serves the fleet and a slot's age (writes since it was written) is the same on
every device. The memory holds ``capacity`` transitions per device and overwrites the oldest.

Temporal Experience Replay (TER) favours recent experience without the cost of a priority
tree: a macro-batch of ``b`` slots is drawn uniformly (with replacement) and the ``t`` newest
of them form the mini-batch. With ``b = t`` this is uniform sampling; as ``b`` grows, the
mini-batch leans towards the newest transitions (with ``b`` much larger than the memory, it is
the ``t`` newest). A slot with ``q`` newer slots among ``M`` is picked
``E = sum_{x, y} P(x, y) max(0, min(y, t - x))`` times on average, ``(x, y)`` the multinomial
counts of newer draws and of draws of the slot itself among the ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fleet.statefile import attrs_state, load_attrs


@dataclass(frozen=True)
class Batch:
    """B transitions of each of N devices."""

    obs: torch.Tensor
    """(N, B, F) observation before the action."""
    action: torch.Tensor
    """(N, B) int64 action taken."""
    reward: torch.Tensor
    """(N, B) reward received."""
    next_obs: torch.Tensor
    """(N, B, F) observation after it."""
    others: torch.Tensor
    """(N, B) sum of the other devices' controls at that tick (deduced afterwards)."""
    next_forced: torch.Tensor | None = None
    """(N, B) int64 the action a shield forces at ``next_obs`` (e.g. a comfort guard), -1 where the
    policy chooses freely; left out (None), -1 everywhere (no shield)."""

    def __post_init__(self) -> None:
        if self.next_forced is None:
            object.__setattr__(self, "next_forced", torch.full(self.reward.shape, -1, device=self.reward.device))


class ReplayMemory:
    """``capacity`` transitions of each of N devices; tensors (N, capacity, ...)."""

    FIELDS = ("obs", "action", "reward", "next_obs", "others", "next_forced")

    def __init__(self, n: int, capacity: int, n_features: int, device: str) -> None:
        self.capacity = capacity
        self.obs = torch.zeros(n, capacity, n_features, device=device)
        self.action = torch.zeros(n, capacity, dtype=torch.uint8, device=device)
        self.reward = torch.zeros(n, capacity, device=device)
        self.next_obs = torch.zeros(n, capacity, n_features, device=device)
        self.others = torch.zeros(n, capacity, device=device)
        self.next_forced = torch.full((n, capacity), -1, dtype=torch.int16, device=device)
        self.count = 0
        """Transitions written so far (per device)."""

    @property
    def size(self) -> int:
        """Transitions held per device."""
        return min(self.count, self.capacity)

    @property
    def nbytes(self) -> int:
        """Bytes of the preallocated tensors."""
        return sum(getattr(self, f).nbytes for f in self.FIELDS)

    def push(self, batch: Batch) -> None:
        """Store one transition per device: ``batch`` with B = 1."""
        slot = self.count % self.capacity
        for f in self.FIELDS:
            value = getattr(batch, f)[:, 0]
            getattr(self, f)[:, slot] = value.to(getattr(self, f).dtype)
        self.count += 1

    def ages(self, slots: torch.Tensor) -> torch.Tensor:
        """Writes since each of ``slots`` (N, B) was written: 0 for the newest."""
        return (self.count - 1 - slots) % self.capacity

    def gather(self, slots: torch.Tensor) -> Batch:
        """The transitions in ``slots`` (N, B) of each device."""
        f = self.obs.shape[2]
        wide = slots.unsqueeze(-1).expand(-1, -1, f)
        return Batch(
            self.obs.gather(1, wide),
            self.action.gather(1, slots).long(),
            self.reward.gather(1, slots),
            self.next_obs.gather(1, wide),
            self.others.gather(1, slots),
            self.next_forced.gather(1, slots).long(),
        )

    def uniform(self, t: int, gen: torch.Generator) -> torch.Tensor:
        """(N, t) slots drawn uniformly with replacement from those held."""
        return torch.randint(self.size, (self.obs.shape[0], t), generator=gen, device=self.obs.device)

    def temporal(self, t: int, b: int, gen: torch.Generator) -> torch.Tensor:
        """TER: (N, t) slots, the ``t`` newest of ``b >= t`` drawn uniformly with replacement."""
        macro = self.uniform(b, gen)
        newest = self.ages(macro).topk(t, dim=1, largest=False).indices
        return macro.gather(1, newest)

    STATE = (*FIELDS, "count")
    """The tensors (N, capacity, ...) and the write counter (:mod:`fleet.statefile`). A state saved before
    ``next_forced`` was stored is refused (its entry missing): its transitions do not say where a shield forced
    the next action, and taking them as free would bootstrap guarded states from actions never run there."""

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)
