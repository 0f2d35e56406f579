"""One run split by site across Ray actors that advance in lockstep at the control tick.

Who does what:

- a **shard** (one Ray actor, :class:`Shard`) holds a contiguous group of whole sites: their
  buildings and their controller (learning, if it learns), and the rule-based baseline's. At
  every control tick it computes its devices' conditions (weather, schedules, tariff and their
  previews: functions of the time and of each device's parameters), senses, acts, steps the
  physics and computes the rewards: the per-device work, which grows with the fleet;
- the **coordinator** (:class:`SplitSimulation`, in the calling process) is an ordinary
  :class:`~fleet.sim.engine.Simulation` of the whole fleet that keeps everything fleet-wide:
  the sensor noise, churn and link cuts, the network model with its one broker, the collector,
  the consensus workload, the KPIs and the metrics. At each control tick it sends every shard
  whether each of its devices is online and its sensor noise, (N_shard,) each, waits for all
  of them (lockstep), and gathers their power, temperatures and comfort violation, (N,) each,
  into its own fleet, which its other SimPy processes (telemetry, metrics) read as in a single run.

Messages go through the coordinator: the network model stays there, because its single broker
is one FIFO queue that orders the messages of every site, and its generators draw per batch in
device order. Telemetry, status, will and consensus messages therefore take exactly the single
run's path and latency, and so do a diffusion learner's parameters (below).

**Why the split equals the single run, bit for bit.** Every random number of the
coordinator's is drawn there, from the same named streams (:mod:`fleet.sim.rng`) in the same
order as in a single run: the sensor noise (N,) for the whole fleet, then sliced; churn and the
network per fleet-wide batch. The per-device arithmetic (physics, thermostat, rewards, a
learner's forward passes and updates) is per device, and a site's feeder load sums its own
devices in the same order on a shard; fleet totals (KPIs, metrics) are summed by the
coordinator over the gathered (N,) vectors, as a single run sums them, so even the rounding is
the same. A checkpoint of a split run is a single run's checkpoint (``fleet resume`` continues
it in one process, with the same result).

**A learner that learns alone** (``independent-v1``) runs on the shards too. Each shard builds
it for its devices from the scenario's seed: every device starts from the parameters a single
device draws (``common_init``), and its torch generator from the same seed as the single run's.
At each tick the learner draws one uniform number per device of the *whole fleet* and keeps its
rows (:attr:`~fleet.learners.stacked.ActorCritic.fleet_rows`; N numbers, cheap next to the
forward pass), so every shard's generator stays where the single run's is and each device gets
the single run's number. An update's metrics are fleet means of per-device terms: every shard
returns its terms, (N_shard, T) each, and the coordinator averages them gathered in the single
run's memory layout (:func:`gather_rows`), so they add up in the same order. Its guard counts
are summed, its parameters gathered for ``learner/param_disagreement`` and the checkpoint.

**A learner that diffuses** (``diffusion-v1``) also holds, on each shard, the topology's edges
into the shard's devices (:func:`shard_topology`: receivers numbered within the shard, senders
anywhere in the fleet) and what arrived on them. After an update every shard gives the
coordinator what its devices publish; the coordinator joins them in device order, as the single
learner publishes, and sends them through its network model. What arrives goes, delivery by
delivery in arrival order, to the shard of its receiver. Two options decide over more than a
device and are refused: ``weights: metropolis`` (a neighbour's weight depends on its own degree)
and top-k messages (``comm.topk`` below 1: a round is dense if any publishing device is due).

**A learner with a cloud** (``centralized-v1``) keeps its devices on the shards and its cloud in
the coordinator (:class:`ShardedCloud`). The devices act with their copy of the broadcast policy,
drawing the fleet's exploration as ``independent-v1`` does, and after each update publish their
experience; the coordinator joins the shards' in device order and sends it through its network
model to the collector, where its cloud (built as the single run's, from the same seed) trains on
what arrived and broadcasts from endpoint N; each delivery of the policy goes to its receiver's
shard. The cloud's update draws no random number, so the shards' generators stay in step. The
checkpoint takes the devices' state from the shards and the cloud's from the coordinator.

**What is refused** (:func:`check_split`, a ConfigError naming the field): a controller other
than those of :data:`SPLIT_LEARNERS` (a planner's or an auction's state is not split);
``common_init: false``, whose initial parameters are one draw for the whole fleet; the two
diffusion options above; new installs (``fleet.installs``); a discomfort limit
(``learner.params.discomfort_limit``); a teacher (``learner.params.teacher``); more actors than sites, and a
real-time (mixed) run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from devices.building import DeviceParams
from devices.config import RuleBasedConfig
from devices.occupancy import Occupancy, comfort_violation_c
from devices.sensors import sense_temperature
from fleet.cluster import check_address, join_ray
from fleet.errors import ConfigError
from fleet.learners import LearnerContext, make_learner
from fleet.learners.actor_critic import DiffusionLearner, IndependentLearner
from fleet.learners.base import Deliveries
from fleet.learners.centralized import CentralizedLearner
from fleet.learners.comm import Publication
from fleet.learners.guard import ParamGuard
from fleet.learners.rule_based import RuleBasedLearner
from fleet.learners.stacked import fleet_means
from fleet.scenario import Scenario
from fleet.sim.engine import ControlledFleet, Simulation, learner_context
from fleet.sim.rng import Streams
from fleet.sim.topology import Topology
from fleet.sim.world import World
from fleet.threads import thread_env

SPLIT_LEARNERS = (RuleBasedLearner.name, IndependentLearner.name, DiffusionLearner.name, CentralizedLearner.name)
"""Controllers whose split run equals the single run (see the module docstring)."""


def check_split(scenario: Scenario, actors: int, realtime: bool = False) -> None:
    """ConfigError unless ``scenario`` can run split across ``actors`` Ray actors with the single run's results."""
    if actors < 1:
        raise ConfigError(f"--actors {actors}: must be at least 1 (1 runs in this process, without Ray)")
    if actors == 1:
        return
    sites = len(scenario.fleet.sites)
    if actors > sites:
        raise ConfigError(
            f"--actors {actors}: scenario {scenario.name!r} has {sites} site(s) in fleet.sites, and a split puts whole "
            f"sites on each actor; use at most {sites}"
        )
    if scenario.learner.name not in SPLIT_LEARNERS:
        raise ConfigError(
            f"learner.name: {scenario.learner.name!r} cannot run split across actors (--actors {actors}) with the "
            f"results of a single run: it keeps state over more than one device (a plan, a market) "
            f"that an actor does not hold; split runs support {', '.join(SPLIT_LEARNERS)}. Run it with --actors 1"
        )
    if scenario.fleet.installs:
        raise ConfigError(
            f"fleet.installs: new installs reset devices on whichever actor holds them, which a split run "
            f"(--actors {actors}) does not do; run it with --actors 1, or remove fleet.installs"
        )
    params = scenario.learner.params
    if params.get("weights") == "metropolis":
        raise ConfigError(
            "learner.params.weights: metropolis weighs each neighbour by its own degree, which an actor holding "
            f"other devices does not know; a split run (--actors {actors}) needs uniform"
        )
    if params.get("comm", {}).get("topk", 1.0) < 1.0:
        raise ConfigError(
            "learner.params.comm.topk: with top-k messages a round is dense if any publishing device is due, a "
            f"decision over the whole fleet; a split run (--actors {actors}) needs dense messages (topk: 1)"
        )
    if params.get("discomfort_limit") is not None:
        raise ConfigError(
            "learner.params.discomfort_limit: a split run (--actors "
            f"{actors}) averages only the learner core's per-device terms, not the multipliers' metrics; "
            "run it with --actors 1, or remove the limit"
        )
    if params.get("teacher") is not None:
        raise ConfigError(
            f"learner.params.teacher: a split run (--actors {actors}) averages only the learner core's per-device "
            "terms, not a teacher's metrics, and does not split a planner's state; run it with --actors 1"
        )
    if params.get("common_init") is False:
        raise ConfigError(
            f"learner.params.common_init: false draws every device's initial parameters from one fleet-wide draw, "
            f"which an actor holding some devices cannot reproduce; a split run (--actors {actors}) needs it true"
        )
    if realtime:
        raise ConfigError(f"--actors {actors}: a real-time (mixed) run is not split; leave out --actors or --realtime")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--actors {actors}: a split run needs Ray, which is not installed (pip install fleet-sim[ray])"
        ) from None


def site_groups(devices_per_site: list[int], k: int) -> list[range]:
    """``k`` contiguous groups of sites (indices into ``devices_per_site``), each ending at the
    site boundary nearest to an equal share of the devices, none empty. Needs ``k <= len(devices_per_site)``."""
    total = np.cumsum(devices_per_site)
    cuts = [0]
    for j in range(1, k):
        nearest = int(np.argmin(np.abs(total - j * total[-1] / k))) + 1
        cuts.append(min(max(nearest, cuts[-1] + 1), len(devices_per_site) - (k - j)))
    cuts.append(len(devices_per_site))
    return [range(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def shard_world(world: World, sites: range) -> tuple[World, slice]:
    """The world of the devices of ``sites`` (contiguous, as devices are numbered site by site),
    with the slice of the fleet's devices it holds. Its topology holds the edges into its devices
    (:func:`shard_topology`)."""
    rows = np.flatnonzero((world.site_of >= sites.start) & (world.site_of < sites.stop))
    devices = slice(int(rows[0]), int(rows[-1]) + 1)
    params = DeviceParams(**{f.name: getattr(world.params, f.name)[devices] for f in fields(DeviceParams)})
    part = replace(
        world,
        site_names=world.site_names[sites.start : sites.stop],
        site_of=world.site_of[devices] - sites.start,
        device_names=world.device_names[devices],
        feeder_kw=world.feeder_kw[sites.start : sites.stop],
        profile_of=world.profile_of[devices],
        params=params,
        occupancy=Occupancy(world.occupancy.cfg, params.occupancy_shift_h),
        topology=None if world.topology is None else shard_topology(world.topology, devices),
    )
    return part, devices


def shard_topology(topology: Topology, devices: slice) -> Topology:
    """The edges of ``topology`` into ``devices``: their receivers numbered within the shard, their
    senders in the fleet (anywhere), keyed as the fleet's (``n`` is the fleet's; its ``degree`` is not the shard's)."""
    into = (topology.receiver >= devices.start) & (topology.receiver < devices.stop)
    return Topology(topology.n, topology.receiver[into] - devices.start, topology.sender[into])


@dataclass
class TickResult:
    """What a shard's fleet (or baseline) did in one control tick; every array (N_shard,) but ``site_load``."""

    power: np.ndarray
    """Electrical power drawn over the tick, kW."""
    temp: np.ndarray
    """Indoor temperature at the end of the tick, degC."""
    violation: np.ndarray
    """Degrees outside the comfort band at the end of the tick."""
    site_load: np.ndarray
    """(S_shard,) load of each of the shard's sites, kW."""


class Shard:
    """The buildings and controllers of a group of whole sites; a Ray actor of :class:`SplitSimulation`."""

    def __init__(self, scenario: Scenario, world: World, device: str, fleet_rows: tuple[int, slice]) -> None:
        """``fleet_rows``: ``(N, rows)``, the shard's devices are the rows ``rows`` of a fleet of N."""
        s = self.scenario = scenario
        self.world = world
        mode, n_levels = s.fleet.hvac.mode, len(s.fleet.hvac.power_levels_kw)
        streams = Streams(s.seed)
        ctx = learner_context(s, world, streams.numpy("learner"), device, world.topology)
        self.learner = make_learner(s.learner.name, s.learner.params, ctx)
        if isinstance(self.learner, IndependentLearner):
            self.learner.core.fleet_rows = fleet_rows  # it draws the fleet's exploration and keeps its rows
        self.fleets = [ControlledFleet(world, mode, self.learner)]
        if s.outputs.baseline:
            baseline_ctx = LearnerContext(world.n, n_levels, mode, streams.numpy("baseline"), "cpu")
            self.fleets.append(ControlledFleet(world, mode, RuleBasedLearner(RuleBasedConfig(), baseline_ctx)))

    def tick(self, t: float, online: np.ndarray, noise: np.ndarray) -> list[TickResult]:
        """The control tick at ``t`` of the shard's fleet and baseline, given whether each of its
        devices is online and its sensor noise, (N_shard,) each; the conditions it computes itself."""
        s = self.scenario
        inputs = dict(self.world.conditions(t), online=online)
        weights = (s.reward.discomfort_per_degh, s.reward.overload_per_kwh)
        out = []
        for fleet in self.fleets:
            fleet.tick(inputs, noise, s.control_period, weights)
            temp = fleet.buildings.temp
            violation = comfort_violation_c(temp, inputs["band_lo"], inputs["band_hi"])  # as the tick computed it
            out.append(TickResult(fleet.power, temp, violation, fleet.site_load))
        return out

    def update(self, t: float) -> tuple[dict[str, torch.Tensor] | None, dict]:
        """The learner's update at ``t``: the per-device terms of its metrics, (N_shard, T) each
        (None if it did not learn), and its guard's counts."""
        learned = self.learner.update(t)
        return (self.learner.core.last_terms if learned else None), self.learner.guard.state_dict()

    def flat_params(self) -> torch.Tensor:
        """The learner's parameters of each device, (N_shard, P)."""
        return self.learner.flat_params()

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Messages that reached the shard's devices (receivers numbered within the shard)."""
        self.learner.inbox(kind, got)

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        """What the shard's active devices, (N_shard,) bool, publish (senders numbered within the shard)."""
        return self.learner.outbox(active)

    def controller_states(self) -> list[dict]:
        """The state of the shard's controller and baseline controller."""
        return [fleet.controller.state_dict() for fleet in self.fleets]


def gather_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Tensors (N_j, ...) of the shards, in device order -> (N, ...), laid out in memory as the
    parts are (by the largest): a mean over it then adds up in the order of the single run's."""
    big = max(parts, key=len)
    order = sorted(range(big.dim()), key=lambda d: -big.stride(d))
    shape = [sum(len(p) for p in parts), *big.shape[1:]]
    out = torch.empty([shape[d] for d in order], dtype=big.dtype).permute(*np.argsort(order).tolist())
    return torch.cat(parts, 0, out=out)


SAME_ON_EVERY_SHARD = ("gen",)
"""State arrays that every shard holds alike: the learner's generator (each draws for the whole fleet)."""
SUMMED = ("rejected", "rollbacks")
"""State entries that are counts over the shard's devices: the fleet's is their sum."""


def gather_state(parts: list, key: str = "") -> object:
    """The state of a controller of the whole fleet from its shards' ``parts`` (device order):
    per-device arrays joined on their device axis (the last for the running moments (3, N), else
    the first), :data:`SUMMED` counts added, the rest (:data:`SAME_ON_EVERY_SHARD`, scalars such as
    the counts of updates and steps, None) the first shard's."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: gather_state([p[k] for p in parts], k) for k in first}
    if isinstance(first, list):
        return [gather_state(list(column), key) for column in zip(*parts)]
    if key in SUMMED:
        return sum(parts)
    if key in SAME_ON_EVERY_SHARD or getattr(first, "ndim", 0) == 0:
        return first
    if key.endswith("_norm"):
        return torch.cat(parts, 1)
    return torch.cat(parts) if isinstance(first, torch.Tensor) else np.concatenate(parts)


def _one_device(scenario: Scenario, device: str):
    """The scenario's controller built for a fleet of one device: what the coordinator needs
    of it (its flags and, for a learner, a guard to keep the shards' counts) at no cost per device."""
    s = scenario
    alone = Topology(1, np.zeros(0, np.int64), np.zeros(0, np.int64))
    levels, mode = len(s.fleet.hvac.power_levels_kw), s.fleet.hvac.mode
    ctx = LearnerContext(1, levels, mode, Streams(s.seed).numpy("learner"), device, alone)
    return make_learner(s.learner.name, s.learner.params, ctx)


class ShardedController:
    """A controller whose devices live on the shards, as the coordinator's fleet sees it: the
    flags of ``local`` (the same controller, built for one device), and its state gathered from
    the shards (device order)."""

    def __init__(self, split: SplitSimulation, which: int, local) -> None:
        """``which``: 0 for the fleet's controller, 1 for the baseline's."""
        self.split, self.which = split, which
        self.name, self.communicates, self.exchange = local.name, local.communicates, local.exchange
        self.update_every, self.metric_keys = local.update_every, local.metric_keys

    def state_dict(self) -> dict:
        import ray

        states = ray.get([s.controller_states.remote() for s in self.split.shards])
        return gather_state([state[self.which] for state in states])

    def load_state_dict(self, state: dict) -> None:
        """Never: a split run's checkpoint is a single run's, and ``fleet resume`` continues it in one process."""
        raise ConfigError("a split run is not restored from a checkpoint: fleet resume continues it in one process")


class ShardedLearner(ShardedController):
    """A learning controller on the shards: each updates its devices; the coordinator averages
    their metrics over the fleet, adds up their guards' counts and gathers their parameters."""

    def __init__(self, split: SplitSimulation, local: IndependentLearner) -> None:
        super().__init__(split, 0, local)
        self.local = local
        self.guard = local.guard

    def update(self, t: float) -> dict[str, float]:
        import ray

        results = ray.get([s.update.remote(t) for s in self.split.shards])
        counts = gather_state([guard for _, guard in results])
        self.guard.load_state_dict(counts)
        if results[0][0] is None:
            return {}
        terms = [shard_terms for shard_terms, _ in results]
        return fleet_means({key: gather_rows([part[key] for part in terms]) for key in terms[0]})

    def flat_params(self) -> torch.Tensor:
        import ray

        return gather_rows(ray.get([s.flat_params.remote() for s in self.split.shards]))

    @property
    def qos(self) -> int:
        return self.local.qos

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Each delivery to the shard of its receiver, in arrival order."""
        import ray

        calls = []
        for shard, rows in zip(self.split.shards, self.split.rows):
            mine = (got.receiver >= rows.start) & (got.receiver < rows.stop)
            if mine.any():
                part = Deliveries(
                    got.receiver[mine] - rows.start, got.sender[mine], got.published_at[mine], got.msg[mine], got.arrays
                )
                calls.append(shard.inbox.remote(kind, part))
        ray.get(calls)

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        """The shards' publications of each kind as one, senders in device order (messages are
        dense: :func:`check_split`), the kinds in the order published."""
        import ray

        rows = self.split.rows
        parts = ray.get([shard.outbox.remote(active[r]) for shard, r in zip(self.split.shards, rows)])
        out = []
        for kind in dict.fromkeys(kind for part in parts for kind, _ in part):
            pubs = [(r.start, pub) for r, part in zip(rows, parts) for k, pub in part if k == kind]
            first = pubs[0][1]
            sender = np.concatenate([start + pub.sender for start, pub in pubs])
            arrays = [np.concatenate(column) for column in zip(*(pub.arrays for _, pub in pubs))]
            out.append((kind, Publication(sender, arrays, first.dtypes, first.dense)))
        return out


CLOUD_STATE = ("cloud", "cloud_updates", "broadcast_due", "inbound")
"""State of a centralized learner that is its cloud's: the coordinator's, not the shards'."""


class ShardedCloud(ShardedLearner):
    """The centralized learner split: its devices on the shards (each acts, drawing the fleet's
    exploration, and publishes its experience), its cloud here, in ``local`` (the learner built
    for one device, whose cloud starts from the single run's): it trains on the experience the
    network delivers to the collector and broadcasts to every device, endpoint N of the fleet."""

    def __init__(self, split: SplitSimulation, local: CentralizedLearner) -> None:
        super().__init__(split, local)
        self.guard = ParamGuard(local.cfg.guard)
        """The devices' counts (from the shards) and the cloud's rollbacks (``local.guard``), added up."""

    def update(self, t: float) -> dict[str, float]:
        """The shards package their devices' experience; the cloud trains on what reached it."""
        super().update(t)
        metrics = self.local.update(t)
        self.guard.load_state_dict(gather_state([self.guard.state_dict(), self.local.guard.state_dict()]))
        return metrics

    def inbox(self, kind: str, got: Deliveries) -> None:
        """Experience to the cloud; the cloud's policy to each receiver's shard."""
        if kind == "experience":
            self.local.inbox(kind, got)
        else:
            super().inbox(kind, got)

    def outbox(self, active: np.ndarray) -> list[tuple[str, Publication]]:
        """The devices' experience (from the shards), then the cloud's broadcast, if due, from endpoint N."""
        cloud = [(kind, replace(pub, sender=np.array([self.split.world.n]))) for kind, pub in self.local.outbox(active)]
        return super().outbox(active) + cloud

    def state_dict(self) -> dict:
        """The single run's state: the devices' gathered from the shards, the cloud's and guard's from here."""
        cloud = self.local.state_dict()
        return {**super().state_dict(), **{key: cloud[key] for key in CLOUD_STATE}, "guard": self.guard.state_dict()}


def _sharded(split: SplitSimulation, local) -> ShardedController:
    """The coordinator's view of the fleet's controller ``local`` (built for one device)."""
    if isinstance(local, CentralizedLearner):
        return ShardedCloud(split, local)
    return ShardedLearner(split, local) if isinstance(local, IndependentLearner) else ShardedController(split, 0, local)


class SplitSimulation(Simulation):
    """A run of ``scenario`` whose devices are split by site across ``actors`` Ray actors
    (see the module docstring); it joins the Ray this process joined, else starts a local one
    (or joins the cluster at ``RAY_ADDRESS``). :meth:`close` ends the actors."""

    def __init__(self, scenario: Scenario, actors: int, device: str = "cpu") -> None:
        import ray

        check_split(scenario, actors)
        address = os.environ.get("RAY_ADDRESS")
        if address and not ray.is_initialized():
            check_address(address, "RAY_ADDRESS")
        local = _one_device(scenario, device)
        super().__init__(scenario, device, _sharded(self, local))
        self._ray_started = join_ray(address, actors, "RAY_ADDRESS")
        remote = ray.remote(Shard).options(num_cpus=1, runtime_env={"env_vars": thread_env(1)})
        groups = site_groups([site.devices for site in scenario.fleet.sites], actors)
        parts = [shard_world(self.world, sites) for sites in groups]
        self.rows = [devices for _, devices in parts]
        """The slice of the fleet's devices of each shard."""
        self.shards = [remote.remote(scenario, world, device, (self.world.n, rows)) for world, rows in parts]
        try:
            ray.get([shard.__ray_ready__.remote() for shard in self.shards])  # started: the run's time is the run's
        except BaseException:
            self.close()
            raise
        if self.baseline is not None:
            self.baseline.controller = ShardedController(self, 1, self.baseline.controller)

    def sense(self, t: float) -> tuple[dict, np.ndarray]:
        """What only the coordinator knows at ``t``: churn and link cuts up to ``t``, then
        ``({"time": t, "online": (N,) bool}, sensor noise (N,))``, drawn as a single run draws them.
        The conditions (weather, schedules, tariff, previews) are functions of ``t`` and of each
        device's parameters: every shard computes its own devices', in parallel and without sending them."""
        self._network_events(t)
        online = self.network.online[: self.world.n].copy()
        noise = sense_temperature(np.zeros(self.world.n), self.scenario.fleet.sensors.temp_noise_std_c, self.sensor_rng)
        return {"time": t, "online": online}, noise

    def act(self, inputs: dict, noise: np.ndarray) -> None:
        """The control tick on every shard at once, each on its devices' rows of ``inputs``
        (:meth:`sense`) and ``noise``; then the coordinator's fleets take the gathered power and
        temperatures and add up the KPIs."""
        import ray

        t, online = inputs["time"], inputs["online"]
        results = ray.get(
            [shard.tick.remote(t, online[rows], noise[rows]) for shard, rows in zip(self.shards, self.rows)]
        )
        price = np.full(self.world.n, self.world.tariff.price(t))  # as World.conditions has it
        dt_h = self.scenario.control_period / 3600.0
        fleets = [self.fleet] + ([self.baseline] if self.baseline is not None else [])
        for fleet, parts in zip(fleets, zip(*results)):
            gathered = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(TickResult)}
            fleet.power, fleet.site_load = gathered["power"], gathered["site_load"]
            fleet.buildings.temp = gathered["temp"]
            fleet.kpis.add(fleet.power, fleet.site_load, self.world.feeder_kw, price, gathered["violation"], dt_h)
        self.ticks += 1

    def close(self) -> None:
        """End the shards (and the local Ray this simulation started)."""
        import ray

        for shard in self.shards:
            ray.kill(shard)
        if self._ray_started:
            ray.shutdown()
