"""The engine's workload written the naive way: the reference that ``bench_engine.py naive`` beats.

This is how a newcomer to SimPy would write the city scenario: one SimPy process per device,
one process per message and one per delivery, scalar Python everywhere. It does the same
work as :class:`fleet.sim.engine.Simulation` on the same world (the device parameters drawn
by ``DeviceParams.draw`` through ``build_world``, the same weather, occupancy schedule,
topology and link profiles):

- every ``control_period`` each device senses (Gaussian noise), runs the deadband thermostat
  and steps the exact RC formula of ``devices.building.rc_step``, on Python floats;
- every telemetry period each device publishes its state to the cloud collector, every
  consensus period it combines the fresh neighbour values it received and publishes its own;
  every payload is encoded with ``fleet.mqtt.codec.encode`` (the same bytes as the engine's
  ``encode_batch`` rows) and decoded with ``decode`` by its receiver;
- a message is a SimPy process: FIFO serialization on the sender's uplink (a ``simpy.Resource``),
  latency plus exponential jitter, loss; then the broker, a ``simpy.Resource`` of capacity 1
  holding each inbound publish and each outbound delivery ``1 / capacity`` seconds; then one
  process per subscriber for its downlink.

Randomness differs from the engine, so the numbers differ slightly; the counts of device
steps, messages and deliveries agree (``benchmarks/test_benchmarks_smoke.py`` checks it).
It supports what the city scenarios use: QoS 0, no churn, no link cuts, the rule-based
learner. Unlike the engine it skips the feeder KPIs and the rule-based twin (run the engine
with ``outputs.baseline=false`` for a like-for-like comparison).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import simpy

from devices.config import RuleBasedConfig
from fleet.mqtt.codec import Kind, decode, encode
from fleet.mqtt.topics import topic_matches
from fleet.scenario import DTYPES, Scenario
from fleet.sim.rng import Streams
from fleet.sim.topology import consensus_weights
from fleet.sim.world import build_world


@dataclass
class NaiveResult:
    """Counts and totals of one naive run (same meaning as the engine's summary fields)."""

    n_devices: int
    device_steps: int
    messages_sent: int = 0
    messages_delivered: int = 0
    messages_dropped: int = 0
    energy_kwh: float = 0.0
    discomfort_degh: float = 0.0
    wall_s: float = 0.0


class Link:
    """One direction of one endpoint's link: a FIFO transmitter, then latency, jitter and loss."""

    def __init__(self, env: simpy.Environment, profile, bps: float, rng: random.Random) -> None:
        self.env, self.rng, self.bps = env, rng, bps
        self.transmitter = simpy.Resource(env, capacity=1)
        self.latency, self.jitter, self.overhead = profile.latency_s, profile.jitter_s, profile.overhead_bytes
        self.loss = profile.loss.stationary_loss

    def transfer(self, nbytes: int):
        """Serialize behind earlier messages, then fly; the value is whether it arrived."""
        with self.transmitter.request() as turn:
            yield turn
            yield self.env.timeout(8.0 * (nbytes + self.overhead) / self.bps)
        yield self.env.timeout(self.latency + (self.rng.expovariate(1.0 / self.jitter) if self.jitter else 0.0))
        return self.rng.random() >= self.loss


class Broker:
    """A single-threaded broker: exact-topic and wildcard subscriptions, retained messages."""

    def __init__(self, env: simpy.Environment, capacity_msgs_per_s: float, result: NaiveResult) -> None:
        self.env, self.result = env, result
        self.server = simpy.Resource(env, capacity=1)
        self.service_s = 1.0 / capacity_msgs_per_s
        self.exact: dict[str, list] = {}
        self.wildcards: list[tuple[str, object]] = []
        self.retained: dict[str, bytes] = {}

    def subscribe(self, client, topic_filter: str) -> None:
        if "+" in topic_filter or "#" in topic_filter:
            self.wildcards.append((topic_filter, client))
        else:
            self.exact.setdefault(topic_filter, []).append(client)

    def handle(self, topic: str, payload: bytes, retain: bool):
        """Take the publish in, then start one delivery process per matching subscriber."""
        with self.server.request() as turn:
            yield turn
            yield self.env.timeout(self.service_s)
        if retain:
            self.retained[topic] = payload
        subscribers = self.exact.get(topic, []) + [c for f, c in self.wildcards if topic_matches(f, topic)]
        for client in subscribers:
            self.env.process(self.deliver(client, payload))

    def deliver(self, client, payload: bytes):
        with self.server.request() as turn:
            yield turn
            yield self.env.timeout(self.service_s)
        if (yield from client.downlink.transfer(len(payload))):
            self.result.messages_delivered += 1
            client.receive(payload)
        else:
            self.result.messages_dropped += 1


class Collector:
    """The cloud collector: decodes (checks) every telemetry message it gets."""

    def __init__(self, downlink: Link) -> None:
        self.downlink = downlink

    def receive(self, payload: bytes) -> None:
        decode(payload)


class Device:
    """One thermostat: its building, its deadband controller and its consensus value."""

    def __init__(self, sim: NaiveSimulation, i: int, x: np.ndarray) -> None:
        s, w, p = sim.scenario, sim.world, sim.world.params
        self.sim, self.i = sim, i
        self.temp, self.on = float(p.initial_temp[i]), False
        self.r, self.c, self.gain, self.cop = (
            float(p.resistance[i]),
            float(p.capacitance[i]),
            float(p.internal_gain[i]),
            float(p.cop[i]),
        )
        self.offset, self.shift_h, self.levels_kw = (
            float(p.outdoor_offset[i]),
            float(p.occupancy_shift_h[i]),
            p.levels_kw[i].tolist(),
        )
        self.topic = f"fleet/{w.site_names[w.site_of[i]]}/{w.device_names[i]}/"
        profile = s.network.profiles[w.profile_names[w.profile_of[i]]]
        self.uplink = Link(sim.env, profile, profile.up_bps, sim.rng)
        self.downlink = Link(sim.env, profile, profile.down_bps, sim.rng)
        self.x, self.inbox = x, {}
        self.seq = {"telemetry": 0, "consensus": 0}
        self.weights: dict[int, float] = {}

    def comfort(self, t: float) -> tuple[bool, float, float]:
        """Whether someone is home at ``t``, and the comfort band (low, high) that follows."""
        cfg = self.sim.scenario.fleet.occupancy
        local_h = (t / 3600.0 - self.shift_h) % 24.0
        occupied = any(start <= local_h < end for start, end in cfg.occupied_hours)
        return (occupied, *(cfg.occupied_band_c if occupied else cfg.unoccupied_band_c))

    def run(self):
        sim, s = self.sim, self.sim.scenario
        dt, heat = s.control_period, s.fleet.hvac.mode == "heat"
        deadband, noise = sim.deadband, s.fleet.sensors.temp_noise_std_c
        tick = 0
        while True:
            t = sim.env.now
            occupied, lo, hi = self.comfort(t)
            measured = self.temp + sim.rng.gauss(0.0, noise)
            # --- deadband thermostat and exact RC step ---
            if heat:
                self.on = True if measured < lo else False if measured >= lo + deadband else self.on
            else:
                self.on = True if measured > hi else False if measured <= hi - deadband else self.on
            power = self.levels_kw[-1] if self.on else 0.0
            heat_kw = (1.0 if heat else -1.0) * self.cop * power + self.gain
            t_inf = sim.world.weather.outdoor_c(t) + self.offset + self.r * heat_kw
            violation = max(lo - self.temp, 0.0) + max(self.temp - hi, 0.0)
            self.temp = t_inf + (self.temp - t_inf) * math.exp(-(dt / 3600.0) / (self.r * self.c))
            sim.result.energy_kwh += power * dt / 3600.0
            sim.result.discomfort_degh += violation * dt / 3600.0
            sim.result.device_steps += 1
            # --- messages ---
            if s.workloads.telemetry.enabled and tick % sim.telemetry_every == 0:
                self.publish_telemetry(t, [self.temp, power, lo, hi, occupied])
            if s.workloads.consensus.enabled and tick % sim.consensus_every == 0:
                self.consensus_round(t)
            tick += 1
            yield sim.env.timeout(dt)

    def publish_telemetry(self, t: float, state: list) -> None:
        """Temperature, power, comfort band and occupancy to the collector."""
        self.seq["telemetry"] += 1
        dtype = DTYPES[self.sim.scenario.workloads.telemetry.dtype]
        payload = encode(Kind.TELEMETRY, self.i, self.seq["telemetry"], t, [np.array(state, np.float32)], dtype)
        self.sim.env.process(self.publish("telemetry", payload, retain=False))

    def consensus_round(self, t: float) -> None:
        cfg = self.sim.scenario.workloads.consensus
        fresh = [
            (w, self.inbox[j][1])
            for j, w in self.weights.items()
            if j in self.inbox and t - self.inbox[j][0] <= cfg.staleness_s
        ]
        self.x = (1.0 - sum(w for w, _ in fresh)) * self.x + sum(w * v for w, v in fresh)
        self.seq["consensus"] += 1
        payload = encode(
            Kind.CONSENSUS, self.i, self.seq["consensus"], t, [self.x.astype(np.float32)], DTYPES[cfg.dtype]
        )
        self.sim.env.process(self.publish("consensus", payload, retain=cfg.retain))

    def publish(self, kind: str, payload: bytes, retain: bool):
        """One message: this device's uplink, then the broker."""
        self.sim.result.messages_sent += 1
        if (yield from self.uplink.transfer(len(payload))):
            yield from self.sim.broker.handle(self.topic + kind, payload, retain)
        else:
            self.sim.result.messages_dropped += 1

    def receive(self, payload: bytes) -> None:
        """A neighbour's consensus value: keep the newest per neighbour."""
        m = decode(payload)
        if m.sender not in self.inbox or m.timestamp > self.inbox[m.sender][0]:
            self.inbox[m.sender] = (m.timestamp, m.arrays[0].astype(float))


class NaiveSimulation:
    """The whole run: one process per device, one per message, one per delivery."""

    def __init__(self, scenario: Scenario) -> None:
        s = self.scenario = scenario
        unsupported = {
            "learner": s.learner.name != "rule-based-v1",
            "network.churn": s.network.churn.failures_per_day > 0,
            "network.link_cuts": bool(s.network.link_cuts),
            "qos 1": s.workloads.telemetry.qos == 1 or s.workloads.consensus.qos == 1,
            "workload periods that are not multiples of control_period": any(
                p % s.control_period for p in (s.workloads.telemetry.period, s.workloads.consensus.period)
            ),
        }
        if any(unsupported.values()):
            raise ValueError(f"the naive engine does not model: {', '.join(k for k, v in unsupported.items() if v)}")
        streams = Streams(s.seed)
        self.world = w = build_world(s, streams)
        self.env = simpy.Environment()
        self.rng = random.Random(s.seed)
        self.result = NaiveResult(w.n, 0)
        self.deadband = RuleBasedConfig.model_validate(s.learner.params).deadband_c
        self.telemetry_every = round(s.workloads.telemetry.period / s.control_period)
        self.consensus_every = round(s.workloads.consensus.period / s.control_period)
        self.broker = Broker(self.env, s.network.broker.capacity_msgs_per_s, self.result)
        collector_profile = s.network.profiles[s.network.collector_link]
        self.collector = Collector(Link(self.env, collector_profile, collector_profile.down_bps, self.rng))
        self.broker.subscribe(self.collector, "fleet/+/+/telemetry")
        x = streams.numpy("consensus").normal(size=(w.n, s.workloads.consensus.dim))
        self.devices = [Device(self, i, x[i]) for i in range(w.n)]
        if s.workloads.consensus.enabled:
            topo = w.topology
            for receiver, sender, weight in zip(
                topo.receiver.tolist(),
                topo.sender.tolist(),
                consensus_weights(topo, s.workloads.consensus.weights).tolist(),
            ):
                self.devices[receiver].weights[sender] = weight
                self.broker.subscribe(self.devices[receiver], self.devices[sender].topic + "consensus")

    def run(self) -> NaiveResult:
        started = time.perf_counter()
        for device in self.devices:
            self.env.process(device.run())
        self.env.run(until=self.scenario.horizon)
        self.result.wall_s = time.perf_counter() - started
        return self.result
