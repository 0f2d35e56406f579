"""A policy that imitates the perfect-information optimum, to start learners from.

:func:`demonstrations` runs the optimum (:mod:`fleet.optimum`) over a scenario's houses and
records, at every tick, the features a device would observe (with sensor noise) and the level
the optimum chose. :func:`clone` fits an actor to them by cross-entropy (behaviour cloning).
The optimum knows the weather ahead; the cloned actor sees only a device's own observations,
so it learns what of the optimum's behaviour those explain. ``init_policy`` in a learner's
config starts its actors from the file :func:`save_policy` writes
(:func:`fleet.learners.stacked.load_actor`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from devices.building import ThermostatFleet
from fleet.errors import ConfigError
from fleet.learners.base import Observation
from fleet.learners.features import LAYOUT, N_FEATURES, features
from fleet.learners.stacked import ActorCritic, ActorCriticConfig, StackedMLP, policy_state
from fleet.optimum import Window, optimal_control
from fleet.scenario import Scenario
from fleet.sim.rng import Streams
from fleet.sim.world import build_world
from fleet.statefile import save as save_state

CHUNK_DAYS = 5
"""Days planned at once; each plan looks one more day ahead so its last ticks are not myopic."""


def demonstrations(
    scenario: Scenario, days: int, weight: float, quiet: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (S, N_FEATURES) and the optimum's levels (S,) over the first ``days`` days of
    ``scenario``'s houses (S = ticks x houses), the optimum at ``weight`` per degree-hour."""
    streams = Streams(scenario.seed)
    world, dt, mode = build_world(scenario, streams), scenario.control_period, scenario.fleet.hvac.mode
    noise, houses, per_day = (
        streams.numpy("imitation/sensors"),
        ThermostatFleet(world.params, mode),
        int(round(86400 / dt)),
    )
    xs, ys, load = [], [], np.zeros(world.n)
    for first in tqdm(range(0, days, CHUNK_DAYS), desc="optimum, chunks of days", unit="chunk", disable=quiet):
        span = min(CHUNK_DAYS, days - first)
        times = first * 86400 + dt * np.arange((span + 1) * per_day)
        levels: list[np.ndarray] = []
        optimal_control(
            world, Window(times, np.ones(len(times), bool), dt), weight, houses.temp, mode, on_level=levels.append
        )
        for t, level in zip(times[: span * per_day], levels):
            measured = houses.temp + noise.normal(0.0, scenario.fleet.sensors.temp_noise_std_c, world.n)
            conditions = world.conditions(t)
            obs = Observation(temp_c=measured, feeder_load=load, online=np.ones(world.n, bool), **conditions)
            xs.append(features(obs, "cpu"))
            ys.append(torch.as_tensor(level))
            drawn = houses.step(level, conditions["outdoor_c"], dt)
            load = (np.bincount(world.site_of, drawn, minlength=len(world.site_names)) / world.feeder_kw)[world.site_of]
    return torch.cat(xs), torch.cat(ys)


def clone(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: ActorCriticConfig,
    n_levels: int,
    seed: int,
    epochs: int = 60,
    quiet: bool = False,
) -> StackedMLP:
    """An actor for one device fitted to predict levels ``y`` (S,) from features ``x``
    (S, N_FEATURES) (:func:`fit`)."""
    gen = torch.Generator().manual_seed(seed)
    actor = ActorCritic(cfg, 1, N_FEATURES, n_levels, gen, "cpu", shared=True).actor
    fit(actor, x, y, gen, epochs, quiet)
    return actor


def fit(
    actor: StackedMLP, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, epochs: int, quiet: bool = True
) -> None:
    """Fit the actor of one device (N = 1) in place to predict levels ``y`` (S,) from features ``x``
    (S, F), by Adam on the cross-entropy in minibatches of 1,024 drawn by ``gen`` (a CPU generator)."""
    optimizer = torch.optim.Adam(actor.parameters, lr=3e-3)
    for _ in tqdm(range(epochs), desc="cloning the teacher", unit="epoch", disable=quiet):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for i in range(0, len(x), 1024):
            batch = order[i : i + 1024]
            loss = torch.nn.functional.cross_entropy(actor(x[batch].unsqueeze(0)).squeeze(0), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def agreement(actor: StackedMLP, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of the demonstrations (x, y) where the actor's likeliest level is the optimum's."""
    return float((actor(x.unsqueeze(0)).squeeze(0).argmax(1) == y).float().mean())


def save_policy(path: Path, actor: StackedMLP) -> None:
    """Write the actor of one device as a policy file (:func:`fleet.learners.stacked.policy_state`,
    conventionally ``*.safetensors``); refuses to replace a file."""
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path} exists; nothing was written. Choose another path or move it aside")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as f:  # exclusive: never replaces a file, never writes through a link
        save_state(f.write, "policy", policy_state(actor, LAYOUT))
