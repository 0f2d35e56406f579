"""New installs mid-run (``fleet.installs``): devices whose controller is replaced by a fresh one.

A thermostat changed for a new one, or reset to its factory state, in a house that goes on: at an
install's time ``at`` the learner resets the chosen devices' rows to a fresh device's
(``reset(rows, t)``, for a learner whose class says ``supports_reset``). What stays is the house
and its temperature, the device's name, link and place in the topology, and what its neighbours
hold of it: they keep the statistics or parameters the old controller published until the new
one publishes its own. A fresh device hears only what its neighbours publish from ``at`` on.

The install takes effect at the first control tick at or after ``at``, before the controllers act
(:meth:`fleet.sim.engine.Simulation.sense`); the baseline thermostat of the same devices is reset
too, so both fleets go through the same events. The devices of an install given by ``fraction``
are drawn when the run is built, from the seed's ``installs`` stream, so a resumed run draws the
same ones; a checkpoint holds which installs are done.

Per install, the cost and discomfort of its devices are accumulated from the start of the run
(:class:`GroupKpis`): the metrics columns ``installs/<k>/cost`` and
``installs/<k>/discomfort_degh`` (and ``installs/<k>/baseline_cost``,
``installs/<k>/baseline_discomfort_degh`` with the baseline), fleet totals over install ``k``'s
devices as ``kpi/cost`` is over the fleet. A day's difference divided by the install's device
count (``summary.json``, ``installs``) is the joiners' daily cost per device.
"""

from __future__ import annotations

import numpy as np

from fleet.scenario import InstallConfig
from fleet.statefile import attrs_state, load_attrs


def install_devices(installs: tuple[InstallConfig, ...], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Each install's devices, sorted indices into a fleet of ``n``: those it lists, or a share
    ``fraction`` drawn without replacement from ``rng`` (in the order of the installs)."""
    return [
        np.array(sorted(c.devices), np.int64) if c.devices else np.sort(rng.choice(n, c.chosen(n), replace=False))
        for c in installs
    ]


class Installs:
    """When each install is due, its devices, and which are done."""

    def __init__(self, installs: tuple[InstallConfig, ...], n: int, rng: np.random.Generator) -> None:
        self.at = np.array([c.at for c in installs])
        """(K,) each install's time, seconds."""
        self.devices = install_devices(installs, n, rng)
        """K arrays of device indices."""
        self.done = np.zeros(len(installs), bool)
        """(K,) installs already made."""

    STATE = ("done",)

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    def due(self, t: float) -> np.ndarray:
        """The devices (sorted indices) of the installs due by ``t`` and not yet made; marks them made."""
        now = ~self.done & (self.at <= t)
        self.done |= now
        picked = [d for d, due in zip(self.devices, now) if due]
        return np.unique(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


class GroupKpis:
    """Energy cost and discomfort of K groups of devices under one controller, accumulated: (K,) each."""

    def __init__(self, groups: list[np.ndarray]) -> None:
        self.groups = groups
        self.cost = np.zeros(len(groups))
        self.discomfort_degh = np.zeros(len(groups))

    STATE = ("cost", "discomfort_degh")

    def state_dict(self) -> dict:
        return attrs_state(self, self.STATE)

    def load_state_dict(self, state: dict) -> None:
        load_attrs(self, state, self.STATE)

    def add(self, power: np.ndarray, price: np.ndarray, violation: np.ndarray, dt_h: float) -> None:
        """One tick of ``dt_h`` hours: ``power`` kW, ``price`` per kWh, comfort ``violation`` degC, (N,) each."""
        for k, g in enumerate(self.groups):
            self.cost[k] += float(np.dot(power[g], price[g])) * dt_h
            self.discomfort_degh[k] += float(violation[g].sum()) * dt_h

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``installs/<k>/<prefix>cost`` and ``installs/<k>/<prefix>discomfort_degh`` of every group."""
        return {
            f"installs/{k}/{prefix}{name}": float(getattr(self, name)[k])
            for k in range(len(self.groups))
            for name in self.STATE
        }
