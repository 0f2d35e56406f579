"""Who may publish and read which topics: the fleet's MQTT identities and mosquitto's ACL file.

Read rights mirror the simulator exactly. The fleet is drawn with the scenario's own random
streams (:func:`fleet.sim.world.build_world`), so a device may read precisely the topics that the
simulated device subscribes to in :class:`fleet.sim.engine.Simulation` (its topology neighbours'
``consensus`` when that workload runs, their ``params`` when the learner exchanges with
neighbours, the cloud's ``params`` when it is centralized), plus its own ``cmd`` topic and the
fleet's weather forecast, :data:`FORECAST_TOPIC` (a retained message the collector publishes and
``fleet agent --forecast-topic`` reads; the simulator computes its forecasts instead).

A device may write exactly the topics the edge agent (:mod:`fleet.edge.agent`) publishes for the
scenario (:func:`device_kinds`): its retained ``status`` (birth, death and will), its ``telemetry``
when that workload runs, its ``params`` when the learner exchanges with neighbours, its
``experience`` when it is centralized, its ``bid`` when its learner trades in a feeder market. Not
its ``cmd`` topic (the collector's), not ``consensus``
(that workload does not run on boards), nothing else under its subtree: so it holds at most one
retained message per granted topic, and what it publishes elsewhere is refused (PUBACK 135).

A device also reads its site auctioneer's ``clearing`` when its learner trades, and its site meter's
``meter`` when its learner reads it: the topics of its own site only.

Kinds of identity:

- a **device** writes only the topics of :func:`device_kinds` under ``fleet/<site>/<device>/``;
- the **collector** (the cloud, ``fleet/cloud/collector``) reads every device's telemetry and
  status (and experience, for a centralized learner), writes every device's ``cmd`` and its own
  topics (the centralized learner's ``params`` broadcast);
- the **auctioneer** of a site (``auctioneer-<site>``, for a learner that trades; :mod:`fleet.edge.auctioneer`)
  reads the bids of its site's devices (``fleet/<site>/+/bid``) and writes its ``clearing`` and
  ``status`` under ``fleet/<site>/auctioneer/``;
- the **meter** of a site (``meter-<site>``, for a learner that reads it; :mod:`fleet.edge.meter`) reads
  its site's telemetry (``fleet/<site>/+/telemetry``: its stand-in sums the powers reported; a driver of
  the real meter needs none of it) and writes its ``meter`` and ``status`` under ``fleet/<site>/meter/``;
- the **bridge** runs the simulated part of a mixed fleet and publishes on behalf of simulated
  devices, so it reads and writes all of ``fleet/#``. Guard its credentials like the CA key.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.edge.site import role_identity
from fleet.learners import REGISTRY
from fleet.mqtt.topics import device_topic, site_filter
from fleet.scenario import Scenario
from fleet.sim.engine import COLLECTOR_NAME, COLLECTOR_SITE
from fleet.sim.market import AUCTIONEER_NAME, clearing_topic, trades
from fleet.sim.meter import METER_NAME, meter_topic, reads_meter
from fleet.sim.rng import Streams
from fleet.sim.world import build_world

BRIDGE_NAME = "bridge"
FORECAST_TOPIC = f"fleet/{COLLECTOR_SITE}/{COLLECTOR_NAME}/forecast"
"""Where the collector publishes the fleet's weather forecast (retained; :mod:`fleet.edge.forecast`)."""


@dataclass(frozen=True)
class Identity:
    """One MQTT client: its username (= certificate CN = client id) and its topic rights."""

    name: str
    role: str
    """"device", "collector", "auctioneer", "meter" or "bridge"."""
    site: str | None
    write: tuple[str, ...]
    """Topic filters it may publish to."""
    read: tuple[str, ...]
    """Topic filters it may subscribe to and receive from."""


def _exchange(scenario: Scenario) -> str:
    """Who the scenario's learner talks to: "none", "neighbours" or "cloud"."""
    return REGISTRY[scenario.learner.name].cls.exchange


def neighbour_kinds(scenario: Scenario) -> tuple[str, ...]:
    """Kinds a device reads from its topology neighbours, as the simulator subscribes them."""
    return ("consensus",) * scenario.workloads.consensus.enabled + ("params",) * (_exchange(scenario) == "neighbours")


def device_kinds(scenario: Scenario) -> tuple[str, ...]:
    """Kinds a device publishes on its own topics, as the edge agent does for this scenario."""
    exchange = _exchange(scenario)
    return (
        ("status",)
        + ("telemetry",) * scenario.workloads.telemetry.enabled
        + ("params",) * (exchange == "neighbours")
        + ("experience",) * (exchange == "cloud")
        + ("bid",) * trades(scenario)
    )


def site_topics(scenario: Scenario, site: str) -> tuple[str, ...]:
    """What a device reads from its site's roles: the auctioneer's clearings, the meter's readings."""
    return (clearing_topic(site),) * trades(scenario) + (meter_topic(site),) * reads_meter(scenario)


def site_roles(scenario: Scenario, sites: list[str]) -> list[Identity]:
    """The auctioneer (when the learner trades) and the meter (when it reads one) of every site."""
    roles = []
    for site in sites:
        if trades(scenario):
            own = (clearing_topic(site), device_topic(site, AUCTIONEER_NAME, "status"))
            roles.append(
                Identity(role_identity(AUCTIONEER_NAME, site), "auctioneer", site, own, (site_filter(site, "bid"),))
            )
        if reads_meter(scenario):
            own = (meter_topic(site), device_topic(site, METER_NAME, "status"))
            read = (site_filter(site, "telemetry"),)
            roles.append(Identity(role_identity(METER_NAME, site), "meter", site, own, read))
    return roles


def fleet_identities(scenario: Scenario) -> list[Identity]:
    """The devices of ``scenario`` (in fleet order), its site roles (site by site), then the collector and the
    bridge."""
    world = build_world(scenario, Streams(scenario.seed))
    sites = [world.site_names[s] for s in world.site_of]
    names = world.device_names
    kinds, own = neighbour_kinds(scenario), device_kinds(scenario)
    centralized = _exchange(scenario) == "cloud"
    cloud_params = (device_topic(COLLECTOR_SITE, COLLECTOR_NAME, "params"),) * centralized
    devices = []
    for i, (site, name) in enumerate(zip(sites, names)):
        nbrs = world.topology.neighbours(i)
        read = (
            (device_topic(site, name, "cmd"),)
            + tuple(device_topic(sites[j], names[j], k) for k in kinds for j in nbrs)
            + cloud_params
            + site_topics(scenario, site)
            + (FORECAST_TOPIC,)
        )
        devices.append(Identity(name, "device", site, tuple(device_topic(site, name, k) for k in own), read))
    collector_read = ("fleet/+/+/telemetry", "fleet/+/+/status") + ("fleet/+/+/experience",) * centralized
    collector = Identity(
        COLLECTOR_NAME,
        "collector",
        COLLECTOR_SITE,
        (f"fleet/{COLLECTOR_SITE}/{COLLECTOR_NAME}/#", "fleet/+/+/cmd"),
        collector_read,
    )
    bridge = Identity(BRIDGE_NAME, "bridge", None, ("fleet/#",), ("fleet/#",))
    return devices + site_roles(scenario, world.site_names) + [collector, bridge]


def acl_file(identities: list[Identity], scenario_name: str) -> str:
    """The text of a mosquitto ACL file granting exactly each identity's rights (nothing else)."""
    lines = [
        f"# mosquitto ACL for the fleet of scenario {scenario_name}, written by `fleet deploy provision`.",
        "# With an acl_file, mosquitto denies every topic not granted here (anonymous clients get nothing).",
    ]
    for ident in identities:
        lines += ["", f"user {ident.name}"]
        lines += [f"topic write {t}" for t in ident.write if t not in ident.read]
        lines += [f"topic {'readwrite' if t in ident.write else 'read'} {t}" for t in ident.read]
    return "\n".join(lines) + "\n"
