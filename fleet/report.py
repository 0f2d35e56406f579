"""PNG plots of run directories (matplotlib, headless).

:func:`write_report` never overwrites a file unless asked: it first works out every file it
would write and refuses, writing nothing, if one exists (a symbolic link, even a dangling one,
counts). Files are created with exclusive, no-follow opens, and ``overwrite`` replaces a file
by renaming a new one over it (:func:`fleet.files.write_new_file`), so nothing is ever written
through a symbolic link.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fleet.errors import ConfigError, RunDirError  # noqa: E402
from fleet.files import write_new_file  # noqa: E402
from fleet.results import load_run  # noqa: E402
from fleet.tradeoff import DEFAULT_TAIL, Point, comm_vs_reward, points_csv, points_json  # noqa: E402

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
    fig.tight_layout()
    fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return f


def sample_devices(m: dict[str, np.ndarray]) -> list[str]:
    """Names of the devices recorded individually in metrics ``m``."""
    return sorted({k.split("/")[1] for k in m if k.startswith("device/")})


def plot_temperatures(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Indoor temperature of the sample devices against their comfort band."""
    names = sample_devices(m)
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), sharex=True, squeeze=False)
    h = m["time_h"]
    for ax, name in zip(axes.flat, names):
        ax.fill_between(h, m[f"device/{name}/band_lo"], m[f"device/{name}/band_hi"], step="post", color="tab:green", alpha=0.2, label="comfort band")
        ax.plot(h, m[f"device/{name}/temp_c"], color="tab:red", lw=1.2, label="indoor")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("°C")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time [h]")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title}: indoor temperature vs comfort band", fontsize=10)
    return _save(fig, path)


def plot_feeders(m: dict[str, np.ndarray], scenario: dict, title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Load of every feeder against its capacity."""
    sites = scenario["fleet"]["sites"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    for i, site in enumerate(sites):
        color = f"C{i % 10}"
        ax.plot(m["time_h"], m[f"feeder/{site['name']}_kw"], color=color, lw=1.2, label=site["name"])
        ax.axhline(site["feeder_kw"], color=color, ls="--", lw=0.9)
    ax.set_xlabel("time [h]")
    ax.set_ylabel("load [kW] (dashed: capacity)")
    ax.set_title(f"{title}: feeder load vs capacity", fontsize=10)
    if len(sites) <= 10:
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_kpis_over_time(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Cumulative discomfort and energy (solid) against the rule-based baseline (dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("discomfort_degh", "energy_kwh")):
        ax.plot(m["time_h"], m[f"kpi/{key}"], lw=1.5, label="controller")
        if f"baseline/{key}" in m:
            ax.plot(m["time_h"], m[f"baseline/{key}"], ls="--", lw=1.2, label="rule-based baseline")
        ax.set_xlabel("time [h]")
        ax.set_ylabel(f"cumulative {KPI_LABELS[key]}")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: discomfort and energy over time", fontsize=10)
    return _save(fig, path)


def plot_network(m: dict[str, np.ndarray], title: str, path: Path | BinaryIO) -> Path | BinaryIO:
    """Bytes per interval, drops per interval, and consensus disagreement over time."""
    h = m["time_h"]
    mid = h[1:]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].step(mid, np.diff(m["net/bytes_sent"]) / 1024, where="pre", label="sent by devices")
    axes[0].step(mid, np.diff(m["net/bytes_received"]) / 1024, where="pre", label="received by devices")
    axes[0].set_ylabel("KiB per interval")
    axes[0].legend(fontsize=8)
    axes[1].step(mid, np.diff(m["net/messages_dropped"]), where="pre", color="tab:red", label="dropped")
    axes[1].step(mid, np.diff(m["net/messages_delivered"]), where="pre", color="tab:gray", alpha=0.6, label="delivered")
    axes[1].set_yscale("symlog")
    axes[1].set_ylabel("messages per interval")
    axes[1].legend(fontsize=8)
    dis = m.get("consensus/disagreement")
    if dis is not None and np.isfinite(dis).any():
        axes[2].semilogy(h, np.maximum(dis, 1e-12))
        axes[2].set_ylabel("consensus disagreement (RMS)")
    else:
        axes[2].text(0.5, 0.5, "consensus disabled", ha="center", va="center", transform=axes[2].transAxes)
    for ax in axes:
        ax.set_xlabel("time [h]")
    fig.suptitle(f"{title}: communication", fontsize=10)
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


def plot_comm_vs_reward(points: list[Point], tail: float, path: Path | BinaryIO) -> Path | BinaryIO:
    """Final reward against bytes sent per device per day: a point per scenario variant with its
    95% confidence intervals over seeds (bars), and each seed's run (small dots)."""
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for i, p in enumerate(points):
        b, r = p.bytes_sent_per_device_per_day, p.reward_per_device_per_day
        color = f"C{i % 10}"
        ax.scatter([x.bytes_sent_per_device_per_day for x in p.runs], [x.reward_per_device_per_day for x in p.runs], s=12, color=color, alpha=0.35, lw=0)
        ax.errorbar(b.mean, r.mean, xerr=b.ci95_half_width, yerr=r.ci95_half_width, fmt=MARKERS[i % len(MARKERS)], color=color,
                    capsize=4, ms=7, label=f"{p.label} (n={len(p.runs)})")
    if all(x.bytes_sent_per_device_per_day > 0 for p in points for x in p.runs):
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("bytes sent per device per day (on the air, all workloads, whole run)")
    ax.set_ylabel(f"reward per device per day (last {tail:.0%} of the run)")
    ax.set_title("communication vs reward: mean and 95% CI over seeds", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
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
        title = path.name
        if sample_devices(metrics):
            plan.append((out / f"{prefix}temperatures.png", lambda f, m=metrics, t=title: plot_temperatures(m, t, f)))
        plan += [
            (out / f"{prefix}feeders.png", lambda f, m=metrics, sc=scenario, t=title: plot_feeders(m, sc, t, f)),
            (out / f"{prefix}kpis.png", lambda f, m=metrics, t=title: plot_kpis_over_time(m, t, f)),
            (out / f"{prefix}network.png", lambda f, m=metrics, t=title: plot_network(m, t, f)),
        ]
    if len(loaded) > 1:
        plan.append((out / "compare.png", lambda f: plot_comparison([(p.name, s) for p, _, _, s in loaded], f)))
    if points is not None:
        plan += [
            (out / "comm_vs_reward.png", lambda f: plot_comm_vs_reward(points, tail, f)),
            (out / "comm_vs_reward.csv", lambda f: f.write(points_csv(points).encode())),
            (out / "comm_vs_reward.json", lambda f: f.write(points_json(points, tail).encode())),
        ]
    if not plan:
        raise ConfigError("nothing to draw: with --no-per-run give several runs (for their KPI comparison) or --comm-vs-reward")
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
        raise RunDirError(f"runs with the same folder name would write the same plots ({', '.join(clash)}); give each run directory a distinct name")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another output folder with -o")
    existing = [f.name for f in targets if os.path.lexists(f)]
    if existing and not overwrite:
        raise RunDirError(
            f"{out}: {', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing was written. "
            f"Choose another folder with -o, or pass --overwrite to replace them"
        )
