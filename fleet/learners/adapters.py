"""How a learner core sees its devices: an adapter turns what they observe into features.

The cores (:mod:`fleet.learners.stacked`) take plain (N, F) float32 tensors and rewards as given.
A learner (:mod:`fleet.learners.actor_critic`, :mod:`fleet.learners.centralized`) takes its
adapter from its :class:`~fleet.learners.base.LearnerContext`: the thermostat adapter
(:data:`fleet.learners.features.THERMOSTAT`) by default, which turns an
:class:`~fleet.learners.base.Observation` into the thermostat features and shapes the rewards;
:class:`PlainAdapter` for any environment that already observes (N, obs_dim) arrays. The learners
import no adapter: what they know of the task is its :attr:`~Adapter.n_features` and the
:attr:`~Adapter.layout` that a policy file must name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from fleet.learners.configs import ActorCriticConfig
    from fleet.learners.stacked import Rollout


class Adapter(Protocol):
    """Observations of N devices -> (N, F) features, and the shaping of their rewards.

    An adapter whose task has a comfort band may also have ``discomfort(r: Rollout) -> torch.Tensor``:
    (T, N) degrees outside the band at the end of each step of ``r``, read from the features; a learner
    with a ``discomfort_limit`` needs it (:mod:`fleet.learners.constraint`)."""

    layout: str
    """Name of the observation layout: a policy file names the layout it was trained on, and one
    of another layout is refused."""
    n_features: int
    """F: columns of :meth:`features`."""

    def features(self, obs: Any, device: str) -> torch.Tensor:
        """(N, F) float32 on the torch ``device``, from what the N devices observe."""

    def shape_rewards(self, r: Rollout, cfg: ActorCriticConfig, gamma: float) -> Rollout:
        """``r`` (obs (T+1, N, F), rewards (T, N)) with the task's reward shaping added, for a
        discount ``gamma`` per step; ``r`` itself when there is none."""


@dataclass(frozen=True)
class PlainAdapter:
    """Observations that are already (N, n_features) arrays, e.g. a PettingZoo environment's
    stacked Box observations; rewards are not shaped."""

    n_features: int
    layout: str = "plain"

    def features(self, obs: Any, device: str) -> torch.Tensor:
        """``obs`` (N, F) as float32 on ``device``; ValueError naming the expected shape otherwise."""
        import torch

        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"observations must be (N devices, {self.n_features} features), got shape {x.shape}")
        return torch.from_numpy(x).to(device)

    def shape_rewards(self, r: Rollout, cfg: ActorCriticConfig, gamma: float) -> Rollout:
        return r
