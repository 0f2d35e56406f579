"""Forecasts on a board: a file or a retained MQTT message, checked, read at the lead times,
and persistence (counted) when there is no fresh one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from fleet.edge.counters import Counters
from fleet.edge.forecast import MAX_FORECAST_BYTES, MAX_ROWS, BoardForecast, FileForecast, MqttForecast, parse_forecast
from fleet.edge.launch import AgentArgs, forecast_source
from fleet.errors import ConfigError, WireError
from tests.conftest import tiny_scenario
from tests.edge.agents import paho_agent, started, view_of

HOUR = 3600.0
LEADS = (1.0, 2.0, 24.0)
NOW = np.array([3.0])  # the device's outdoor temperature now, degC


def table(hours: range, slope: float = 0.5) -> str:
    """A forecast that warms by ``slope`` degC per hour from -5 degC at time 0."""
    return "valid_s,outdoor_c\n" + "".join(f"{h * HOUR:g},{-5 + slope * h:g}\n" for h in hours)


def board(path: Path, max_age_s: float = 12 * HOUR) -> tuple[BoardForecast, Counters]:
    counters = Counters()
    return BoardForecast(FileForecast(path), LEADS, max_age_s, counters), counters


def test_a_file_forecast_is_read_at_the_lead_times_linearly_between_rows(tmp_path):
    path = tmp_path / "forecast.csv"
    path.write_text(table(range(0, 31)))
    forecast, counters = board(path)
    got = forecast.fields(1800.0, NOW)
    # t + lead = 1.5 h, 2.5 h, 24.5 h on a line from -5 degC rising 0.5 degC per hour
    np.testing.assert_allclose(got["outdoor_ahead"], [[-4.25, -3.75, 7.25]])
    assert got["forecast_lead_h"] == LEADS
    assert (counters.forecast_updates, counters.forecast_errors, counters.forecast_fallbacks) == (1, 0, 0)


def test_a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good(tmp_path):
    path = tmp_path / "forecast.csv"
    path.write_text(table(range(0, 31)))
    forecast, counters = board(path)
    forecast.fields(0.0, NOW)
    path.write_text(table(range(0, 31), slope=1.0))
    np.testing.assert_allclose(forecast.fields(0.0, NOW)["outdoor_ahead"], [[-4.0, -3.0, 19.0]])
    path.write_text("valid_s,outdoor_c\n0,1\n3600,nan\n")
    np.testing.assert_allclose(forecast.fields(0.0, NOW)["outdoor_ahead"], [[-4.0, -3.0, 19.0]])
    forecast.fields(60.0, NOW)  # unchanged since: not read nor counted again
    assert (counters.forecast_updates, counters.forecast_errors, counters.forecast_fallbacks) == (2, 1, 0)


def test_a_stale_or_short_forecast_gives_persistence_counted(tmp_path):
    path = tmp_path / "forecast.csv"
    path.write_text(table(range(0, 31)))
    forecast, counters = board(path, max_age_s=6 * HOUR)
    forecast.fields(0.0, NOW)
    persistence = [[3.0, 3.0, 3.0]]
    np.testing.assert_array_equal(forecast.fields(6 * HOUR + 60, NOW)["outdoor_ahead"], persistence)  # too old
    path.write_text(table(range(0, 20)))  # ends before t + 24 h
    np.testing.assert_array_equal(forecast.fields(6 * HOUR + 60, NOW)["outdoor_ahead"], persistence)
    assert (counters.forecast_updates, counters.forecast_fallbacks) == (2, 2)


def test_a_missing_file_or_a_fifo_is_counted_once_and_never_blocks(tmp_path):
    forecast, counters = board(tmp_path / "absent.csv")
    for t in (0.0, 60.0, 120.0):
        np.testing.assert_array_equal(forecast.fields(t, NOW)["outdoor_ahead"], [[3.0, 3.0, 3.0]])
    assert (counters.forecast_errors, counters.forecast_fallbacks) == (1, 3)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    forecast, counters = board(fifo)
    forecast.fields(0.0, NOW)
    forecast.fields(60.0, NOW)
    assert (counters.forecast_errors, counters.forecast_fallbacks) == (1, 2)


def test_without_a_source_a_board_observes_persistence_and_counts_nothing():
    counters = Counters()
    got = BoardForecast(None, LEADS, HOUR, counters).fields(0.0, NOW)
    np.testing.assert_array_equal(got["outdoor_ahead"], [[3.0, 3.0, 3.0]])
    assert counters == Counters()


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", ["line 1", "header"]),
        (b"time,temp\n0,1\n1,2\n", ["line 1", "header"]),
        (b"valid_s,outdoor_c\n0,1\n", ["1 rows"]),
        (b"valid_s,outdoor_c\n0,1\n3600,x" + b"9" * 100 + b"\n", ["line 3, outdoor_c", "is not a number"]),
        (b"valid_s,outdoor_c\n0,1\ninf,2\n", ["line 3, valid_s", "finite"]),
        (b"valid_s,outdoor_c\n0,1\n3600,2,3\n", ["line 3", "2 comma-separated fields"]),
        (b"valid_s,outdoor_c\n0,1\n3600,120\n", ["line 3, outdoor_c", "plausible range"]),
        (b"valid_s,outdoor_c\n0,1\n7200,2\n3600,3\n", ["line 4, valid_s", "increase"]),
        (b"valid_s,outdoor_c\n0,1\n3600,\xe9\n", ["byte 27", "not ASCII"]),
        (b"valid_s,outdoor_c\n" + b"0,1\n" * (MAX_ROWS + 1), [f"{MAX_ROWS + 1} rows"]),
        (bytes(MAX_FORECAST_BYTES + 1), ["65,537 bytes"]),
    ],
)
def test_a_hostile_table_is_refused_naming_the_line_and_field(data, words):
    with pytest.raises(WireError) as refused:
        parse_forecast(data, "forecast file f.csv", 0.0)
    message = str(refused.value)
    assert message.startswith("forecast file f.csv") and len(message) < 200, message
    for word in words:
        assert word in message, message


def test_the_agent_options_name_one_forecast_source(tmp_path):
    assert forecast_source(AgentArgs()) is None
    assert isinstance(forecast_source(AgentArgs(forecast_file=tmp_path / "f.csv")), FileForecast)
    assert forecast_source(AgentArgs(forecast_topic="fleet/north/forecast")).topic == "fleet/north/forecast"
    with pytest.raises(ConfigError, match="not both"):
        forecast_source(AgentArgs(forecast_file=tmp_path / "f.csv", forecast_topic="fleet/north/forecast"))
    with pytest.raises(ConfigError, match="--forecast-topic.*wildcard"):
        forecast_source(AgentArgs(forecast_topic="fleet/+/forecast"))


# --- an agent over mosquitto ------------------------------------------------------------------

TOPIC = "fleet/north/forecast"


def _publish_retained(url: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forecaster", protocol=mqtt.MQTTv5)
    host, port = url.removeprefix("mqtt://").split(":")
    client.connect(host, int(port))
    client.loop_start()
    client.publish(TOPIC, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _run_recording(url: str, state: Path) -> tuple[list[tuple[float, np.ndarray]], Counters]:
    """Run d00000 of the tiny scenario for 4 h listening to TOPIC; (time, outdoor_ahead) of every tick."""
    agent = paho_agent(view_of(tiny_scenario()), url, state, duration=4 * HOUR)
    agent.forecast.source = MqttForecast(TOPIC)
    seen, act = [], agent.learner.act
    agent.learner.act = lambda obs: seen.append((agent.env.now, obs.outdoor_ahead[0].copy())) or act(obs)
    return seen, started(agent).finish().counters


@pytest.mark.mqtt
def test_an_agent_observes_the_retained_forecast_it_gets_from_the_broker(mosquitto, tmp_path):
    _publish_retained(mosquitto.url, table(range(0, 31)).encode())
    seen, counters = _run_recording(mosquitto.url, tmp_path / "state")
    assert counters.forecast_updates == 1 and counters.forecast_errors == 0
    first = next(i for i, (_, ahead) in enumerate(seen) if not np.all(ahead == ahead[0]))
    assert counters.forecast_fallbacks == first < len(seen) // 2  # persistence only until the message arrived
    for t, ahead in seen[first:]:
        np.testing.assert_allclose(ahead, -5 + 0.5 * (t / HOUR + np.arange(1, 25)), rtol=0, atol=1e-9)


@pytest.mark.mqtt
def test_an_agent_given_a_broken_forecast_counts_it_and_observes_persistence(mosquitto, tmp_path):
    _publish_retained(mosquitto.url, b"valid_s,outdoor_c\n0,1\n3600,1e400\n")
    seen, counters = _run_recording(mosquitto.url, tmp_path / "state")
    assert counters.forecast_errors == 1 and counters.forecast_updates == 0
    assert counters.forecast_fallbacks == counters.ticks == len(seen)
    assert all(np.all(ahead == ahead[0]) for _, ahead in seen)
