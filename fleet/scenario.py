"""The scenario: a typed, validated description of one simulated fleet experiment.

A scenario file is YAML with ``version: 1``. Every section is a strict model: unknown keys,
wrong types, out-of-range values and inconsistent combinations are errors that name the field
path. :func:`load_scenario` reads a file (or a shipped scenario's name), applies ``--set``
overrides through the same validator and returns a :class:`Scenario` whose file paths are
resolved, so that ``scenario.model_dump()`` written into a run directory re-runs the same
experiment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

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
from fleet.config import Duration, PositiveDuration, StrictModel, format_validation_error
from fleet.errors import ConfigError
from fleet.mqtt.codec import DType, encoded_size
from fleet.net.profiles import DEFAULT_PROFILES, LinkProfile

NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
SCENARIO_VERSION = 1
DTYPES = {"float32": DType.FLOAT32, "float16": DType.FLOAT16, "int8": DType.INT8}


# --- fleet -----------------------------------------------------------------------------------


class SiteConfig(StrictModel):
    """A site: a group of devices behind one electrical feeder."""

    name: NAME
    """Site name, used in topics (``fleet/<site>/<device>/<kind>``)."""
    devices: Annotated[int, Field(gt=0, le=1_000_000)]
    """Number of simulated devices at this site."""
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

    @field_validator("sites")
    @classmethod
    def _unique_names(cls, sites: tuple[SiteConfig, ...]) -> tuple[SiteConfig, ...]:
        names = [s.name for s in sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        return sites

    @property
    def n_devices(self) -> int:
        return sum(s.devices for s in self.sites)

    @property
    def device_names(self) -> list[str]:
        """Names of the devices in fleet order: d00000, d00001, ... (wider for fleets over 100,000)."""
        n = self.n_devices
        width = max(5, len(str(n - 1)))
        return [f"d{i:0{width}d}" for i in range(n)]


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
    def _window(self) -> "LinkCutConfig":
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
            if isinstance(override.get("loss"), dict) and override["loss"].get("model", base["loss"]["model"]) != base["loss"]["model"]:
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
    params: dict[str, Any] = {}
    """Parameters of that learner; checked by the learner's own config model."""


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
    """Save checkpoint.pt this often (and at the end), so an interrupted run can be resumed with
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
                "needs the tensorboard package, which is not installed; install it with pip install 'fleet-sim[tensorboard]', "
                "or turn TensorBoard output off (false, or fleet run without --tensorboard)"
            )
        return on


# --- the scenario ----------------------------------------------------------------------------


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
    horizon: PositiveDuration
    """Simulated time."""
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
    def _consistent(self) -> "Scenario":
        _check_consistency(self)
        return self

    @property
    def n_devices(self) -> int:
        return self.fleet.n_devices


def _check_consistency(s: Scenario) -> None:
    """Cross-field checks; each failure names the field at fault."""
    if s.horizon < s.control_period:
        raise ValueError(f"horizon ({s.horizon:g} s) is shorter than control_period ({s.control_period:g} s)")
    profiles = s.network.profiles
    for i, site in enumerate(s.fleet.sites):
        for cls in site.network:
            if cls not in profiles:
                raise ValueError(f"fleet.sites[{i}].network: unknown network class {cls!r}; known: {', '.join(sorted(profiles))}")
    if s.network.collector_link not in profiles:
        raise ValueError(f"network.collector_link: unknown profile {s.network.collector_link!r}; known: {', '.join(sorted(profiles))}")
    site_names = {site.name for site in s.fleet.sites}
    for i, cut in enumerate(s.network.link_cuts):
        unknown = [x for x in cut.sites if x not in site_names]
        if unknown:
            raise ValueError(f"network.link_cuts[{i}].sites: unknown site(s) {', '.join(unknown)}")
        bad = [d for d in cut.devices if d >= s.n_devices]
        if bad:
            raise ValueError(f"network.link_cuts[{i}].devices: index {bad[0]} out of range (the fleet has {s.n_devices} devices)")
    names = set(s.fleet.device_names)
    unknown = [d for d in s.fleet.external if d not in names]
    if unknown:
        raise ValueError(f"fleet.external: unknown device(s) {', '.join(unknown)}; the fleet's devices are {s.fleet.device_names[0]}..{s.fleet.device_names[-1]}")
    if len(set(s.fleet.external)) < len(s.fleet.external):
        raise ValueError("fleet.external: a device is listed twice")
    if s.outputs.sample_devices > s.n_devices:
        raise ValueError(f"outputs.sample_devices ({s.outputs.sample_devices}) exceeds the fleet size ({s.n_devices})")
    _check_topology(s)
    _check_payloads(s)
    band_widths = (s.fleet.occupancy.occupied_band_c, s.fleet.occupancy.unoccupied_band_c)
    deadband = s.learner.params.get("deadband_c") if s.learner.name == "rule-based-v1" else None
    if isinstance(deadband, (int, float)) and any(deadband >= hi - lo for lo, hi in band_widths):
        raise ValueError(f"learner.params.deadband_c ({deadband}) must be narrower than every comfort band")


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
        raise ValueError(f"topology.degree must be even for kind {t.kind!r} (each device links k/2 on each side); got {t.degree}")
    if t.kind == "random-regular" and any((t.degree * g) % 2 for g in groups):
        raise ValueError("topology.degree times the group size must be even for kind 'random-regular'")


def _check_payloads(s: Scenario) -> None:
    """A workload whose messages no link of the fleet can carry is a configuration mistake."""
    used = {cls for site in s.fleet.sites for cls in site.network}
    payloads = {
        "workloads.telemetry": (s.workloads.telemetry, [(TELEMETRY_FIELDS,)]),
        "workloads.consensus": (s.workloads.consensus, [(s.workloads.consensus.dim,)]),
    }
    for path, (cfg, shapes) in payloads.items():
        if not cfg.enabled:
            continue
        size = encoded_size(DTYPES[cfg.dtype], shapes)
        if size > s.network.broker.max_packet_bytes:
            raise ValueError(f"{path}: messages of {size} bytes exceed network.broker.max_packet_bytes ({s.network.broker.max_packet_bytes})")
        for cls in sorted(used):
            limit = s.network.profiles[cls].max_payload_bytes
            if size > limit:
                raise ValueError(
                    f"{path}: messages of {size} bytes exceed the {cls!r} link's max_payload_bytes ({limit}); "
                    f"use a smaller dtype (float16, int8) or a smaller message"
                )


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
        rows.append((path.stem, str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else "", path))
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


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; ConfigError with line and column when malformed."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        pos = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: malformed YAML{pos}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (version, name, fleet, ...), got {type(raw).__name__}")
    return raw


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (value parsed as YAML; ``sites[0]`` or ``sites.0`` index lists)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set horizon=1d")
        try:
            value = yaml.safe_load(text)
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
    validate_learner_params(scenario, source)
    if isinstance(scenario.weather, EpwWeatherConfig):
        epw = Path(scenario.weather.path)
        if not epw.is_absolute():
            resolved = EpwWeatherConfig(source="epw", path=str((base_dir / epw).resolve()))
            scenario = scenario.model_copy(update={"weather": resolved})
    return scenario


def validate_learner_params(scenario: Scenario, source: str) -> StrictModel:
    """The learner's typed config, or a ConfigError naming ``learner.name`` / ``learner.params.<key>``."""
    from fleet.learners import REGISTRY

    entry = REGISTRY.get(scenario.learner.name)
    if entry is None:
        raise ConfigError(f"{source}: invalid configuration:\n  - learner.name: {scenario.learner.name!r} is not a registered learner; known: {', '.join(sorted(REGISTRY))}")
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
