"""Acrobot for many agents at once: gymnasium's Acrobot-v1, batched, with links that differ per agent.

The multitask Acrobot of Diff-DAC (Valcarcel Macua, Davies, Tukiainen and Munoz de Cote 2021;
reference code IanRDavies/Diff-DAC, ``envs/acrobot.py``): agent i swings its own acrobot,
whose link mass, link length and link moment of inertia are the nominal ones times factors
drawn once per agent from [0.5, 0.75) U [1.25, 1.5), as the reference draws them. As there, one
mass serves both links, one length both links (only the first link's length enters the
dynamics; the centres of mass stay at 0.5 m) and one moment both links.

:class:`Acrobots` integrates all N of them as one vectorized step: gymnasium's dynamics
(``book`` variant, one rk4 step of 0.2 s), its constants, observation
``[cos th1, sin th1, cos th2, sin th2, dth1, dth2]`` (N, 6), 3 torques (-1, 0, +1), reward -1 per
step (0 on the step that reaches the goal), terminal when ``-cos th1 - cos(th1 + th2) > 1``,
so that with nominal links row i follows ``gymnasium.envs.classic_control.AcrobotEnv`` step for step.

:class:`AcrobotParallelEnv` makes them a PettingZoo ParallelEnv. Each agent's episodes end on
their own (at the goal, or after 500 steps) and the agent goes on at once in a fresh episode,
as in the reference (a vectorized env resets each simulator when it is done): an episode that
ends is said in ``infos[agent][EPISODE_END]`` ("terminated" or "truncated", else None), and the
observation returned is the first of the next episode. No agent leaves the PettingZoo episode:
waiting for the slowest of 25 acrobots would idle the others and change the task. The
PettingZoo episode ends for all agents together after ``max_cycles`` steps (never by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from numpy import cos, pi, sin
from pettingzoo import ParallelEnv

from fleet.errors import ConfigError

DT = 0.2
"""Integration time step [s]."""
LINK_COM_POS = 0.5
"""Position of each link's centre of mass [m]."""
GRAVITY = 9.8
MAX_VEL = np.array([4 * pi, 9 * pi])
"""Bounds of the angular velocities of the two joints [rad/s]."""
TORQUES = np.array([-1.0, 0.0, 1.0])
"""Torque on the actuated joint of each action [N m]."""
TIME_LIMIT = 500
"""Steps after which an episode is truncated (Acrobot-v1's)."""
EPISODE_END = "episode_end"
"""Key of an agent's infos: "terminated" or "truncated" on the step its episode ended, else None."""


@dataclass(frozen=True)
class Links:
    """Each agent's link mass [kg], link length [m] and link moment of inertia [kg m^2], (N,) each."""

    mass: np.ndarray
    length: np.ndarray
    inertia: np.ndarray

    @staticmethod
    def nominal(n: int) -> Links:
        """gymnasium's links (1 kg, 1 m, 1 kg m^2) for ``n`` agents."""
        return Links(np.ones(n), np.ones(n), np.ones(n))

    @staticmethod
    def extreme(n: int, rng: np.random.Generator) -> Links:
        """Diff-DAC's tasks: each of the three drawn per agent, nominal times U([0.5, 0.75) U [1.25, 1.5))."""
        u = rng.uniform(0.5, 1.0, (3, n))
        factors = np.where(u < 0.75, u, u + 0.5)
        return Links(*factors)


class Acrobots:
    """N acrobots; ``state`` (N, 4): th1, th2 (wrapped to [-pi, pi]), dth1, dth2, float64.

    The coefficients of the dynamics that depend on the links only are computed once, each as
    the leading factors of gymnasium's expression, so every value is rounded as there."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self.state = np.zeros((len(links.mass), 4))
        m, l1, i, lc = links.mass, links.length, links.inertia, LINK_COM_POS
        self._d1 = (m * lc**2, l1**2 + lc**2, 2 * l1 * lc)  # d1 = a + m (b + c cos th2) + I + I
        self._d2 = (lc**2, l1 * lc)  # d2 = m (a + b cos th2) + I
        self._phi = (m * lc * GRAVITY, -m * l1 * lc, 2 * m * l1 * lc, (m * lc + m * l1) * GRAVITY, m * l1 * lc)
        self._den = m * lc**2 + i

    def observe(self) -> np.ndarray:
        """(N, 6) float32: cos th1, sin th1, cos th2, sin th2, dth1, dth2."""
        s = self.state
        return np.stack([cos(s[:, 0]), sin(s[:, 0]), cos(s[:, 1]), sin(s[:, 1]), s[:, 2], s[:, 3]], 1).astype(
            np.float32
        )

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply actions (N,) in {0, 1, 2} for one time step (one rk4 step, the torque held);
        whether each reached the goal, (N,) bool."""
        s, torque = self.state, TORQUES[actions]
        k1 = self._derivatives(s, torque)
        k2 = self._derivatives(s + DT / 2 * k1, torque)
        k3 = self._derivatives(s + DT / 2 * k2, torque)
        k4 = self._derivatives(s + DT * k3, torque)
        ns = s + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        ns[:, :2] = _wrap(ns[:, :2])
        ns[:, 2:] = np.clip(ns[:, 2:], -MAX_VEL, MAX_VEL)
        self.state = ns
        return -cos(ns[:, 0]) - cos(ns[:, 1] + ns[:, 0]) > 1.0

    def _derivatives(self, s: np.ndarray, torque: np.ndarray) -> np.ndarray:
        """(N, 4) state, (N,) torque -> the state's time derivative (N, 4): gymnasium's ``_dsdt`` (book)."""
        m, i = self.links.mass, self.links.inertia
        theta1, theta2, dtheta1, dtheta2 = s.T
        cos2, sin2 = cos(theta2), sin(theta2)
        d1 = self._d1[0] + m * (self._d1[1] + self._d1[2] * cos2) + i + i
        d2 = m * (self._d2[0] + self._d2[1] * cos2) + i
        g2, g1a, g1b, g1c, g3 = self._phi
        phi2 = g2 * cos(theta1 + theta2 - pi / 2.0)
        phi1 = g1a * dtheta2**2 * sin2 - g1b * dtheta2 * dtheta1 * sin2 + g1c * cos(theta1 - pi / 2) + phi2
        ddtheta2 = (torque + d2 / d1 * phi1 - g3 * dtheta1**2 * sin2 - phi2) / (self._den - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2], 1)


def _wrap(x: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi] by whole turns, as gymnasium's ``wrap`` (its subtractions, in its order)."""
    while (x > pi).any() or (x < -pi).any():
        x = np.where(x > pi, x - 2 * pi, x)
        x = np.where(x < -pi, x + 2 * pi, x)
    return x


def _checked(links: Links) -> Links:
    """``links`` as float64 arrays, or ConfigError naming the first field that is not (N,) of positive values."""
    n = np.shape(links.mass)
    for field in ("mass", "length", "inertia"):
        value = np.asarray(getattr(links, field), dtype=np.float64)
        if value.ndim != 1 or value.shape != n or len(value) == 0 or not (np.isfinite(value) & (value > 0)).all():
            raise ConfigError(
                f"links.{field}: needs one finite positive value per agent, as many as links.mass has; got {value!r}"
            )
    return Links(*(np.asarray(getattr(links, f), dtype=np.float64) for f in ("mass", "length", "inertia")))


class AcrobotParallelEnv(ParallelEnv):
    """``n_agents`` acrobots as PettingZoo agents ``acrobot_0``, ...; links drawn from ``task_seed``
    (:meth:`Links.extreme`), or ``links`` (then one agent per link, ``n_agents`` unused)."""

    metadata = {"name": "multitask_acrobot_v0", "render_modes": []}

    def __init__(
        self, n_agents: int = 25, task_seed: int = 0, links: Links | None = None, max_cycles: int | None = None
    ) -> None:
        if links is None and n_agents < 1:
            raise ConfigError(f"n_agents: {n_agents}; the Acrobot needs at least one agent")
        self.links = _checked(links) if links is not None else Links.extreme(n_agents, np.random.default_rng(task_seed))
        self.possible_agents = [f"acrobot_{i}" for i in range(len(self.links.mass))]
        self.agents: list[str] = []
        high = np.array([1.0, 1.0, 1.0, 1.0, *MAX_VEL], dtype=np.float32)
        self.observation_spaces = {a: spaces.Box(-high, high, dtype=np.float32) for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(len(TORQUES)) for a in self.possible_agents}
        self.max_cycles = max_cycles
        self.render_mode = None
        self.acrobots = Acrobots(self.links)
        self.rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        n = len(self.possible_agents)
        self.agents = list(self.possible_agents)
        self.cycles, self.elapsed = 0, np.zeros(n, dtype=np.int64)
        self._restart(np.ones(n, dtype=bool))
        return self._per_agent(self.acrobots.observe()), {a: {EPISODE_END: None} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(
                f"step() needs an action for every agent; missing {len(missing)}: {', '.join(missing[:5])}"
            )
        goal = self.acrobots.step(np.array([int(actions[a]) for a in self.possible_agents]))
        self.elapsed += 1
        limit = ~goal & (self.elapsed >= TIME_LIMIT)
        self._restart(goal | limit)
        self.cycles += 1
        over = self.max_cycles is not None and self.cycles >= self.max_cycles
        ends = np.where(goal, "terminated", np.where(limit, "truncated", None))
        out = (
            self._per_agent(self.acrobots.observe()),
            self._per_agent(np.where(goal, 0.0, -1.0).tolist()),
            dict.fromkeys(self.possible_agents, False),
            dict.fromkeys(self.possible_agents, over),
            {a: {EPISODE_END: end} for a, end in zip(self.possible_agents, ends)},
        )
        if over:
            self.agents = []
        return out

    def _restart(self, rows: np.ndarray) -> None:
        """New episodes for the agents ``rows`` (N,) bool: gymnasium's start state, each of the four
        uniform in [-0.1, 0.1] (drawn as float32)."""
        fresh = self.rng.uniform(-0.1, 0.1, (int(rows.sum()), 4)).astype(np.float32)
        self.acrobots.state[rows] = fresh
        self.elapsed[rows] = 0

    def _per_agent(self, rows) -> dict:
        return dict(zip(self.possible_agents, rows))

    def close(self) -> None:
        """Nothing to release."""
