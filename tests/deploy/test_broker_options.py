"""The broker options of `fleet deploy provision`, on a real mosquitto: the autosave interval (what
survives a crash) and TLS 1.2 for old boards. A kit provisioned with ``autosave_interval=1, tls12=True``."""

import json
import ssl

import pytest

from tests.deploy.conftest import handshake, provision_tiny, start_kit_broker, topic
from tests.waiting import wait_for

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def old_boards_kit(tmp_path_factory):
    return provision_tiny(tmp_path_factory.mktemp("old-boards") / "fleet", autosave_interval=1, tls12=True)


@pytest.fixture
def broker(old_boards_kit, tmp_path):
    b = start_kit_broker(old_boards_kit, tmp_path)
    yield b
    b.stop()


@pytest.mark.parametrize("listener", ["tls", "password"])
def test_tls12_option_admits_aead_suites_and_still_refuses_cbc_sha1(old_boards_kit, broker, listener):
    port = json.loads((old_boards_kit / "manifest.json").read_text())["broker"][f"{listener}_port"]
    assert handshake(old_boards_kit, port) == "TLSv1.3"
    assert handshake(old_boards_kit, port, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256") == "TLSv1.2"
    for ciphers in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA256"):  # CBC with SHA-1, CBC with SHA-256
        with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
            handshake(old_boards_kit, port, ssl.TLSVersion.TLSv1_2, ciphers)


def saved(db):
    """Which save of mosquitto.db is on disk: mosquitto writes a new file and renames it over the old one."""
    try:
        st = db.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def test_retained_status_and_sessions_survive_a_kill_after_the_autosave(old_boards_kit, broker, connect, tmp_path):
    manifest = json.loads((old_boards_kit / "manifest.json").read_text())
    status, cmd = topic(manifest, "d00000", "status"), topic(manifest, "d00001", "cmd")
    away = connect(old_boards_kit, "d00001", session_expiry=600)
    away.subscribe(cmd)
    away.close()
    connect(old_boards_kit, "d00000").publish(status, b"online", retain=True)
    db = tmp_path / "mosquitto.db"
    before = saved(db)
    wait_for(lambda: saved(db) != before, "the next autosave of mosquitto.db (it holds both)", timeout=10)

    broker.proc.kill()  # SIGKILL: no save at exit
    broker.proc.wait()
    broker.start()  # same configuration, same persistence folder

    collector = connect(old_boards_kit, "collector")
    assert collector.subscribe(status) == 1
    collector.wait(lambda: collector.received(status), "the retained status")
    assert collector.received(status) == [b"online"]
    back = connect(old_boards_kit, "d00001", session_expiry=600)  # subscribes to nothing: the session kept cmd
    collector.publish(cmd, b"for d00001")
    back.wait(lambda: back.received(cmd), "cmd through the kept subscription")
