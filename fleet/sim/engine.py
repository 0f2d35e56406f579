"""The simulation engine: SimPy processes over a vectorized fleet.

Processes (each one SimPy process for the whole fleet, never one per device):

- ``control``   every ``control_period``: churn, link cuts and new installs
  (:mod:`fleet.sim.installs`), sensing (with noise), the feeder meters' readings that
  arrived go to a learner that reads them, the learner acts, one
  vectorized physics step, rewards, KPIs, and the meters publish the feeder loads
  (:mod:`fleet.sim.meter`, only for such a learner); the rule-based baseline runs on
  identical buildings with the same sensor noise (common random numbers), so KPI ratios
  compare controllers, not luck;
- ``learning``  every ``update_every`` control ticks of the learner: parameter messages that
  arrived go to the learner's inbox, the learner updates, and publishes per its policy (the
  devices of ``fleet.hostile`` publish poison instead: :mod:`fleet.sim.faults`);
- ``telemetry`` every telemetry period: online devices publish their state to the collector;
- ``consensus`` every consensus period: the neighbour-averaging exchange;
- ``metrics``   every ``metrics_period``: one row of metrics;
- ``market`` and ``clearing``, with an auction learner's feeder market, every market period: the
  devices bid, and a clearing window later the auctioneer clears (:mod:`fleet.sim.market`); the
  control tick hands the devices the clearings that reached them.

A mixed fleet (:mod:`fleet.sim.bridge`) runs the same processes on the wall clock, with the
learner's messages going through a real broker instead of the simulated network (and the meter
readings of each site with a real device published there too; its market takes those devices' bids
from the broker and publishes their sites' clearings there).

At a common time they run in that order (see :class:`PhasedTimeout`).

Messages travel through :class:`fleet.net.network.SimNetwork`, which schedules deliveries in
bulk; consumers drain what has arrived by their clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import simpy
import torch

from devices.building import ThermostatFleet
from devices.config import RuleBasedConfig
from devices.occupancy import comfort_violation_c
from devices.sensors import sense_temperature
from fleet.learners import Deliveries, LearnerContext, Observation, make_learner
from fleet.learners.base import Learner, lookahead
from fleet.learners.rule_based import RuleBasedLearner
from fleet.mqtt.codec import DType, Kind, decode_batch, encode_batch
from fleet.mqtt.routing import TopicIndex
from fleet.mqtt.topics import KINDS, device_topic
from fleet.net.churn import Churn, LinkCuts
from fleet.net.network import Outgoing, SimNetwork, endpoint_topics
from fleet.scenario import DTYPES, Scenario, check_installs
from fleet.sim.consensus import ConsensusExchange
from fleet.sim.faults import poison
from fleet.sim.installs import GroupKpis, Installs
from fleet.sim.market import SimMarket
from fleet.sim.meter import METER, SiteMeters
from fleet.sim.rng import Streams
from fleet.sim.topology import Topology
from fleet.sim.world import World, build_world
from fleet.statefile import StateMismatch, array, attrs_state, entry, expect_keys, indices, load_attrs, within

TELEMETRY, STATUS, CONSENSUS = (KINDS.index(k) for k in ("telemetry", "status", "consensus"))
LEARNER_KINDS = ("params", "experience")
PHASE_CONTROL, PHASE_LEARN, PHASE_TELEMETRY, PHASE_CONSENSUS, PHASE_METRICS, PHASE_MARKET = range(6)


class PhasedTimeout(simpy.Timeout):
    """A timeout that fires, among events due at the same time, in the order of its phase.

    SimPy orders simultaneous events by priority, then by when they were scheduled; without
    phases a process with a long period would run before one with a short period at a common
    time, e.g. telemetry before the control tick that applies a link cut.
    """

    def __init__(self, env: simpy.Environment, delay: float, phase: int) -> None:
        self.env, self.callbacks, self._value, self._delay, self._ok = env, [], None, delay, True
        env.schedule(self, simpy.core.NORMAL + phase, delay)


COLLECTOR_SITE, COLLECTOR_NAME = "cloud", "collector"


@dataclass
class Kpis:
    """Running KPI accumulators of one controlled fleet (fleet totals)."""

    energy_kwh: float = 0.0
    cost: float = 0.0
    discomfort_degh: float = 0.0
    peak_kw: float = 0.0
    ramping_kw: float = 0.0
    overload_kwh: float = 0.0
    last_load_kw: float | None = field(default=None, repr=False)

    def add(
        self,
        power: np.ndarray,
        site_load: np.ndarray,
        feeder_kw: np.ndarray,
        price: np.ndarray,
        violation: np.ndarray,
        dt_h: float,
    ) -> None:
        load = float(site_load.sum())
        self.energy_kwh += load * dt_h
        self.cost += float(np.dot(power, price)) * dt_h
        self.discomfort_degh += float(violation.sum()) * dt_h
        self.peak_kw = max(self.peak_kw, load)
        self.ramping_kw += 0.0 if self.last_load_kw is None else abs(load - self.last_load_kw)
        self.overload_kwh += float(np.maximum(site_load - feeder_kw, 0).sum()) * dt_h
        self.last_load_kw = load

    def state_dict(self) -> dict[str, float | None]:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        names = [f.name for f in fields(self)]
        expect_keys(state, names)
        for name in names:
            none_allowed = name == "last_load_kw" and state[name] is None
            setattr(self, name, None if none_allowed else float(entry(state, name, (int, float))))

    def as_dict(self) -> dict[str, float]:
        return {
            "energy_kwh": self.energy_kwh,
            "cost": self.cost,
            "discomfort_degh": self.discomfort_degh,
            "peak_kw": self.peak_kw,
            "ramping_kw": self.ramping_kw,
            "feeder_overload_kwh": self.overload_kwh,
        }


def param_disagreement(params: torch.Tensor, group_of: np.ndarray) -> float:
    """Relative standard deviation of parameters (N, P) across the devices of each group (the
    devices that can reach each other), averaged over groups: RMS distance from the group mean
    divided by the RMS norm of the group mean. In the parameters' dtype and on their device;
    float32 deviations from the mean are exact to a few units in their last place."""
    out = []
    for g in np.unique(group_of):
        x = params.index_select(0, torch.as_tensor(np.flatnonzero(group_of == g), device=params.device))
        mean = x.mean(0)
        x -= mean
        out.append(
            float(
                torch.linalg.vector_norm(x, dim=1).square().mean().sqrt()
                / torch.linalg.vector_norm(mean).clamp(min=1e-12)
            )
        )
    return float(np.mean(out))


def tick_reward(
    power: np.ndarray,
    price: np.ndarray,
    violation: np.ndarray,
    site_load: np.ndarray,
    feeder_kw: np.ndarray,
    weights: tuple[float, float],
    dt_h: float,
) -> np.ndarray:
    """Reward (N,) of one control tick: minus the energy cost, the discomfort penalty and the
    device's share of its feeder's overload, over ``dt_h`` hours.

    ``power`` (N,) kW drawn, ``price`` (N,) per kWh, ``violation`` (N,) degC outside the band at
    the end of the tick, ``site_load`` and ``feeder_kw`` (N,) the load and capacity of each
    device's feeder, kW; ``weights`` = (per degree-hour of discomfort, per kWh of overload).
    Shared by the simulator and the edge agent.
    """
    overload = np.maximum(site_load - feeder_kw, 0)
    share = power / np.maximum(site_load, 1e-9)
    per_discomfort, per_overload = weights
    return -(power * price + per_discomfort * violation + per_overload * overload * share) * dt_h


class ControlledFleet:
    """Buildings of a world under one controller, with their KPIs."""

    def __init__(self, world: World, mode: str, controller: Learner, groups: GroupKpis | None = None) -> None:
        self.world = world
        self.buildings = ThermostatFleet(world.params, mode)
        self.controller = controller
        self.kpis = Kpis()
        self.groups = groups
        """The KPIs of groups of devices (the installs'), or None."""
        self.power = np.zeros(world.n)
        self.site_load = np.zeros(len(world.site_names))

    STATE = ("power", "site_load", "kpis", "groups", "controller")
    """With the buildings' temperatures (``temp``), what changes tick by tick (:mod:`fleet.statefile`)."""

    def state_dict(self) -> dict:
        return {"temp": self.buildings.temp, **attrs_state(self, self.STATE)}

    def load_state_dict(self, state: dict) -> None:
        expect_keys(state, ("temp", *self.STATE))
        load_attrs(self.buildings, {"temp": state["temp"]}, ("temp",))
        load_attrs(self, {name: state[name] for name in self.STATE}, self.STATE)

    def sense(self, obs_inputs: dict, noise: np.ndarray) -> Observation:
        """What the controller observes now: ``obs_inputs`` (the conditions and the link state),
        the indoor temperatures plus the sensor ``noise`` (N,), and the feeder loads of the last tick."""
        w = self.world
        feeder_frac = (self.site_load / w.feeder_kw)[w.site_of]
        return Observation(temp_c=self.buildings.temp + noise, feeder_load=feeder_frac, **obs_inputs)

    def tick(self, obs_inputs: dict, noise: np.ndarray, dt_s: float, reward_weights: tuple[float, float]) -> None:
        """Sense, act, step the physics, account KPIs and hand the learner its reward."""
        w = self.world
        obs = self.sense(obs_inputs, noise)
        levels = self.controller.act(obs)
        self.power = self.buildings.step(levels, obs.outdoor_c, dt_s)
        violation = comfort_violation_c(self.buildings.temp, obs.band_lo, obs.band_hi)  # at the end of the tick
        self.site_load = np.bincount(w.site_of, self.power, minlength=len(w.site_names))
        dt_h = dt_s / 3600.0
        self.kpis.add(self.power, self.site_load, w.feeder_kw, obs.price, violation, dt_h)
        if self.groups is not None:
            self.groups.add(self.power, obs.price, violation, dt_h)
        reward = tick_reward(
            self.power, obs.price, violation, self.site_load[w.site_of], w.feeder_kw[w.site_of], reward_weights, dt_h
        )
        self.controller.observe(reward)


def learner_context(
    s: Scenario, w: World, rng: np.random.Generator, device: str, topology: Topology | None
) -> LearnerContext:
    """The context the scenario's learner is built from for the devices of ``w``: what each device
    knows of itself (its heat pump's levels, the forecast's lead times, the reward's weights)."""
    return LearnerContext(
        w.n,
        len(s.fleet.hvac.power_levels_kw),
        s.fleet.hvac.mode,
        rng,
        device,
        topology,
        s.control_period,
        levels_kw=w.params.levels_kw,
        forecast_lead_h=w.conditions(0.0)["forecast_lead_h"],
        reward_weights=(s.reward.discomfort_per_degh, s.reward.overload_per_kwh),
    )


class Simulation:
    """One run of a scenario. ``run()`` drives it; ``on_row`` receives each metrics row."""

    def __init__(self, scenario: Scenario, device: str = "cpu", controller: Learner | None = None) -> None:
        """``controller``: controls the fleet instead of the scenario's learner (the
        environments of :mod:`fleet.env` pass one that applies the actions they are given)."""
        self.scenario = s = scenario
        self.streams = Streams(s.seed)
        self.world = w = build_world(s, self.streams)
        mode, n_levels = s.fleet.hvac.mode, len(s.fleet.hvac.power_levels_kw)
        if controller is None:
            ctx = learner_context(s, w, self.streams.numpy("learner"), device, w.topology)
            controller = make_learner(s.learner.name, s.learner.params, ctx)
        self.installs = self._installs(controller)
        """The new installs of ``fleet.installs`` (:mod:`fleet.sim.installs`), or None."""
        self.fleet = ControlledFleet(w, mode, controller, self._install_kpis())
        self.baseline = None
        if s.outputs.baseline:
            baseline_ctx = LearnerContext(w.n, n_levels, mode, self.streams.numpy("baseline"), "cpu")
            baseline = RuleBasedLearner(RuleBasedConfig(), baseline_ctx)
            self.baseline = ControlledFleet(w, mode, baseline, self._install_kpis())
        self.sensor_rng = self.streams.numpy("sensors")
        self.meters = (
            SiteMeters(w.n + 1, w.site_names, w.site_of, w.feeder_kw)
            if getattr(controller, "reads_meter", False)
            else None
        )
        """The feeders' meters, for a learner that reads them (``reads_meter``); None otherwise."""
        self._build_network()
        self.churn = Churn(
            w.n, s.network.churn.failures_per_day / 86400.0, s.network.churn.mean_downtime, self.streams.numpy("churn")
        )
        self.cuts = LinkCuts([(c.start, c.end, self._cut_devices(c)) for c in s.network.link_cuts])
        self.group_of = w.site_of if s.topology.scope == "site" else np.zeros(w.n, np.int64)
        self.consensus = ConsensusExchange(
            s.workloads.consensus, w.topology, self.group_of, self.streams.numpy("consensus")
        )
        self.consensus_rounds = 0
        self.status_seq = np.zeros(w.n, np.int64)
        self.learner_seq = np.zeros((w.n + 1, len(KINDS)), np.int64)
        self.learner_invalid = 0
        self.learner_metrics: dict[str, float] = {}
        self.telemetry_seq = np.zeros(w.n, np.int64)
        self.pending_wills: list[tuple[np.ndarray, np.ndarray]] = []
        """(devices, time each went offline): wills not yet due."""
        self.offline_since = np.full(w.n, -np.inf)
        self.collector_invalid = 0
        self.env = simpy.Environment()
        self.bridge = None
        """The real broker of a mixed fleet (:func:`fleet.sim.bridge.attach`), or None: all simulated."""
        self.external = np.zeros(w.n, bool)
        """(N,) devices that are real agents: the simulation never publishes for them."""
        self.hostile = np.isin(w.device_names, s.fleet.hostile.devices)
        """(N,) devices that publish poison in place of their parameters (:mod:`fleet.sim.faults`)."""
        self.next_due: dict[str, float] = {}
        """Next due time of each periodic process (empty before the run starts)."""
        self.checkpoint_time = 0.0
        self.next_checkpoint = s.outputs.checkpoint_every or 0.0
        self.on_checkpoint = None
        self.ticks = 0
        self.sample = (
            np.linspace(0, w.n - 1, s.outputs.sample_devices).round().astype(int)
            if s.outputs.sample_devices
            else np.zeros(0, int)
        )

    # --- construction --------------------------------------------------------------------

    def _installs(self, controller: Learner) -> Installs | None:
        """The scenario's installs, or None without any; ConfigError naming ``fleet.installs`` if
        ``controller`` cannot reset a device's state."""
        s = self.scenario
        if not s.fleet.installs:
            return None
        check_installs(s, type(controller), s.name)
        return Installs(s.fleet.installs, self.world.n, self.streams.numpy("installs"))

    def _install_kpis(self) -> GroupKpis | None:
        """The KPIs of each install's devices under one controller, or None without installs."""
        return None if self.installs is None else GroupKpis(self.installs.devices)

    def _build_network(self) -> None:
        s, w = self.scenario, self.world
        collector = w.profile_names.index(s.network.collector_link)
        sites = [w.site_names[i] for i in w.site_of] + [COLLECTOR_SITE]
        names = w.device_names + [COLLECTOR_NAME]
        if self.meters is not None:  # endpoints N + 1 .. N + S, on the collector's link
            meter_sites, meter_names = self.meters.endpoints()
            sites, names = sites + meter_sites, names + meter_names
        profile_of = np.r_[w.profile_of, np.full(len(names) - w.n, collector)]
        index = TopicIndex(sites, names)
        profiles = [s.network.profiles[p] for p in w.profile_names]
        self.network = SimNetwork(
            index,
            profiles,
            profile_of,
            endpoint_topics(sites, names),
            s.network.broker,
            s.network.qos1,
            self.streams.numpy("uplink"),
            self.streams.numpy("downlink"),
        )
        self.collector = w.n
        self.network.subscribe(self.collector, ["fleet/+/+/telemetry", "fleet/+/+/status"])
        for i, topic in enumerate(self.meters.topics() if self.meters is not None else []):
            self.network.subscribe(i, [topic])
        self.market = (
            SimMarket(
                self.network,
                self.fleet.controller,
                w,
                self.collector,
                device_topic(COLLECTOR_SITE, COLLECTOR_NAME, "clearing"),
                self._arrived,
            )
            if getattr(self.fleet.controller, "market", False)
            else None
        )
        """The feeder market of an auction learner that trades (:mod:`fleet.sim.market`), or None."""
        exchange = self.fleet.controller.exchange
        if exchange == "cloud":
            self.network.subscribe(self.collector, ["fleet/+/+/experience"])
            for i in range(w.n):
                self.network.subscribe(i, [device_topic(COLLECTOR_SITE, COLLECTOR_NAME, "params")])
        kinds = ["consensus"] * s.workloads.consensus.enabled + ["params"] * (exchange == "neighbours")
        topo = w.topology
        for i in range(w.n) if kinds else ():
            nbrs = topo.sender[np.searchsorted(topo.receiver, i) : np.searchsorted(topo.receiver, i, "right")]
            self.network.subscribe(i, [device_topic(sites[j], names[j], kind) for kind in kinds for j in nbrs])

    def _cut_devices(self, cut) -> np.ndarray:
        by_site = np.flatnonzero(np.isin(self.world.site_of, [self.world.site_names.index(x) for x in cut.sites]))
        return np.union1d(by_site, np.array(cut.devices, dtype=np.int64))

    # --- processes -----------------------------------------------------------------------

    def _periodic(self, name: str, period: float, phase: int, step: Callable[[float], None], first: float):
        """Run ``step(now)`` every ``period`` from ``first``; ``next_due[name]`` says when next
        (a checkpoint records it so that a resumed run keeps the same schedule)."""
        yield PhasedTimeout(self.env, first, phase)
        while True:
            self.next_due[name] = self.env.now + period
            step(self.env.now)
            yield PhasedTimeout(self.env, period, phase)

    def _control(self, t: float) -> None:
        if self.market is not None:
            self.market.deliver(t)
        self.act(*self.sense(t))

    def sense(self, t: float) -> tuple[dict, np.ndarray]:
        """The first half of a control tick at ``t``: churn, link cuts and installs up to ``t``, then what
        every device senses apart from its own state: (the Observation's inputs, sensor noise (N,))."""
        s, w = self.scenario, self.world
        self._network_events(t)
        self._install(t)
        if self.meters is not None:
            self._read_meters(t)
        inputs = dict(w.conditions(t), online=self.network.online[: w.n].copy())
        if hours := getattr(self.fleet.controller, "lookahead_h", ()):
            inputs["lookahead"] = lookahead(w.occupancy, w.tariff, t, w.n, hours)
        return inputs, sense_temperature(np.zeros(w.n), s.fleet.sensors.temp_noise_std_c, self.sensor_rng)

    def act(self, inputs: dict, noise: np.ndarray) -> None:
        """The second half: the controller (and the baseline) act on what was sensed, physics, rewards."""
        s = self.scenario
        weights = (s.reward.discomfort_per_degh, s.reward.overload_per_kwh)
        self.fleet.tick(inputs, noise, s.control_period, weights)
        if self.baseline is not None:
            self.baseline.tick(inputs, noise, s.control_period, weights)
        if self.meters is not None:
            readings = self.meters.outgoing(self.env.now, self.fleet.site_load)
            self.network.publish(self.env.now, readings)
            if self.bridge is not None:  # the boards of a mixed fleet read theirs on the broker
                self.bridge.publish_readings(readings.rows)
        self.ticks += 1

    def _install(self, t: float) -> None:
        """Reset the controllers (and the baseline's) of the devices whose install is due by ``t``."""
        rows = np.zeros(0, np.int64) if self.installs is None else self.installs.due(t)
        if len(rows):
            self.fleet.controller.reset(rows, t)
            if self.baseline is not None:
                self.baseline.controller.reset(rows, t)

    def _read_meters(self, t: float) -> None:
        """Hand the meter readings that arrived by ``t`` to the learner, checked (:mod:`fleet.sim.meter`)."""
        for got in self.network.drain(METER, t):
            readings = self.meters.received(got)
            if readings is not None:
                self.fleet.controller.inbox("meter", readings)

    def _network_events(self, t: float) -> None:
        """Apply churn (births, wills, retained re-delivery) and link cuts up to ``t``."""
        net, n = self.network, self.world.n
        device, when, up = self.churn.advance(t)
        net.online[:n] = self.churn.online
        net.cut[:n] = self.cuts.down(t, n)
        went = device[~up]
        self.offline_since[went] = when[~up]
        if len(went):
            self.pending_wills.append((went, when[~up]))
        back = np.unique(device[up & self.churn.online[device]])
        if len(back):
            net.publish(t, self._status(back, t, online=True))
            net.resend_retained(t, back.tolist())
        self._fire_wills(t)

    def _fire_wills(self, t: float) -> None:
        """The broker publishes the will of each device still offline once its keep-alive expired."""
        delay = 1.5 * self.scenario.network.broker.keepalive
        due, later = [], []
        for dev, since in self.pending_wills:
            now = since + delay <= t
            still = now & ~self.network.online[dev] & (self.offline_since[dev] == since)
            due.append((dev[still], since[still] + delay))
            if not now.all():
                later.append((dev[~now], since[~now]))
        self.pending_wills = later
        dev = np.concatenate([d for d, _ in due]) if due else np.zeros(0, np.int64)
        if len(dev):
            at = np.concatenate([a for _, a in due])
            self.network.publish_from_broker(at, self._status(dev, at, online=False))

    def _status(self, dev: np.ndarray, t, online: bool) -> Outgoing:
        self.status_seq[dev] += 1
        flag = np.full((len(dev), 1), 1.0 if online else 0.0, np.float32)
        rows = encode_batch(Kind.STATUS, dev, self.status_seq[dev], t, [flag], DType.FLOAT32)
        return Outgoing(STATUS, dev, self.status_seq[dev], rows, qos=1, retain=True)

    def _reachable(self) -> np.ndarray:
        return ~self.network.unreachable[: self.world.n]

    def _learning(self, t: float) -> None:
        learner = self.fleet.controller
        if learner.communicates and self.bridge is not None:
            for kind, got in self.bridge.arrived(self.env, self._reachable()):
                learner.inbox(kind, got)
        elif learner.communicates:
            for kind in LEARNER_KINDS:
                for got in self._arrived(KINDS.index(kind), t):
                    learner.inbox(kind, got)
        self.learner_metrics = learner.update(t)
        if learner.communicates:
            for kind, pub in learner.outbox(self._reachable() & ~self.external):
                if kind == "params" and self.hostile.any():
                    pub = poison(pub, self.hostile, self.scenario.fleet.hostile.value)
                (self._publish_learner if self.bridge is None else self.bridge.publish)(t, kind, pub)

    def _arrived(self, kind: int, t: float) -> Iterator[Deliveries]:
        """The learner's or the market's messages of ``kind`` (index into KINDS) delivered by ``t``, a
        Deliveries per published batch; those that fail the codec's checks are counted and left out."""
        for got in self.network.drain(kind, t):
            dec = decode_batch(got.rows)
            ok = dec.valid[got.msg]
            self.learner_invalid += int((~ok).sum())
            m = got.msg[ok]
            if len(m):
                yield Deliveries(got.receiver[ok], got.sender[ok], dec.timestamp[m], m, list(dec.arrays))

    def _publish_learner(self, t: float, kind: str, pub) -> None:
        """Encode and publish a learner's publication (senders may include the cloud endpoint)."""
        if len(pub.sender) == 0:
            return
        k = KINDS.index(kind)
        self.learner_seq[pub.sender, k] += 1
        seq = self.learner_seq[pub.sender, k]
        rows = encode_batch(Kind[kind.upper()], pub.sender, seq, t, pub.arrays, pub.dtypes)
        self.network.publish(t, Outgoing(k, pub.sender, seq, rows, self.fleet.controller.qos))

    def _telemetry(self, t: float) -> None:
        cfg = self.scenario.workloads.telemetry
        dev = np.flatnonzero(self._reachable())
        self.telemetry_seq[dev] += 1
        b = self.fleet.buildings
        occupied = self.world.occupancy.occupied(t)
        lo, hi = self.world.occupancy.band_when(occupied)
        vec = np.stack([b.temp, self.fleet.power, lo, hi, occupied], axis=1)[dev]
        rows = encode_batch(
            Kind.TELEMETRY, dev, self.telemetry_seq[dev], t, [vec.astype(np.float32)], DTYPES[cfg.dtype]
        )
        self.network.publish(t, Outgoing(TELEMETRY, dev, self.telemetry_seq[dev], rows, cfg.qos))

    def _consensus(self, t: float) -> None:
        c = self.consensus
        active = self._reachable()
        for got in self.network.drain(CONSENSUS, t):
            c.receive(got)
        c.combine(t, active)
        self.network.publish(t, c.outgoing(t, active))
        self.consensus_rounds += 1

    def _metrics(self, t: float) -> None:
        self.on_row(self.metrics_row(t))
        every = self.scenario.outputs.checkpoint_every
        if self.on_checkpoint is not None and every is not None and t >= self.next_checkpoint:
            self.next_checkpoint = t + every
            self.on_checkpoint(self)

    # --- observation -----------------------------------------------------------------------

    def _collect(self, t: float) -> None:
        """The cloud collector drains telemetry and status, checking every payload."""
        for kind in (TELEMETRY, STATUS):
            for got in self.network.drain(kind, t):
                self.collector_invalid += int((~decode_batch(got.rows).valid[got.msg]).sum())

    def metrics_row(self, t: float) -> dict[str, float]:
        """The namespaced metrics of the run at time ``t``."""
        self._collect(t)
        w, f, st = self.world, self.fleet, self.network.stats
        dev = slice(0, w.n)
        row: dict[str, float] = {
            "time_s": t,
            "time_h": t / 3600.0,
            "weather/outdoor_c": w.weather.outdoor_c(t),
            "tariff/price": w.tariff.price(t),
            "fleet/mean_temp_c": float(f.buildings.temp.mean()),
            "fleet/power_kw": float(f.power.sum()),
            "fleet/online": int(self.network.online[dev].sum()),
        }
        row.update({f"kpi/{k}": v for k, v in f.kpis.as_dict().items()})
        if self.baseline is not None:
            row.update({f"baseline/{k}": v for k, v in self.baseline.kpis.as_dict().items()})
        row.update({f"feeder/{name}_kw": float(load) for name, load in zip(w.site_names, f.site_load)})
        learner = f.controller
        row.update({k: self.learner_metrics.get(k, float("nan")) for k in learner.metric_keys})
        if hasattr(learner, "flat_params"):
            row["learner/param_disagreement"] = param_disagreement(learner.flat_params(), self.group_of)
        if hasattr(learner, "guard"):
            row.update(learner.guard.metrics())
        if self.meters is not None:
            row.update(self.meters.metrics())
        if self.market is not None:
            row.update(self.market.metrics())
        if f.groups is not None:
            row.update(f.groups.metrics())
            row.update(self.baseline.groups.metrics("baseline_") if self.baseline is not None else {})
        row.update(
            {
                "net/bytes_sent": float(st.bytes_sent[dev].sum()),
                "net/bytes_received": float(st.bytes_received[dev].sum()),
                "net/messages_sent": float(st.messages_sent.sum()),
                "net/messages_delivered": float(st.messages_delivered.sum()),
                "net/messages_dropped": float(st.messages_dropped.sum()),
                "consensus/disagreement": self.consensus.disagreement()
                if self.scenario.workloads.consensus.enabled
                else float("nan"),
            }
        )
        lo, hi = w.occupancy.band(t)
        for i in self.sample:
            name = w.device_names[i]
            row[f"device/{name}/temp_c"] = float(f.buildings.temp[i])
            row[f"device/{name}/band_lo"] = float(lo[i])
            row[f"device/{name}/band_hi"] = float(hi[i])
            row[f"device/{name}/power_kw"] = float(f.power[i])
        return row

    # --- running ---------------------------------------------------------------------------

    def _schedule(self) -> dict[str, tuple[float, int, Callable[[float], None]]]:
        """The periodic processes of this run: name -> (period, phase, step)."""
        s = self.scenario
        procs = {"control": (s.control_period, PHASE_CONTROL, self._control)}
        if self.fleet.controller.update_every:
            procs["learning"] = (self.fleet.controller.update_every * s.control_period, PHASE_LEARN, self._learning)
        if s.workloads.telemetry.enabled:
            procs["telemetry"] = (s.workloads.telemetry.period, PHASE_TELEMETRY, self._telemetry)
        if s.workloads.consensus.enabled:
            procs["consensus"] = (s.workloads.consensus.period, PHASE_CONSENSUS, self._consensus)
        procs["metrics"] = (s.outputs.metrics_period, PHASE_METRICS, self._metrics)
        if self.market is not None:
            period = self.market.cfg.period
            procs["market"] = (period, PHASE_MARKET, lambda t: self.market.bid(t, self._reachable() & ~self.external))
            procs["clearing"] = (period, PHASE_MARKET, self._clear)
        return procs

    def _clear(self, t: float) -> None:
        """The market's clearing; in a mixed fleet the boards' bids join it, and their sites hear it on the broker."""
        if self.bridge is None:
            self.market.clear(t)
        else:
            self.bridge.publish_clearing(t, self.market.clear(t, self.bridge.bids(t - self.market.cfg.window)))

    def _first(self, name: str, period: float) -> float:
        """When a process first runs after the start: learning after its first period, the market's clearing a
        window after its first round, everything else at once."""
        return {"learning": period, "clearing": self.market.cfg.window if self.market else 0.0}.get(name, 0.0)

    def start(
        self,
        on_row: Callable[[dict], None] = lambda row: None,
        on_checkpoint: Callable[[Simulation], None] | None = None,
        control: bool = True,
    ) -> None:
        """Start the periodic processes at the current time (a restored simulation keeps its
        schedule); ``run`` then drives them. ``control=False`` starts all but the control tick:
        the caller then runs it, ``act(*sense(t))``, at every control time ``t`` before running
        the environment past ``t`` (:mod:`fleet.env` does, to hand out each observation and take
        the actions back). The control tick comes first at its time (:class:`PhasedTimeout`), and
        ``env.run(until=t)`` stops before anything due at ``t``, so the order is the same."""
        self.on_row, self.on_checkpoint = on_row, on_checkpoint
        now = self.env.now
        for name, (period, phase, step) in self._schedule().items():
            if name == "control" and not control:
                continue
            first = self.next_due[name] - now if name in self.next_due else self._first(name, period)
            self.env.process(self._periodic(name, period, phase, step, first))

    def run(
        self,
        on_row: Callable[[dict], None] = lambda row: None,
        progress: Callable[[float], None] | None = None,
        on_checkpoint: Callable[[Simulation], None] | None = None,
    ) -> dict:
        """Simulate to the horizon (or until Ctrl-C) and return the summary.

        ``on_row`` receives every metrics row (the last one at the time the run ended);
        ``progress`` is called with the simulated time after each metrics period;
        ``on_checkpoint`` gets the simulation every ``outputs.checkpoint_every`` (right after a
        metrics row, when nothing else is due at that time) and at the end of a completed run.
        A KeyboardInterrupt ends the run cleanly: the summary then says ``"status": "interrupted"``.
        A simulation restored from a checkpoint continues where it was saved.
        """
        s = self.scenario
        started = time.perf_counter()
        now = self.env.now
        self.start(on_row, on_checkpoint)
        status = "completed"
        try:
            chunk = s.outputs.metrics_period
            for until in np.append(np.arange(chunk, s.horizon, chunk), s.horizon):
                if until > now:
                    self.env.run(until=float(until))
                    if progress:
                        progress(float(until))
        except KeyboardInterrupt:
            status = "interrupted"
        end = self.env.now
        if s.workloads.consensus.enabled:
            for got in self.network.drain(CONSENSUS, end):
                self.consensus.receive(got)
        on_row(self.metrics_row(end))
        if status == "completed" and on_checkpoint is not None:
            on_checkpoint(self)
        return self.summary(status, end, time.perf_counter() - started)

    # --- checkpoints -----------------------------------------------------------------------

    STATE = (
        "fleet",
        "baseline",
        "sensor_rng",
        "network",
        "churn",
        "consensus",
        "consensus_rounds",
        "status_seq",
        "learner_seq",
        "learner_invalid",
        "telemetry_seq",
        "offline_since",
        "collector_invalid",
        "meters",
        "next_checkpoint",
        "ticks",
        "market",
        "installs",
    )
    """What changes as the simulation runs, besides its clock (``time``), the schedule of its
    processes (``next_due``), the learner's last metrics and the wills not yet due
    (:mod:`fleet.statefile`). Everything else is built from the scenario at construction."""

    def state_dict(self) -> dict:
        """The simulation's state now; a new ``Simulation`` of the same scenario given it by
        :meth:`load_state_dict` runs on exactly as this one would."""
        return {
            **attrs_state(self, self.STATE),
            "time": self.env.now,
            "next_due": self.next_due,
            "learner_metrics": self.learner_metrics,
            "pending_wills": [[dev, since] for dev, since in self.pending_wills],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (of a simulation of the same scenario); :class:`StateMismatch`
        naming the first entry that does not fit. Only before :meth:`run`."""
        expect_keys(state, (*self.STATE, "time", "next_due", "learner_metrics", "pending_wills"))
        load_attrs(self, {name: state[name] for name in self.STATE}, self.STATE)
        time_now = float(entry(state, "time", (int, float)))
        if not 0 <= time_now <= self.scenario.horizon:
            raise StateMismatch("time", f"{time_now} s is not within the run's horizon [0, {self.scenario.horizon}]")
        self.next_due = _times(entry(state, "next_due", dict), "next_due", set(self._schedule()))
        for name, due in self.next_due.items():
            if not time_now <= due < np.inf:
                raise StateMismatch(f"next_due.{name}", f"{due} s is not a time after the checkpoint's ({time_now} s)")
        self.learner_metrics = _times(
            entry(state, "learner_metrics", dict), "learner_metrics", set(self.fleet.controller.metric_keys)
        )
        self.pending_wills = [_will(will, self.world.n) for will in entry(state, "pending_wills", list)]
        self.checkpoint_time = time_now
        self.env = simpy.Environment(initial_time=time_now)

    def summary(self, status: str, end: float, wall_s: float) -> dict:
        """KPIs, communication totals and performance, as written to summary.json."""
        from fleet.results import summarize

        return summarize(self, status, end, wall_s)


def _times(saved: dict, key: str, names: set[str]) -> dict[str, float]:
    """A saved mapping from some of ``names`` to numbers, as floats."""
    with within(key):
        for name in saved:
            if name not in names:
                raise StateMismatch(name, f"unexpected (expected some of {sorted(names)})")
            entry(saved, name, (int, float))
    return {name: float(value) for name, value in saved.items()}


def _will(saved: object, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A saved ``[devices (K,) int, times they went offline (K,) float]``."""
    with within("pending_wills"):
        if not isinstance(saved, list) or len(saved) != 2:
            raise StateMismatch("", "each entry must be [devices, times]")
        dev = indices(array(saved[0], shape=(None,)), n)
        if dev.dtype.kind not in "iu":
            raise StateMismatch("", f"devices of dtype {dev.dtype}, expected integers")
        return dev, array(saved[1], dtype=np.dtype(np.float64), shape=dev.shape)
