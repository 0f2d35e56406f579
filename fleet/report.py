"""PNG plots of run directories (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fleet.errors import RunDirError  # noqa: E402
from fleet.results import load_run  # noqa: E402

KPI_LABELS = {
    "energy_kwh": "energy [kWh]",
    "cost": "cost",
    "discomfort_degh": "discomfort [°C·h]",
    "peak_kw": "peak load [kW]",
    "ramping_kw": "ramping [kW]",
    "feeder_overload_kwh": "feeder overload [kWh]",
}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_temperatures(m: dict[str, np.ndarray], title: str, path: Path) -> Path | None:
    """Indoor temperature of the sample devices against their comfort band."""
    names = sorted({k.split("/")[1] for k in m if k.startswith("device/")})
    if not names:
        return None
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


def plot_feeders(m: dict[str, np.ndarray], scenario: dict, title: str, path: Path) -> Path:
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


def plot_kpis_over_time(m: dict[str, np.ndarray], title: str, path: Path) -> Path:
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


def plot_network(m: dict[str, np.ndarray], title: str, path: Path) -> Path:
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


def plot_comparison(runs: list[tuple[str, dict]], path: Path) -> Path:
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


def write_report(run_dirs: list[Path], out: Path) -> list[Path]:
    """Write the plots of each run (and a comparison for several) under ``out``; returns the files."""
    loaded = [(Path(p), *load_run(p)) for p in run_dirs]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{out}: cannot create the report folder: {e.strerror}") from None
    written: list[Path] = []
    for path, scenario, metrics, _summary in loaded:
        prefix = "" if len(loaded) == 1 else f"{path.name}-"
        title = path.name
        written += [
            p
            for p in (
                plot_temperatures(metrics, title, out / f"{prefix}temperatures.png"),
                plot_feeders(metrics, scenario, title, out / f"{prefix}feeders.png"),
                plot_kpis_over_time(metrics, title, out / f"{prefix}kpis.png"),
                plot_network(metrics, title, out / f"{prefix}network.png"),
            )
            if p is not None
        ]
    if len(loaded) > 1:
        written.append(plot_comparison([(p.name, s) for p, _, _, s in loaded], out / "compare.png"))
    return written
