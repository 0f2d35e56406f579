"""Mixed fleets: a real-time simulation of the tiny fleet whose learner messages go through a real
mosquitto, with three of its six devices run as real ``fleet agent`` processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleet.cli import main
from tests.conftest import tiny_scenario
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = ["d00000", "d00003", "d00004"]
"""d00000's neighbours (d00001, d00002) are simulated; d00005 hears only real devices."""
SPEEDUP = 300.0
"""Five scenario minutes per wall second: the 1 h horizon takes 12 s."""


def mixed_raw() -> dict:
    raw = tiny_scenario()
    raw.update(horizon="1h")
    raw["learner"] = {"name": "diffusion-v1", "params": {"n_steps": 4}}  # an update every 4 scenario minutes
    raw["fleet"]["external"] = EXTERNAL
    return raw


def start_agent(
    scenario: Path, device: str, url: str, epoch: float, folder: Path
) -> tuple[subprocess.Popen, Path, Path]:
    out, err = folder / f"{device}.out", folder / f"{device}.err"
    argv = [
        sys.executable,
        "-m",
        "fleet.cli",
        "agent",
        "--scenario",
        str(scenario),
        "--device",
        device,
        "--broker",
        url,
        "--speedup",
        str(SPEEDUP),
        "--epoch",
        repr(epoch),
        "--state-dir",
        str(folder / device),
        "--status-every",
        "1h",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # four torch processes share the test machine's cores
    return subprocess.Popen(argv, cwd=ROOT, stdout=out.open("wb"), stderr=err.open("wb"), env=env), out, err


def received_by(out: Path) -> int:
    """``received=`` of the agent's last status line (printed when it stops)."""
    return int(re.findall(r"received=(\d+)", out.read_text())[-1])


@pytest.mark.mqtt
def test_parameters_flow_between_simulated_devices_and_real_agents(mosquitto, write_scenario, tmp_path):
    scenario = write_scenario(mixed_raw(), "mixed.yaml")
    # scenario time 0 for everyone (agents need seconds to start; a late one joins where the clock is)
    epoch = time.time() + 25
    agents = [start_agent(scenario, d, mosquitto.url, epoch, tmp_path) for d in EXTERNAL]
    try:
        for proc, _, err in agents:
            wait_for(
                lambda err=err, proc=proc: "listening on" in err.read_text() or proc.poll() is not None,
                "the agents to connect",
                timeout=90,
                interval=0.1,
            )
            assert proc.poll() is None, err.read_text()
        result = CliRunner().invoke(
            main,
            [
                "run",
                str(scenario),
                "-o",
                str(tmp_path / "run"),
                "--device",
                "cpu",
                "--realtime",
                "--speedup",
                str(SPEEDUP),
                "--epoch",
                repr(epoch),
                "--broker",
                mosquitto.url,
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        for proc, _, _ in agents:
            proc.send_signal(signal.SIGTERM)
        for proc, _, _ in agents:
            proc.wait(20)
    for proc, _, err in agents:
        assert proc.returncode == 0, err.read_text()

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    mixed = summary["mixed"]
    assert summary["run"]["status"] == "completed" and mixed["external"] == EXTERNAL
    # real -> simulated: the agents' parameters reached the simulated learner (d00001, d00002 hear
    # d00000; d00005 hears d00003 and d00004), and simulated -> simulated went through the broker too
    assert mixed["deliveries_from_external"] > 0 and mixed["deliveries_from_simulated"] > 0
    assert mixed["sent"] > 0 and mixed["malformed"] == mixed["unexpected"] == 0
    # simulated -> real: d00000 hears only simulated devices, and its filter accepted their messages
    assert received_by(agents[0][1]) > 0
    assert all(received_by(out) > 0 for _, out, _ in agents)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 60 // 15 + 1  # header, rows at 0, 15, ... 60 min, and the final row
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize(
    "args, external, message",
    [
        (["--realtime"], EXTERNAL, "--realtime needs --broker"),
        (["--realtime", "--broker", "http://127.0.0.1"], EXTERNAL, "scheme 'http' is not mqtt"),
        (["--realtime", "--broker", "mqtt://127.0.0.1:99999"], EXTERNAL, "not a number in 1..65535"),
        ([], EXTERNAL, "they join only a real-time run"),
        (["--broker", "mqtt://127.0.0.1"], [], "apply only with --realtime"),
        (
            ["--realtime", "--broker", "mqtt://127.0.0.1"],
            ["d00000", "d00099"],
            "fleet.external: unknown device(s) d00099",
        ),
    ],
)
def test_bad_mixed_fleet_input_exits_2_and_writes_nothing(args, external, message, write_scenario, tmp_path):
    raw = mixed_raw()
    raw["fleet"]["external"] = external
    scenario = write_scenario(raw, "mixed.yaml")
    result = CliRunner().invoke(main, ["run", str(scenario), "-o", str(tmp_path / "run"), "--device", "cpu", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_broker_that_is_not_there_exits_2_and_writes_nothing(write_scenario, tmp_path):
    from tests.mosquitto import free_port

    scenario = write_scenario(mixed_raw(), "mixed.yaml")
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(scenario),
            "-o",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "--realtime",
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
        ],
    )
    assert result.exit_code == 2 and "did not accept the bridge's connection" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_centralized_learner_is_refused_in_real_time(write_scenario, tmp_path):
    raw = mixed_raw()
    raw["learner"] = {"name": "centralized-v1"}
    scenario = write_scenario(raw, "mixed.yaml")
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(scenario),
            "-o",
            str(tmp_path / "run"),
            "--device",
            "cpu",
            "--realtime",
            "--broker",
            "mqtt://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 2 and "exchanges through the cloud" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_external_devices_survive_the_resolved_scenario(write_scenario):
    from fleet.scenario import dump_scenario, load_scenario

    sc = load_scenario(write_scenario(mixed_raw(), "mixed.yaml"))
    assert sc.fleet.external == tuple(EXTERNAL)
    assert load_scenario(write_scenario(dump_scenario(sc), "resolved.yaml")).fleet.external == tuple(EXTERNAL)
