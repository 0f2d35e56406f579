"""Pretraining: one policy learned on simulated years of randomized houses, for learners to start from.

:func:`train` runs rounds. Each round draws a world of its own (:func:`draw_world`): ``houses``
houses, heat pumps and occupancy schedules from the scenario's per-device distributions, their
spread widened ``widen`` times, weather from a seed of the round's and a start day drawn within
``season_days`` of the scenario's. All houses are then simulated at once over ``days`` days by
the simulator's own fleet model (:class:`fleet.sim.engine.ControlledFleet`: RC physics, sensor
noise, feeders, reward; no network and no event loop), the policy acting on each house's
features (:mod:`fleet.learners.features`), and the policy learns from what it saw:

- **with a teacher** (DAgger, Ross, Gordon and Bagnell 2011): every state visited is labelled
  with the level the teacher would choose there, the labels join those of the earlier rounds,
  and the actor is refitted to all of them by cross-entropy (:func:`fleet.imitation.fit`). In
  round r the houses follow the teacher with probability 0.5**r per tick (round 0: the teacher
  alone) and the policy otherwise, so that later data comes from the states the policy itself
  reaches. A teacher is a :class:`Teacher` in :data:`TEACHERS`: it plans over a window of ticks
  knowing the world, then names its level at any indoor temperature. The perfect-information
  optimum (:mod:`fleet.optimum`, which knows the weather ahead) is the one registered.
- **by reinforcement** (PPO): the actor-critic core (:class:`fleet.learners.stacked.ActorCritic`,
  one network shared by every house, as the centralized learner's) acts, sampling, and takes
  ``ppo_epochs`` clipped epochs over the batch of all houses every ``n_steps`` ticks; after the
  teacher's rounds (from the DAgger policy) or from scratch (``teacher: none``).

The output folder holds ``train.json`` (the config, the scenario, each round's figures), after
every round ``checkpoint.safetensors`` (:mod:`fleet.statefile`: the core, the labelled data, the
round; never a pickle), from which :func:`train` with ``resume`` continues bit for bit, and at
the end ``policy.safetensors``: one device's actor (:func:`fleet.learners.stacked.policy_state`),
which ``learner.params.init_policy`` loads and ``fleet agent`` deploys through the scenario.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import Field, ValidationError

from fleet.config import StrictModel, format_validation_error
from fleet.errors import ConfigError, RunDirError
from fleet.imitation import fit, save_policy
from fleet.learners.base import Observation
from fleet.learners.configs import ActorCriticConfig
from fleet.learners.features import N_FEATURES, features, shape_rewards
from fleet.learners.stacked import ActorCritic, Rollout, StackedMLP
from fleet.optimum import Stage, Window, cost_to_go, house_model, level_costs, stage_at
from fleet.scenario import Scenario, dump_scenario, parse_scenario
from fleet.sim.engine import ControlledFleet
from fleet.sim.rng import Streams
from fleet.sim.world import World, build_world
from fleet.statefile import StateFileError, StateMismatch, create_new, entry, expect_keys, load_child
from fleet.statefile import load as load_state
from fleet.statefile import save as save_state

POLICY, CHECKPOINT, RECORD = "policy.safetensors", "checkpoint.safetensors", "train.json"
TRAIN_FILES = (POLICY, CHECKPOINT, CHECKPOINT + ".tmp", RECORD)
"""What :func:`train` writes into its folder; with ``overwrite`` these go, and nothing else."""
MAX_CHECKPOINT_BYTES = 16 << 30
PLAN_DAYS = 2
"""Days a teacher plans at once; each plan looks one more day ahead so that its last ticks are not myopic."""
WIDENED = (
    ("building", "resistance_c_per_kw"),
    ("building", "capacitance_kwh_per_c"),
    ("building", "internal_gain_kw"),
    ("building", "initial_temp_c"),
    ("building", "outdoor_offset_c"),
    ("hvac", "size_factor"),
    ("hvac", "cop"),
    ("occupancy", "shift_h"),
)
"""The per-device distributions (under ``fleet.``) whose spread ``widen`` scales."""


class TrainConfig(StrictModel):
    """How :func:`train` trains (``fleet train``'s options)."""

    teacher: str = "optimum"
    """The teacher of the DAgger rounds, a name in :data:`TEACHERS`, or ``none``: reinforcement only."""
    rounds: Annotated[int, Field(ge=0, le=10_000)] = 3
    """Rounds with the teacher (DAgger); without one, rounds of PPO."""
    rl_rounds: Annotated[int, Field(ge=0, le=10_000)] = 0
    """Rounds of PPO after the teacher's."""
    houses: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    """Houses simulated at once in each round (split over the scenario's sites as it splits its devices)."""
    days: Annotated[int, Field(ge=1, le=3650)] = 20
    """Simulated days per round."""
    season_days: Annotated[int, Field(ge=0, le=182)] = 60
    """Each round starts on a day drawn uniformly within this many days of the scenario's
    ``start_day`` (around the year); 182 draws from the whole year."""
    widen: Annotated[float, Field(ge=0, le=100)] = 1.0
    """Spread of the per-device distributions (:data:`WIDENED`) as a multiple of the scenario's: 2
    squares the ratio high/low of a uniform over positive values (R from 3-6 degC/kW to 2.1-8.5),
    doubles the range of another uniform and the deviation and clip bounds of a normal."""
    teacher_weight: Annotated[float, Field(ge=0)] | None = None
    """Price per degree-hour outside the band that the teacher minimizes with the energy cost;
    None: the scenario's ``reward.discomfort_per_degh``."""
    hidden: Annotated[int, Field(ge=1, le=1024)] = 32
    """Width of the actor's and the critic's two hidden layers (a learner's ``hidden`` must match to load it)."""
    fit_epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    """Cross-entropy epochs over all labelled states after each DAgger round."""
    ppo_epochs: Annotated[int, Field(ge=1, le=100)] = 8
    """PPO epochs per update."""
    n_steps: Annotated[int, Field(ge=1, le=10_000)] = 96
    """Control ticks per PPO update (each update's batch: these ticks of every house)."""
    ppo_houses: Annotated[int, Field(ge=1)] | None = None
    """Houses whose ticks make each PPO update's batch, drawn anew for every update; None: all of
    them. Fewer is faster: the rollout costs little beside the update's passes over the batch."""
    lr: Annotated[float, Field(gt=0, le=1)] = 3e-4
    """Adam's step for PPO (a DAgger refit uses :func:`fleet.imitation.fit`'s)."""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Root of every random draw of training (the worlds, exploration, minibatches)."""

    @classmethod
    def parse(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of ``values``; ConfigError naming every field at fault."""
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise format_validation_error(e, "fleet train") from None

    def schedule(self) -> list[Literal["dagger", "ppo"]]:
        """The method of each round."""
        dagger = self.rounds if self.teacher != "none" else 0
        return ["dagger"] * dagger + ["ppo"] * (self.rounds + self.rl_rounds - dagger)


# --- teachers ------------------------------------------------------------------------------


class Teacher(Protocol):
    """Names a level for any state of a world's houses, knowing more than a device does."""

    def plan(self, world: World, window: Window) -> None:
        """Prepare for the ticks of ``window`` (K,); it may look beyond its counted ticks."""

    def levels(self, k: int, step: dict, temp_c: np.ndarray) -> np.ndarray:
        """The level (N,) of every house at tick ``k`` of the plan, under the conditions ``step``
        (:meth:`World.conditions`), from the true indoor temperatures ``temp_c`` (N,)."""


class OptimumTeacher:
    """The perfect-information optimum (:mod:`fleet.optimum`): its cost-to-go over the plan's
    window, then the best level at the temperature a house actually has."""

    def __init__(self, weight: float, mode: str) -> None:
        self.weight, self.mode = weight, mode

    def plan(self, world: World, window: Window) -> None:
        self.house, self.dt_h = house_model(world, self.mode), window.dt_s / 3600.0
        stages = [stage_at(world, float(t)) for t in window.times_s]
        self.value = cost_to_go(self.house, stages, self.weight, self.dt_h)

    def levels(self, k: int, step: dict, temp_c: np.ndarray) -> np.ndarray:
        stage = Stage(step["outdoor_c"], step["price"], step["band_lo"], step["band_hi"])
        costs = level_costs(self.house, stage, temp_c[:, None], self.value[k + 1], self.weight, self.dt_h)
        return np.argmin(costs[:, :, 0], axis=0)


TEACHERS: dict[str, Callable[[float, str], Teacher]] = {"optimum": OptimumTeacher}
"""Teachers by name: each made from (price per degree-hour outside the band, HVAC mode)."""


def make_teacher(name: str, weight: float, mode: str) -> Teacher:
    if name not in TEACHERS:
        raise ConfigError(f"teacher: {name!r} is not a registered teacher; known: {', '.join(TEACHERS)}, or none")
    return TEACHERS[name](weight, mode)


# --- worlds --------------------------------------------------------------------------------


def draw_world(scenario: Scenario, cfg: TrainConfig, round_: int) -> tuple[Scenario, World]:
    """Round ``round_``'s scenario (:func:`round_scenario`) and its world."""
    drawn = round_scenario(scenario, cfg, round_)
    return drawn, build_world(drawn, Streams(drawn.seed))


def round_scenario(scenario: Scenario, cfg: TrainConfig, round_: int) -> Scenario:
    """``scenario`` as round ``round_`` trains on it: ``cfg.houses`` houses over ``cfg.days`` days
    (and one more day of weather, which a teacher sees ahead), its distributions widened, a seed
    and start day of its own. ConfigError if widened too far."""
    rng = Streams(cfg.seed).numpy(f"train/round-{round_}")
    raw = scenario.model_dump(mode="json")
    n = scenario.n_devices
    for site in raw["fleet"]["sites"]:
        share = site["devices"] / n
        site["devices"], site["feeder_kw"] = max(1, round(cfg.houses * share)), site["feeder_kw"] * cfg.houses / n
    for section, name in WIDENED:
        raw["fleet"][section][name] = _widened(raw["fleet"][section][name], cfg.widen)
    raw["fleet"]["external"] = []
    raw["topology"] = {"kind": "grid"}  # no messages in training; a grid fits any number of houses
    raw.update(
        seed=int(rng.integers(2**62)),
        start_day=int((scenario.start_day - 1 + rng.integers(-cfg.season_days, cfg.season_days + 1)) % 365) + 1,
        horizon=cfg.days * 86400.0,
        learner={"name": "rule-based-v1"},
    )
    try:
        drawn = parse_scenario(raw, f"{scenario.name}, round {round_} of training", Path.cwd())
    except ConfigError as e:
        raise ConfigError(f"widen={cfg.widen:g} gives distributions out of range: {e}") from None
    return drawn


def _widened(dist: dict, factor: float) -> dict:
    """A distribution (as in a scenario file) with its spread times ``factor``: a uniform over positive
    values by ratio around its geometric centre (so it stays positive), any other uniform and a
    normal's deviation and clip bounds around its centre."""
    if dist["dist"] == "uniform" and dist["low"] > 0:
        centre, ratio = math.sqrt(dist["low"] * dist["high"]), math.sqrt(dist["high"] / dist["low"]) ** factor
        return {**dist, "low": centre / ratio, "high": centre * ratio}
    if dist["dist"] == "uniform":
        mid, half = (dist["low"] + dist["high"]) / 2, (dist["high"] - dist["low"]) / 2
        return {**dist, "low": mid - factor * half, "high": mid + factor * half}
    if dist["dist"] == "normal":
        m = dist["mean"]
        low, high = m + factor * (dist["low"] - m), m + factor * (dist["high"] - m)
        return {**dist, "std": factor * dist["std"], "low": low, "high": high}
    return dist


# --- rollouts ------------------------------------------------------------------------------


class _Policy:
    """The controller of a rollout: the shared actor acts on every house (sampling), or the
    teacher where ``follow`` (N,) says so; it keeps what a round learns from."""

    def __init__(self, core: ActorCritic, gen: torch.Generator, device: str) -> None:
        self.core, self.gen, self.device = core, gen, device
        self.label: np.ndarray | None = None
        """The teacher's levels (N,) for this tick, or None."""
        self.follow = np.zeros(0, bool)
        self.obs: list[torch.Tensor] = []
        self.actions: list[torch.Tensor] = []
        self.rewards: list[torch.Tensor] = []
        self.labels: list[np.ndarray] = []

    def act(self, obs: Observation) -> np.ndarray:
        x = features(obs, self.device)
        own = self.core.act(x, self.gen)
        self.obs.append(x)
        if self.label is None:
            self.actions.append(own)
            return own.cpu().numpy()
        self.labels.append(self.label)
        return np.where(self.follow, self.label, own.cpu().numpy())

    def observe(self, reward: np.ndarray) -> None:
        if self.label is None:
            self.rewards.append(torch.as_tensor(reward, dtype=torch.float32, device=self.device))


def _simulate(
    sc: Scenario, world: World, days: int, policy: _Policy, on_tick: Callable[[int, float, ControlledFleet], None]
) -> ControlledFleet:
    """Every house of ``world`` under ``policy`` for ``days`` days; ``on_tick(k, t, fleet)`` before
    each tick (the teacher's labels), the reward of each tick to ``policy``."""
    fleet = ControlledFleet(world, sc.fleet.hvac.mode, policy)
    noise, online = Streams(sc.seed).numpy("train/sensors"), np.ones(world.n, bool)
    weights = (sc.reward.discomfort_per_degh, sc.reward.overload_per_kwh)
    for k, t in enumerate(np.arange(0.0, days * 86400.0, sc.control_period)):
        on_tick(k, t, fleet)
        inputs = dict(world.conditions(float(t)), online=online)
        fleet.tick(inputs, noise.normal(0.0, sc.fleet.sensors.temp_noise_std_c, world.n), sc.control_period, weights)
    return fleet


# --- training ------------------------------------------------------------------------------


class _OneNetwork(StackedMLP):
    """The shared core's network (N = 1, the same parameter tensors) applied to all rows (L, B, in) as
    one (1, L x B, in) matrix product: the same function, at less than half the time of a
    product batched over L with the weights expanded (its backward sums L weight gradients)."""

    def __init__(self, net: StackedMLP) -> None:
        self.sizes, self.weights, self.biases = net.sizes, net.weights, net.biases

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lead, rows = x.shape[:2]
        return super().__call__(x.reshape(1, lead * rows, -1)).reshape(lead, rows, -1)


class Trainer:
    """One policy being trained on a scenario: the shared actor-critic core and the DAgger data."""

    STATE: ClassVar[tuple[str, ...]] = ("round", "core", "data")

    def __init__(self, scenario: Scenario, cfg: TrainConfig, device: str) -> None:
        self.scenario, self.cfg, self.device = scenario, cfg, device
        self.n_levels = len(scenario.fleet.hvac.power_levels_kw)
        ac = ActorCriticConfig(hidden=cfg.hidden, lr=cfg.lr, epochs=cfg.ppo_epochs, n_steps=cfg.n_steps)
        gen = Streams(cfg.seed).torch("train/init", device)
        self.core = ActorCritic(ac, 1, N_FEATURES, self.n_levels, gen, device, shared=True)
        self.core.actor, self.core.critic = _OneNetwork(self.core.actor), _OneNetwork(self.core.critic)
        weight = scenario.reward.discomfort_per_degh if cfg.teacher_weight is None else cfg.teacher_weight
        self.teacher = None if cfg.teacher == "none" else make_teacher(cfg.teacher, weight, scenario.fleet.hvac.mode)
        self.round = 0
        self.data = {"x": torch.zeros(0, N_FEATURES), "y": torch.zeros(0, dtype=torch.int64)}
        """The labelled states of every DAgger round so far: features (S, F) and levels (S,), on the CPU."""

    def step(self, progress: Callable[[float], None] | None = None) -> dict[str, float]:
        """Train one round; its figures: mean reward and cost per house-day, and (DAgger) the share
        of the teacher's levels the refitted actor picks, or (PPO) the last update's losses."""
        r, cfg = self.round, self.cfg
        sc, world = draw_world(self.scenario, cfg, r)
        policy = _Policy(self.core, Streams(cfg.seed).torch(f"train/act-{r}", self.device), self.device)
        if cfg.schedule()[r] == "dagger":
            fleet, figures = self._dagger(sc, world, policy, progress)
        else:
            fleet, figures = self._ppo(sc, world, policy, progress)
        self.round += 1
        days = world.n * cfg.days
        per_day = {"cost": fleet.kpis.cost / days, "discomfort_degh": fleet.kpis.discomfort_degh / days}
        return {"round": r, "method": cfg.schedule()[r], "houses": world.n, **per_day, **figures}

    def _dagger(self, sc, world, policy, progress):
        cfg, r = self.cfg, self.round
        follow_rng, per_day = Streams(cfg.seed).numpy(f"train/follow-{r}"), round(86400 / sc.control_period)
        plan_ticks = PLAN_DAYS * per_day

        def label(k: int, t: float, fleet: ControlledFleet) -> None:
            if k % plan_ticks == 0:
                times = t + sc.control_period * np.arange(min(plan_ticks, cfg.days * per_day - k) + per_day)
                self.teacher.plan(world, Window(times, np.ones(len(times), bool), sc.control_period))
                _report(progress, r, cfg.days, t)
            policy.label = self.teacher.levels(k % plan_ticks, world.conditions(float(t)), fleet.buildings.temp)
            policy.follow = follow_rng.random(world.n) < 0.5**r

        fleet = _simulate(sc, world, cfg.days, policy, label)
        x, y = torch.cat(policy.obs).cpu(), torch.as_tensor(np.concatenate(policy.labels))
        self.data = {"x": torch.cat([self.data["x"], x]), "y": torch.cat([self.data["y"], y])}
        gen = Streams(cfg.seed).torch(f"train/fit-{r}")
        fit(self.core.actor, self.data["x"].to(self.device), self.data["y"].to(self.device), gen, cfg.fit_epochs)
        with torch.no_grad():
            agree = self.core.actor(x.to(self.device).unsqueeze(0)).squeeze(0).argmax(1).cpu() == y
        return fleet, {"agreement": float(agree.float().mean()), "labelled": len(self.data["y"])}

    def _ppo(self, sc, world, policy, progress):
        n_steps, metrics, rng = self.cfg.n_steps, {}, Streams(self.cfg.seed).numpy(f"train/batches-{self.round}")

        def learn(k: int, t: float, fleet: ControlledFleet) -> None:
            nonlocal metrics
            if k and k % n_steps == 0:
                metrics = self._update(policy, rng)
                _report(progress, self.round, self.cfg.days, t)

        fleet = _simulate(sc, world, self.cfg.days, policy, learn)
        return fleet, self._update(policy, rng) if len(policy.rewards) > 1 else metrics

    def _update(self, policy: _Policy, rng: np.random.Generator) -> dict[str, float]:
        """A PPO update on the ticks ``policy`` recorded since the last (of ``ppo_houses`` houses drawn
        by ``rng``); the newest waits for its successor."""
        n, take = len(policy.obs[0]), self.cfg.ppo_houses
        rows = (
            slice(None) if take is None or take >= n else torch.as_tensor(np.sort(rng.choice(n, take, replace=False)))
        )
        obs, actions, rewards = (
            torch.stack(policy.obs)[:, rows],
            torch.stack(policy.actions[:-1])[:, rows],
            torch.stack(policy.rewards[:-1])[:, rows],
        )
        gamma = self.core.cfg.discount(self.scenario.control_period)
        metrics = self.core.update(shape_rewards(Rollout(obs, actions, rewards), self.core.cfg, gamma), gamma)
        del policy.obs[:-1], policy.actions[:-1], policy.rewards[:-1]
        return metrics

    def state_dict(self) -> dict:
        return {"round": self.round, "core": self.core.state_dict(), "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, self.STATE)
        self.round = entry(state, "round", int)
        load_child(state, "core", self.core)
        data = entry(state, "data", dict)
        expect_keys(data, ("x", "y"))
        self.data = {"x": torch.as_tensor(data["x"]), "y": torch.as_tensor(data["y"])}


def _report(progress: Callable[[float], None] | None, round_: int, days: int, t: float) -> None:
    if progress is not None:
        progress(round_ * days * 86400.0 + t)


# --- the training folder -------------------------------------------------------------------


def train(
    scenario: Scenario,
    out: Path,
    cfg: TrainConfig,
    device: str = "cpu",
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Train a policy for ``scenario`` into the folder ``out`` and return its record (train.json).

    ``out`` must not exist (or be empty) unless ``overwrite`` (then it must be an earlier
    training folder: only :data:`TRAIN_FILES` are deleted) or ``resume``: continue from its
    checkpoint, which must have been made with the same scenario and config. ``progress`` is
    called with the simulated seconds trained so far."""
    trainer = Trainer(scenario, cfg, device)
    round_scenario(scenario, cfg, 0)  # widened too far: refused before anything is written
    record = {"config": cfg.model_dump(mode="json"), "scenario": dump_scenario(scenario), "device": device}
    if resume:
        record = _resumed(out, trainer, record)
    else:
        _fresh_folder(out, overwrite)
        record["rounds"] = []
    started = time.monotonic()
    while trainer.round < len(cfg.schedule()):
        record["rounds"].append({**trainer.step(progress), "wall_s": time.monotonic() - started})
        _atomic_write(out / CHECKPOINT, lambda write: save_state(write, "pretrain", {"trainer": trainer.state_dict()}))
        (out / RECORD).write_text(json.dumps(record, indent=1))
        _report(progress, trainer.round, cfg.days, 0.0)
    save_policy(out / POLICY, trainer.core.actor)
    return record


def _fresh_folder(out: Path, overwrite: bool) -> None:
    """Make ``out``; RunDirError, changing nothing, if it holds anything and ``overwrite`` does not allow
    deleting it (only an earlier training folder's :data:`TRAIN_FILES` are ever deleted)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RunDirError(f"{out}: exists and is not a folder (or is a link); choose another output with -o")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunDirError(
                f"{out}: already exists; nothing was changed. Choose another output with -o, pass --resume to "
                "continue its training, or --overwrite to replace it"
            )
        if not (out / RECORD).is_file() or (out / RECORD).is_symlink():
            raise RunDirError(
                f"{out}: has no {RECORD}, so it is not a training folder; refusing to delete anything in it"
            )
        for name in TRAIN_FILES:
            if (out / name).is_file() or (out / name).is_symlink():
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)


def _resumed(out: Path, trainer: Trainer, record: dict) -> dict:
    """The record of the training in ``out``, whose checkpoint ``trainer`` takes; ConfigError if it
    was made with another scenario or config, RunDirError if there is nothing to resume."""
    if (out / POLICY).exists():
        raise RunDirError(f"{out / POLICY}: the training in {out} is finished; nothing to resume")
    try:
        earlier = json.loads((out / RECORD).read_text())
        state = load_state(out / CHECKPOINT, "pretrain", MAX_CHECKPOINT_BYTES)
    except (OSError, ValueError, StateFileError) as e:
        raise RunDirError(f"{out}: no training to resume ({e})") from None
    changed = [key for key in ("config", "scenario") if earlier.get(key) != record[key]]
    if changed:
        raise ConfigError(
            f"{out}: was trained with another {' and '.join(changed)}; resume with the same scenario, --set and "
            f"options as in its {RECORD}, or train into another folder"
        )
    try:
        expect_keys(state, ("trainer",))
        load_child(state, "trainer", trainer)
    except StateMismatch as e:
        raise RunDirError(f"{out / CHECKPOINT}: {e}") from None
    return {**record, "rounds": earlier.get("rounds", [])[: trainer.round]}


def _atomic_write(path: Path, write: Callable[[Callable], None]) -> None:
    """Write ``path`` through a temporary file beside it, so that a crash leaves the old one whole."""
    tmp = path.with_name(path.name + ".tmp")
    with create_new(tmp) as f:
        write(f.write)
    os.replace(tmp, path)
