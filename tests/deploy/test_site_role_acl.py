"""The site roles' identities (the auctioneer, the feeder meter) and the devices' rights toward them, as
provisioned and as a real mosquitto enforces them. As in test_broker_security: a denied publish gets
PUBACK 135; a message the ACL keeps from a reader is shown undelivered by a later deliverable one from the
same publisher."""

import time
from pathlib import Path

import pytest

from fleet.deploy import provision
from fleet.deploy.acl import fleet_identities
from fleet.edge.launch import SiteArgs, build_site_role, read_env_file
from fleet.scenario import parse_scenario
from tests.conftest import tiny_scenario
from tests.deploy.conftest import start_kit_broker
from tests.mosquitto import free_port

NOT_AUTHORIZED = 135
LEARNERS = {
    "market": {"name": "auction-v1", "params": {"market": {"period": "5min"}}},
    "meter": {"name": "cooperative-v1"},
}


def scenario(learner: str):
    """The tiny scenario (north: d00000..d00002, south: d00003..d00005) with a learner of ``LEARNERS``."""
    raw = tiny_scenario()
    raw["learner"] = LEARNERS[learner]
    return parse_scenario(raw, "tiny", Path.cwd())


@pytest.fixture
def site_kit(tmp_path, connect):
    """``site_kit(learner)``: a provisioned kit of ``scenario(learner)`` on a running mosquitto; returns
    the kit's folder and ``login(name)``, a :class:`~tests.deploy.conftest.Peer` logged in as that
    identity over mutual TLS."""
    brokers = []

    def start(learner: str):
        kit = tmp_path / learner
        tls, password = free_port(), free_port()
        provision(scenario(learner), kit, tls_port=tls, password_port=password)
        folder = tmp_path / f"{learner}-broker"
        folder.mkdir()
        brokers.append(start_kit_broker(kit, folder))
        return kit, lambda name: connect(kit, name)

    yield start
    for broker in brokers:
        broker.stop()


def identities(learner: str) -> dict:
    return {i.name: i for i in fleet_identities(scenario(learner))}


def test_each_site_gets_the_roles_its_learner_needs_with_the_narrowest_rights():
    market, meter = identities("market"), identities("meter")
    assert market["auctioneer-north"].write == ("fleet/north/auctioneer/clearing", "fleet/north/auctioneer/status")
    assert market["auctioneer-north"].read == ("fleet/north/+/bid",)
    assert market["d00000"].write[-1] == "fleet/north/d00000/bid"  # its own bid only
    assert "fleet/north/auctioneer/clearing" in market["d00000"].read
    assert not any("meter" in name for name in market)
    assert meter["meter-south"].write == ("fleet/south/meter/meter", "fleet/south/meter/status")
    assert meter["meter-south"].read == ("fleet/south/+/telemetry",)
    assert "fleet/south/meter/meter" in meter["d00003"].read and "fleet/north/meter/meter" not in meter["d00003"].read
    assert not any("auctioneer" in name for name in meter)
    plain = {i.name for i in fleet_identities(parse_scenario(tiny_scenario(), "tiny", Path.cwd()))}
    assert not any(role in name for name in plain for role in ("auctioneer", "meter"))


@pytest.mark.mqtt
@pytest.mark.parametrize(
    ("learner", "role", "up", "down"),
    [("market", "auctioneer", "bid", "clearing"), ("meter", "meter", "telemetry", "meter")],
)
def test_a_role_reads_its_sites_devices_and_they_read_only_their_sites_role(site_kit, learner, role, up, down):
    """The devices send ``up`` (bids, telemetry) to their site's ``role``, which publishes ``down`` (the
    clearing, the reading) to them."""
    _, login = site_kit(learner)
    d0, d3 = login("d00000"), login("d00003")
    north, south = login(f"{role}-north"), login(f"{role}-south")
    assert d0.publish(f"fleet/north/d00001/{up}") == NOT_AUTHORIZED  # as another device
    assert d0.publish(f"fleet/north/{role}/{down}") == NOT_AUTHORIZED  # forged by a device
    assert north.publish(f"fleet/south/{role}/{down}") == NOT_AUTHORIZED  # into another site
    assert north.publish(f"fleet/north/d00000/{up}") == NOT_AUTHORIZED  # as a device
    assert north.publish("fleet/north/d00000/cmd") == NOT_AUTHORIZED
    # the role reads its own site's devices only
    north.subscribe("fleet/#")
    assert d3.publish(f"fleet/south/d00003/{up}", b"south") != NOT_AUTHORIZED
    assert d0.publish(f"fleet/north/d00000/{up}", b"north") != NOT_AUTHORIZED
    north.wait(lambda: north.received(f"fleet/north/d00000/{up}"), f"d00000's {up}")
    assert {t for t, _ in north.messages} == {f"fleet/north/d00000/{up}"}
    # a device hears its own site's role only
    d0.subscribe("fleet/#")
    assert south.publish(f"fleet/south/{role}/{down}", b"south") != NOT_AUTHORIZED
    assert north.publish(f"fleet/north/{role}/{down}", b"north") != NOT_AUTHORIZED
    d0.wait(lambda: d0.received(f"fleet/north/{role}/{down}"), f"north's {down}")
    assert {t for t, _ in d0.messages} == {f"fleet/north/{role}/{down}"}


@pytest.mark.mqtt
@pytest.mark.parametrize("listener", ["tls", "password"])
def test_an_auctioneer_logs_in_from_its_site_env_and_publishes_within_its_rights(site_kit, listener):
    kit, login = site_kit("market")
    folder = kit / "services" / "auctioneer-north"
    watcher = login("bridge")  # reads all of fleet/#
    watcher.subscribe("fleet/north/auctioneer/#")
    args = SiteArgs(
        env_file=folder / "site.env",  # installed as /etc/fleet: give the local paths
        scenario=str(folder / "scenario.yaml"),
        ca=folder / "ca.crt",
        speedup=3600.0,
        epoch=time.time(),
        duration="10min",
    )
    if listener == "tls":
        args.cert, args.key = folder / "client.crt", folder / "client.key"
    else:  # the user name defaults to the identity
        args.broker = read_env_file(folder / "site.env")["FLEET_PASSWORD_BROKER_URL"]
        args.password_file = folder / "password"
    runner = build_site_role("auctioneer", args)
    counters = runner.run()
    assert runner.identity == "auctioneer-north" and counters.connects == 1 and runner.unsent == 0
    assert runner.role.rounds >= 1  # a round cleared (of no bid) and published
    watcher.wait(lambda: watcher.received("fleet/north/auctioneer/clearing"), "the clearing")
    assert watcher.received("fleet/north/auctioneer/status")  # online, then offline
