"""The reference's tabular tasks, on which a society's equilibrium is known, and a loop to train on them.

At the dominant-strategy equilibrium every primitive bids its societal Q-value (Chang et al.,
ICML 2020, section 5). Both tasks run N copies at once, one per device of a batched society;
states are one-hot (``n_states + 1`` columns, as the reference's ``OneHotEnv``).

- :class:`Bandit`: one state, K arms, arm k pays ``(k + 1) / (K + 1)``; every episode is one
  step. With K = 4 the Q-values are 0.2, 0.4, 0.6, 0.8.
- :class:`Chain`: states 0..L-1 in a row, actions left (0) and right (1), start at 0; reaching
  L-1 pays 0.8 and ends the episode, as does the horizon of ``4 (L - 1)`` steps. With γ = 0.99
  and L = 6, ``Q(s, right) = 0.8 γ^(4-s)`` and ``Q(s, left) = γ Q(max(s-1, 0), right)``.
"""

from __future__ import annotations

import torch

from fleet.learners.auction.config import SocietyConfig
from fleet.learners.auction.society import Society

FAST = SocietyConfig(policy_lr=1e-2, batch_size=64, entropy_coef=0.0)
"""The settings that reach the equilibrium in thousands of steps rather than millions: the reference's,
with a policy step 250x its 4e-5, minibatches of 64 (4x the steps per sample) and no entropy bonus. With the
reference's 0.1 the Beta stays wide (concentration about 15), and a wide bidder shades its bid below its
value: overbidding costs it the high bids of the stronger primitives above it, underbidding only the few wins
against weaker ones (docs/studies/auction.md)."""
CHAIN = FAST.model_copy(update={"dropout": 0.5, "policy_lr_halflife": 600})
"""The chain's: :data:`FAST` with agent dropout in half the auctions, so that "left", which never wins against
"right", bids against its own clone and learns its value, and a policy step that halves every 600 minibatches,
so that the bids settle instead of wandering about the equilibrium (docs/studies/auction.md)."""
BANDIT = FAST.model_copy(update={"dropout": 1.0, "policy_lr_halflife": 300})
"""The bandit's: :data:`FAST` with agent dropout in every auction, as the reference's bandit run means to
(``--ado``); without it the weaker arms never win and learn only to lose. A policy step that halves every 300
minibatches narrows the seeds' spread from up to 0.09 to 0.04 (docs/studies/auction.md)."""


class Bandit:
    """N copies of a one-state, ``arms``-armed bandit with one-step episodes."""

    def __init__(self, n: int, arms: int = 4) -> None:
        self.n, self.arms = n, arms
        self.obs_dim = 2

    def reset(self) -> torch.Tensor:
        """Observations (N, 2)."""
        return torch.tensor([[1.0, 0.0]]).expand(self.n, -1)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions (N,) -> (next observations (N, 2), rewards (N,), done (N,) bool)."""
        return self.reset(), (action + 1).float() / (self.arms + 1), torch.ones(self.n, dtype=torch.bool)

    def q_values(self) -> torch.Tensor:
        """(1, arms): the Q-value of every arm in the one state."""
        return (torch.arange(self.arms) + 1.0).unsqueeze(0) / (self.arms + 1)

    def states(self) -> torch.Tensor:
        """(1, 2): the observation of every non-terminal state."""
        return self.reset()[:1]


class Chain:
    """N copies of a chain of ``length`` states, actions left/right, 0.8 for reaching the end."""

    GOAL_REWARD = 0.8

    def __init__(self, n: int, length: int = 6) -> None:
        self.n, self.length = n, length
        self.obs_dim = length + 1
        self.horizon = 4 * (length - 1)
        self.state = torch.zeros(n, dtype=torch.long)
        self.t = torch.zeros(n, dtype=torch.long)

    def reset(self) -> torch.Tensor:
        self.state.zero_()
        self.t.zero_()
        return self._obs()

    def _obs(self) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.state, self.obs_dim).float()

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions (N,) -> (next observations (N, L+1), rewards (N,), done (N,) bool); episodes that ended
        start again at 0."""
        self.state = (self.state + 2 * action - 1).clamp(0, self.length - 1)
        self.t += 1
        goal = self.state == self.length - 1
        done = goal | (self.t >= self.horizon)
        self.state[done], self.t[done] = 0, 0
        return self._obs(), goal.float() * self.GOAL_REWARD, done

    def q_values(self, gamma: float) -> torch.Tensor:
        """(L-1, 2): Q(s, left), Q(s, right) of the non-terminal states under the optimal policy."""
        s = torch.arange(self.length - 1)
        right = self.GOAL_REWARD * gamma ** (self.length - 2 - s).double()
        left = gamma * right[(s - 1).clamp(min=0)]
        return torch.stack([left, right], 1).float()

    def states(self) -> torch.Tensor:
        """(L-1, L+1): the observation of every non-terminal state."""
        return torch.nn.functional.one_hot(torch.arange(self.length - 1), self.obs_dim).float()


def train(society: Society, task: Bandit | Chain, steps: int, update_every: int) -> None:
    """Let ``society`` (one device per copy of ``task``) act and learn for ``steps`` steps, updating every
    ``update_every``."""
    obs = task.reset()
    for t in range(1, steps + 1):
        auction = society.auction(obs)
        society.record(obs, auction)
        obs, reward, done = task.step(auction.primitive)
        society.reward(reward, done)
        if t % update_every == 0:
            society.update()


def equilibrium_bids(society: Society, task: Bandit | Chain) -> torch.Tensor:
    """(N, S, P): every device's mean bid of every primitive in each of the task's S non-terminal states."""
    return torch.stack([society.mean_bids(x.expand(society.n, -1)) for x in task.states()], 1)
