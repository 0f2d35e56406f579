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
      fleet run thermostats-small-v1       simulate one (results in runs/)
      fleet report runs/thermostats-small-v1-seed0
    """


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available on this machine (torch.cuda.is_available() is False); use --device cpu or auto")
    return device


@main.command()
@click.argument("scenario")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), help="Run directory to create [default: runs/<scenario>-seed<seed>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a scenario field, e.g. --set horizon=1d --set fleet.sites[0].devices=20 (repeatable; validated like the file).")
@click.option("--seed", type=click.IntRange(min=0), help="Root seed (overrides the scenario's).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where learners compute.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory (only if it is one).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
def run(scenario: str, out: Path | None, overrides: tuple[str, ...], seed: int | None, device: str, overwrite: bool, quiet: bool) -> None:
    """Simulate SCENARIO (a shipped scenario name or a YAML file) into a run directory.

    The directory gets scenario.yaml (resolved, re-runnable), run.json, metrics.csv and
    summary.json. An existing directory is never overwritten unless --overwrite is given.
    """
    from tqdm import tqdm

    from fleet.results import execute
    from fleet.scenario import load_scenario

    sc = load_scenario(scenario, list(overrides), seed)
    out = out or Path("runs") / f"{sc.name}-seed{sc.seed}"
    dev = resolve_device(device)
    bar = tqdm(total=round(sc.horizon / 3600, 2), unit="sim-h", desc=sc.name, disable=quiet or None, file=sys.stderr, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} sim-h [{elapsed}<{remaining}]")
    try:
        run_dir, summary = execute(sc, out, overwrite=overwrite, device=dev, argv=sys.argv, progress=lambda t: bar.update(round(t / 3600, 2) - bar.n))
    finally:
        bar.close()
    _finish(run_dir, summary, quiet)


@main.command(name="resume")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
def resume_cmd(run_dir: Path, quiet: bool) -> None:
    """Continue an interrupted run from its last checkpoint (checkpoint.pt in RUN_DIR).

    Metrics after the checkpoint are recomputed; the finished run is identical to one that
    was never interrupted (except its perf figures).
    """
    from tqdm import tqdm

    from fleet.results import resume

    bar = tqdm(unit="sim-h", desc=run_dir.name, disable=quiet or None, file=sys.stderr)
    try:
        run_dir_, summary = resume(run_dir, progress=lambda t: bar.update(round(t / 3600, 2) - bar.n))
    finally:
        bar.close()
    _finish(run_dir_, summary, quiet)


def _finish(run_dir, summary: dict, quiet: bool) -> None:
    if not quiet:
        _print_summary(summary)
    interrupted = summary["run"]["status"] == "interrupted"
    click.echo(f"{'interrupted; partial results (fleet resume continues)' if interrupted else 'results'} in {run_dir.path}", err=interrupted)
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)


def _print_summary(summary: dict) -> None:
    ratios = summary.get("kpis_vs_baseline", {})
    click.echo(f"{'KPI':<22}{'value':>14}{'vs rule-based':>16}")
    for key, value in summary["kpis"].items():
        r = ratios.get(key)
        click.echo(f"{key:<22}{value:>14.3f}{'' if r is None else f'{r:>16.3f}'}")
    c = summary["comm"]
    click.echo(
        f"comm: {c['messages_sent']:.0f} sent, {c['messages_delivered']:.0f} delivered, {c['messages_dropped']:.0f} dropped, "
        f"{c['bytes_per_device_per_day'] / 1024:.1f} KiB/device/day"
        + (f", mean delay {c['mean_delay_s'] * 1000:.1f} ms" if c["mean_delay_s"] is not None else "")
    )
    p = summary["perf"]
    click.echo(f"perf: {p['wall_s']:.1f} s wall, {p['device_steps_per_s'] or 0:,.0f} device-steps/s")


@main.command()
@click.argument("scenarios", nargs=-1, required=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Overrides to validate along with each file.")
def validate(scenarios: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check scenario files (or shipped names) and the weather files they name; exit 2 if any is invalid."""
    from devices.config import EpwWeatherConfig
    from devices.weather import read_epw
    from fleet.scenario import load_scenario

    failed = 0
    for item in scenarios:
        try:
            sc = load_scenario(item, list(overrides))
            if isinstance(sc.weather, EpwWeatherConfig):
                read_epw(sc.weather.path)
        except FleetError as e:
            failed += 1
            click.echo(f"error: {e}", err=True)
        else:
            click.echo(f"ok: {item} ({sc.name}: {sc.n_devices} devices, {sc.horizon / 86400:g} days, learner {sc.learner.name})")
    if failed:
        sys.exit(EXIT_USAGE)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def scenarios(fmt: str) -> None:
    """List the shipped scenarios with a one-line description."""
    from fleet.scenario import list_scenarios

    rows = list_scenarios()
    if fmt == "json":
        click.echo(json.dumps([{"name": n, "description": d, "path": str(p)} for n, d, p in rows], indent=2))
        return
    width = max(len(n) for n, _, _ in rows)
    for name, desc, _ in rows:
        click.echo(f"{name:<{width}}  {desc}")


@main.command()
def learners() -> None:
    """List the registered learners."""
    from fleet.learners import REGISTRY

    for name, entry in sorted(REGISTRY.items()):
        click.echo(f"{name:<20}  {entry.summary}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Folder for the PNG plots [default: <run>/report, or reports/compare for several runs].")
def report(runs: tuple[Path, ...], out: Path | None) -> None:
    """Draw PNG plots of one or more run directories (several runs: a KPI comparison too)."""
    from fleet.report import write_report

    out = out or (runs[0] / "report" if len(runs) == 1 else Path("reports") / "compare")
    for path in write_report(list(runs), out):
        click.echo(str(path))


if __name__ == "__main__":  # pragma: no cover
    main()
