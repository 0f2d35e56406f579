"""Guards of a learner's parameters: what a device takes from others, and what it computes itself.

A device trusts no message and no update. Two checks, both per device over the batch, so that
one bad message or one diverging device changes nothing for the others:

- **received** parameters (a neighbour's, or the cloud's policy), (D, P) against the receiving
  device's own (D, P): a message is used only if its values are finite, at most ``max_param``
  in magnitude, and within ``max_deviation`` times the norm of the receiver's own parameters
  from them (:meth:`ParamGuard.accept`); the others are rejected and counted;
- **own** parameters (N, P) after every update and combine: a device whose parameters are not
  all finite and at most ``max_param`` in magnitude goes back to its parameters from before the
  update (:meth:`ParamGuard.roll_back`), which passed this check, so a device never publishes
  or checkpoints parameters that failed it.

The thresholds are far from honest values (parameters of the shipped scenarios' learners stay
below 10 in magnitude, and neighbours differ by less than half the norm of their parameters),
so honest runs never trip them: they stop what would crash a device (a neighbour's 3e38 makes
its next update overflow) or drag it far from every honest device. Parameters a little beyond
honest ones pass; against those a robust combine (``robust``) limits each neighbour's weight.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from fleet.config import FiniteFloat, StrictModel
from fleet.learners.combine import edge_chunks


class GuardConfig(StrictModel):
    """Thresholds of the checks on received and own parameters."""

    max_param: FiniteFloat = Field(1e3, gt=0)
    """Largest magnitude of any parameter: received ones beyond it (or not finite) are rejected, own ones rolled back."""
    max_deviation: FiniteFloat = Field(10.0, gt=0)
    """Received parameters θ_j are rejected when ||θ_j - θ_i|| > max_deviation * ||θ_i|| (θ_i: one's own)."""


def sound(params: torch.Tensor, max_param: float) -> torch.Tensor:
    """(N, P) -> (N,) bool: every value finite and at most ``max_param`` in magnitude."""
    return torch.linalg.vector_norm(params, ord=float("inf"), dim=1) <= max_param  # NaN compares False


class ParamGuard:
    """The checks of :class:`GuardConfig` and their counts (totals since the learner was built)."""

    def __init__(self, cfg: GuardConfig) -> None:
        self.cfg = cfg
        self.rejected = 0
        """Received parameter messages (deliveries) rejected."""
        self.rollbacks = 0
        """Device updates undone because their result failed the check."""

    def accept(self, own: torch.Tensor, receiver: np.ndarray, theirs: torch.Tensor, row: np.ndarray) -> np.ndarray:
        """(D,) bool: which of D deliveries may be used, counting the others as rejected.

        Delivery d brought ``theirs[row[d]]`` (P,) of ``theirs`` (M, P) to device ``receiver[d]``,
        whose parameters are ``own[receiver[d]]`` of ``own`` (N, P). Worked on in chunks of
        deliveries, so that no (D, P) temporary is made."""
        ok = np.empty(len(row), bool)
        scale = self.cfg.max_deviation * torch.linalg.vector_norm(own, dim=1)  # (N,)
        for part in edge_chunks(len(row)):
            values, mine = theirs[row[part]].to(own), own[receiver[part]]
            near = torch.linalg.vector_norm(values - mine, dim=1) <= scale[receiver[part]]  # inf and NaN fail
            ok[part] = (near & sound(values, self.cfg.max_param)).cpu().numpy()
        self.rejected += int((~ok).sum())
        return ok

    def roll_back(self, new: torch.Tensor, good: torch.Tensor) -> torch.Tensor:
        """(N,) bool: the devices whose ``new`` (N, P) parameters fail the check; their rows of
        ``new`` are replaced, in place, by those of ``good`` (N, P), and counted."""
        bad = ~sound(new, self.cfg.max_param)
        n_bad = int(bad.sum())
        if n_bad:
            new[bad] = good[bad]
            self.rollbacks += n_bad
        return bad

    def metrics(self) -> dict[str, float]:
        """The counts as namespaced metrics."""
        return {"learner/rejected_params": float(self.rejected), "learner/rollbacks": float(self.rollbacks)}
