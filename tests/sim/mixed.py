"""Helpers of the mixed-fleet tests over a real mosquitto: a real-time run, a subscriber that records what it hears,
and the site roles (``fleet meter``, ``fleet auctioneer``) that such a run takes over at the sites with a board."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from fleet.cli import main
from fleet.edge.site import RunOptions, SiteRunner, site_view
from fleet.mqtt.paho_transport import PahoTransport
from fleet.scenario import parse_scenario
from tests.edge.agents import injector, started
from tests.waiting import wait_for

SPEEDUP = 600.0
"""Ten scenario minutes per wall second: a 30 min horizon takes 3 s."""


def realtime_run(scenario: Path, out: Path, url: str, *args: str):
    argv = ["run", str(scenario), "-o", str(out), "--device", "cpu", "--realtime", "--speedup", str(SPEEDUP)]
    return CliRunner().invoke(main, [*argv, "--broker", url, *args])


def mixed_summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["mixed"]


class Recorder:
    """A plain MQTT client that keeps every (topic, payload) it hears on ``topic_filter``."""

    def __init__(self, url: str, topic_filter: str) -> None:
        self.heard: list[tuple[str, bytes]] = []
        self.client = injector(url)
        self.client.on_message = lambda client, userdata, m: self.heard.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *_: setattr(self, "subscribed", True)
        self.subscribed = False
        self.client.subscribe(topic_filter, qos=1)
        wait_for(lambda: self.subscribed, "the recorder's subscription")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def role_runner(role, raw: dict, site: str, url: str) -> SiteRunner:
    """The site ``role`` (a class of :mod:`fleet.edge`: ``Meter``, ``Auctioneer``) of ``site``, on its own clock (it
    only has to be online)."""
    make = functools.partial(PahoTransport, url=url, reconnect_delay=(0.1, 0.5))
    view = site_view(parse_scenario(raw, "test", Path.cwd()), site)
    return SiteRunner(role(view), make, RunOptions(speedup=60, status_every=3600))


def refused_while_north_runs(raw: dict, role, url: str, folder: Path) -> dict:
    """With ``role`` online at north (which has a board) and at south (none), a real-time run of ``raw`` exits 2
    naming north's status topic and writes nothing; after north's clean stop (its retained status says offline) it
    runs, south's still online. Returns summary.json's ``mixed`` section of that run."""
    scenario = folder / "mixed.yaml"
    scenario.write_text(yaml.safe_dump(raw, sort_keys=False))
    runners = {site: role_runner(role, raw, site, url) for site in ("north", "south")}
    threads = {site: started(runner) for site, runner in runners.items()}
    recorder = Recorder(url, f"fleet/+/{role.name}/status")
    try:
        wait_for(lambda: len(recorder.heard) == 2, "both sites' online status")
        result = realtime_run(scenario, folder / "refused", url)
        assert result.exit_code == 2 and f"fleet/north/{role.name}/status" in result.output, result.output
        assert f"fleet {role.name}" in result.output and "south" not in result.output
        assert "Traceback" not in result.output and not (folder / "refused").exists()
        runners["north"].stop()
        threads["north"].finish(30)
        wait_for(lambda: len(recorder.heard) == 3, "north's offline status")
        result = realtime_run(scenario, folder / "run", url)
        assert result.exit_code == 0, result.output
    finally:
        recorder.close()
        for site, runner in runners.items():
            runner.stop()
            threads[site].finish(30)
    return mixed_summary(folder / "run")
