"""``fleet``: the command line, a thin layer over the library.

Every error the project raises on purpose (:class:`fleet.errors.FleetError`) is printed as one
paragraph and exits with status 2, without a traceback; Ctrl-C during a run stops it cleanly,
keeps the partial results and exits with status 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

import fleet
from fleet.errors import ConfigError, FleetError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns FleetError into a message and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FleetError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fleet-sim")
def main() -> None:
    """Simulate fleets of learning thermostats over a modelled MQTT network.

    \b
    Quick start:
      fleet scenarios                      list the shipped scenarios
      fleet run thermostats-small-v2       simulate one (results in runs/)
      fleet report runs/thermostats-small-v2-seed0

    \b
    Environment:
      FLEET_MAX_DEVICES=N                  allow fleets of up to N devices in all [default: 1000000]
                                           (about 8 kB of memory per device, more with a learner)
    """


@main.command()
@click.argument("scenario")
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Run directory to create [default: runs/<scenario>-seed<seed>].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario field, e.g. --set horizon=1d --set fleet.sites[0].devices=20 "
    "(repeatable; validated like the file).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Root seed (overrides the scenario's).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where learners compute.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory (only if it is one).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads of torch, OpenMP and BLAS [default: OMP_NUM_THREADS if set, "
    "else 1 for a fleet under 1,000 devices and every core for a larger one].",
)
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Also write the metrics as TensorBoard scalars into <run>/tensorboard "
    "(same as --set outputs.tensorboard=true).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless the run fails or is interrupted.")
@click.option(
    "--actors",
    type=int,
    default=1,
    show_default=True,
    help="Split the fleet by site across this many Ray actors, in lockstep at the control tick, with the "
    "results of a single run (rule-based controllers; a local Ray, or the cluster at RAY_ADDRESS).",
)
@click.option(
    "--realtime",
    is_flag=True,
    help="Run on the wall clock as a mixed fleet: learner messages go through --broker, "
    "and the devices of fleet.external are real agents (fleet agent --epoch) that join through it.",
)
@click.option(
    "--speedup",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="--realtime: scenario seconds per wall second (the agents must use the same).",
)
@click.option(
    "--epoch",
    type=float,
    metavar="UNIX_TIME",
    help="--realtime: wall time of scenario time 0, shared with the agents [default: now].",
)
@click.option(
    "--broker",
    metavar="URL",
    help="--realtime: mqtt://[user@]host[:port] or mqtts://... (TLS). A password in "
    "the URL is seen by other users (ps) and recorded as *** in run.json: give it with --username and "
    "--password-file instead.",
)
@click.option("--ca", type=click.Path(path_type=Path), help="--realtime: CA certificate of the broker (mqtts).")
@click.option(
    "--cert",
    type=click.Path(path_type=Path),
    help="--realtime: the bridge's certificate, for mutual TLS (services/bridge/ of fleet deploy provision).",
)
@click.option("--key", type=click.Path(path_type=Path), help="--realtime: the bridge's private key.")
@click.option("--username", help="--realtime: user name for a password login (bridge, when provisioned).")
@click.option("--password-file", type=click.Path(path_type=Path), help="--realtime: file holding the password.")
def run(
    scenario: str,
    out: Path | None,
    overrides: tuple[str, ...],
    seed: int | None,
    device: str,
    overwrite: bool,
    threads: int | None,
    tensorboard: bool,
    quiet: bool,
    actors: int,
    realtime: bool,
    speedup: float,
    epoch: float | None,
    **broker,
) -> None:
    """Simulate SCENARIO (a shipped scenario name or a YAML file) into a run directory.

    The directory gets scenario.yaml (resolved, re-runnable), run.json, metrics.csv and
    summary.json (and tensorboard/ with --tensorboard). An existing directory is never
    overwritten unless --overwrite is given.

    \b
    A mixed fleet (fleet.external: [d00000] in the scenario), 60 scenario seconds per wall second:
      fleet run SCENARIO --realtime --speedup 60 --epoch $(date +%s) --broker mqtt://localhost
      fleet agent --scenario SCENARIO --device d00000 --speedup 60 --epoch SAME --broker mqtt://localhost
    """
    from fleet.threads import set_threads, threads_for_fleet

    sc = fleet.load_scenario(scenario, [*overrides, *(["outputs.tensorboard=true"] if tensorboard else [])], seed)
    set_threads(threads or threads_for_fleet(sc.n_devices))
    options = _realtime_options(realtime, speedup, epoch, broker)
    out = out or Path("runs") / f"{sc.name}-seed{sc.seed}"
    if options is not None and not quiet:
        click.echo(
            f"real-time run: scenario time 0 at epoch {options.epoch:.3f}, speedup {speedup:g}; "
            f"external devices join with: fleet agent --epoch {options.epoch:.3f} --speedup {speedup:g} ...",
            err=True,
        )
    result = fleet.run(sc, out, device=device, overwrite=overwrite, progress=not quiet, realtime=options, actors=actors)
    _finish(result, quiet)


def _realtime_options(realtime: bool, speedup: float, epoch: float | None, broker: dict):
    """``fleet run``'s real-time options, checked (the TLS files are loaded now), or None."""
    import functools
    import time

    from fleet.edge.launch import BrokerArgs, transport_factory
    from fleet.mqtt.url import parse_broker_url
    from fleet.sim.bridge import RealtimeOptions
    from fleet.sim.realtime import check_epoch

    given = [f"--{name.replace('_', '-')}" for name, value in broker.items() if value is not None]
    if not realtime:
        if given or epoch is not None or speedup != 1.0:
            raise ConfigError(
                f"{', '.join(given + ['--epoch'] * (epoch is not None) + ['--speedup'] * (speedup != 1.0))} apply only "
                "with --realtime"
            )
        return None
    if broker["broker"] is None:
        raise ConfigError(
            "--realtime needs --broker URL (mqtt://host[:port] or mqtts://host[:port]): the learner messages go "
            "through it"
        )
    check_epoch(epoch)
    url = parse_broker_url(broker["broker"])
    make = transport_factory(BrokerArgs(**broker))
    return RealtimeOptions(
        functools.partial(make, session_expiry=0),
        speedup,
        time.time() if epoch is None else epoch,
        broker=f"{'mqtts' if url.tls else 'mqtt'}://{url.host}:{url.port}",
    )


@main.command(name="train")
@click.argument("scenario")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Folder of the training.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a scenario field (repeatable).")
@click.option(
    "--teacher",
    default="optimum",
    show_default=True,
    help="Teacher of the DAgger rounds (optimum: the perfect-information optimum), or none: PPO only.",
)
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds with the teacher (without one: of PPO).")
@click.option("--rl-rounds", type=int, default=0, show_default=True, help="Rounds of PPO after the teacher's.")
@click.option("--houses", type=int, default=100, show_default=True, help="Houses simulated at once in each round.")
@click.option("--days", type=int, default=20, show_default=True, help="Simulated days per round.")
@click.option(
    "--widen",
    type=float,
    default=1.0,
    show_default=True,
    help="Spread of the scenario's per-device distributions (houses, heat pumps, schedules), times its own.",
)
@click.option(
    "--season-days",
    type=int,
    default=60,
    show_default=True,
    help="Rounds start within this many days of the scenario's start_day (182: any day of the year).",
)
@click.option(
    "--teacher-weight",
    type=float,
    help="Price per degree-hour outside the band that the teacher minimizes [default: the scenario's reward].",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other field of fleet.pretrain.TrainConfig, e.g. --option fit_epochs=20 (repeatable).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of training's draws.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads of torch [default: as fleet run].")
@click.option("--overwrite", is_flag=True, help="Replace an earlier training in the folder.")
@click.option("--resume", is_flag=True, help="Continue the folder's training from its checkpoint (same options).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
def train_cmd(
    scenario: str,
    out: Path,
    overrides: tuple[str, ...],
    options: tuple[str, ...],
    device: str,
    threads: int | None,
    overwrite: bool,
    resume: bool,
    quiet: bool,
    **config,
) -> None:
    """Pretrain one policy for SCENARIO on simulated years of randomized houses.

    Each round draws --houses houses from the scenario's distributions (widened by --widen) with
    weather of their own, simulates them for --days days, and learns: by DAgger from the teacher,
    then (--rl-rounds) by PPO. OUT gets train.json, checkpoint.safetensors after every round
    (--resume continues from it) and at the end policy.safetensors, which learners load:

    \b
      fleet train thermostats-small-v1 --set control_period=15min -o pretrained
      fleet run thermostats-small-v1 --set control_period=15min --set learner.name=independent-v1 \\
        --set learner.params.init_policy=pretrained/policy.safetensors --set learner.params.frozen=true
    """
    from fleet.scenario import parse_yaml
    from fleet.threads import set_threads, threads_for_fleet

    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--option {item!r}: give KEY=VALUE, e.g. --option fit_epochs=20")
        config[key.strip()] = parse_yaml(value)
    config = {key: value for key, value in config.items() if value is not None}
    sc = fleet.load_scenario(scenario, overrides)
    set_threads(threads or threads_for_fleet(config["houses"]))
    record = fleet.train(sc, out, config, device=device, overwrite=overwrite, resume=resume, progress=not quiet)
    if not quiet:
        last = record["rounds"][-1]
        click.echo(
            f"round {last['round']}: cost {last['cost']:.2f} and discomfort {last['discomfort_degh']:.2f} "
            "degC*h per house-day"
        )
        click.echo(f"policy in {Path(out) / 'policy.safetensors'}")


@main.command(name="resume")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="Print nothing unless the run fails or is interrupted.")
def resume_cmd(run_dir: Path, quiet: bool) -> None:
    """Continue an interrupted run from its last checkpoint (checkpoint.safetensors in RUN_DIR).

    Metrics after the checkpoint are recomputed; the finished run is identical to one that
    was never interrupted (except its perf figures).
    """
    _finish(fleet.resume(run_dir, progress=not quiet), quiet)


def _finish(result, quiet: bool) -> None:
    """The summary table and where the results are (nothing with ``quiet``); exit 130 if interrupted."""
    interrupted = result.status == "interrupted"
    if not quiet:
        _print_summary(result.summary)
    if interrupted or not quiet:
        what = "interrupted; partial results (fleet resume continues)" if interrupted else "results"
        click.echo(f"{what} in {result.path}", err=interrupted)
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)


def _print_summary(summary: dict) -> None:
    from fleet.kpis import summary_lines

    for line in summary_lines(summary):
        click.echo(line)


@main.command()
@click.argument("scenarios", nargs=-1, required=True)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Overrides to validate along with each file."
)
def validate(scenarios: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check scenario files (or shipped names) and the weather files they name; exit 2 if any is invalid."""
    from devices.config import EpwWeatherConfig
    from devices.weather import read_epw

    failed = 0
    for item in scenarios:
        try:
            sc = fleet.load_scenario(item, overrides)
            if isinstance(sc.weather, EpwWeatherConfig):
                read_epw(sc.weather.path)
        except FleetError as e:
            failed += 1
            click.echo(f"error: {e}", err=True)
        else:
            days = f"{sc.horizon / 86400:g} day{'' if sc.horizon == 86400 else 's'}"
            click.echo(f"ok: {item} ({sc.name}: {sc.n_devices} devices, {days}, learner {sc.learner.name})")
    if failed:
        sys.exit(EXIT_USAGE)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def scenarios(fmt: str) -> None:
    """List the shipped scenarios with a one-line description."""
    rows = fleet.list_scenarios()
    if fmt == "json":
        click.echo(json.dumps([{"name": n, "description": d, "path": str(p)} for n, d, p in rows], indent=2))
        return
    width = max(len(n) for n, _, _ in rows)
    for name, desc, _ in rows:
        click.echo(f"{name:<{width}}  {desc}")


@main.command()
@click.argument("name", required=False)
def learners(name: str | None) -> None:
    """List the registered learners (with their presets: learner.preset NAME), or show learner
    NAME's parameters with their defaults.

    Learners register through the `fleet.learners` entry point group, so installing a package
    of learners adds them here. One that cannot be loaded is reported and the rest listed
    (exit status 2).
    """
    from fleet.learners import REGISTRY
    from fleet.learners.shipped import presets

    if name is not None:
        _print_learner(name, REGISTRY.require(name))
        return
    failed = False
    for registered in REGISTRY:
        try:
            named = sorted(presets().get(registered, {}))
            click.echo(
                f"{registered:<20}  {REGISTRY[registered].summary}"
                + (f" [presets: {', '.join(named)}]" if named else "")
            )
        except ConfigError as e:
            failed = True
            click.echo(f"error: {e}", err=True)
    if failed:
        sys.exit(EXIT_USAGE)


def _print_learner(name: str, entry) -> None:
    """A learner's summary, class and every parameter: type, default and documentation."""
    import textwrap

    from fleet.config import REQUIRED, describe_fields

    cls = entry.learner
    where = cls if isinstance(cls, str) else f"{cls.__module__}:{cls.__qualname__}"
    click.echo(f"{name}: {entry.summary}\nclass {where}\n")
    click.echo("Parameters (learner.params.<name> in a scenario, or --set learner.params.<name>=VALUE):")
    for field in describe_fields(entry.config_cls):
        default = field.default if field.default is REQUIRED else json.dumps(field.default, default=str)
        click.echo(f"\n  {field.path}: {field.type} = {default}")
        if field.doc:
            click.echo(textwrap.fill(field.doc, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for the PNG plots [default: <run>/report, or reports/compare for several runs].",
)
@click.option(
    "--comm-vs-reward",
    "with_comm_vs_reward",
    is_flag=True,
    help="Also plot final reward against bytes sent per device per day "
    "(comm_vs_reward.png, with the numbers in .csv and .json); "
    "runs that differ only in their seed are one point with a 95% confidence interval.",
)
@click.option(
    "--tail",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="FRACTION",
    help="With --comm-vs-reward: the final reward is taken over this last fraction of each run [default: 0.5].",
)
@click.option(
    "--per-run/--no-per-run",
    default=True,
    show_default=True,
    help="Draw the plots of each run (leave them out for a study of many runs).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace files of an earlier report in the output folder (otherwise they are refused).",
)
def report(
    runs: tuple[Path, ...],
    out: Path | None,
    with_comm_vs_reward: bool,
    tail: float | None,
    per_run: bool,
    overwrite: bool,
) -> None:
    """Draw PNG plots of one or more run directories (several runs: a KPI comparison too).

    \b
    A study, e.g. two learners x three seeds:
      fleet report runs/diffusion-seed{0,1,2} runs/independent-seed{0,1,2} \\
        --comm-vs-reward --no-per-run -o reports/study
    """
    if tail is not None and not with_comm_vs_reward:
        raise ConfigError("--tail applies only with --comm-vs-reward")
    out = out or (runs[0] / "report" if len(runs) == 1 else Path("reports") / "compare")
    written = fleet.write_report(
        runs, out, overwrite=overwrite, per_run=per_run, comm_vs_reward=with_comm_vs_reward, tail=tail
    )
    for path in written:
        click.echo(str(path))


_BROKER_OPTIONS = (
    click.option(
        "--broker",
        metavar="URL",
        help="mqtt://[user@]host[:port] or mqtts://... (TLS); a password in the URL is "
        "seen by other users (ps): prefer --username with --password-file.",
    ),
    click.option(
        "--ca", type=click.Path(path_type=Path), help="CA certificate of the broker (mqtts; default: the system's CAs)."
    ),
    click.option("--cert", type=click.Path(path_type=Path), help="This process's certificate, for mutual TLS."),
    click.option("--key", type=click.Path(path_type=Path), help="This process's private key (if not in --cert)."),
    click.option("--username", help="User name for a password login."),
    click.option("--password", help="Password (prefer --password-file: the command line is visible to other users)."),
    click.option("--password-file", type=click.Path(path_type=Path), help="File holding the password."),
)
"""The broker options of every process of a real fleet (:class:`fleet.edge.launch.BrokerArgs`)."""
_CLOCK_OPTIONS = (
    click.option(
        "--speedup",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Clock seconds per wall second (demos and tests; 1 on a real site).",
    ),
    click.option(
        "--epoch",
        type=float,
        metavar="UNIX_TIME",
        help="Join the shared clock of a mixed fleet: scenario time = (now - UNIX_TIME) x speedup, "
        "as `fleet run --realtime` prints it; required with a feeder market "
        "[default: an own clock, from 0 at the first start].",
    ),
    click.option(
        "--duration",
        metavar="DURATION",
        help="Stop after this long on the clock, e.g. 2h [default: run until stopped].",
    ),
    click.option(
        "--status-every", default="60s", show_default=True, metavar="DURATION", help="Wall time between status lines."
    ),
)
"""The clock options of every process of a real fleet (:class:`fleet.edge.launch.ProcessArgs`)."""


def _with(options: tuple):
    """A decorator adding the click ``options``, in their order."""

    def add(command):
        for option in reversed(options):
            command = option(command)
        return command

    return add


@main.command(name="agent")
@click.option(
    "--scenario", metavar="NAME|FILE", help="The fleet's scenario (shipped name or YAML file), as provisioned."
)
@click.option("--device", metavar="NAME", help="Which device of the scenario this board is, e.g. d00012.")
@_with(_BROKER_OPTIONS)
@click.option(
    "--driver",
    type=click.Choice(["simulated", "sysfs"]),
    default="simulated",
    show_default=True,
    help="The device's own simulated building, or a DS18B20 and a relay through Linux sysfs.",
)
@click.option("--gpio", type=click.IntRange(min=0), help="sysfs: GPIO number of the relay.")
@click.option("--active-low", is_flag=True, help="sysfs: the relay switches on when its input is low.")
@click.option("--sensor-id", metavar="28-...", help="sysfs: which 1-wire sensor (default: the only one).")
@_with(_CLOCK_OPTIONS)
@click.option(
    "--state-dir",
    "--checkpoint-dir",
    "state_dir",
    type=click.Path(path_type=Path),
    help="Folder for the checkpoint, outbox and sequence numbers [default: agent-state/<device>].",
)
@click.option(
    "--checkpoint-every",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Agent-clock time between checkpoints.",
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path),
    help="agent.env from `fleet deploy provision` (options given here win).",
)
@click.option(
    "--forecast-file",
    type=click.Path(path_type=Path),
    help="CSV of weather forecasts (valid_s,outdoor_c), read again when it changes [default: persistence].",
)
@click.option(
    "--forecast-topic", metavar="TOPIC", help="MQTT topic of a retained forecast in the same CSV [default: none]."
)
@click.option(
    "--forecast-max-age",
    default="12h",
    show_default=True,
    metavar="DURATION",
    help="Agent-clock age after which a forecast is stale and the device observes persistence.",
)
@click.option("-q", "--quiet", is_flag=True, help="No status lines; warnings and errors only.")
def agent_cmd(quiet: bool, **options) -> None:
    """Run one device of a scenario on this board: learn, act, talk to its neighbours over MQTT.

    The learner is the simulator's, with one device. Without the broker the agent keeps
    controlling and queues its messages; SIGTERM (or Ctrl-C) saves a checkpoint in
    --state-dir and stops it, and the next start resumes from there.

    With a feeder market (auction-v1 with learner.params.market.period) it bids in its site's
    market and applies the clearings of `fleet auctioneer`, on the clock shared with it (--epoch,
    required); with cooperative-v1 it reads its site's `fleet meter`.

    \b
    Demo on one machine, an hour of the scenario per wall second:
      fleet agent --scenario thermostats-small-v1 --device d00000 --broker mqtt://localhost --speedup 3600
    """
    from fleet.edge.launch import AgentArgs, build_agent

    _logging(quiet)
    _run_until_stopped(build_agent(AgentArgs(**options), on_status=None if quiet else click.echo))


def _logging(quiet: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_until_stopped(process) -> None:
    """Run an agent or a site role until its duration is over or a signal stops it (cleanly); Ctrl-C exits 130."""
    import signal

    stopped_by: list[int] = []

    def stop(signum, frame) -> None:
        stopped_by.append(signum)
        process.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    process.run()
    if signal.SIGINT in stopped_by:
        sys.exit(EXIT_INTERRUPTED)


def _site_role_command(role: str, summary: str, details: str):
    """The ``fleet <role>`` command of a site role (:data:`fleet.edge.launch.SITE_ROLES`)."""

    @main.command(name=role, help=f"{summary}\n\n{details}")
    @click.argument("scenario", required=False)
    @click.option("--site", metavar="NAME", help="Which site of the scenario this process serves.")
    @_with(_BROKER_OPTIONS)
    @_with(_CLOCK_OPTIONS)
    @click.option(
        "--env-file",
        type=click.Path(path_type=Path),
        help=f"site.env from `fleet deploy provision` (services/{role}-<site>/; options given here win).",
    )
    @click.option("-q", "--quiet", is_flag=True, help="No status lines; warnings and errors only.")
    def command(quiet: bool, **options) -> None:
        from fleet.edge.launch import SiteArgs, build_site_role

        _logging(quiet)
        _run_until_stopped(build_site_role(role, SiteArgs(**options), on_status=None if quiet else click.echo))

    return command


_site_role_command(
    "auctioneer",
    "Run the feeder market of a site: clear its devices' bids every market period over MQTT.",
    """SCENARIO is the fleet's (shipped name or YAML file); its learner must trade (auction-v1 with
learner.params.market.period). Every period on the clock shared with the site's agents (give all
the same --epoch) it takes the bids of fleet/<site>/+/bid, clears them a market window later with
the simulation's code (the highest bids that fit the feeder win, at the first rejected bid's price),
and publishes the clearing on fleet/<site>/auctioneer/clearing. Bad, foreign, repeated and late bids
are dropped and counted. As provisioned (identity auctioneer-<site>), on its host:
`fleet auctioneer --env-file /etc/fleet/site.env --epoch E`.

\b
Demo on one machine (market.yaml: feeder-peak-v1 with learner auction-v1 and market.period set),
with the site's agents started with the same --epoch and --speedup:
  fleet auctioneer market.yaml --site feeder-a --broker mqtt://localhost --epoch $EPOCH --speedup 60""",
)
_site_role_command(
    "meter",
    "Publish a site's feeder meter readings over MQTT, every control period.",
    """SCENARIO is the fleet's (shipped name or YAML file). The reading [site, load kW, capacity kW,
devices] goes to fleet/<site>/meter/meter at QoS 0, as the simulation's meter sends it; a device whose
learner reads it (cooperative-v1) subscribes there. The load is a stand-in for the feeder's real meter:
the sum of the power the site's agents report in their telemetry (workloads.telemetry must be
enabled), each device's latest report while it is under two telemetry periods old. A driver of a real
meter plugs in as a fleet.edge.meter.LoadSource. As provisioned (identity meter-<site>), on its host:
`fleet meter --env-file /etc/fleet/site.env`. In a mixed fleet (`fleet run --realtime --broker`) the
run itself is the meter of every site with a real device: do not run this command for such a site.

\b
Demo on one machine:
  fleet meter feeder-peak-v1 --site feeder-a --broker mqtt://localhost --speedup 60""",
)


@main.group()
def deploy() -> None:
    """Deploy a fleet to real boards over a real mosquitto broker (see deploy/README.md)."""


@deploy.command(name="provision")
@click.argument("scenario")
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="New folder for the credentials and broker files (must not exist, or be empty).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario field, as for `fleet run` (repeatable).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME|IP",
    help="Broker host name or IP the boards connect to; goes into the server certificate (repeatable) "
    "[default: localhost, 127.0.0.1].",
)
@click.option(
    "--tls-port",
    type=click.IntRange(1, 65535),
    default=8883,
    show_default=True,
    help="Port of the mutual-TLS listener.",
)
@click.option(
    "--password-port",
    type=click.IntRange(1, 65535),
    default=8884,
    show_default=True,
    help="Port of the username/password listener (also TLS).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=825,
    show_default=True,
    help="Validity of the device and server certificates.",
)
@click.option(
    "--broker-root",
    metavar="PATH",
    help="Where broker/ will live on the broker host; mosquitto.conf points there [default: OUT/broker].",
)
@click.option(
    "--autosave-interval",
    type=int,
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How often the broker saves retained messages and sessions; a crash loses what changed since.",
)
@click.option(
    "--tls12",
    is_flag=True,
    help="Also accept TLS 1.2 with AEAD suites, for boards without TLS 1.3 [default: TLS 1.3 only].",
)
def deploy_provision(
    scenario: str,
    out: Path,
    overrides: tuple[str, ...],
    hosts: tuple[str, ...],
    tls_port: int,
    password_port: int,
    days: int,
    broker_root: str | None,
    autosave_interval: int,
    tls12: bool,
) -> None:
    """Generate a CA, certificates, passwords, ACL and mosquitto.conf for every device of SCENARIO.

    Each device gets devices/<name>/ (certificate, key, password, agent.env) to copy to its
    board; broker/ holds the broker's configuration; manifest.json lists everything (no secrets).
    """
    from pathlib import PurePosixPath

    from fleet.deploy.provision import DEFAULT_HOSTS, provision
    from fleet.scenario import load_scenario

    sc = load_scenario(scenario, list(overrides))
    manifest = provision(
        sc,
        out,
        hosts or DEFAULT_HOSTS,
        tls_port,
        password_port,
        days,
        PurePosixPath(broker_root) if broker_root else None,
        autosave_interval,
        tls12,
    )
    roles = [i["role"] for i in manifest["identities"]]
    click.echo(f"provisioned {roles.count('device')} devices, a collector and a bridge of {sc.name} in {out}")
    click.echo(f"broker: mosquitto -c {out / 'broker' / 'mosquitto.conf'}  (TLS {manifest['broker']['url']})")


@main.command(name="study")
@click.argument("study_file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Study folder: runs/ and results/ [default: studies/<name>]. "
    "Started again, it keeps the finished runs and makes the others.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "ray", "local"]),
    default="auto",
    show_default=True,
    help="Ray tasks, or local processes; auto: Ray where it is installed (pip install 'fleet-sim[ray]').",
)
@click.option(
    "--address", metavar="HOST:PORT", help="A running Ray cluster (ray start --head) [default: start a local one]."
)
@click.option(
    "--num-cpus", type=click.IntRange(min=1), help="CPUs of the local Ray or processes [default: every usable core]."
)
@click.option(
    "--cpus-per-run",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPUs, and torch/OpenMP/BLAS threads, of each run.",
)
@click.option(
    "--gpus-per-run",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="GPUs of each run (Ray); above 0 runs compute on CUDA.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Ray: times a run whose worker died is run again at once.",
)
@click.option(
    "--storage",
    type=click.Choice(["shared", "driver"]),
    default="shared",
    show_default=True,
    help="Ray: tasks write into the study folder (every node must see it), or return their files to this process.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no table.")
def study_cmd(
    study_file: Path,
    out: Path | None,
    engine: str,
    address: str | None,
    num_cpus: int | None,
    cpus_per_run: int,
    gpus_per_run: float,
    retries: int,
    storage: str,
    quiet: bool,
) -> None:
    """Run a study: every seed of every point of STUDY_FILE, then tables, plots and exports.

    \b
    A study file names a base scenario, variants and axes over its fields (dotted paths, as
    --set), seeds and what to report; see docs/studies.md. Every point is validated before
    anything runs. Exit status 1 when a run failed (start again to re-run it), 2 for bad input.
      fleet study benchmarks/studies/learning-study.yaml -o studies/learning
    """
    from fleet.study import Engine, load_study, run_study

    spec = load_study(study_file)
    folder = out or Path("studies") / spec.name
    engine_ = Engine(engine, address, num_cpus, cpus_per_run, gpus_per_run, retries, storage)
    outcome = run_study(spec, folder, engine_, progress=not quiet)
    if outcome.kept:
        click.echo(f"{len(outcome.kept)} of {len(spec.runs)} runs were finished before and kept", err=True)
    if outcome.failed:
        for name, why in outcome.failed.items():
            click.echo(f"failed: {name}: {why}", err=True)
        click.echo(
            f"{len(outcome.failed)} of {len(spec.runs)} runs failed; `fleet study {study_file} -o {folder}` "
            f"runs them again and keeps the {len(spec.runs) - len(outcome.failed)} others",
            err=True,
        )
        sys.exit(1)
    if not quiet:
        click.echo((folder / "results" / "table.md").read_text())
    click.echo(f"results in {folder / 'results'}")


if __name__ == "__main__":  # pragma: no cover
    main()
