"""``fleet deploy provision``: every credential and broker file a real fleet needs, in one folder.

Layout of the output folder (``*``: private, mode 0600; the folder itself is 0700)::

    manifest.json            what was generated: identities, rights, certificate fingerprints (no secrets)
    scenario.yaml            the resolved scenario
    ca/ca.crt, ca/ca.key*    the fleet CA; keep ca.key offline, it signs new identities
    broker/                  mosquitto.conf, ca.crt, server.crt, server.key*, passwd*, acl, data/
    devices/<name>/          ca.crt, client.crt, client.key*, password*, agent.env, scenario.yaml
    services/collector/      the cloud collector's ca.crt, client.crt, client.key*, password*
    services/bridge/         the same for the simulator bridge of a mixed fleet
    services/<role>-<site>/  a site's auctioneer or meter, when the learner needs it: the same files,
                             site.env (its ``fleet auctioneer|meter --env-file``) and scenario.yaml

The folder is assembled next to its destination and renamed into place at the end, so a failure
leaves nothing behind, and an existing non-empty folder is never touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from fleet.deploy.acl import Identity, acl_file, fleet_identities
from fleet.deploy.broker import AUTOSAVE_INTERVAL, BROKER_FILES, HEADER_ALLOWANCE, mosquitto_conf
from fleet.deploy.passwords import new_password, password_file
from fleet.deploy.pki import Issued, issue, make_ca, subject_alt_name
from fleet.errors import ConfigError
from fleet.scenario import Scenario, dump_scenario

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
BOARD_DIR = PurePosixPath("/etc/fleet")
"""Where a device's folder is installed on its board (the paths in agent.env point there)."""
CHECKPOINT_DIR = PurePosixPath("/var/lib/fleet")
"""Where the agent keeps its checkpoints on the board (systemd's StateDirectory=fleet)."""
MANIFEST_FORMAT = 1
ENV_FILES = {"device": "agent.env", "auctioneer": "site.env", "meter": "site.env"}
"""The environment file of each role that runs a fleet process (the collector and the bridge have none)."""


class _Folder:
    """Writes files under a root, recording each relative path and mode for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[dict[str, str]] = []

    def write(self, rel: str, data: str | bytes, secret: bool = False) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o600 if secret else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)  # the umask may have removed bits
        self.files.append({"path": rel, "mode": f"{mode:04o}"})


def _check_options(
    out: Path,
    hosts: tuple[str, ...],
    tls_port: int,
    password_port: int,
    days: int,
    broker_root: PurePosixPath,
    autosave_interval: int,
) -> None:
    if not hosts:
        raise ConfigError("--host: give at least one host name or IP address the boards use to reach the broker")
    for host in hosts:
        subject_alt_name(host)
    if tls_port == password_port:
        raise ConfigError(f"--tls-port and --password-port are both {tls_port}; the two listeners need different ports")
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    if autosave_interval < 1:
        raise ConfigError(
            f"--autosave-interval must be at least 1 s, got {autosave_interval} (0 would save only at a clean stop)"
        )
    if not broker_root.is_absolute():
        raise ConfigError(
            f"--broker-root {broker_root}: must be an absolute path on the broker host, e.g. /etc/mosquitto/fleet"
        )
    if any(c.isspace() for c in str(broker_root)):
        raise ConfigError(
            f"--broker-root {str(broker_root)!r}: mosquitto.conf cannot hold paths with spaces; give --broker-root "
            "without them"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; nothing was written")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out}: directory exists and is not empty; give a new one (nothing was overwritten)")


def agent_env(ident: Identity, scenario: Scenario, broker_url: str, password_url: str) -> str:
    """The EnvironmentFile of the edge agent on a board (read by deploy/fleet-agent.service), or of a site
    role (``fleet auctioneer|meter --env-file``) on its host."""
    if ident.role != "device":
        head = f"""\
# {ident.role.capitalize()} {ident.name} (site {ident.site}) of scenario {scenario.name}, written by \
`fleet deploy provision`.
# Install this folder as {BOARD_DIR}/ on its host and run `fleet {ident.role} --env-file {BOARD_DIR}/site.env`.
"""
    else:
        head = f"""\
# Edge agent of device {ident.name} (site {ident.site}) of scenario {scenario.name}, \
written by `fleet deploy provision`.
# Install this folder as {BOARD_DIR}/ on the board; deploy/fleet-agent.service reads this file.
FLEET_DEVICE={ident.name}
"""
    checkpoints = f"FLEET_CHECKPOINT_DIR={CHECKPOINT_DIR}\n" if ident.role == "device" else ""
    return f"""{head}\
FLEET_SITE={ident.site}
FLEET_SCENARIO={BOARD_DIR / "scenario.yaml"}
FLEET_SCENARIO_NAME={scenario.name}
FLEET_BROKER_URL={broker_url}
FLEET_PASSWORD_BROKER_URL={password_url}
FLEET_CA_FILE={BOARD_DIR / "ca.crt"}
FLEET_CERT_FILE={BOARD_DIR / "client.crt"}
FLEET_KEY_FILE={BOARD_DIR / "client.key"}
FLEET_PASSWORD_FILE={BOARD_DIR / "password"}
{checkpoints}"""


def _url(host: str, port: int) -> str:
    return f"mqtts://[{host}]:{port}" if ":" in host else f"mqtts://{host}:{port}"


def _cert_info(issued: Issued) -> dict[str, str]:
    return {"fingerprint_sha256": issued.fingerprint, "not_after": issued.cert.not_valid_after_utc.isoformat()}


def provision(
    scenario: Scenario,
    out: Path,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    tls_port: int = 8883,
    password_port: int = 8884,
    days: int = 825,
    broker_root: PurePosixPath | None = None,
    autosave_interval: int = AUTOSAVE_INTERVAL,
    tls12: bool = False,
) -> dict:
    """Write the deployment folder ``out`` for ``scenario`` (see the module docstring); returns the manifest.

    ``hosts`` go into the server certificate's subject alternative names (the first one also
    into the URLs of agent.env); ``days`` is the validity of the leaf certificates;
    ``broker_root`` is where broker/ will live on the broker host (default: ``out/broker``);
    ``autosave_interval`` (seconds) and ``tls12`` go into mosquitto.conf (:mod:`fleet.deploy.broker`).
    """
    out = Path(out).absolute()
    broker_root = PurePosixPath(broker_root or out / "broker")
    _check_options(out, hosts, tls_port, password_port, days, broker_root, autosave_interval)
    identities = fleet_identities(scenario)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise ConfigError(f"{out}: cannot create it: {e.strerror}") from None
    try:
        manifest = _write_all(
            _Folder(tmp),
            scenario,
            identities,
            hosts,
            tls_port,
            password_port,
            days,
            broker_root,
            autosave_interval,
            tls12,
        )
        os.rename(tmp, out)
    except OSError as e:
        raise ConfigError(f"{out}: cannot write it: {e.strerror} (nothing was left behind)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _write_all(
    folder: _Folder,
    scenario: Scenario,
    identities: list[Identity],
    hosts: tuple[str, ...],
    tls_port: int,
    password_port: int,
    days: int,
    broker_root: PurePosixPath,
    autosave_interval: int,
    tls12: bool,
) -> dict:
    now = dt.datetime.now(dt.UTC)
    ca = make_ca(scenario.name, now)
    server = issue(ca, hosts[0], now, days, hosts)
    broker_url, password_url = _url(hosts[0], tls_port), _url(hosts[0], password_port)
    scenario_yaml = dump_scenario(scenario)
    passwords = {ident.name: new_password() for ident in identities}

    # --- CA and broker ---------------------------------------------------------------------
    folder.write("scenario.yaml", scenario_yaml)
    folder.write("ca/ca.crt", ca.cert_pem)
    folder.write("ca/ca.key", ca.key_pem, secret=True)
    max_payload = scenario.network.broker.max_packet_bytes
    conf = mosquitto_conf(broker_root, scenario.name, tls_port, password_port, max_payload, autosave_interval, tls12)
    folder.write("broker/mosquitto.conf", conf)
    folder.write(f"broker/{BROKER_FILES['ca']}", ca.cert_pem)
    folder.write(f"broker/{BROKER_FILES['cert']}", server.cert_pem)
    folder.write(f"broker/{BROKER_FILES['key']}", server.key_pem, secret=True)
    folder.write(f"broker/{BROKER_FILES['passwd']}", password_file(passwords), secret=True)
    folder.write(f"broker/{BROKER_FILES['acl']}", acl_file(identities, scenario.name))
    (folder.root / "broker" / BROKER_FILES["data"]).mkdir(mode=0o700)

    # --- one folder per identity -------------------------------------------------------------
    entries = []
    for ident in identities:
        base = f"devices/{ident.name}" if ident.role == "device" else f"services/{ident.name}"
        client = issue(ca, ident.name, now, days)
        folder.write(f"{base}/ca.crt", ca.cert_pem)
        folder.write(f"{base}/client.crt", client.cert_pem)
        folder.write(f"{base}/client.key", client.key_pem, secret=True)
        folder.write(f"{base}/password", passwords[ident.name] + "\n", secret=True)
        if ident.role in ENV_FILES:
            folder.write(f"{base}/{ENV_FILES[ident.role]}", agent_env(ident, scenario, broker_url, password_url))
            folder.write(f"{base}/scenario.yaml", scenario_yaml)
        entries.append(
            {
                "name": ident.name,
                "role": ident.role,
                "site": ident.site,
                "folder": base,
                **_cert_info(client),
                "write": list(ident.write),
                "read": list(ident.read),
            }
        )

    manifest = {
        "format": MANIFEST_FORMAT,
        "created": now.isoformat(),
        "scenario": {"name": scenario.name, "seed": scenario.seed, "devices": scenario.n_devices},
        "broker": {
            "hosts": list(hosts),
            "url": broker_url,
            "password_url": password_url,
            "tls_port": tls_port,
            "password_port": password_port,
            "root": str(broker_root),
            "max_packet_size": max_payload + HEADER_ALLOWANCE,
            "autosave_interval": autosave_interval,
            "tls_versions": ["1.2", "1.3"] if tls12 else ["1.3"],
            "server_cert": _cert_info(server),
        },
        "ca": {"subject": ca.cert.subject.rfc4514_string(), **_cert_info(ca)},
        "identities": entries,
        "files": folder.files,
    }
    folder.write("manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
