"""The scenario: a typed, validated description of one simulated fleet experiment.

A scenario file is YAML with ``version: 1``. Every section is a strict model: unknown keys,
wrong types, out-of-range values and inconsistent combinations are errors that name the field
path. :func:`load_scenario` reads a file (or a shipped scenario's name), applies ``--set``
overrides through the same validator and returns a :class:`Scenario` whose file paths are
resolved, so that ``scenario.model_dump()`` written into a run directory re-runs the same
experiment.

Reading and checking a file costs time and memory bounded by the file, never by the fleet it
describes: a scenario file is a regular file of at most 1 MiB, read as YAML without aliases
and at most 32 levels deep; a fleet holds at most :func:`max_devices` devices in all (1,000,000
unless the environment variable ``FLEET_MAX_DEVICES`` says otherwise), checked on the sites'
counts before anything is made per device; and every cross-field check is linear.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from devices.config import (
    BuildingConfig,
    EpwWeatherConfig,
    FlatTariffConfig,
    HvacConfig,
    OccupancyConfig,
    SensorConfig,
    SyntheticWeatherConfig,
    TariffConfig,
    WeatherConfig,
)
from fleet.config import Duration, FiniteFloat, PositiveDuration, StrictModel, format_validation_error
from fleet.errors import ConfigError
from fleet.files import read_regular_file
from fleet.mqtt.codec import DType, encoded_size
from fleet.net.profiles import DEFAULT_PROFILES, LinkProfile

NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
SCENARIO_VERSION = 1
DTYPES = {"float32": DType.FLOAT32, "float16": DType.FLOAT16, "int8": DType.INT8}
MAX_DEVICES_ENV, DEFAULT_MAX_DEVICES = "FLEET_MAX_DEVICES", 1_000_000
"""The environment variable that bounds the devices of a fleet, and its default: the product
targets fleets of up to 100,000 devices, and a simulation takes about 8 kB of memory per device
with the rule-based thermostat (benchmarks/README.md), more with a learner: 8 GB or more for a million."""


def max_devices() -> int:
    """The most devices a scenario may hold in all: ``$FLEET_MAX_DEVICES``, or 1,000,000."""
    text = os.environ.get(MAX_DEVICES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DEVICES
    if not (text.isascii() and text.isdigit() and len(text) <= 18 and int(text) > 0):
        raise ConfigError(
            f"{MAX_DEVICES_ENV}={text[:40]!r}: write the most devices a fleet may have as a whole number, e.g. 5000000"
        )
    return int(text)


def repeated(values: Iterable[Hashable]) -> list:
    """The values that occur more than once, sorted (in time linear in the number of values)."""
    return sorted(value for value, count in Counter(values).items() if count > 1)


# --- fleet -----------------------------------------------------------------------------------


class SiteConfig(StrictModel):
    """A site: a group of devices behind one electrical feeder."""

    name: NAME
    """Site name, used in topics (``fleet/<site>/<device>/<kind>``)."""
    devices: Annotated[int, Field(gt=0)]
    """Number of simulated devices at this site (all sites together: at most :func:`max_devices`)."""
    feeder_kw: Annotated[float, Field(gt=0)]
    """Capacity of the site's feeder in kW; load above it counts as overload."""
    network: dict[str, Annotated[float, Field(gt=0)]] = {"wifi": 1.0}
    """Mix of device network classes: profile name -> share of the site's devices (shares sum to 1)."""

    @field_validator("network")
    @classmethod
    def _shares_sum_to_one(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix:
            raise ValueError("give at least one network class, e.g. {wifi: 1.0}")
        if abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1, they sum to {sum(mix.values()):g}")
        return mix

    @property
    def class_counts(self) -> dict[str, int]:
        """Devices of each network class: the shares of ``devices`` rounded by largest remainder
        (exact in total; ties go to the class listed first)."""
        shares = np.array(list(self.network.values())) * self.devices
        counts = np.floor(shares).astype(int)
        counts[np.argsort(-(shares - counts), kind="stable")[: self.devices - counts.sum()]] += 1
        return dict(zip(self.network, counts.tolist()))


class HostileConfig(StrictModel):
    """Fault injection: compromised devices, with their own valid credentials, that publish poison."""

    devices: tuple[str, ...] = ()
    """Devices (by name) that publish ``+value, -value, +value, ...`` in place of each parameter message
    their learner sends (they still learn and act as the others); none by default."""
    value: FiniteFloat = Field(3e38, gt=0, le=float(np.finfo(np.float32).max))
    """Magnitude of what they publish (capped at the wire dtype's largest finite value): finite, so the codec
    carries it."""


class InstallConfig(StrictModel):
    """New installs mid-run: at ``at`` some devices' controllers are replaced by fresh ones (a thermostat
    changed or reset to its factory state; :mod:`fleet.sim.installs`). Choose them by ``fraction`` or ``devices``."""

    at: PositiveDuration
    """When (time since the simulation start, before ``horizon``); it takes effect at the first control tick from
    then."""
    fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    """Share of the fleet's devices, drawn with the scenario's seed (rounded to whole devices, at least one)."""
    devices: tuple[Annotated[int, Field(ge=0)], ...] = ()
    """Devices (fleet-wide indices) that are installed anew."""

    @model_validator(mode="after")
    def _one_choice(self) -> InstallConfig:
        if (self.fraction is None) == (not self.devices):
            raise ValueError("give either 'fraction' (a share of the fleet) or 'devices' (indices), not both or none")
        if repeated(self.devices):
            raise ValueError(f"devices: {', '.join(map(str, repeated(self.devices)))} listed twice")
        return self

    def chosen(self, n: int) -> int:
        """How many of a fleet of ``n`` devices it installs anew."""
        return len(self.devices) if self.devices else max(1, round(self.fraction * n))


class FleetConfig(StrictModel):
    """The devices: sites and the distributions their buildings are drawn from."""

    sites: Annotated[tuple[SiteConfig, ...], Field(min_length=1)]
    """Sites (feeders) and their device counts."""
    building: BuildingConfig = BuildingConfig()
    """Distributions of the per-device building parameters."""
    hvac: HvacConfig = HvacConfig()
    """HVAC unit: mode, power levels, efficiency."""
    sensors: SensorConfig = SensorConfig()
    """Sensor noise."""
    occupancy: OccupancyConfig = OccupancyConfig()
    """Occupancy schedule and comfort bands."""
    external: tuple[str, ...] = ()
    """Devices (by name, e.g. d00001) that are real edge agents joining through the broker of a
    real-time run (``fleet run --realtime``); the simulation neither controls nor publishes for them."""
    hostile: HostileConfig = HostileConfig()
    """Simulated devices that publish poisoned parameters (:mod:`fleet.sim.faults`), to study attacks."""
    installs: tuple[InstallConfig, ...] = ()
    """Devices whose controller is replaced by a fresh one mid-run (new installs, resets); needs a learner
    that can reset a device (``supports_reset``: the planners and the rule-based thermostat)."""

    @field_validator("sites")
    @classmethod
    def _bounded(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        total, limit = sum(s.devices for s in sites), max_devices()
        if total > limit:
            raise ValueError(
                f"the sites hold {total:,} devices in all, more than {limit:,}, the most this machine is "
                f"set up for; on a machine with the memory for it, raise the bound with the environment "
                f"variable {MAX_DEVICES_ENV}"
            )
        return sites

    @field_validator("sites")
    @classmethod
    def _unique_names(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        dupes = repeated(s.name for s in sites)
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        return sites

    @property
    def n_devices(self) -> int:
        return sum(s.devices for s in self.sites)

    @property
    def name_width(self) -> int:
        """Digits in a device name: 5, more for fleets over 100,000 devices."""
        return max(5, len(str(self.n_devices - 1)))

    @property
    def class_counts(self) -> dict[str, int]:
        """Devices of each network class, over every site."""
        counts: dict[str, int] = {}
        for site in self.sites:
            for cls, n in site.class_counts.items():
                counts[cls] = counts.get(cls, 0) + n
        return counts

    @property
    def device_names(self) -> list[str]:
        """Names of the devices in fleet order: d00000, d00001, ..."""
        width = self.name_width
        return [f"d{i:0{width}d}" for i in range(self.n_devices)]

    def has_device(self, name: str) -> bool:
        """Whether ``name`` is one of :attr:`device_names` (found without listing them)."""
        match = re.fullmatch(r"d(\d{1,19})", name)
        return match is not None and int(match[1]) < self.n_devices and name == f"d{int(match[1]):0{self.name_width}d}"


# --- network ---------------------------------------------------------------------------------


class BrokerConfig(StrictModel):
    """The MQTT broker model."""

    capacity_msgs_per_s: Annotated[float, Field(gt=0)] = 50_000.0
    """Messages the broker handles per second (each inbound publish and each outbound delivery
    counts one); a single mosquitto thread handles tens of thousands of small messages/s."""
    max_packet_bytes: Annotated[int, Field(gt=0, le=268_435_455)] = 256 * 1024
    """Largest payload the broker accepts (mosquitto's message_size_limit); larger ones are dropped."""
    keepalive: PositiveDuration = 60.0
    """Client keep-alive; the will message goes out 1.5 keep-alives after a device drops (MQTT 5 §3.1.2.10)."""


class Qos1Config(StrictModel):
    """Retransmission of QoS 1 messages on each hop (publisher->broker, broker->subscriber)."""

    timeout: PositiveDuration = 10.0
    """Time without PUBACK after which a message is sent again (with the DUP flag)."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 3
    """Retransmissions before a hop gives up and the message counts as dropped."""


class ChurnConfig(StrictModel):
    """Devices dropping off the network and coming back (exponential up and down times)."""

    failures_per_day: Annotated[float, Field(ge=0)] = 0.0
    """Mean number of disconnections per device per day of online time."""
    mean_downtime: PositiveDuration = 1800.0
    """Mean time a device stays offline."""


class LinkCutConfig(StrictModel):
    """A scheduled cut: the links of some devices are down during [start, end)."""

    start: Duration
    """When the cut starts (time since the simulation start)."""
    end: Duration
    """When the links come back."""
    sites: tuple[str, ...] = ()
    """Every device of these sites is cut."""
    devices: tuple[Annotated[int, Field(ge=0)], ...] = ()
    """Devices (fleet-wide indices) that are cut."""

    @model_validator(mode="after")
    def _window(self) -> LinkCutConfig:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end:g} s) must come after start ({self.start:g} s)")
        if not self.sites and not self.devices:
            raise ValueError("name the cut's 'sites' or 'devices'")
        return self


def _merge_profile_overrides(value: Any) -> Any:
    """Overlay user entries on the built-in profiles: ``{wifi: {latency_s: 0.05}}`` changes one field."""
    if not isinstance(value, dict):
        return value
    merged: dict[str, Any] = {name: p.model_dump() for name, p in DEFAULT_PROFILES.items()}
    for name, override in value.items():
        if name in merged and isinstance(override, dict):
            base = dict(merged[name])
            if (
                isinstance(override.get("loss"), dict)
                and override["loss"].get("model", base["loss"]["model"]) != base["loss"]["model"]
            ):
                base.pop("loss")
            elif isinstance(override.get("loss"), dict):
                override = {**override, "loss": {**base["loss"], **override["loss"]}}
            merged[name] = {**base, **override}
        else:
            merged[name] = override
    return merged


class NetworkConfig(StrictModel):
    """Links, broker, reliability, churn and cuts."""

    profiles: Annotated[dict[str, LinkProfile], Field(validate_default=True)] = {}
    """Link profiles by device class. Built-in: ethernet, wifi, lte-m, nb-iot, lora; entries here
    override single fields of a built-in profile or add a new class (all fields then)."""
    broker: BrokerConfig = BrokerConfig()
    qos1: Qos1Config = Qos1Config()
    churn: ChurnConfig = ChurnConfig()
    link_cuts: tuple[LinkCutConfig, ...] = ()
    collector_link: str = "ethernet"
    """Link profile of the cloud collector that subscribes to telemetry and status."""

    @field_validator("profiles", mode="before")
    @classmethod
    def _with_defaults(cls, value: Any) -> Any:
        return _merge_profile_overrides(value)


# --- topology, workloads, learner, outputs ----------------------------------------------------


class TopologyConfig(StrictModel):
    """Who is whose neighbour (message exchange for consensus and learners)."""

    kind: Literal["ring", "small-world", "random-regular", "erdos-renyi", "grid", "complete"] = "small-world"
    """Graph family (built with networkx)."""
    degree: Annotated[int, Field(ge=1)] = 4
    """Neighbours per device (ring/small-world: even k of the lattice; random-regular: d;
    erdos-renyi: expected degree; ignored by grid and complete)."""
    rewire_p: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Watts-Strogatz rewiring probability (small-world)."""
    scope: Literal["site", "fleet"] = "site"
    """Neighbours within each site, or across the whole fleet."""


class TelemetryConfig(StrictModel):
    """Every device reports its state to the cloud collector."""

    enabled: bool = True
    period: PositiveDuration = 300.0
    qos: Literal[0, 1] = 0
    dtype: Literal["float32", "float16", "int8"] = "float16"


class ConsensusConfig(StrictModel):
    """Built-in average consensus among topology neighbours (a learner-free exchange workload)."""

    enabled: bool = True
    period: PositiveDuration = 900.0
    dim: Annotated[int, Field(ge=1, le=65_536)] = 8
    """Length of the vector each device averages."""
    weights: Literal["metropolis", "uniform"] = "metropolis"
    """Metropolis-Hastings (doubly stochastic: converges to the average) or uniform over the
    closed neighbourhood (row stochastic)."""
    staleness: Duration | None = None
    """Ignore neighbour values older than this (default: one period)."""
    qos: Literal[0, 1] = 0
    dtype: Literal["float32", "float16", "int8"] = "float32"
    retain: bool = True
    """Publish retained, so a device that comes back gets its neighbours' latest values at once."""

    @property
    def staleness_s(self) -> float:
        return self.period if self.staleness is None else self.staleness


class WorkloadsConfig(StrictModel):
    telemetry: TelemetryConfig = TelemetryConfig()
    consensus: ConsensusConfig = ConsensusConfig()


class LearnerSpec(StrictModel):
    """Which controller/learner runs on every device, with its own typed parameters."""

    name: str = "rule-based-v1"
    """A registered learner (``fleet learners`` lists them)."""
    preset: str | None = None
    """A named parameter set of that learner shipped with fleet (``fleet learners`` lists them):
    ``params`` start from it, and the keys given in ``params`` override it."""
    params: dict[str, Any] = {}
    """Parameters of that learner; checked by the learner's own config model. A loaded scenario
    holds all of them, defaults and preset filled in (as its run directory's scenario.yaml shows)."""

    @model_validator(mode="before")
    @classmethod
    def _preset_under_params(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        from fleet.learners.shipped import with_preset

        name = data.get("name", cls.model_fields["name"].default)
        return {**data, "params": with_preset(str(name), str(data["preset"]), data.get("params") or {})}


class RewardConfig(StrictModel):
    """Per-device reward each tick: -(energy cost + penalties), in money units."""

    discomfort_per_degh: Annotated[float, Field(ge=0)] = 1.0
    """Penalty per degree-hour outside the comfort band."""
    overload_per_kwh: Annotated[float, Field(ge=0)] = 1.0
    """Penalty per kWh of feeder overload, shared among the feeder's devices by their load."""


class OutputsConfig(StrictModel):
    metrics_period: PositiveDuration = 900.0
    """Interval between rows of metrics.csv."""
    sample_devices: Annotated[int, Field(ge=0, le=64)] = 4
    """Devices whose temperature and comfort band are recorded individually (for plots)."""
    baseline: bool = True
    """Also simulate the rule-based thermostat on the same buildings, weather and sensor noise,
    to report KPIs as ratios to it."""
    checkpoint_every: PositiveDuration | None = 21600.0
    """Save checkpoint.safetensors this often (and at the end), so an interrupted run can be resumed with
    ``fleet resume``; null: only at the end."""
    tensorboard: bool = False
    """Also write every metrics row as TensorBoard scalars into ``tensorboard/`` of the run
    directory (tags are the metrics.csv column names, the step is the simulated second); needs
    the optional ``tensorboard`` package."""

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, on: bool) -> bool:
        import importlib.util

        if on and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "needs the tensorboard package, which is not installed; install it with pip install "
                "'fleet-sim[tensorboard]', "
                "or turn TensorBoard output off (false, or fleet run without --tensorboard)"
            )
        return on


# --- the scenario ----------------------------------------------------------------------------


MAX_HORIZON_S = 100 * 365 * 86400.0
"""The longest ``horizon`` a scenario may ask for: 100 years."""


class Scenario(StrictModel):
    """A complete, validated experiment description."""

    version: Literal[1]
    """Scenario file format version."""
    name: NAME
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    """Root seed: every random generator of the run is derived from it."""
    start_day: Annotated[int, Field(ge=1, le=365)] = 15
    """Day of the year at which the simulation starts (00:00)."""
    horizon: Annotated[PositiveDuration, Field(le=MAX_HORIZON_S)]
    """Simulated time, at most 100 years (a value beyond that is a typo, and one near float's
    range would overflow the tick count)."""
    control_period: PositiveDuration = 60.0
    """Interval between control ticks (sense, act, physics step)."""
    fleet: FleetConfig
    weather: WeatherConfig = SyntheticWeatherConfig()
    tariff: TariffConfig = FlatTariffConfig()
    network: NetworkConfig = NetworkConfig()
    topology: TopologyConfig = TopologyConfig()
    workloads: WorkloadsConfig = WorkloadsConfig()
    learner: LearnerSpec = LearnerSpec()
    reward: RewardConfig = RewardConfig()
    outputs: OutputsConfig = OutputsConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        _check_consistency(self)
        return self

    @property
    def n_devices(self) -> int:
        return self.fleet.n_devices


def _check_consistency(s: Scenario) -> None:
    """Cross-field checks, each in time linear in the size of the file (none per device); each
    failure names the field at fault."""
    n = s.n_devices
    if s.horizon < s.control_period:
        raise ValueError(f"horizon ({s.horizon:g} s) is shorter than control_period ({s.control_period:g} s)")
    profiles = s.network.profiles
    for i, site in enumerate(s.fleet.sites):
        for cls in site.network:
            if cls not in profiles:
                raise ValueError(
                    f"fleet.sites[{i}].network: unknown network class {cls!r}; known: {', '.join(sorted(profiles))}"
                )
    if s.network.collector_link not in profiles:
        raise ValueError(
            f"network.collector_link: unknown profile {s.network.collector_link!r}; known: "
            f"{', '.join(sorted(profiles))}"
        )
    site_names = {site.name for site in s.fleet.sites}
    for i, cut in enumerate(s.network.link_cuts):
        unknown = [x for x in cut.sites if x not in site_names]
        if unknown:
            raise ValueError(f"network.link_cuts[{i}].sites: unknown site(s) {', '.join(unknown)}")
        bad = [d for d in cut.devices if d >= n]
        if bad:
            raise ValueError(f"network.link_cuts[{i}].devices: index {bad[0]} out of range (the fleet has {n} devices)")
    _check_installs(s)
    _check_device_names(s, "fleet.external", s.fleet.external)
    _check_device_names(s, "fleet.hostile.devices", s.fleet.hostile.devices)
    both = sorted(set(s.fleet.external) & set(s.fleet.hostile.devices))
    if both:
        raise ValueError(
            f"fleet.hostile.devices: {', '.join(both)} also in fleet.external; "
            "the simulation publishes nothing for a real device"
        )
    if s.outputs.sample_devices > n:
        raise ValueError(f"outputs.sample_devices ({s.outputs.sample_devices}) exceeds the fleet size ({n})")
    _check_topology(s)
    band_widths = (s.fleet.occupancy.occupied_band_c, s.fleet.occupancy.unoccupied_band_c)
    deadband = s.learner.params.get("deadband_c") if s.learner.name == "rule-based-v1" else None
    if isinstance(deadband, (int, float)) and any(deadband >= hi - lo for lo, hi in band_widths):
        raise ValueError(f"learner.params.deadband_c ({deadband}) must be narrower than every comfort band")


def _check_installs(s: Scenario) -> None:
    """Every install falls within the horizon and names devices of the fleet."""
    for i, install in enumerate(s.fleet.installs):
        if install.at >= s.horizon:
            raise ValueError(
                f"fleet.installs[{i}].at: {install.at:g} s is not before the horizon ({s.horizon:g} s); "
                "an install at or after the end never happens"
            )
        bad = [d for d in install.devices if d >= s.n_devices]
        if bad:
            raise ValueError(
                f"fleet.installs[{i}].devices: index {bad[0]} out of range (the fleet has {s.n_devices} devices, "
                f"0..{s.n_devices - 1})"
            )


def _check_device_names(s: Scenario, field: str, listed: tuple[str, ...]) -> None:
    """Every name in ``listed`` is a device of the fleet, once (without building the N names)."""
    unknown = [d for d in listed if not s.fleet.has_device(d)]
    if unknown:
        width, n = s.fleet.name_width, s.n_devices
        raise ValueError(
            f"{field}: unknown device(s) {', '.join(unknown)}; "
            f"the fleet's devices are d{0:0{width}d}..d{n - 1:0{width}d}"
        )
    if repeated(listed):
        raise ValueError(f"{field}: {', '.join(repeated(listed))} listed twice")


def _check_topology(s: Scenario) -> None:
    t = s.topology
    groups = [site.devices for site in s.fleet.sites] if t.scope == "site" else [s.n_devices]
    smallest = min(groups)
    if t.kind in {"ring", "small-world", "random-regular", "erdos-renyi"} and t.degree >= smallest:
        raise ValueError(
            f"topology.degree ({t.degree}) must be smaller than the smallest group of devices ({smallest}) "
            f"with topology.scope={t.scope!r}"
        )
    if t.kind in {"ring", "small-world"} and t.degree % 2:
        raise ValueError(
            f"topology.degree must be even for kind {t.kind!r} (each device links k/2 on each side); got {t.degree}"
        )
    if t.kind == "random-regular" and any((t.degree * g) % 2 for g in groups):
        raise ValueError("topology.degree times the group size must be even for kind 'random-regular'")


def check_learner_period(s: Scenario, learner: StrictModel, source: str) -> None:
    """ConfigError if the learner's config (``learner``: resolved) refuses the scenario's control
    period: a config whose horizons are durations says so by a method ``discount(period_s)`` that
    raises ConfigError naming the field (:meth:`fleet.learners.configs.ActorCriticConfig.discount`)."""
    discount = getattr(learner, "discount", None)
    if discount is None:
        return
    try:
        discount(s.control_period)
    except ConfigError as e:
        raise ConfigError(f"{source}: invalid configuration:\n  - {e}") from None


def check_installs(s: Scenario, learner_cls: type, source: str) -> None:
    """ConfigError naming ``fleet.installs`` if the scenario has new installs and the learner's class
    ``learner_cls`` cannot reset a device to a fresh one (it does not say ``supports_reset``)."""
    if not s.fleet.installs or getattr(learner_cls, "supports_reset", False):
        return
    from fleet.learners import REGISTRY

    able = sorted(name for name, entry in REGISTRY.items() if getattr(entry.cls, "supports_reset", False))
    raise ConfigError(
        f"{source}: invalid configuration:\n  - fleet.installs: learner {s.learner.name!r} cannot reset a device to "
        f"a fresh one's state (it does not say supports_reset); new installs run with {', '.join(able)}, or "
        "remove fleet.installs"
    )


def check_message_sizes(s: Scenario, learner: StrictModel, source: str) -> None:
    """ConfigError if the broker or a link that carries them cannot carry some workload's or
    the learner's (``learner``: its resolved config) largest message, naming the settings that
    would fit. The simulator would drop every such message (counted in messages_dropped).

    A learner config says the sizes of its messages (``message_sizes(n_levels)``), the overrides
    that make them smaller (``smaller_messages``) and whether they pass the cloud (``via_cloud``),
    as :class:`fleet.learners.configs.ActorCriticConfig` does; a config without them publishes nothing."""
    problems = [_size_problem(s, path, *message) for path, message in _workload_messages(s).items()]
    n_levels = len(s.fleet.hvac.power_levels_kw)
    sizes = getattr(learner, "message_sizes", lambda n: {})
    for kind, size in sizes(n_levels).items():
        options = {}
        for option in getattr(learner, "smaller_messages", ()):
            changed = type(learner).model_validate(apply_overrides(learner.model_dump(mode="json"), [option]))
            options[f"learner.params.{option}"] = changed.message_sizes(n_levels)[kind]
        what = f"learner ({s.learner.name}, {kind} messages)"
        problems.append(_size_problem(s, what, size, getattr(learner, "via_cloud", False), options))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("\n".join([f"{source}: invalid configuration:", *(f"  - {p}" for p in problems)]))


def _workload_messages(s: Scenario) -> dict[str, tuple[int, bool, dict[str, int]]]:
    """The enabled workloads' messages: path -> (bytes, whether the collector takes part,
    {smaller dtype override: bytes})."""
    out = {}
    for path, cfg, values, collector in [
        ("workloads.telemetry", s.workloads.telemetry, TELEMETRY_FIELDS, True),
        ("workloads.consensus", s.workloads.consensus, s.workloads.consensus.dim, False),
    ]:
        if cfg.enabled:
            smaller = [d for d in ("float16", "int8") if d != cfg.dtype]
            options = {f"{path}.dtype={d}": encoded_size(DTYPES[d], [(values,)]) for d in smaller}
            out[path] = (encoded_size(DTYPES[cfg.dtype], [(values,)]), collector, options)
    return out


def _size_limits(s: Scenario, collector: bool) -> list[tuple[int, str]]:
    """(bytes, what sets it) of the broker, of every device link class in use and, if
    ``collector``, of ``network.collector_link``."""
    profiles, broker = s.network.profiles, s.network.broker.max_packet_bytes
    limits = [(broker, f"network.broker.max_packet_bytes ({broker:,})")]
    for cls, n in sorted(s.fleet.class_counts.items()):
        limit = profiles[cls].max_payload_bytes
        if n:
            limits.append((limit, f"the {cls!r} link's max_payload_bytes ({limit:,}) of {n} device{'s' * (n != 1)}"))
    if collector:
        link = s.network.collector_link
        limit = profiles[link].max_payload_bytes
        limits.append(
            (limit, f"the collector's {link!r} link's max_payload_bytes ({limit:,}) (network.collector_link)")
        )
    return limits


def _size_problem(s: Scenario, what: str, size: int, collector: bool, options: dict[str, int]) -> str | None:
    """Why messages of ``size`` bytes cannot go through the broker or a link that carries them,
    with the ``options`` (override -> bytes) that would fit; None if they fit."""
    limits = _size_limits(s, collector)
    over = [text for limit, text in limits if size > limit]
    if not over:
        return None
    room = min(limit for limit, _ in limits)
    fits = [f"{key} ({b:,} bytes)" for key, b in options.items() if b <= room]
    tried = ", ".join(f"{key}: {b:,} bytes" for key, b in options.items()) or "none to try"
    advice = (
        f"Settings that fit: {', '.join(fits)}"
        if fits
        else f"No single setting fits ({tried}); send smaller messages or use another link class"
    )
    return f"{what}: messages of {size:,} bytes exceed {' and '.join(over)}; every one would be dropped. {advice}"


TELEMETRY_FIELDS = 5
"""Telemetry vector: measured temperature, electrical power, comfort band low, high, occupied."""


# --- loading ---------------------------------------------------------------------------------


def scenarios_dir() -> Path:
    """Where the shipped scenarios live (inside an installed wheel, or the source tree)."""
    packaged = Path(__file__).parent / "_scenarios"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "scenarios"


def list_scenarios() -> list[tuple[str, str, Path]]:
    """(name, description, path) of every shipped scenario, sorted by name."""
    rows = []
    for path in sorted(scenarios_dir().glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        rows.append(
            (path.stem, str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else "", path)
        )
    return rows


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A file path as given, or the shipped scenario of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = scenarios_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    if path.exists():
        raise ConfigError(f"{path}: not a file")
    names = ", ".join(name for name, _, _ in list_scenarios())
    raise ConfigError(f"{name_or_path}: no such scenario file, and no shipped scenario of that name (shipped: {names})")


MAX_SCENARIO_BYTES = 2**20
"""Largest scenario file read (a scenario of 100,000 devices in 1,000 sites takes about 60 kB)."""
MAX_YAML_DEPTH = 32
"""Deepest nesting of mappings and lists accepted in a scenario file (the shipped ones reach 6)."""


class _ScenarioLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``: a few lines of them can stand for billions
    of values) and without nesting deeper than :data:`MAX_YAML_DEPTH`; a scalar that cannot be
    built (``2024-13-45``, an integer of 5,000 digits) is an error at its line."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in a scenario file; write the value out", mark
            )
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:
            text = str(node.value)
            shown = f"{text[:40]!r}{'...' * (len(text) > 40)}"
            kind = node.tag.rpartition(":")[2]
            problem = f"{shown} is not a valid {kind} ({e})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def parse_yaml(text: str) -> Any:
    """The value of a YAML document, read by :class:`_ScenarioLoader`; yaml.YAMLError if malformed."""
    return yaml.load(text, Loader=_ScenarioLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file of at most :data:`MAX_SCENARIO_BYTES`; ConfigError
    with line and column when malformed."""
    data = read_regular_file(path, MAX_SCENARIO_BYTES, "scenario file")
    try:
        raw = parse_yaml(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        pos = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: malformed YAML{pos}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (version, name, fleet, ...), got {type(raw).__name__}"
        )
    return raw


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML; ``sites[0]`` or ``sites.0`` index lists)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set horizon=1d")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: cannot read the value as YAML") from None
        try:
            set_path(raw, key, value)
        except ConfigError as e:
            raise ConfigError(f"--set {e}") from None
    return raw


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set the field at dotted ``key`` (``fleet.sites[0].devices``) of a raw scenario mapping to
    ``value``, making the sections on the way; ConfigError naming ``key`` where the path runs
    through a value or past the end of a list."""
    parts = [int(m.group(2)) if m.group(2) else m.group(1) for m in _SEGMENT.finditer(key.strip())]
    parts = [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                where = ".".join(map(str, parts[:depth])) or "top"
                raise ConfigError(f"{key}: {part!r} is not an index of the list at {where}")
        elif isinstance(node, dict):
            if isinstance(part, int):
                part = str(part)
            if not last and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
        else:
            raise ConfigError(f"{key}: {'.'.join(map(str, parts[:depth]))} is a value, not a section")
        if last:
            node[part] = value
        else:
            node = node[part]


def parse_scenario(raw: dict[str, Any], source: str, base_dir: Path) -> Scenario:
    """Validate a raw mapping; relative file paths are resolved against ``base_dir``."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as e:
        raise format_validation_error(e, source) from None
    learner = validate_learner_params(scenario, source)
    resolved = scenario.learner.model_copy(update={"params": learner.model_dump(mode="json")})
    scenario = scenario.model_copy(update={"learner": resolved})
    check_learner_period(scenario, learner, source)
    check_message_sizes(scenario, learner, source)
    if scenario.fleet.installs:
        from fleet.learners import REGISTRY

        check_installs(scenario, REGISTRY[scenario.learner.name].cls, source)
    if isinstance(scenario.weather, EpwWeatherConfig):
        epw = Path(scenario.weather.path)
        if not epw.is_absolute():
            resolved = scenario.weather.model_copy(update={"path": str((base_dir / epw).resolve())})
            scenario = scenario.model_copy(update={"weather": resolved})
    return scenario


def validate_learner_params(scenario: Scenario, source: str) -> StrictModel:
    """The learner's typed config, or a ConfigError naming ``learner.name`` / ``learner.params.<key>``."""
    from fleet.learners import REGISTRY

    entry = REGISTRY.get(scenario.learner.name)
    if entry is None:
        raise ConfigError(
            f"{source}: invalid configuration:\n  - learner.name: {scenario.learner.name!r} is not a registered "
            f"learner; known: {', '.join(sorted(REGISTRY))}"
        )
    try:
        return entry.config_cls.model_validate(scenario.learner.params)
    except ValidationError as e:
        err = format_validation_error(e, source)
        raise ConfigError(str(err).replace("\n  - ", "\n  - learner.params.")) from None


def load_scenario(name_or_path: str | Path, overrides: list[str] | None = None, seed: int | None = None) -> Scenario:
    """Read, override and validate a scenario file or shipped scenario name."""
    path = resolve_scenario_path(name_or_path)
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    if seed is not None:
        raw["seed"] = seed
    return parse_scenario(raw, str(path), path.parent)


def dump_scenario(scenario: Scenario) -> str:
    """The resolved scenario as YAML (durations in seconds), loadable by :func:`load_scenario`."""
    return yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False)
