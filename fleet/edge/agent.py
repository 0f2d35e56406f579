"""The edge agent: one device of a scenario, on a board, on the wall clock, over a real broker.

It runs the simulator's learner with N = 1 (:func:`fleet.learners.make_learner`) on SimPy's
real-time clock (``simpy.rt.RealtimeEnvironment`` with ``factor = 1 / speedup``, not strict: a
slow step delays the next ones instead of failing). Processes, all on the agent's thread:

- ``control`` every ``control_period``: read the driver (a failed read is counted and the last
  good reading used), observe the reward of the previous action, act, apply the level; every
  ``update_every`` ticks the learner updates and its outbox is encoded and sent;
- ``telemetry`` every ``workloads.telemetry.period`` when enabled, as the simulator sends it;
- ``poll`` about every wall second (at most every control period): drain the transport's inbox
  (filled by its network thread) through :class:`~fleet.edge.inbound.InboundFilter` into the
  learner, notice (re)connections (publish the birth status), flush the outbox, and stop when
  asked (:meth:`EdgeAgent.stop`, e.g. from a SIGTERM handler);
- ``checkpoint`` every ``checkpoint_every``, ``watchdog`` pings for systemd, ``status`` lines.

Differences from a simulated device, because a board knows less:

- the reward of an action is computed at the next tick, from the temperature measured then
  (the simulator uses the true temperature right after its physics step), with
  :func:`fleet.sim.engine.tick_reward`; a longer gap than one control period (a restart)
  counts as one period, so that the learner's rewards keep their scale;
- the feeder load: the device cannot read other devices' telemetry (the ACL grants it only its
  neighbours' parameters, the cloud's and its own ``cmd`` topic). A ``cmd`` message carrying
  ``[feeder load as a fraction of capacity]`` (from the collector, which reads all telemetry)
  sets it; until one arrives it is 0 in the observation, and the reward's feeder overload
  counts the device's own load only;
- the weather ahead (``Observation.outdoor_ahead``): a board has no weather model to forecast
  from; it reads the forecasts a service publishes, from a file or a retained MQTT message
  (:mod:`fleet.edge.forecast`, ``fleet agent --forecast-file/--forecast-topic``), and observes
  persistence without one, or when the last is stale (counted);
- a parameter message is stamped with its arrival time on the agent's clock: boards share no
  clock with their senders, so staleness is measured from arrival;
- a diffusion learner with Metropolis weights needs its neighbours' degrees, which the N = 1
  learner does not get: only ``weights: uniform`` runs on a board;
- the learner is built from the simulator's ``learner`` random stream, so every board of a
  scenario starts from the same parameters (``common_init``); each board explores with its own
  stream (``edge/<device>/actions``);
- the ``consensus`` workload does not run on boards;
- the feeder market (``auction-v1`` with ``learner.params.market.period``, issue 16): a market round
  begins at every multiple of the period on the clock the agent shares with its site's auctioneer
  (``fleet auctioneer``, :mod:`fleet.edge.auctioneer`; ``--epoch`` is required). The agent then
  publishes its bid ``[valuation, kW]`` for the level of its last auction on
  ``fleet/<site>/<device>/bid``, only while connected (a bid that waited for the broker would arrive
  late, which is no bid), and hands the clearings it hears on ``fleet/<site>/auctioneer/clearing``
  to the learner at its next tick, stamped with the auctioneer's time (which names the round). A lost
  or late clearing leaves the device on its last grant until ``market.grant_hold`` has passed, and then,
  as with no auctioneer at all, on its own control, as in simulation
  (:mod:`fleet.sim.market`); its grant (kW, price, expiry) is learner state, kept by checkpoints;
- the feeder meter (a learner that reads it, ``cooperative-v1``, issue 17): the agent subscribes to
  ``fleet/<site>/meter/meter`` (``fleet meter``, :mod:`fleet.edge.meter`); a reading is stamped with
  its arrival, like parameters, and one of another site or of impossible values is ``malformed``. A
  lost reading leaves the learner with its newest (stale), which its checkpoints keep;
- a board combines robustly unless its scenario says otherwise (``learner.params.robust``
  defaults to :data:`BOARD_ROBUST`): it faces a real network, where a neighbour can be
  compromised, while a simulated fleet is honest unless a study makes a device hostile.

Nothing a neighbour sends can stop the agent: what the inbound filter lets through goes to the
learner, which rejects parameters that fail its guard (:mod:`fleet.learners.guard`; counted in
``rejected``), and a message whose handling raises anyway is logged, counted (``failed``) and
dropped. After every update the learner checks the device's own parameters and rolls back to
those from before when they fail (``rollbacks``), so nothing that failed is published or saved.

Clock: from 0 at the agent's first start, or, with ``epoch`` (``fleet agent --epoch``), the shared
clock of a mixed fleet (:mod:`fleet.sim.realtime`): the agent joins where that clock is now.

Faults of the board itself:

- a write to the state folder that fails (a full disk, an I/O error, a read-only file system) is
  counted (``write_errors``), logged when it starts and ends, and shown in the status line
  (``writes=failing(checkpoint,sequence,outbox)``: what failed at its last try: a checkpoint;
  queueing a message with its sequence number, or saving the session number; sending from the
  outbox); the agent keeps controlling. A checkpoint that cannot be written leaves the last good
  one; a message that cannot be queued with its sequence number is not sent (a restart would use
  the number again); an outbox that cannot be opened is kept in memory for this run, which keeps
  no sequence numbers: then only the status is sent. A session number that cannot be saved is
  not used: the status messages of that session carry 0. Temporary files of failed writes are
  removed at once, those of a crash at the next start (:mod:`fleet.edge.state`);
- after a crash (kill -9, power cut) the agent resumes from its last checkpoint and re-runs the
  ticks since then, on its own clock. Telemetry readings it already queued for those times are
  not queued again: the outbox saves each message with its sequence number and time in one
  transaction (:class:`~fleet.edge.outbox.Stamp`), so at a restart the last telemetry stamp
  tells which reading was the last queued, and a crash at any moment keeps a reading and its
  stamp or neither. A collector gets each (device, time) once, never again under new sequence
  numbers, and none is lost. It hears nothing new from the device until the re-run has passed
  that time. A fresh start (no checkpoint) begins a new timeline from 0 and sends all readings.
  Parameters are sent again as the re-run learner makes them (neighbours take them as new).

Status: ``fleet/<site>/<device>/status`` is retained: ``[1.0]`` ("online") after every
connection and ``[0.0]`` ("offline") as the will or at a clean stop. Both carry the session
number as their sequence number (it grows at every start; 0 when it could not be saved), as
Sparkplug's bdSeq does, so a consumer can tell an old session's death from the current one's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import simpy.rt

from devices.drivers import Driver, DriverError, SimulatedThermostatDriver
from devices.occupancy import comfort_violation_c
from fleet.edge import watchdog
from fleet.edge.counters import Counters
from fleet.edge.forecast import BoardForecast, ForecastSource, MqttForecast
from fleet.edge.inbound import InboundFilter, clearing_layout, cmd_layout, meter_layout, params_layout
from fleet.edge.outbox import MEMORY, Outbox, OutboxError, Stamp
from fleet.edge.site import POLL_WALL_S, Presence, RunOptions, TransportFactory, end_after, start_clock
from fleet.edge.state import CHECKPOINT, StateDir
from fleet.edge.uplink import Uplink
from fleet.edge.view import DeviceView
from fleet.errors import ConfigError, WireError
from fleet.learners import REGISTRY, Deliveries, Learner, LearnerContext, Observation, make_learner
from fleet.learners.base import lookahead, preview
from fleet.mqtt.codec import DType, Kind, encode
from fleet.mqtt.topics import KINDS
from fleet.mqtt.transport import Received, Will
from fleet.scenario import DTYPES
from fleet.sim import realtime
from fleet.sim.engine import PHASE_CONTROL, PHASE_MARKET, PhasedTimeout, tick_reward
from fleet.sim.market import trades
from fleet.sim.rng import Streams
from fleet.statefile import load_child

log = logging.getLogger("fleet.edge")

DriverFactory = Callable[[DeviceView, Callable[[], float]], Driver]
"""``factory(view, clock) -> Driver``; ``clock()`` is the agent's time in seconds."""

BOARD_ROBUST = "clip"
"""A board's combine unless the scenario sets ``learner.params.robust``: each neighbour's distance
from the device's own parameters is clipped to ``clip_norm`` (the uniform combine when honest
neighbours are closer than that), so one neighbour moves a device by at most its weight times it."""

OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES = 1000, 8 * 2**20


@dataclass(frozen=True)
class AgentOptions(RunOptions):
    """How an agent runs (durations in seconds): the clock's options and its own."""

    checkpoint_every: float = 3600.0
    """Agent-clock time between checkpoints (one is also written at every clean stop)."""
    max_inflight: int = 20
    """QoS 1 messages that may await their acknowledgement (mosquitto's Receive Maximum is 20)."""
    forecast_max_age: float = 12 * 3600.0
    """Agent-clock time after which a forecast table is stale (two issues of a 6-hourly service)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("checkpoint_every", "forecast_max_age"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number, got {value!r}")
        if self.max_inflight < 1:
            raise ConfigError(f"max_inflight must be at least 1, got {self.max_inflight}")


@dataclass(frozen=True)
class _Action:
    """The last action, whose reward is known at the next tick."""

    t: float
    level: int
    power_kw: float
    price: float
    band_lo: float
    band_hi: float
    feeder_load: float


def simulated_driver(view: DeviceView, clock: Callable[[], float]) -> SimulatedThermostatDriver:
    """The device's simulated building (its parameters, the scenario's weather and sensor noise)."""
    fleet = view.scenario.fleet
    rng = Streams(view.scenario.seed).numpy(f"edge/{view.name}/sensor")
    return SimulatedThermostatDriver(
        view.params, fleet.hvac.mode, view.weather, clock, rng, fleet.sensors.temp_noise_std_c
    )


def device_learner(view: DeviceView) -> Learner:
    """The scenario's learner for this one device (N = 1, local topology)."""
    s = view.scenario
    entry = REGISTRY[s.learner.name]
    cfg = entry.config_cls.model_validate(s.learner.params)
    if entry.cls.exchange == "neighbours" and getattr(cfg, "weights", None) == "metropolis":
        raise ConfigError(
            f"learner {s.learner.name} with weights: metropolis needs the neighbours' degrees, which an edge agent "
            "does not have; use learner.params.weights: uniform for fleets with boards"
        )
    params = dict(s.learner.params)
    if "robust" in entry.config_cls.model_fields and params.get("robust") is None:
        params["robust"] = BOARD_ROBUST
    streams = Streams(s.seed)
    # the simulator's stream: every board draws the same initial parameters (common_init) ...
    ctx = LearnerContext(
        1,
        len(s.fleet.hvac.power_levels_kw),
        s.fleet.hvac.mode,
        streams.numpy("learner"),
        "cpu",
        view.local_topology,
        control_period_s=s.control_period,
        levels_kw=view.params.levels_kw,
        reward_weights=(s.reward.discomfort_per_degh, s.reward.overload_per_kwh),
    )
    learner = make_learner(s.learner.name, params, ctx)
    gen = getattr(learner, "gen", None)
    if gen is not None:  # ... and explores with its own random numbers
        gen.manual_seed(int(streams.numpy(f"edge/{view.name}/actions").integers(2**62)))
    return learner


def _open_outbox(path: Path) -> Outbox:
    """The outbox; a damaged one is moved aside (and logged) and a new one started. Raises the
    :class:`OutboxError` of a write that the disk refused (the file is not at fault)."""
    try:
        return Outbox(path, OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES)
    except OutboxError as e:
        if e.storage:
            raise
        aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
        log.warning("%s; moved it to %s and started an empty outbox", e, aside)
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return Outbox(path, OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES)


class EdgeAgent:
    """Runs device ``view`` until stopped; see the module docstring.

    Construction checks everything that can be wrong before anything is written: a checkpoint
    in ``state_dir`` of another scenario or device, or that does not fit the learner, is a
    :class:`ConfigError`. ``on_status`` receives the periodic one-line status.
    """

    def __init__(
        self,
        view: DeviceView,
        transport_factory: TransportFactory,
        state_dir: str | Path,
        options: AgentOptions = AgentOptions(),
        driver_factory: DriverFactory = simulated_driver,
        on_status: Callable[[str], None] | None = None,
        forecast_source: ForecastSource | None = None,
    ) -> None:
        """``forecast_source``: where the device's weather forecasts come from (none: it observes
        persistence, :mod:`fleet.edge.forecast`)."""
        self.view, self.options, self.on_status = view, options, on_status
        self.market = trades(view.scenario)
        """Whether the device trades in its site's feeder market (an auction learner with a market)."""
        if self.market and options.epoch is None:
            raise ConfigError(
                "learner.params.market.period: a board in a feeder market bids in its auctioneer's rounds, which "
                "need the clock it shares with the auctioneer: give every agent of the site and `fleet auctioneer` "
                "the same --epoch"
            )
        self._failing: set[str] = set()
        """What could not be written at its last try: checkpoint, sequence, outbox."""
        self.state = StateDir(state_dir)
        saved = self.state.load_checkpoint(view.scenario.model_dump(mode="json"), view.name)
        self.learner = device_learner(view)
        self.counters = Counters()
        self.pending: _Action | None = None
        self.feeder_load = 0.0
        self.clearings: list[Deliveries] = []
        """The clearings received since the last control tick, for the learner's market."""
        self.next_due: dict[str, float] = {}
        t0 = self._restore(saved) if saved else 0.0
        self.forecast = BoardForecast(
            forecast_source, view.scenario.weather.lead_h, options.forecast_max_age, self.counters
        )
        if saved:
            where = self.state.path / CHECKPOINT
            log.info("%s: resuming from %s at t=%.2fh after %d ticks", view.name, where, t0 / 3600, self.counters.ticks)
        if options.epoch is not None:  # join the shared clock where it is now (or wait for its start)
            t0 = max(t0, realtime.shared_time(options.epoch, options.speedup))
        self.env = simpy.rt.RealtimeEnvironment(initial_time=t0, factor=1.0 / options.speedup, strict=False)
        self.driver = driver_factory(view, lambda: self.env.now)
        self._check_driver(saved)
        self.last_temp: float | None = None
        self.watchdog_s = watchdog.watchdog_interval()
        self._messaging(transport_factory, resumed=saved is not None)
        self._stop_requested = False
        self._shown = (self.counters.ticks, self.counters.reward_sum)

    def _messaging(self, transport_factory: TransportFactory, resumed: bool) -> None:
        """The outbox, a new session number, the transport with its will, the checks on what comes in."""
        view = self.view
        old = self.state.old_sequence()
        self.outbox = self._outbox_or_memory()
        self.last = self._new_session(old, resumed)
        """The stamp of the last message queued (or status sent) per kind, as saved in the outbox."""
        reading = self.last["telemetry"].t
        if reading is not None and reading > self.env.now:
            log.info(
                "%s: readings up to t=%.2fh were queued before the restart; not sending them again",
                view.name,
                reading / 3600,
            )
        try:
            self.transport = transport_factory(
                view.name,
                will=Will(view.topic("status"), self._status(False)),
                session_expiry=self.options.session_expiry,
            )
        except BaseException:
            self.outbox.close()
            raise
        self.uplink: Uplink | None = None
        self.presence = Presence(
            view.name, self.transport, self.counters, self._announce, "lost the broker; queueing messages"
        )
        p = self.learner.flat_params().shape[1] if hasattr(self.learner, "flat_params") else 1
        layouts = {
            "params": params_layout(p),
            "cmd": cmd_layout,
            "meter": meter_layout(int(view.world.site_of[view.index])),
            "clearing": clearing_layout,
        }
        self.inbound = InboundFilter(view.subscriptions(self.learner.exchange, self.market), layouts, self.counters)
        comm = getattr(getattr(self.learner, "cfg", None), "comm", None)
        self.sparse = comm is not None and comm.k(p) < p
        """Top-k messages are increments: sent only while connected (the outbox keeps only the newest)."""

    def _outbox_or_memory(self) -> Outbox:
        """The outbox file, or one in memory when the disk refuses (counted as a failed write)."""
        try:
            return _open_outbox(self.state.outbox)
        except OutboxError as e:
            self._write_failed("outbox", e)
            log.error("%s: keeping the outbox in memory until the agent stops", self.view.name)
            return Outbox(MEMORY, OUTBOX_MAX_MESSAGES, OUTBOX_MAX_BYTES)

    def _new_session(self, old: dict[str, Stamp], resumed: bool) -> dict[str, Stamp]:
        """The outbox's stamps (or those of an earlier version's ``old`` sequence.json, where newer)
        with the next session number, saved; the session number is 0 if they cannot be saved."""
        saved = self.outbox.stamps()
        last = {k: max(saved[k], old.get(k, saved[k]), key=lambda stamp: stamp.seq) for k in KINDS}
        last["status"] = Stamp(last["status"].seq + 1, self.env.now)
        if not resumed:  # a new timeline: its readings are new whatever their times
            last["telemetry"] = Stamp(last["telemetry"].seq)
        if self._write("sequence", lambda: self._save_session(last, bool(old))):
            return last
        return {**last, "status": Stamp(0, self.env.now)}

    def _save_session(self, last: dict[str, Stamp], migrated: bool) -> None:
        self.outbox.restamp(last)
        if migrated:
            self.state.remove_old_sequence()
            log.info("%s: moved the sequence numbers of sequence.json into the outbox", self.view.name)

    # --- checkpoints -------------------------------------------------------------------------

    def _restore(self, saved: dict) -> float:
        """Load a checkpoint into the fresh learner and counters; returns its time."""
        where = self.state.path / CHECKPOINT
        try:
            load_child(saved, "learner", self.learner)
            self.counters = Counters.from_dict(saved["counters"])
            self.pending = _Action(**saved["pending"]) if saved["pending"] else None
            self.next_due = dict(saved["next_due"])
            self.feeder_load = float(saved["feeder_load"])
            return float(saved["time"])
        except ConfigError as e:
            raise ConfigError(f"{where}: does not fit this device's learner: {e}") from None
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise ConfigError(
                f"{where}: does not fit this device's learner ({type(e).__name__}: {e}); move it aside to start afresh"
            ) from None

    def _check_driver(self, saved: dict | None) -> None:
        n_levels = len(self.view.scenario.fleet.hvac.power_levels_kw)
        if self.driver.n_levels != n_levels:
            raise ConfigError(
                f"the driver has {self.driver.n_levels} HVAC levels but scenario {self.view.scenario.name!r} has "
                f"{n_levels} "
                "(fleet.hvac.power_levels_kw); a relay driver needs a scenario with two levels, off and on"
            )
        if saved and saved.get("building_temp") is not None and isinstance(self.driver, SimulatedThermostatDriver):
            self.driver.building.temp = np.array(saved["building_temp"], dtype=float)

    def checkpoint(self) -> None:
        """Save the learner, counters and clock now (atomically)."""
        building = self.driver.building.temp.copy() if isinstance(self.driver, SimulatedThermostatDriver) else None
        self.state.save_checkpoint(
            {
                "scenario": self.view.scenario.model_dump(mode="json"),
                "device": self.view.name,
                "time": self.env.now,
                "learner": self.learner.state_dict(),
                "counters": self.counters.as_dict(),
                "pending": None if self.pending is None else asdict(self.pending),
                "next_due": dict(self.next_due),
                "feeder_load": self.feeder_load,
                "building_temp": building,
            }
        )

    def _checkpoint(self) -> None:
        """A checkpoint, or the last good one kept when it cannot be written."""
        self._write("checkpoint", self.checkpoint)

    # --- writes to the state folder ------------------------------------------------------------

    def _write(self, what: str, write: Callable[[], None]) -> bool:
        """Run ``write`` (of the checkpoint, the sequence numbers or the outbox); False if the disk
        refused it (full, I/O error, read-only), after counting and reporting it."""
        try:
            write()
        except (OSError, OutboxError) as e:
            if isinstance(e, OutboxError) and not e.storage:  # a damaged file is not the disk's fault
                raise
            self._write_failed(what, e)
            self._failing.add(what)
            return False
        if what in self._failing:
            self._failing.discard(what)
            log.warning("%s: writing the %s works again", self.view.name, what)
        return True

    def _write_failed(self, what: str, error: Exception) -> None:
        """Count a failed write; log it unless the last try of the same failed too."""
        self.counters.write_errors += 1
        level = logging.DEBUG if what in self._failing else logging.ERROR
        log.log(
            level,
            "%s: could not write the %s in %s (%s); running on what was saved before",
            self.view.name,
            what,
            self.state.path,
            error,
        )

    # --- running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the agent to stop at its next poll; safe from a signal handler or another thread."""
        self._stop_requested = True

    def run(self) -> Counters:
        """Connect (or not: the broker may come later), run until stopped or ``duration`` is over,
        then save a checkpoint, switch the HVAC off and disconnect. Returns the counters.

        Raises :class:`fleet.errors.TransportError` when the broker refuses the credentials (at
        start, or later: then after a clean stop with a checkpoint)."""
        s, o = self.view.scenario, self.options
        self._stop = self.env.event()
        procs = {
            "control": (s.control_period, self._tick),
            "poll": (min(s.control_period, POLL_WALL_S * o.speedup), self._poll),
            "checkpoint": (o.checkpoint_every, self._checkpoint),
            "status": (o.status_every * o.speedup, self._status_line),
        }
        if s.workloads.telemetry.enabled:
            procs["telemetry"] = (s.workloads.telemetry.period, self._telemetry)
        if self.market:
            procs["market"] = (self.learner.cfg.market.period, self._bid)
        if self.watchdog_s:
            procs["watchdog"] = (self.watchdog_s / 2 * o.speedup, lambda: watchdog.tell(watchdog.ping))
        for name, (period, step) in procs.items():
            self.env.process(self._periodic(name, period, step))
        if o.duration is not None:
            self.env.process(end_after(self.env, o.duration, self._stop))
        clean = False
        try:
            self._start()
            self.env.run(until=self._stop)
            clean = True
        finally:
            self._shutdown(clean)
        if self.presence.refused is not None:
            raise self.presence.refused
        return self.counters

    def _start(self) -> None:
        self.uplink = Uplink(self.transport, self.outbox, self.counters, self.options.max_inflight)
        topics = list(self.inbound.topics)
        if isinstance(self.forecast.source, MqttForecast):
            topics.append(self.forecast.source.topic)
        for topic in topics:
            self.transport.subscribe(topic, qos=1)
        up = self.transport.connect(self.options.connect_wait)
        log.info(
            "%s: listening on %d topics%s",
            self.view.name,
            len(topics),
            "" if up else "; the broker is not reachable yet: running anyway, retrying",
        )
        watchdog.tell(watchdog.ready)
        start_clock(self.env, self.options)

    def _periodic(self, name: str, period: float, step: Callable[[], None]):
        """``step()`` every ``period`` from now (checkpoints: from one period on; market rounds: at the
        multiples of their period, on the clock shared with the auctioneer); control and telemetry keep
        the schedule they had when the checkpoint was saved. At a common time a round's bid comes after the
        control tick, as in the simulation: it bids for the level of that tick's auction, and a clearing that
        arrived before it has reached the learner."""
        now = self.env.now
        due = {
            "control": self.next_due.get(name, now),
            "telemetry": self.next_due.get(name, now),
            "checkpoint": now + period,
            "market": math.ceil(now / period) * period,
        }.get(name, now)
        phase = PHASE_MARKET if name == "market" else PHASE_CONTROL  # a round's bid after the tick at its time
        yield PhasedTimeout(self.env, max(due - now, 0.0), phase)
        while True:
            self.next_due[name] = self.env.now + period
            step()
            yield PhasedTimeout(self.env, period, phase)

    def _shutdown(self, clean: bool) -> None:
        """HVAC off, offline status, checkpoint (after a clean stop only), disconnect."""
        try:
            self.driver.close()
        except DriverError as e:
            log.error("could not switch the HVAC off: %s", e)
        if self.uplink is None:  # it did not get to start
            self.transport.close()
            self.outbox.close()
            return
        self._write("outbox", self.uplink.flush)
        if self.transport.connected and self.uplink.send_now(
            self.view.topic("status"), self._status(False), retain=True
        ):
            for flight in list(self.uplink.inflight.values()):
                flight.delivery.wait(2.0)
            self._write("outbox", self.uplink.settle)
        if clean:
            self._checkpoint()
        self._status_line()
        self.transport.close()
        self.outbox.close()
        watchdog.tell(watchdog.stopping)

    # --- control -------------------------------------------------------------------------------

    def _tick(self) -> None:
        """Read, reward the previous action, act, apply; learn every ``update_every`` ticks."""
        v, t = self.view, self.env.now
        self._receive()
        if self.market:
            self.learner.market_inbox(t, self.clearings)
            self.clearings = []
        temp = self._read()
        if temp is None:
            return
        if self.pending is not None:
            self._reward(temp, t)
        lo, hi = v.occupancy.band(t)
        price = v.world.tariff.price(t)
        hours = getattr(self.learner, "lookahead_h", ())
        outdoor_c = v.weather.outdoor_c(t) + v.params.outdoor_offset
        obs = Observation(
            temp_c=np.array([temp]),
            outdoor_c=outdoor_c,
            band_lo=lo,
            band_hi=hi,
            occupied=v.occupancy.occupied(t),
            price=np.array([price]),
            feeder_load=np.array([self.feeder_load]),
            hour=(t / 3600.0) % 24.0,
            online=np.array([self.transport.connected]),
            **preview(v.occupancy, v.world.tariff, t, 1),
            lookahead=lookahead(v.occupancy, v.world.tariff, t, 1, hours) if hours else None,
            **self.forecast.fields(t, outdoor_c),
        )
        level = int(self.learner.act(obs)[0])
        try:
            self.driver.apply(level)
        except DriverError as e:
            self.counters.apply_errors += 1
            log.warning("could not apply HVAC level %d: %s", level, e)
        self.pending = _Action(
            t, level, float(v.params.levels_kw[0, level]), price, float(lo[0]), float(hi[0]), self.feeder_load
        )
        self.counters.ticks += 1
        every = self.learner.update_every
        if every and self.counters.ticks % every == 0:
            self._learn(t)

    def _read(self) -> float | None:
        """The indoor temperature, or the last good one when the driver fails (None before any)."""
        try:
            self.last_temp = self.driver.read().indoor_c
        except DriverError as e:
            self.counters.read_errors += 1
            log.warning("sensor read failed (%s); acting on the last good reading %s", e, self.last_temp)
        return self.last_temp

    def _reward(self, temp: float, t: float) -> None:
        """The previous action's reward, now that its effect on the temperature is measured."""
        a, v = self.pending, self.view
        rw = v.scenario.reward
        dt_h = min(t - a.t, v.scenario.control_period) / 3600.0  # a longer gap (a restart) counts as one tick
        site_load = max(a.power_kw, a.feeder_load * v.feeder_kw)
        violation = comfort_violation_c(np.array([temp]), np.array([a.band_lo]), np.array([a.band_hi]))
        reward = tick_reward(
            np.array([a.power_kw]),
            np.array([a.price]),
            violation,
            np.array([site_load]),
            np.array([v.feeder_kw]),
            (rw.discomfort_per_degh, rw.overload_per_kwh),
            dt_h,
        )
        self.learner.observe(reward)
        self.counters.reward_sum += float(reward[0])
        self.pending = None

    def _learn(self, t: float) -> None:
        self._guarded(lambda: self.learner.update(t))
        self.counters.updates += 1
        if not self.learner.communicates:
            return
        active = np.array([self.transport.connected or not self.sparse])
        for kind, pub in self.learner.outbox(active):
            for row in np.flatnonzero(pub.sender == 0):  # a cloud's broadcast (sender 1) is not this device's to send
                self._send(kind, t, [a[row] for a in pub.arrays], pub.dtypes, self.learner.qos)

    def _bid(self) -> None:
        """A market round begins: bid for the level of the last auction, if the auctioneer can hear it now (a
        bid that waits for the broker would be late, which is no bid)."""
        if self.pending is None or not self.transport.connected:
            return
        t = self.env.now
        _, bids = self.learner.market_bids(t, np.ones(1, bool))
        self._send("bid", t, [bids[0]], DType.FLOAT32, self.learner.cfg.market.qos)

    def _telemetry(self) -> None:
        """Measured temperature, power, comfort band and occupancy, as the simulator sends them."""
        cfg, t, occupancy = self.view.scenario.workloads.telemetry, self.env.now, self.view.occupancy
        last = self.last["telemetry"].t
        if self.pending is None or (last is not None and t < last + cfg.period / 2):  # sent before a crash
            return
        lo, hi = occupancy.band(t)
        vec = np.array(
            [self.last_temp, self.pending.power_kw, lo[0], hi[0], float(occupancy.occupied(t)[0])], np.float32
        )
        self._send("telemetry", t, [vec], DTYPES[cfg.dtype], cfg.qos)

    def _send(self, kind: str, t: float, arrays: list[np.ndarray], dtypes, qos: int) -> None:
        """Encode one message with the next sequence number of its kind and queue it with its stamp
        (one transaction: a crash keeps both or neither); then send what can be sent."""
        stamp = Stamp(self.last[kind].seq + 1, t)
        try:
            payload = encode(Kind[kind.upper()], self.view.index, stamp.seq, t, arrays, dtypes)
        except WireError as e:
            self.counters.oversize += 1
            log.error("could not encode a %s message: %s", kind, e)
            return
        topic = self.view.topic(kind)
        if self._write("sequence", lambda: self.uplink.queue(topic, payload, kind=kind, qos=qos, stamp=stamp)):
            self.last[kind] = stamp  # also when dropped as oversize: the number was never seen, skipping it is harmless
            self._write("outbox", self.uplink.flush)

    def _status(self, online: bool) -> bytes:
        flag = np.array([1.0 if online else 0.0], np.float32)
        return encode(Kind.STATUS, self.view.index, self.last["status"].seq, self.env.now, [flag], DType.FLOAT32)

    # --- messaging -------------------------------------------------------------------------------

    def _poll(self) -> None:
        self._receive()
        self._connection()
        if self.presence.refused is None:
            self._write("outbox", self.uplink.flush)
        if self._stop_requested and not self._stop.triggered:
            self._stop.succeed()

    def _receive(self) -> None:
        """Handle what the transport received, each message on its own: a failure drops it, no more."""
        for received in self.transport.drain():
            try:
                self._handle(received)
            except Exception as e:  # noqa: BLE001 - no message may stop the device
                self.counters.failed += 1
                log.warning(
                    "dropped a message on %s whose handling failed: %s: %s", received.topic, type(e).__name__, e
                )

    def _handle(self, received: Received) -> None:
        """Hand a message that passes the checks to the learner, apply a command, or take a forecast."""
        source = self.forecast.source
        if isinstance(source, MqttForecast) and received.topic == source.topic:
            source.offer(received.payload)
            return
        accepted = self.inbound.check(received)
        if accepted is None:
            return
        kind, message, slot = accepted.sender.kind, accepted.message, np.array([accepted.sender.slot])
        if kind == "cmd":
            self.feeder_load = float(message.arrays[0][0])
            return
        arrays = [a[None] for a in message.arrays]
        if kind == "clearing":  # the auctioneer's time names the round; the N = 1 learner's device is 0
            arrays[0] = np.where(arrays[0] == self.view.index, 0, -1)
            stamp = np.array([message.timestamp])
            self.clearings.append(Deliveries.one_message_each(np.zeros(1, np.int64), slot, arrays, stamp))
            return
        stamp = np.array([self._clock_at(accepted.arrived_at)])
        got = Deliveries.one_message_each(np.zeros(1, np.int64), slot, arrays, stamp)
        self._guarded(lambda: self.learner.inbox(kind, got))

    def _guarded(self, step: Callable[[], object]) -> None:
        """Run a learner ``step``, adding what its guard rejected and rolled back to the counters."""
        guard = getattr(self.learner, "guard", None)  # learners that neither learn nor receive have none
        before = (guard.rejected, guard.rollbacks) if guard else (0, 0)
        step()
        if guard:
            self.counters.rejected += guard.rejected - before[0]
            self.counters.rollbacks += guard.rollbacks - before[1]

    def _clock_at(self, monotonic: float) -> float:
        """The agent's time at ``time.monotonic()`` = ``monotonic`` (not later than now)."""
        return realtime.clock_at(self.env, monotonic, self.options.speedup)

    def _connection(self) -> None:
        """Notice (re)connections and announce the device; stop (cleanly, with a checkpoint, then raise it
        from run()) once the broker refused the credentials for good."""
        if not self.presence.check():
            self._stop_requested = True

    def _announce(self) -> bool:
        return self.uplink.send_now(self.view.topic("status"), self._status(True), retain=True)

    # --- reporting -------------------------------------------------------------------------------

    def status_line(self) -> str:
        """One line: clock, ticks, mean reward per tick since the last line, messages (``queued=N(memory)``
        for an outbox in memory), connection, writes to the state folder."""
        c = self.counters
        ticks, reward_sum = self._shown
        mean = (c.reward_sum - reward_sum) / (c.ticks - ticks) if c.ticks > ticks else float("nan")
        self._shown = (c.ticks, c.reward_sum)
        return (
            f"{self.view.name} t={self.env.now / 3600:.2f}h ticks={c.ticks} updates={c.updates} reward/tick={mean:.4f} "
            f"sent={c.sent} received={c.received} dropped={c.dropped} rejected={c.rejected} rollbacks={c.rollbacks} "
            f"queued={len(self.outbox)}{'(memory)' * (self.outbox.path == MEMORY)} "
            f"errors={c.read_errors + c.apply_errors + c.refused + c.oversize + c.write_errors} "
            f"connected={'yes' if self.transport.connected else 'no'} writes={self._writes()}"
        )

    def _writes(self) -> str:
        """``ok``, or ``failing(...)`` naming what could not be written at its last try."""
        return f"failing({','.join(sorted(self._failing))})" if self._failing else "ok"

    def _status_line(self) -> None:
        line = self.status_line()
        if self.on_status is not None:
            self.on_status(line)
        watchdog.tell(lambda: watchdog.status(line))
