"""PNG plots of run directories (matplotlib, headless).

:func:`write_report` never overwrites a file unless asked: it first works out every file it
would write and refuses, writing nothing, if one exists (a symbolic link, even a dangling one,
counts). Files are created with exclusive, no-follow opens, and ``overwrite`` replaces a file
by renaming a new one over it (:func:`fleet.files.write_new_file`), so nothing is ever written
through a symbolic link.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fleet.errors import ConfigError, RunDirError  # noqa: E402
from fleet.files import write_new_file  # noqa: E402
from fleet.results import load_run  # noqa: E402
from fleet.tradeoff import DEFAULT_TAIL, Point, comm_vs_reward, points_csv, points_json, unlabelled  # noqa: E402

KPI_LABELS = {
    "energy_kwh": "energy [kWh]",
    "cost": "cost",
    "discomfort_degh": "discomfort [°C·h]",
    "peak_kw": "peak load [kW]",
    "ramping_kw": "ramping [kW]",
    "feeder_overload_kwh": "feeder overload [kWh]",
}


def _save(fig, f: Path | BinaryIO) -> Path | BinaryIO:
    """Draw ``fig`` as PNG into ``f`` (a path or a binary file) and close it."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return f


def currency_of(scenario: dict) -> str:
    """The currency of a run's costs (``tariff.currency``), or "" where the scenario names none."""
    return str(scenario.get("tariff", {}).get("currency", ""))


def sample_devices(m: dict[str, np.ndarray]) -> list[str]:
    """Names of the devices recorded individually in metrics ``m``."""
    return sorted({k.split("/")[1] for k in m if k.startswith("device/")})


def plot_temperatures(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """For each sample device, one column: indoor temperature against the comfort band (top)
    and the heat pump's electrical power (bottom)."""
    names = sample_devices(m)
    fig, axes = plt.subplots(
        2,
        len(names),
        figsize=(3.6 * len(names) + 0.8, 4.6),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1]},
    )
    h = m["time_h"]
    for (top, bottom), name in zip(axes.T, names):
        top.fill_between(
            h,
            m[f"device/{name}/band_lo"],
            m[f"device/{name}/band_hi"],
            step="post",
            color="tab:green",
            alpha=0.2,
            label="comfort band",
        )
        top.plot(h, m[f"device/{name}/temp_c"], color="tab:red", lw=1.2, label="indoor temperature")
        top.set_title(name, fontsize=9)
        bottom.fill_between(
            h, m[f"device/{name}/power_kw"], step="post", color="tab:orange", alpha=0.7, label="heat pump power"
        )
        bottom.set_xlabel("time [h]")
    axes[0, 0].set_ylabel("°C")
    axes[1, 0].set_ylabel("kW")
    handles = [a.get_legend_handles_labels() for a in (axes[0, 0], axes[1, 0])]
    fig.legend(*(sum(x, []) for x in zip(*handles)), loc="upper right", fontsize=7, ncol=3)
    fig.suptitle(f"{title}: indoor temperature, comfort band and heating", fontsize=10, x=0.02, ha="left")
    return _save(fig, path)


def capacity_groups(sites: list[dict]) -> dict[float, list[str]]:
    """Feeder capacity (kW) -> the names of the sites that have it, by increasing capacity."""
    groups: dict[float, list[str]] = {}
    for site in sites:
        groups.setdefault(float(site["feeder_kw"]), []).append(site["name"])
    return dict(sorted(groups.items()))


def plot_feeders(m: dict[str, np.ndarray], scenario: dict, title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Load of every feeder against its capacity; feeders of equal capacity share one line."""
    sites = scenario["fleet"]["sites"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, site in enumerate(sites):
        ax.plot(m["time_h"], m[f"feeder/{site['name']}_kw"], color=f"C{i % 10}", lw=1.2, label=f"{site['name']} load")
    capacities = capacity_groups(sites)
    for j, (kw, names) in enumerate(capacities.items()):
        who = ", ".join(names) if len(names) <= 3 else f"{len(names)} feeders"
        ax.axhline(kw, color="k", ls=("--", ":", "-.")[j % 3], lw=0.9, label=f"capacity of {who}: {kw:g} kW")
    highest = max([max(capacities)] + [float(np.nanmax(m[f"feeder/{site['name']}_kw"])) for site in sites])
    ax.set_ylim(0, 1.35 * highest)  # room for the legend above the capacity lines
    ax.set_xlabel("time [h]")
    ax.set_ylabel("load [kW]")
    ax.set_title(f"{title}: feeder load against capacity", fontsize=10)
    if len(sites) <= 10:
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    return _save(fig, path)


def plot_kpis_over_time(
    m: dict[str, np.ndarray], title: str, path: Path | BinaryIO, currency: str = ""
) -> Path | BinaryIO:
    """Cumulative discomfort, energy and cost (solid) against the rule-based baseline (dashed)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("discomfort_degh", "energy_kwh", "cost")):
        ax.plot(m["time_h"], m[f"kpi/{key}"], lw=1.5, label="controller")
        if f"baseline/{key}" in m:
            ax.plot(m["time_h"], m[f"baseline/{key}"], ls="--", lw=1.2, label="rule-based baseline")
        ax.set_xlabel("time [h]")
        label = f"cost [{currency}]" if key == "cost" and currency else KPI_LABELS[key]
        ax.set_ylabel(f"cumulative {label}, fleet total")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: discomfort, energy and cost over time", fontsize=10)
    return _save(fig, path)


LEARNING_PANELS = (
    ("charts/mean_reward", "mean reward per device per control tick"),
    ("losses/value", "value loss"),
    ("losses/policy", "policy loss"),
    ("losses/entropy", "policy entropy [nats]"),
    ("learner/param_disagreement", "parameter disagreement (relative RMS)"),
)
"""metrics.csv columns of a learning curve, and their axis labels."""


def has_learning_curve(m: dict[str, np.ndarray]) -> bool:
    """Whether metrics ``m`` hold a learner's losses or rewards (a learner that updates)."""
    return any(key in m and np.isfinite(m[key]).any() for key, _ in LEARNING_PANELS)


def plot_learning(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """The learning curve: the learner's mean reward, losses, entropy and parameter disagreement
    at each metrics row (the values of the last update before it; rows before the first update
    are left out)."""
    panels = [(key, label) for key, label in LEARNING_PANELS if key in m and np.isfinite(m[key]).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.6, 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        ok = np.isfinite(m[key])
        ax.plot(m["time_h"][ok], m[key][ok], lw=1.2)
        ax.set_xlabel("time [h]")
        ax.set_ylabel(label, fontsize=8)
        if key == "learner/param_disagreement" and (m[key][ok] > 0).all():
            ax.set_yscale("log")
    fig.suptitle(f"{title}: learning curve", fontsize=10)
    return _save(fig, path)


def interval_rates(time_h: np.ndarray, cumulative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(end time of each interval, rate per hour) of a cumulative counter (R,) sampled at
    ``time_h`` (R,); the last interval is left out when there are others (see plot_network)."""
    end = len(time_h) - 1 if len(time_h) > 2 else len(time_h)
    return time_h[1:end], np.diff(cumulative[:end]) / np.diff(time_h[:end])


def plot_network(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Bytes and messages per hour in each metrics interval, and the consensus disagreement.

    Rates, not counts, so intervals of any length compare. The last interval, which ends where
    the run stopped, is left out of the rates when there are others: the run stops before the
    publishes due at that instant, so its count lacks them (a false drop)."""
    h = m["time_h"]
    minutes = np.median(np.diff(h)) * 60 if len(h) > 1 else 0.0

    def rate(key: str) -> np.ndarray:
        return interval_rates(h, m[key])[1]

    t = interval_rates(h, h)[0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].step(t, rate("net/bytes_sent") / 1024, where="pre", label="sent by devices")
    axes[0].step(t, rate("net/bytes_received") / 1024, where="pre", label="received by devices")
    axes[0].set_ylabel("KiB per hour, fleet total")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    axes[1].step(t, rate("net/messages_dropped"), where="pre", color="tab:red", label="dropped")
    axes[1].step(t, rate("net/messages_delivered"), where="pre", color="tab:gray", alpha=0.6, label="delivered")
    axes[1].set_yscale("symlog")
    axes[1].set_ylabel("messages per hour")
    axes[1].legend(fontsize=8)
    dis = m.get("consensus/disagreement")
    if dis is not None and np.isfinite(dis).any():
        axes[2].semilogy(h, np.maximum(dis, 1e-12))
        axes[2].set_ylabel("consensus disagreement (RMS)")
    else:
        axes[2].text(0.5, 0.5, "consensus disabled", ha="center", va="center", transform=axes[2].transAxes)
    for ax in axes:
        ax.set_xlabel("time [h]")
    fig.suptitle(f"{title}: communication (rates over each {minutes:g}-minute metrics interval)", fontsize=10)
    return _save(fig, path)


def plot_comparison(runs: list[tuple[str, dict]], path: Path | BinaryIO) -> Path | BinaryIO:
    """One panel per KPI: every run's value (bars) and the rule-based baseline's (markers)."""
    keys = list(KPI_LABELS)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    labels = [name for name, _ in runs]
    x = np.arange(len(runs))
    for ax, key in zip(axes.flat, keys):
        ax.bar(x, [s["kpis"][key] for _, s in runs], color=[f"C{i % 10}" for i in x])
        base = [s.get("baseline", {}).get(key, np.nan) for _, s in runs]
        ax.plot(x, base, "k_", markersize=18, mew=2, label="rule-based baseline")
        ax.set_title(KPI_LABELS[key], fontsize=9)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("KPI comparison", fontsize=10)
    return _save(fig, path)


MARKERS = "osD^v<>ph*"


def point_style(i: int) -> tuple[str, str]:
    """Colour and marker of the ``i``-th point of the communication-versus-reward plot: the marker
    moves on by one every ten points, so that the first 100 points differ in one or the other."""
    return f"C{i % 10}", MARKERS[(i + i // 10) % len(MARKERS)]


def interval_claim(points: list[Point]) -> str:
    """What the plot's error bars are: 95 % intervals over seeds, or none where every variant has
    one seed (a single run has no interval)."""
    if all(len(p.runs) == 1 for p in points):
        return "one seed per variant, no interval"
    return "mean and 95% CI over seeds (none for a variant of one seed)"


def plot_comm_vs_reward(points: list[Point], tail: float, path: Path | BinaryIO, currency: str = "") -> Path | BinaryIO:
    """Final reward against bytes sent per device per day: a point per scenario variant with its
    95% confidence intervals over seeds (bars), and each seed's run (small dots)."""
    fig, ax = plt.subplots(figsize=(12, 5.2), layout="constrained")
    for i, p in enumerate(points):
        b, r = p.bytes_sent_per_device_per_day, p.reward_per_device_per_day
        color, marker = point_style(i)
        ax.scatter(
            [x.bytes_sent_per_device_per_day for x in p.runs],
            [x.reward_per_device_per_day for x in p.runs],
            s=12,
            color=color,
            alpha=0.35,
            lw=0,
        )
        ax.errorbar(
            b.mean,
            r.mean,
            xerr=b.ci95_half_width,
            yerr=r.ci95_half_width,
            fmt=marker,
            color=color,
            capsize=4,
            ms=7,
            label=f"{p.label} (n={len(p.runs)})",
        )
    if all(x.bytes_sent_per_device_per_day > 0 for p in points for x in p.runs):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("bytes sent per device per day (on the air, all workloads, whole run)")
    ax.set_ylabel(f"reward per device per day{f' [{currency}]' if currency else ''} (last {tail:.0%} of the run)")
    ax.set_title(f"communication vs reward: {interval_claim(points)}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    usual = unlabelled(points)
    title = textwrap.fill(f"unless labelled: {usual}", 60) if usual else None
    ax.legend(fontsize=7, title=title, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def write_report(
    run_dirs: list[Path],
    out: Path,
    *,
    overwrite: bool = False,
    per_run: bool = True,
    with_comm_vs_reward: bool = False,
    tail: float = DEFAULT_TAIL,
) -> list[Path]:
    """Write the plots of each run (``per_run``) and a KPI comparison of several under ``out``;
    returns the files.

    ``with_comm_vs_reward``: also comm_vs_reward.png with the numbers behind it in
    comm_vs_reward.csv and .json (see :mod:`fleet.tradeoff`). Every input is read and checked
    first; an existing file among the outputs is refused (nothing is written) unless ``overwrite``.
    """
    loaded = [(Path(p), *load_run(p)) for p in run_dirs]
    points = comm_vs_reward(loaded, tail) if with_comm_vs_reward else None
    plan: list[tuple[Path, Callable[[BinaryIO], object]]] = []
    for path, scenario, metrics, _summary in loaded if per_run else []:
        prefix = "" if len(loaded) == 1 else f"{path.name}-"
        title, unit = path.name, currency_of(scenario)
        if sample_devices(metrics):
            plan.append((out / f"{prefix}temperatures.png", lambda f, m=metrics, t=title: plot_temperatures(m, t, f)))
        plan += [
            (out / f"{prefix}feeders.png", lambda f, m=metrics, sc=scenario, t=title: plot_feeders(m, sc, t, f)),
            (
                out / f"{prefix}kpis.png",
                lambda f, m=metrics, t=title, c=unit: plot_kpis_over_time(m, t, f, c),
            ),
            (out / f"{prefix}network.png", lambda f, m=metrics, t=title: plot_network(m, t, f)),
        ]
        if has_learning_curve(metrics):
            plan.append((out / f"{prefix}learning.png", lambda f, m=metrics, t=title: plot_learning(m, t, f)))
    if len(loaded) > 1:
        plan.append((out / "compare.png", lambda f: plot_comparison([(p.name, s) for p, _, _, s in loaded], f)))
    if points is not None:
        plan += [
            (out / "comm_vs_reward.png", lambda f: plot_comm_vs_reward(points, tail, f, currency_of(loaded[0][1]))),
            (out / "comm_vs_reward.csv", lambda f: f.write(points_csv(points).encode())),
            (out / "comm_vs_reward.json", lambda f: f.write(points_json(points, tail).encode())),
        ]
    if not plan:
        raise ConfigError(
            "nothing to draw: with --no-per-run give several runs (for their KPI comparison) or --comm-vs-reward"
        )
    targets = [f for f, _ in plan]
    _check_outputs(out, targets, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{out}: cannot create the report folder: {e.strerror}") from None
    for f, draw in plan:
        write_new_file(f, draw, overwrite)
    return targets


def _check_outputs(out: Path, targets: list[Path], overwrite: bool) -> None:
    """Refuse, before anything is written, targets that collide or already exist."""
    names = [f.name for f in targets]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise RunDirError(
            f"runs with the same folder name would write the same plots ({', '.join(clash)}); give each run directory "
            "a distinct name"
        )
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another output folder with -o")
    existing = [f.name for f in targets if os.path.lexists(f)]
    if existing and not overwrite:
        raise RunDirError(
            f"{out}: {', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was written. "
            f"Choose another folder with -o, or pass --overwrite to replace them"
        )
