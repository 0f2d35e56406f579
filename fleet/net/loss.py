"""Packet loss per endpoint: one Gilbert-Elliott chain per endpoint, stepped in bulk.

Each endpoint carries a two-state (good/bad) Markov chain. For every packet the endpoint
sends, the chain first takes one step, then the packet is lost with the loss probability of
the new state. Independent (Bernoulli) loss with probability ``p`` is the special case that
never leaves the good state: ``p_good_to_bad = 0``, ``loss_good = p``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from fleet.net.profiles import GilbertElliottLoss, IndependentLoss, LossConfig
from fleet.net.queues import as_vector, iter_ranks
from fleet.statefile import attrs_state, load_attrs


def chain_parameters(config: LossConfig) -> tuple[float, float, float, float]:
    """``(p_good_to_bad, p_bad_to_good, loss_good, loss_bad)`` of a loss model."""
    if isinstance(config, IndependentLoss):
        return (0.0, 1.0, config.p, config.p)
    assert isinstance(config, GilbertElliottLoss)
    return (config.p_good_to_bad, config.p_bad_to_good, config.loss_good, config.loss_bad)


class LossProcess:
    """Gilbert-Elliott packet-loss chains for N endpoints.

    Shapes: every parameter (N,) (a scalar is repeated). Initial states are drawn from the
    stationary distribution, so loss statistics hold from the first packet on.
    """

    def __init__(
        self,
        p_good_to_bad: ArrayLike,
        p_bad_to_good: ArrayLike,
        loss_good: ArrayLike,
        loss_bad: ArrayLike,
        rng: np.random.Generator,
    ) -> None:
        n = np.size(p_good_to_bad)
        self.p_good_to_bad = as_vector("p_good_to_bad", p_good_to_bad, n)
        self.p_bad_to_good = as_vector("p_bad_to_good", p_bad_to_good, n)
        self.loss_good = as_vector("loss_good", loss_good, n)
        self.loss_bad = as_vector("loss_bad", loss_bad, n)
        self.rng = rng
        total = self.p_good_to_bad + self.p_bad_to_good
        if np.any(total <= 0):
            raise ValueError("p_good_to_bad + p_bad_to_good must be positive for every endpoint")
        self.bad = rng.random(n) < self.p_good_to_bad / total
        """Whether each endpoint's chain is in the bad state, (N,) bool."""

    STATE = ("bad", "rng")
    """What changes as packets go: each chain's state and the generator (:mod:`fleet.statefile`)."""

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    @classmethod
    def from_configs(
        cls, configs: Sequence[LossConfig], profile_of: ArrayLike, rng: np.random.Generator
    ) -> LossProcess:
        """Chains for N endpoints; endpoint ``i`` follows ``configs[profile_of[i]]``.

        Shapes: ``profile_of`` (N,) int.
        """
        table = np.array([chain_parameters(c) for c in configs], dtype=float).reshape(-1, 4)
        per_endpoint = table[np.asarray(profile_of, dtype=np.intp)]
        return cls(*per_endpoint.T, rng=rng)

    def lost(self, endpoint: ArrayLike) -> np.ndarray:
        """Whether each packet is lost; packets are sent in array order.

        For each packet, its endpoint's chain takes one step and the loss is drawn in the
        new state; several packets of one endpoint are processed one after the other.
        Endpoints with independent loss (a chain that can never leave the good state) need no
        sequential stepping and are drawn at once, however many packets they send.

        Shapes: ``endpoint`` (M,) int; returns (M,) bool.
        """
        endpoint = np.asarray(endpoint, dtype=np.intp)
        step, draw = self.rng.random((2, len(endpoint)))
        if len(endpoint) == 1:  # one packet (a status, a will, an acknowledgement): the same steps on scalars
            return np.array([self._one(int(endpoint[0]), float(step[0]), float(draw[0]))])
        return self._many(endpoint, step, draw)

    def _many(self, endpoint: np.ndarray, step: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """Packets (M,) with their uniform draws for the chain's step and for the loss, (M,) each."""
        lost = np.empty(len(endpoint), dtype=bool)
        memoryless = (self.p_good_to_bad[endpoint] == 0) & ~self.bad[endpoint]
        lost[memoryless] = draw[memoryless] < self.loss_good[endpoint[memoryless]]
        chained = np.flatnonzero(~memoryless)
        order = chained[np.argsort(endpoint[chained], kind="stable")]
        for pos in iter_ranks(endpoint[order]):
            packet = order[pos]
            e = endpoint[packet]
            flip = step[packet] < np.where(self.bad[e], self.p_bad_to_good[e], self.p_good_to_bad[e])
            self.bad[e] ^= flip
            lost[packet] = draw[packet] < np.where(self.bad[e], self.loss_bad[e], self.loss_good[e])
        return lost

    def _one(self, e: int, step: float, draw: float) -> bool:
        """One packet of endpoint ``e`` with its two uniform draws, as :meth:`lost` does it."""
        if self.p_good_to_bad[e] != 0 or self.bad[e]:
            if step < (self.p_bad_to_good[e] if self.bad[e] else self.p_good_to_bad[e]):
                self.bad[e] = not self.bad[e]
        return bool(draw < (self.loss_bad[e] if self.bad[e] else self.loss_good[e]))
