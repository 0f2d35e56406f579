"""fleet: simulate, train and deploy fleets of learning thermostats over MQTT.

This is the public Python API; the ``fleet`` command is a thin layer over it::

    import fleet

    scenario = fleet.load_scenario("thermostats-small-v1", overrides={"horizon": "1d"}, seed=3)
    result = fleet.run(scenario, out="runs/small-seed3")        # a Result
    print(result.status, result.summary["kpis"]["cost"], result.summary["kpis_vs_baseline"]["cost"])
    cost = result.metrics["kpi/cost"]                          # (T,) numpy array, one value per metrics row
    frame = result.metrics_frame()                             # the same as a pandas DataFrame (needs pandas)
    fleet.write_report(result, "runs/small-seed3/report")      # PNG plots
    print(sorted(fleet.LEARNERS))                              # registered learners: diffusion-v1, ...
    print(fleet.LEARNERS["diffusion-v1"].config_cls())         # a learner's parameters and their defaults

Importing ``fleet`` loads almost nothing; reading a scenario imports pydantic but not torch,
which a run imports when it starts. Errors in the input raise :class:`ConfigError` (a bad
scenario, override or option) or :class:`RunDirError` (a run directory that cannot be made
or read), both :class:`FleetError`, with a message that names the field or file at fault.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.errors import ConfigError, FleetError, RunDirError

if TYPE_CHECKING:
    from fleet.learners.base import RegistryEntry
    from fleet.learners.registry import Registry
    from fleet.results import Result
    from fleet.scenario import Scenario
    from fleet.sim.bridge import RealtimeOptions

    LEARNERS: Registry

__version__ = "0.1.0"

__all__ = [
    "LEARNERS",
    "ConfigError",
    "FleetError",
    "RegistryEntry",
    "Result",
    "RunDirError",
    "Scenario",
    "__version__",
    "list_scenarios",
    "load_result",
    "load_scenario",
    "resume",
    "run",
    "train",
    "write_report",
]

_LAZY = {
    "LEARNERS": ("fleet.learners.registry", "REGISTRY"),
    "RegistryEntry": ("fleet.learners.base", "RegistryEntry"),
    "Result": ("fleet.results", "Result"),
    "Scenario": ("fleet.scenario", "Scenario"),
}
"""Public names imported when first used, so that ``import fleet`` stays cheap."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fleet' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = globals()[name] = getattr(importlib.import_module(module), attr)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


# --- scenarios -----------------------------------------------------------------------------


def list_scenarios() -> list[tuple[str, str, Path]]:
    """``(name, one-line description, path)`` of every shipped scenario, sorted by name."""
    from fleet.scenario import list_scenarios as shipped

    return shipped()


def load_scenario(
    name_or_path: str | Path, overrides: Mapping[str, Any] | Iterable[str] | None = None, seed: int | None = None
) -> Scenario:
    """Read and validate a scenario: a shipped name (see :func:`list_scenarios`) or a YAML file.

    ``overrides`` change fields before validation, as ``fleet run --set`` does: a mapping
    ``{"horizon": "1d", "fleet.sites[0].devices": 20, "learner.params.comm.dtype": "int8"}``
    or strings ``["horizon=1d", ...]`` (values read as YAML). ``seed`` replaces the root seed.
    The scenario is immutable; it is checked whole, learner parameters included, and any
    problem raises one :class:`ConfigError` that names every field at fault.
    """
    from fleet.scenario import load_scenario as load

    return load(name_or_path, _override_items(overrides), seed)


def _override_items(overrides: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """``--set`` items: ``key=value`` strings as given, or a mapping's values written as YAML."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return list(overrides)
    import yaml

    items = []
    for key, value in overrides.items():
        try:
            text = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).removesuffix("\n...\n").strip()
        except yaml.YAMLError:
            raise ConfigError(
                f"overrides[{key!r}]: {value!r} is not a value a scenario holds "
                "(a number, string, bool, None, list or mapping)"
            ) from None
        items.append(f"{key}={text}")
    return items


# --- runs ----------------------------------------------------------------------------------


def run(
    scenario: Scenario | str | Path,
    out: str | Path | None = None,
    *,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool | Callable[[float], None] = False,
    realtime: RealtimeOptions | None = None,
    actors: int = 1,
) -> Result:
    """Simulate ``scenario`` (a :class:`Scenario`, or a name or file for :func:`load_scenario`)
    into a new run directory and return its :class:`Result`.

    ``out``: the run directory to create; it must not exist unless ``overwrite`` (and then it
    must be an earlier run directory or empty). ``None`` makes a fresh one under the system's
    temporary folder, ``<tmp>/fleet-XXXXXXXX/<scenario>-seed<seed>``, which is kept (the
    Result's ``path``): nothing is written into the working directory unless asked for. The
    ``fleet run`` command's default is ``runs/<scenario>-seed<seed>`` instead.

    ``device``: where learners compute, ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when usable).
    ``progress``: ``True`` shows it on stderr (a bar on a terminal, else a line every 5 %); a
    callable is called with the simulated time in seconds after each metrics period.
    ``realtime``: run on the wall clock as a mixed fleet, the learner's messages through a real
    broker (see ``fleet run --realtime``). ``actors``: above 1, split the fleet by site across
    that many Ray actors, with the same results (:mod:`fleet.sim.split`: rule-based controllers
    only; a local Ray is started unless this process joined one or ``RAY_ADDRESS`` names one).
    Ctrl-C stops the run cleanly: the Result's ``status`` is then ``"interrupted"`` and
    :func:`resume` continues it.
    """
    from fleet.results import Result, execute
    from fleet.scenario import Scenario

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    dev = _resolve_device(device)
    out = Path(tempfile.mkdtemp(prefix="fleet-")) / f"{sc.name}-seed{sc.seed}" if out is None else Path(out)
    with _progress(progress, sc.horizon, sc.name) as report:
        run_dir, _ = execute(
            sc, out, overwrite=overwrite, device=dev, argv=sys.argv, progress=report, realtime=realtime, actors=actors
        )
    return Result.read(run_dir.path)


def resume(run_dir: str | Path, *, progress: bool | Callable[[float], None] = False) -> Result:
    """Continue an interrupted run from its last checkpoint (checkpoint.safetensors in ``run_dir``) and
    return its :class:`Result`, the same as if the run had never stopped (but for ``perf``).
    ``progress`` as for :func:`run`."""
    from fleet.results import Result
    from fleet.results import resume as continue_run

    path = Path(run_dir)
    shown = progress is True and (path / "scenario.yaml").is_file()
    with _progress(progress, load_scenario(path / "scenario.yaml").horizon if shown else 0.0, path.name) as report:
        done, _ = continue_run(path, progress=report)
    return Result.read(done.path)


def train(
    scenario: Scenario | str | Path,
    out: str | Path,
    config: Mapping[str, Any] | None = None,
    *,
    device: str = "auto",
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | Callable[[float], None] = False,
) -> dict[str, Any]:
    """Pretrain one policy for ``scenario`` on simulated years of randomized houses into the folder
    ``out`` (:mod:`fleet.pretrain`) and return its record (``out/train.json``: the config and
    each round's figures). ``out/policy.safetensors`` is then a policy file that
    ``learner.params.init_policy`` loads.

    ``config``: the fields of :class:`fleet.pretrain.TrainConfig`, e.g. ``{"teacher": "optimum",
    "rounds": 8, "houses": 100, "days": 30, "widen": 1.5}`` (unknown or invalid ones raise
    :class:`ConfigError`). ``out`` must not exist unless ``overwrite`` (an earlier training folder)
    or ``resume`` (continue its checkpoint, same scenario and config). ``device`` and ``progress``
    as for :func:`run`; progress counts the simulated time trained.
    """
    from fleet.pretrain import TrainConfig
    from fleet.pretrain import train as pretrain
    from fleet.scenario import Scenario

    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    cfg = TrainConfig.parse(dict(config or {}))
    total = (cfg.rounds + cfg.rl_rounds) * cfg.days * 86400.0
    with _progress(progress, total, f"training on {sc.name}") as report:
        return pretrain(
            sc, Path(out), cfg, _resolve_device(device), overwrite=overwrite, resume=resume, progress=report
        )


def load_result(run_dir: str | Path) -> Result:
    """The :class:`Result` of an existing run directory (made by :func:`run` or ``fleet run``)."""
    from fleet.results import Result

    return Result.read(run_dir)


def _resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: no CUDA device is available on this machine (torch.cuda.is_available() is False); "
            "use --device cpu or auto"
        )
    return device


@contextmanager
def _progress(
    progress: bool | Callable[[float], None], total_s: float, name: str
) -> Iterator[Callable[[float], None] | None]:
    """The progress callback that ``progress`` asks for (see :func:`run`), or None."""
    if callable(progress):
        yield progress
    elif progress:
        from fleet.progress import progress_reporter

        with progress_reporter(total_s, name) as report:
            yield report
    else:
        yield None


# --- reports -------------------------------------------------------------------------------


def write_report(
    runs: Result | str | Path | Iterable[Result | str | Path],
    out: str | Path,
    *,
    overwrite: bool = False,
    per_run: bool = True,
    comm_vs_reward: bool = False,
    tail: float | None = None,
) -> list[Path]:
    """Draw PNG plots of one or more runs (Results or run directories) into the folder ``out``;
    returns the files written. Several runs also get a KPI comparison.

    ``per_run``: the plots of each run (leave them out for a study of many runs).
    ``comm_vs_reward``: also plot final reward against bytes per device per day
    (comm_vs_reward.png, .csv and .json), runs that differ only in their seed as one point with
    a 95 % confidence interval; the final reward is taken over the last ``tail`` fraction of
    each run (default 0.5). Files of an earlier report in ``out`` are refused unless
    ``overwrite``. (The module :mod:`fleet.report` holds the plots themselves.)
    """
    from fleet.report import write_report as draw
    from fleet.results import Result
    from fleet.tradeoff import DEFAULT_TAIL

    if tail is not None and not comm_vs_reward:
        raise ConfigError("tail applies only with comm_vs_reward=True")
    single = isinstance(runs, (Result, str, Path))
    paths = [r.path if isinstance(r, Result) else Path(r) for r in ([runs] if single else runs)]
    return draw(
        paths,
        Path(out),
        overwrite=overwrite,
        per_run=per_run,
        with_comm_vs_reward=comm_vs_reward,
        tail=DEFAULT_TAIL if tail is None else tail,
    )
