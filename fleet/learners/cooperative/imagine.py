"""Imagined Experience Replay (IER) and the impact of a device's control (for IQL).

The devices drive one system whose input is the *sum* of their controls, and each knows how
the system responds to a joint control (:class:`AdditiveDynamics`). From a transition it lived,
a device can so compute transitions it did not live, with the same state but another joint
control; these are learned from and never stored. The scenarios:

- ``ALONE``:     the others' controls set to 0, the device's own as it was (what it would do alone);
- ``IDLE``:      the device idle (the control nearest 0), the others as they were;
- ``COPY_MEAN``: the device copying the others' mean control (the nearest it has);
- ``ALL_COPY``:  every other device copying the device's control.

A sampled transition gets one imagined twin: ``ALONE`` with probability epsilon, otherwise one
of the coordination scenarios at random, provided the coordination coefficient
``psi = sgn(u_i * U_others)`` is not 0 (both the device and the others act, so there is a
joint control to coordinate), else ``ALONE`` too. A model that knows only the shared system
(not how the device's own state answers its own control) imagines only the scenarios that keep
the device's control (``ALL_COPY``): its :attr:`AdditiveDynamics.coordination` says which. A model
whose devices interact only in some states (a feeder: only above its capacity) may also say which
lived transitions coupled the device to the others (:class:`CouplingDynamics`); elsewhere ``psi``
counts as 0, and the twin is ``ALONE``.

A twin's next observation is the one the dynamics imagine, as in the paper, or the lived one
(``next_obs="lived"``): the twin then imagines only its reward and bootstraps from a state a device lived,
not one no device lives (on a feeder, the device alone sees an empty feeder), where the target network's
values were never learned from lived data.

A twin keeps its lived transition's ``next_forced`` (the action a shield forced at the next
observation): the shield must read only what the twin keeps as lived, as a comfort guard reads the
device's own temperature, which the feeder's model leaves as lived (it changes only the feeder load).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import torch

from fleet.learners.cooperative.replay import Batch

ALONE, IDLE, COPY_MEAN, ALL_COPY = range(4)
SCENARIOS = ("alone", "idle", "copy_mean", "all_copy")


class AdditiveDynamics(Protocol):
    """The known response of the jointly controlled system to the sum of the devices' controls."""

    coordination: tuple[int, ...]
    """The coordination scenarios it can imagine (some of IDLE, COPY_MEAN, ALL_COPY)."""

    def imagine(self, lived: Batch, own: torch.Tensor, others: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next observations (N, B, F) and the device's rewards (N, B) had the device's
        control been ``own`` (N, B) and the others' summed ``others`` (N, B) in the ``lived``
        transitions (N, B) (a model may use what they lived, or only their observations)."""


@runtime_checkable
class CouplingDynamics(AdditiveDynamics, Protocol):
    """Dynamics that also say where the devices interacted."""

    def coupled(self, lived: Batch) -> torch.Tensor:
        """(N, B) bool: whether the device's reward depended on the others' controls in each ``lived``
        transition; coordination scenarios are imagined only there."""


def coordination(own: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """psi (N, B) in {-1, 0, 1}: whether the device and the others push the same way (1),
    against each other (-1), or one of them is idle (0)."""
    return torch.sign(own * others)


def impact(own: torch.Tensor, others: torch.Tensor, n_others: torch.Tensor) -> torch.Tensor:
    """lambda (N, B): the device's share of the joint control's magnitude, ``|u_i| / (|u_i| +
    |U_others|)``, times the number of devices (N, 1) ``n_others + 1``: 1 is a fair share. Only
    the others' sum is known to a device, so their magnitude is that of their sum. A fair
    share (1) when nobody acts."""
    total = own.abs() + others.abs()
    share = torch.where(total > 0, own.abs() / total.clamp(min=1e-12), 1.0 / (n_others + 1))
    return share * (n_others + 1)


def draw_scenarios(
    psi: torch.Tensor, epsilon: float, gen: torch.Generator, coordination: tuple[int, ...] = (IDLE, COPY_MEAN, ALL_COPY)
) -> torch.Tensor:
    """(N, B) scenario of each imagined twin, from the coordination coefficients ``psi`` (N, B):
    ``ALONE`` or one of ``coordination``."""
    u = torch.rand(psi.shape, generator=gen, device=psi.device)
    kinds = torch.tensor(coordination, device=psi.device)
    pick = kinds[torch.randint(len(coordination), psi.shape, generator=gen, device=psi.device)]
    return torch.where((u < epsilon) | (psi == 0), ALONE, pick)


def nearest_action(controls: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The action (N, B) whose control in ``controls`` (N, A) is nearest each wanted ``u`` (N, B)."""
    return (controls.unsqueeze(1) - u.unsqueeze(-1)).abs().argmin(-1)


def imagined_controls(
    scenario: torch.Tensor, action: torch.Tensor, others: torch.Tensor, controls: torch.Tensor, n_others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The device's action (N, B) and the others' summed control (N, B) in each ``scenario``
    (N, B), from the lived ``action`` and ``others`` (N, B); ``controls`` (N, A) is each action's
    control, ``n_others`` (N, 1) the number of other devices."""
    own = controls.gather(1, action)
    wanted = torch.where(scenario == IDLE, 0.0, torch.where(scenario == COPY_MEAN, others / n_others, own))
    new_action = torch.where((scenario == IDLE) | (scenario == COPY_MEAN), nearest_action(controls, wanted), action)
    new_others = torch.where(scenario == ALONE, 0.0, torch.where(scenario == ALL_COPY, own * n_others, others))
    return new_action, new_others


def imagine(
    batch: Batch,
    dynamics: AdditiveDynamics,
    controls: torch.Tensor,
    n_others: torch.Tensor,
    epsilon: float,
    gen: torch.Generator,
    next_obs: Literal["imagined", "lived"] = "imagined",
) -> Batch:
    """One imagined twin (N, B) of each transition of ``batch``, with its ``next_forced``; its next
    observation the one the dynamics imagine, or (``next_obs="lived"``) the lived one."""
    own = controls.gather(1, batch.action)
    psi = coordination(own, batch.others)
    if isinstance(dynamics, CouplingDynamics):
        psi = torch.where(dynamics.coupled(batch), psi, 0.0)
    scenario = draw_scenarios(psi, epsilon, gen, dynamics.coordination)
    action, others = imagined_controls(scenario, batch.action, batch.others, controls, n_others)
    imagined, reward = dynamics.imagine(batch, controls.gather(1, action), others)
    nxt = batch.next_obs if next_obs == "lived" else imagined
    return Batch(batch.obs, action, reward, nxt, others, batch.next_forced)
