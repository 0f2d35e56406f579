"""`fleet deploy provision`: what it writes, with which permissions, and rights that mirror the simulator."""

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleet.cli import main
from fleet.deploy import provision
from fleet.deploy.acl import FORECAST_TOPIC, fleet_identities
from fleet.deploy.passwords import hash_password, verify_password
from fleet.mqtt.topics import KINDS, topic_matches
from fleet.scenario import parse_scenario
from fleet.sim.engine import Simulation
from tests.conftest import tiny_scenario
from tests.deploy.conftest import tiny


def cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def common_name(c: x509.Certificate) -> str:
    return c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


# --- the folder ------------------------------------------------------------------------------


def test_every_device_gets_a_folder_the_agent_can_use(kit, manifest):
    devices = [i for i in manifest["identities"] if i["role"] == "device"]
    assert [i["name"] for i in devices] == [f"d{k:05d}" for k in range(6)]
    assert {i["role"] for i in manifest["identities"]} == {"device", "collector", "bridge"}
    for ident in devices:
        folder = kit / ident["folder"]
        assert sorted(p.name for p in folder.iterdir()) == [
            "agent.env",
            "ca.crt",
            "client.crt",
            "client.key",
            "password",
            "scenario.yaml",
        ]
        env = dict(
            line.split("=", 1)
            for line in (folder / "agent.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert env["FLEET_DEVICE"] == ident["name"] and env["FLEET_SITE"] == ident["site"]
        assert env["FLEET_SCENARIO_NAME"] == "thermostats-tiny"
        assert env["FLEET_BROKER_URL"] == f"mqtts://localhost:{manifest['broker']['tls_port']}"


def test_private_files_are_0600_and_the_manifest_names_every_file_without_secrets(kit, manifest):
    listed = {f["path"]: f["mode"] for f in manifest["files"]}
    on_disk = {str(p.relative_to(kit)) for p in kit.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(listed) == on_disk
    for rel, mode in listed.items():
        secret = rel.endswith((".key", "/password", "/passwd"))
        assert mode == ("0600" if secret else "0644"), rel
        assert stat.S_IMODE((kit / rel).stat().st_mode) == int(mode, 8), rel
    text = (kit / "manifest.json").read_text()
    passwords = [p.read_text().strip() for p in kit.glob("*/*/password")]
    assert len(passwords) == 8 and not any(pw in text for pw in passwords)
    assert "PRIVATE KEY" not in text and "$7$" not in text
    assert stat.S_IMODE(kit.stat().st_mode) == 0o700


def test_certificates_chain_to_the_fleet_ca_with_the_identity_as_common_name(kit, manifest):
    ca = cert(kit / "ca" / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for ident in manifest["identities"]:
        c = cert(kit / ident["folder"] / "client.crt")
        c.verify_directly_issued_by(ca)
        assert common_name(c) == ident["name"]
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey) and c.public_key().curve.name == "secp256r1"
    server = cert(kit / "broker" / "server.crt")
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_password_file_holds_a_mosquitto_hash_of_each_password(kit, manifest):
    lines = dict(line.split(":", 1) for line in (kit / "broker" / "passwd").read_text().splitlines())
    assert list(lines) == [i["name"] for i in manifest["identities"]]
    for ident in manifest["identities"]:
        password = (kit / ident["folder"] / "password").read_text().strip()
        assert lines[ident["name"]].startswith("$7$101$")
        assert verify_password(password, lines[ident["name"]])
        assert not verify_password(password + "x", lines[ident["name"]])


@pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd (apt-get install mosquitto)"
)
def test_hashes_have_the_format_mosquitto_passwd_writes(tmp_path):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", "s3cret"], check=True)
    theirs = pwfile.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret", theirs)
    _, _, iterations, salt, _ = theirs.split("$")
    assert hash_password("s3cret", base64.b64decode(salt), int(iterations)) == theirs


# --- rights mirror the simulator ---------------------------------------------------------------


@pytest.mark.parametrize("learner", ["diffusion-v1", "centralized-v1", "rule-based-v1"])
def test_read_rights_are_exactly_the_simulated_subscriptions(tmp_path, learner):
    """Every (receiver, topic) the simulated broker delivers is readable under the ACL, and nothing else
    is (besides each device's own cmd topic, which the simulator does not model)."""
    scenario = tiny(learner)
    manifest = provision(scenario, tmp_path / "kit")
    endpoints = [i for i in manifest["identities"] if i["role"] != "bridge"]  # devices, then the collector
    topics = [f"fleet/{e['site']}/{e['name']}/{kind}" for e in endpoints for kind in KINDS]
    sim = Simulation(scenario)
    sender, kind = np.divmod(np.arange(len(topics)), len(KINDS))
    msg, receiver = sim.network.index.route(sender, kind)
    simulated = {(int(r), topics[m]) for m, r in zip(msg, receiver)}
    granted = {
        (r, topic)
        for r, e in enumerate(endpoints)
        for topic in topics
        if any(topic_matches(f, topic) for f in e["read"]) and topic != f"fleet/{e['site']}/{e['name']}/cmd"
    }
    assert granted == simulated
    assert any(t.endswith("/params") for _, t in granted) == (learner != "rule-based-v1")


def test_devices_read_the_forecast_that_only_the_collector_writes(tmp_path):
    manifest = provision(tiny("rule-based-v1"), tmp_path / "kit")
    by_role = {}
    for ident in manifest["identities"]:
        by_role.setdefault(ident["role"], []).append(ident)
    can = lambda ident, right: any(topic_matches(f, FORECAST_TOPIC) for f in ident[right])  # noqa: E731
    assert all(can(d, "read") and not can(d, "write") for d in by_role["device"])
    assert can(by_role["collector"][0], "write")


@pytest.mark.parametrize(
    "learner, telemetry, kinds",
    [
        ("diffusion-v1", True, ["status", "telemetry", "params"]),  # params to its neighbours
        ("centralized-v1", True, ["status", "telemetry", "experience"]),  # experience up to the cloud
        ("rule-based-v1", False, ["status"]),  # no messages, no telemetry: birth, death and will only
    ],
)
def test_devices_write_only_the_topics_their_agent_publishes(learner, telemetry, kinds):
    raw = tiny_scenario()
    raw["learner"] = {"name": learner}
    raw["workloads"]["telemetry"]["enabled"] = telemetry
    for ident in fleet_identities(parse_scenario(raw, "tiny", Path.cwd())):
        if ident.role == "device":
            assert ident.write == tuple(f"fleet/{ident.site}/{ident.name}/{kind}" for kind in kinds)


# --- the command line ----------------------------------------------------------------------------


def fleet(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_provisions_for_the_given_hosts_and_broker_root(tiny_scenario_file, tmp_path):
    out = tmp_path / "kit"
    result = fleet(
        "deploy",
        "provision",
        tiny_scenario_file,
        "-o",
        out,
        "--host",
        "broker.example.org",
        "--host",
        "10.0.0.2",
        "--broker-root",
        "/etc/mosquitto/fleet",
    )
    assert result.exit_code == 0, result.output
    assert "provisioned 6 devices" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["broker"]["hosts"] == ["broker.example.org", "10.0.0.2"]
    conf = (out / "broker" / "mosquitto.conf").read_text()
    assert "acl_file /etc/mosquitto/fleet/acl\n" in conf and "persistence_location /etc/mosquitto/fleet/data/\n" in conf
    assert "mqtts://broker.example.org:8883" in (out / "devices" / "d00000" / "agent.env").read_text()


def test_cli_sets_the_autosave_interval_and_admits_tls12_on_request(tiny_scenario_file, tmp_path):
    for args, autosave, versions in [([], 60, ["1.3"]), (["--autosave-interval", "5", "--tls12"], 5, ["1.2", "1.3"])]:
        out = tmp_path / f"kit{len(args)}"
        assert fleet("deploy", "provision", tiny_scenario_file, "-o", out, *args).exit_code == 0
        conf = (out / "broker" / "mosquitto.conf").read_text()
        assert f"\nautosave_interval {autosave}\n" in conf
        assert conf.count(f"\ntls_version tlsv{versions[0]}\n") == 2  # the minimum version, on both listeners
        assert json.loads((out / "manifest.json").read_text())["broker"]["tls_versions"] == versions


def assert_usage_error(result, *words):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "Traceback" not in result.output, err
    for word in words:
        assert word in err, err


def test_cli_refuses_a_non_empty_folder_and_overwrites_nothing(tiny_scenario_file, tmp_path):
    out = tmp_path / "kit"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_usage_error(fleet("deploy", "provision", tiny_scenario_file, "-o", out), str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit", "tiny.yaml"]  # no half-written sibling


@pytest.mark.parametrize(
    "args, words",
    [
        (["no-such-scenario"], ["no-such-scenario", "no such scenario"]),
        (["{tiny}", "--host", "bad host!"], ["--host", "bad host!"]),
        (["{tiny}", "--host", "-leading-dash.example"], ["--host"]),
        (["{tiny}", "--tls-port", "9000", "--password-port", "9000"], ["--tls-port", "--password-port", "9000"]),
        (["{tiny}", "--broker-root", "relative/path"], ["--broker-root", "absolute"]),
        (["{tiny}", "--broker-root", "/etc/my broker"], ["--broker-root", "spaces"]),
        (["{tiny}", "--autosave-interval", "0"], ["--autosave-interval", "at least 1"]),
    ],
)
def test_cli_bad_input_is_one_error_and_writes_nothing(tiny_scenario_file, tmp_path, args, words):
    out = tmp_path / "kit"
    args = [str(tiny_scenario_file) if a == "{tiny}" else a for a in args]
    assert_usage_error(fleet("deploy", "provision", *args, "-o", out), *words)
    assert not out.exists()
