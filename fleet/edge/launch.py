"""From ``fleet agent``'s options to a ready :class:`~fleet.edge.agent.EdgeAgent`, and from ``fleet
auctioneer``'s or ``fleet meter``'s to a ready :class:`~fleet.edge.site.SiteRunner`.

Everything a user can get wrong is checked here, before the agent starts or writes anything,
and reported as a :class:`ConfigError` naming the option: the broker URL, the device, TLS
files that are missing or do not belong together, a password given twice.

``--env-file`` reads the ``agent.env`` that ``fleet deploy provision`` writes for each device
(``KEY=VALUE`` lines; ``#`` starts a comment). Options given on the command line win over it.
It logs in with the device's certificate on ``FLEET_BROKER_URL`` (mutual TLS); with
``--broker`` set to its ``FLEET_PASSWORD_BROKER_URL``, with the device's name and
``FLEET_PASSWORD_FILE`` instead. ``FLEET_SITE`` and ``FLEET_SCENARIO_NAME`` must match the
scenario's device: a mismatch means the folder was provisioned for another fleet.

The site roles take the same broker, TLS and password options (:class:`BrokerArgs`), the scenario
and the site, and the clock's options; they log in as ``<role>-<site>`` unless ``--username`` says
otherwise (the identity ``fleet deploy provision`` writes for them, under ``services/``), and their
``--env-file`` is the ``site.env`` written there (``FLEET_SITE`` gives ``--site``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from fleet.config import parse_duration
from fleet.edge.agent import AgentOptions, DriverFactory, EdgeAgent, TransportFactory, simulated_driver
from fleet.edge.auctioneer import Auctioneer
from fleet.edge.forecast import FileForecast, ForecastSource, MqttForecast
from fleet.edge.meter import Meter
from fleet.edge.site import RunOptions, SiteRunner, role_identity, site_view
from fleet.edge.view import device_view
from fleet.errors import ConfigError, WireError
from fleet.files import read_regular_file
from fleet.mqtt.topics import validate_topic_name
from fleet.mqtt.url import parse_broker_url

ENV_OPTIONS = {
    "FLEET_DEVICE": "device",
    "FLEET_SITE": "site",
    "FLEET_SCENARIO": "scenario",
    "FLEET_BROKER_URL": "broker",
    "FLEET_CHECKPOINT_DIR": "state_dir",
    "FLEET_CA_FILE": "ca",
}
"""agent.env (site.env) keys that give an option's default, where the command has that option."""
CERT_OPTIONS = {"FLEET_CERT_FILE": "cert", "FLEET_KEY_FILE": "key"}
"""agent.env keys used for a mutual-TLS login."""


@dataclass
class BrokerArgs:
    """The broker options of ``fleet agent``, ``fleet auctioneer`` and ``fleet meter`` (None: not given)."""

    broker: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None


@dataclass
class ProcessArgs(BrokerArgs):
    """The options of every process of a real fleet: its scenario, its broker, its clock."""

    scenario: str | None = None
    speedup: float = 1.0
    epoch: float | None = None
    duration: str | None = None
    status_every: str = "60s"
    env_file: Path | None = None

    def run_options(self) -> dict:
        """The clock's options, checked: keywords of :class:`~fleet.edge.site.RunOptions`."""
        return {
            "speedup": self.speedup,
            "epoch": self.epoch,
            "duration": None if self.duration is None else _duration("--duration", self.duration),
            "status_every": _duration("--status-every", self.status_every),
        }


@dataclass
class SiteArgs(ProcessArgs):
    """``fleet auctioneer``'s and ``fleet meter``'s options as given."""

    site: str | None = None


@dataclass
class AgentArgs(ProcessArgs):
    """``fleet agent``'s options as given (None: not given)."""

    device: str | None = None
    driver: str = "simulated"
    gpio: int | None = None
    active_low: bool = False
    sensor_id: str | None = None
    state_dir: Path | None = None
    checkpoint_every: str = "1h"
    forecast_file: Path | None = None
    forecast_topic: str | None = None
    forecast_max_age: str = "12h"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path`` (blank lines and ``#`` comments skipped, quotes removed)."""
    text = _read_small(path, "--env-file")
    env = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--env-file {path}, line {number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def apply_env(args: ProcessArgs, env: dict[str, str]) -> None:
    """Fill the options not given from agent.env or site.env (see the module docstring)."""
    for key, name in ENV_OPTIONS.items():
        if hasattr(args, name) and getattr(args, name) is None and env.get(key):
            value = env[key]
            setattr(args, name, Path(value) if name in ("ca", "state_dir") else value)
    if args.broker is not None and args.broker == env.get("FLEET_PASSWORD_BROKER_URL"):
        args.username = args.username or env.get("FLEET_DEVICE")
        if args.password is None and args.password_file is None and env.get("FLEET_PASSWORD_FILE"):
            args.password_file = Path(env["FLEET_PASSWORD_FILE"])
        return
    for key, name in CERT_OPTIONS.items():
        if getattr(args, name) is None and env.get(key):
            setattr(args, name, Path(env[key]))


def _duration(option: str, text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as e:
        raise ConfigError(f"{option}: {e}") from None
    if not value > 0:
        raise ConfigError(f"{option}: must be longer than 0, got {text!r}")
    return value


def _password(args: BrokerArgs) -> str | None:
    if args.password is not None and args.password_file is not None:
        raise ConfigError("give the password once: --password or --password-file, not both")
    if args.password_file is None:
        return args.password
    return _read_small(args.password_file, "--password-file").rstrip("\r\n")


MAX_SMALL_FILE_BYTES = 64 * 2**10
"""Largest --env-file or --password-file read: each is a few lines."""


def _read_small(path: Path, option: str) -> str:
    """The text of a small regular file given as ``option``: a FIFO, a device or a large file
    is refused naming the option, so that a wrong path cannot hang or exhaust the board."""
    data = read_regular_file(Path(path), MAX_SMALL_FILE_BYTES, option)
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise ConfigError(f"{option} {path}: not UTF-8 text (byte {e.start})") from None


def transport_factory(args: BrokerArgs) -> TransportFactory:
    """A PahoTransport factory for the broker options; TLS files are loaded (and checked) now."""
    from fleet.mqtt.paho_transport import PahoTransport, TLSFiles

    if args.broker is None:
        raise ConfigError(
            "--broker is required (mqtt://host[:port] or mqtts://host[:port]), or FLEET_BROKER_URL in --env-file"
        )
    url = parse_broker_url(args.broker)
    files = {"--ca": args.ca, "--cert": args.cert, "--key": args.key}
    tls = None
    if any(files.values()):
        if not url.tls:
            given = ", ".join(name for name, path in files.items() if path)
            raise ConfigError(f"{given} given, but the broker URL is not mqtts://; TLS files need a TLS broker")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ConfigError(f"{name} {path}: no such file")
        tls = TLSFiles(args.ca, args.cert, args.key)
        tls.context()  # loads them: a certificate without its key, or a file that is not PEM, fails here
    return functools.partial(PahoTransport, url=args.broker, username=args.username, password=_password(args), tls=tls)


def driver_factory(args: AgentArgs) -> DriverFactory:
    """The simulated building, or a DS18B20 and a relay through sysfs."""
    if args.driver == "simulated":
        if args.gpio is not None or args.active_low or args.sensor_id is not None:
            raise ConfigError("--gpio, --active-low and --sensor-id apply to --driver sysfs only")
        return simulated_driver
    if args.gpio is None:
        raise ConfigError("--driver sysfs needs --gpio, the sysfs GPIO number of the relay (see devices/drivers.py)")
    from devices.drivers import SysfsDriver

    return lambda view, clock: SysfsDriver(args.gpio, active_low=args.active_low, sensor_id=args.sensor_id)


def forecast_source(args: AgentArgs) -> ForecastSource | None:
    """The forecast file or topic the options name (not both), or None."""
    if args.forecast_file is not None and args.forecast_topic is not None:
        raise ConfigError("give one forecast source: --forecast-file or --forecast-topic, not both")
    if args.forecast_file is not None:
        return FileForecast(args.forecast_file)
    if args.forecast_topic is None:
        return None
    try:
        validate_topic_name(args.forecast_topic)
    except WireError as e:
        raise ConfigError(f"--forecast-topic: {e}") from None
    return MqttForecast(args.forecast_topic)


def _check_env_identity(env: dict[str, str], who: str, scenario: str, site: str) -> None:
    for key, mine in (("FLEET_SITE", site), ("FLEET_SCENARIO_NAME", scenario)):
        if env.get(key) and env[key] != mine:
            raise ConfigError(
                f"--env-file says {key}={env[key]}, but {who} of scenario {scenario} has {mine!r}; "
                "the folder was provisioned for another fleet"
            )


def build_agent(args: AgentArgs, on_status=None) -> EdgeAgent:
    """The agent the options describe, checked; ConfigError for anything wrong."""
    from fleet.scenario import load_scenario

    env = read_env_file(args.env_file) if args.env_file else {}
    apply_env(args, env)
    options = AgentOptions(
        **args.run_options(),
        checkpoint_every=_duration("--checkpoint-every", args.checkpoint_every),
        forecast_max_age=_duration("--forecast-max-age", args.forecast_max_age),
    )
    make_transport = transport_factory(args)
    make_driver = driver_factory(args)
    forecasts = forecast_source(args)
    if args.scenario is None or args.device is None:
        raise ConfigError("--scenario and --device are required (or FLEET_SCENARIO and FLEET_DEVICE in --env-file)")
    view = device_view(load_scenario(args.scenario), args.device)
    _check_env_identity(env, f"device {view.name}", view.scenario.name, view.site)
    state_dir = args.state_dir or Path("agent-state") / view.name
    return EdgeAgent(view, make_transport, state_dir, options, make_driver, on_status, forecasts)


SITE_ROLES = {"auctioneer": Auctioneer, "meter": Meter}
"""The site roles by command name."""


def build_site_role(role: str, args: SiteArgs, on_status=None) -> SiteRunner:
    """The ``role`` process (a key of :data:`SITE_ROLES`) the options describe, checked; ConfigError for
    anything wrong."""
    from fleet.scenario import load_scenario

    env = read_env_file(args.env_file) if args.env_file else {}
    apply_env(args, env)
    options = RunOptions(**args.run_options())
    if args.scenario is None or args.site is None:
        raise ConfigError("a SCENARIO and --site are required (or FLEET_SCENARIO and FLEET_SITE in --env-file)")
    if args.username is None and (args.password is not None or args.password_file is not None):
        args.username = role_identity(role, args.site)
    make_transport = transport_factory(args)
    site = site_view(load_scenario(args.scenario), args.site)
    _check_env_identity(env, role_identity(role, site.name), site.scenario.name, site.name)
    return SiteRunner(SITE_ROLES[role](site), make_transport, options, on_status)
