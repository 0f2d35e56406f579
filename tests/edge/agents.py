"""Helpers of the edge agent tests: the tiny scenario with a diffusion learner, agents on threads."""

from __future__ import annotations

import functools
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from fleet.edge.agent import AgentOptions, EdgeAgent
from fleet.edge.view import DeviceView, device_view
from fleet.mqtt.memory import MemoryBroker, MemoryTransport
from fleet.mqtt.paho_transport import PahoTransport
from fleet.scenario import parse_scenario
from tests.conftest import tiny_scenario

N_STEPS = 8
"""Control ticks between learner updates in these tests (an update every 8 simulated minutes)."""


def agent_argv(
    scenario: Path, state: Path, broker: str, *args: str, device: str = "d00000", speedup: str = "3600"
) -> list[str]:
    """The command line of a ``fleet agent`` process running ``device`` of ``scenario`` with its
    state in ``state``, ``speedup`` times the wall clock; ``args``: more options."""
    return [sys.executable, "-m", "fleet.cli", "agent", "--scenario", str(scenario), "--device", device,
            "--broker", broker, "--state-dir", str(state), "--speedup", speedup, *args]  # fmt: skip


def diffusion_raw(**params) -> dict:
    """The tiny scenario (6 devices, two sites of three: each device's neighbours are the other
    two of its site) with the diffusion learner updating every N_STEPS ticks."""
    raw = tiny_scenario()
    raw["learner"] = {"name": "diffusion-v1", "params": {"n_steps": N_STEPS, **params}}
    return raw


def view_of(raw: dict, device: str = "d00000") -> DeviceView:
    return device_view(parse_scenario(raw, "test", Path.cwd()), device)


def options(**changes) -> AgentOptions:
    """Fast agents: two simulated hours per wall second, quiet status."""
    return AgentOptions(**{"speedup": 7200.0, "status_every": 3600.0, "duration": 7200.0, **changes})


def memory_agent(view: DeviceView, broker: MemoryBroker, state_dir: Path, **changes) -> EdgeAgent:
    return EdgeAgent(view, functools.partial(MemoryTransport, broker), state_dir, options(**changes))


def paho_agent(view: DeviceView, url: str, state_dir: Path, **changes) -> EdgeAgent:
    """An agent over a real broker that retries quickly (tests restart brokers)."""
    return EdgeAgent(
        view, functools.partial(PahoTransport, url=url, reconnect_delay=(0.1, 0.5)), state_dir, options(**changes)
    )


def injector(url: str) -> mqtt.Client:
    """A plain MQTT 5 client of the broker at ``url`` (mqtt://host:port), its network loop started: it
    publishes what the tests inject."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="injector", protocol=mqtt.MQTTv5)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    return client


class AgentThread(threading.Thread):
    """Runs an agent on its own thread; :meth:`finish` joins it and re-raises what it raised."""

    def __init__(self, agent: EdgeAgent) -> None:
        super().__init__(daemon=True)
        self.agent = agent
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.agent.run()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def finish(self, timeout: float = 30.0) -> EdgeAgent:
        self.join(timeout)
        assert not self.is_alive(), f"agent {self.agent.view.name} did not stop within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.agent


def started(agent: EdgeAgent) -> AgentThread:
    thread = AgentThread(agent)
    thread.start()
    return thread
