"""The learner registry: every learner a scenario can name, found through entry points.

A learner registers as an entry point of the ``fleet.learners`` group: its name is the
learner's versioned name, its object a :class:`~fleet.learners.base.RegistryEntry`. The
built-in learners below are registered so by fleet-sim's own ``pyproject.toml``; a package of
third-party learners registers its own in its ``pyproject.toml``::

    [project.entry-points."fleet.learners"]
    "my-learner-v1" = "my_package.plugin:ENTRY"

with ``ENTRY = RegistryEntry("my_package.learner:MyLearner", MyConfig, "one line for fleet
learners")`` in ``my_package/plugin.py``. Once the package is installed, scenarios can name
``my-learner-v1`` and ``fleet learners`` lists it.

The names are read from the installed packages' metadata when the registry is first asked
for one, and each entry point is loaded when its learner is first asked for: a broken one fails
only where it is used, with a :class:`~fleet.errors.ConfigError` that names it and its package.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from devices.config import RuleBasedConfig
from fleet.errors import ConfigError
from fleet.learners.auction.config import AuctionConfig
from fleet.learners.base import RegistryEntry
from fleet.learners.configs import ActorCriticConfig, CentralizedConfig, DiffusionConfig
from fleet.learners.cooperative.config import CooperativeLearnerConfig
from fleet.learners.planner.config import DiffusionPlannerConfig, PlannerConfig

GROUP = "fleet.learners"
"""The entry point group that learners register in."""

RULE_BASED = RegistryEntry(
    "fleet.learners.rule_based:RuleBasedLearner", RuleBasedConfig, "deadband on/off thermostat (non-learning baseline)"
)
INDEPENDENT = RegistryEntry(
    "fleet.learners.actor_critic:IndependentLearner", ActorCriticConfig, "per-device n-step actor-critic, no messages"
)
CENTRALIZED = RegistryEntry(
    "fleet.learners.centralized:CentralizedLearner",
    CentralizedConfig,
    "experience up to one cloud learner, shared policy broadcast back",
)
DIFFUSION = RegistryEntry(
    "fleet.learners.actor_critic:DiffusionLearner",
    DiffusionConfig,
    "diffusion actor-critic (Diff-DAC): adapt, then combine with neighbours' received parameters",
)
COOPERATIVE = RegistryEntry(
    "fleet.learners.cooperative.learner:CooperativeLearner",
    CooperativeLearnerConfig,
    "deep Q-learners sharing a feeder: temporal and imagined experience replay, impact Q-learning (Koepf et al.)",
)
PLANNER = RegistryEntry(
    "fleet.learners.planner.learner:DiffusionPlanner",
    DiffusionPlannerConfig,
    "identifies its house by RLS (neighbours' statistics as a prior), plans by dynamic programming",
)
PLANNER_ALONE = RegistryEntry(
    "fleet.learners.planner.learner:PlannerLearner",
    PlannerConfig,
    "identifies its house by RLS alone, plans by dynamic programming; no messages",
)
AUCTION = RegistryEntry(
    "fleet.learners.auction.learner:AuctionLearner",
    AuctionConfig,
    "cloned Vickrey society: each device's heat-pump levels bid for control (Chang et al. 2020)",
)


class Registry(Mapping[str, RegistryEntry]):
    """Learner name -> :class:`RegistryEntry`, from the entry points of ``group``.

    Iterating gives the names in sorted order and loads nothing; ``registry[name]`` loads that
    learner's entry point (once), and raises ConfigError if it is broken or claimed by several
    packages, KeyError if no package registers ``name``.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._claims: dict[str, list[EntryPoint]] | None = None
        self._loaded: dict[str, RegistryEntry] = {}

    def claims(self) -> dict[str, list[EntryPoint]]:
        """Every registered name with the entry points that claim it, read once."""
        if self._claims is None:
            claims: dict[str, list[EntryPoint]] = {}
            for point in entry_points(group=self.group):
                claims.setdefault(point.name, []).append(point)
            if not claims:
                raise ConfigError(
                    f"no learner is registered in the {self.group!r} entry point group, not even the built-in "
                    "ones: fleet-sim's package metadata is missing or out of date; reinstall it "
                    "(pip install -e . in a checkout)"
                )
            self._claims = claims
        return self._claims

    def __getitem__(self, name: str) -> RegistryEntry:
        if name not in self._loaded:
            points = self.claims()[name]
            if len(points) > 1:
                packages = "; ".join(map(_origin, points))
                raise ConfigError(
                    f"learner {name!r} is registered by several packages ({packages}); uninstall all but one"
                )
            self._loaded[name] = self._load(points[0])
        return self._loaded[name]

    def require(self, name: str) -> RegistryEntry:
        """``self[name]``, or a ConfigError listing the registered names if there is none."""
        if name not in self:
            raise ConfigError(f"learner {name!r} is not registered; known: {', '.join(self)}")
        return self[name]

    def _load(self, point: EntryPoint) -> RegistryEntry:
        try:
            entry = point.load()
        except Exception as e:  # a third-party import can fail in any way: say whose it is
            raise ConfigError(
                f"learner {point.name!r}: cannot load its entry point {_origin(point)} "
                f"(group {self.group!r}): {type(e).__name__}: {e}"
            ) from e
        if not isinstance(entry, RegistryEntry):
            raise ConfigError(
                f"learner {point.name!r}: its entry point {_origin(point)} is a {type(entry).__name__}, "
                "not a fleet.learners.RegistryEntry"
            )
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self.claims()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.claims()))

    def __len__(self) -> int:
        return len(self.claims())


def _origin(point: EntryPoint) -> str:
    """``module:attr`` of package ``name version``."""
    return f"{point.value} of package {point.dist.name} {point.dist.version}" if point.dist else point.value


REGISTRY = Registry(GROUP)
"""The learners of every installed package."""
