"""Scenario files: the shipped ones load and round-trip; every bad input names its field path."""

import numpy as np
import pytest

from devices.config import EpwWeatherConfig
from devices.weather import write_epw
from fleet.errors import ConfigError
from fleet.net.profiles import DEFAULT_PROFILES, GilbertElliottLoss, IndependentLoss
from fleet.scenario import Scenario, apply_overrides, dump_scenario, list_scenarios, load_scenario

SHIPPED = list_scenarios()
SAT = "{latency_s: 300ms, jitter_s: 50ms, up_bps: 1e5, down_bps: 1e6, max_payload_bytes: 4096, overhead_bytes: 120}"


def config_error(path, overrides=(), **kwargs) -> str:
    """The message of the ConfigError that loading ``path`` must raise."""
    with pytest.raises(ConfigError) as info:
        load_scenario(path, list(overrides), **kwargs)
    return str(info.value)


# --- the shipped scenarios ---------------------------------------------------------------


def test_five_scenarios_are_shipped():
    assert [name for name, _, _ in SHIPPED] == ["city-10k-v1", "feeder-peak-v1", "nbiot-lossy-v1", "thermostats-small-v1", "thermostats-small-v2"]


def test_the_default_scenario_runs_a_learner_from_the_clone_against_the_thermostat():
    sc = load_scenario("thermostats-small-v2")
    assert sc.learner.name == "diffusion-v1" and sc.learner.params["init_policy"] == "clone-v1" and sc.outputs.baseline
    assert sc.control_period == 900 and sc.horizon == 2 * 86400  # the learners' control period, 192 ticks


@pytest.mark.parametrize("name, path", [(name, path) for name, _, path in SHIPPED])
def test_shipped_scenario_validates_and_round_trips(name, path, tmp_path):
    scenario = load_scenario(name)
    assert isinstance(scenario, Scenario) and scenario.name == path.stem
    assert load_scenario(path) == scenario
    dumped = tmp_path / "scenario.yaml"
    dumped.write_text(dump_scenario(scenario))
    assert load_scenario(dumped) == scenario


def test_the_tiny_fixture_is_what_it_says(tiny_scenario_file):
    scenario = load_scenario(tiny_scenario_file)
    assert scenario.n_devices == 6 and len(scenario.fleet.sites) == 2
    assert (scenario.horizon, scenario.control_period, scenario.outputs.metrics_period) == (7200, 60, 900)


def test_an_unknown_scenario_name_lists_the_shipped_ones():
    msg = config_error("no-such-scenario")
    assert "no-such-scenario" in msg and "thermostats-small-v1" in msg


# --- bad input ---------------------------------------------------------------------------

BAD = {
    "unknown key at top level": (["colour=blue"], ["colour", "unknown key"]),
    "unknown key nested": (["fleet.sites[0].colour=blue"], ["fleet.sites[0].colour", "unknown key"]),
    "unknown key in a profile": (["network.profiles.wifi.speed=1"], ["network.profiles.wifi.speed", "unknown key"]),
    "wrong type": (["fleet.sites[0].devices=many"], ["fleet.sites[0].devices", "integer", "'many'"]),
    "unreadable duration": (["horizon=two days"], ["horizon", "'15min'"]),
    "unknown literal": (["topology.kind=star"], ["topology.kind", "'ring'", "'small-world'", "'star'"]),
    "negative devices": (["fleet.sites[0].devices=-3"], ["fleet.sites[0].devices", "greater than 0"]),
    "zero feeder": (["fleet.sites[1].feeder_kw=0"], ["fleet.sites[1].feeder_kw", "greater than 0"]),
    "negative capacitance": (["fleet.building.capacitance_kwh_per_c=-5"], ["fleet.building.capacitance_kwh_per_c", "(0, inf]"]),
    "zero capacitance": (["fleet.building.capacitance_kwh_per_c=0"], ["fleet.building.capacitance_kwh_per_c", "(0, inf]"]),
    "uniform capacitance below 0": (
        ["fleet.building.capacitance_kwh_per_c={dist: uniform, low: -1, high: 8}"],
        ["fleet.building.capacitance_kwh_per_c", "(0, inf]", "[-1.0, 8.0]"],
    ),
    "unclipped normal capacitance": (
        ["fleet.building.capacitance_kwh_per_c={dist: normal, mean: 6, std: 1}"],
        ["fleet.building.capacitance_kwh_per_c", "clip bounds"],
    ),
    "zero bandwidth": (["network.profiles.wifi.up_bps=0"], ["network.profiles.wifi.up_bps", "greater than 0"]),
    "bad loss probability": (["network.profiles.nb-iot.loss.p_bad_to_good=0"], ["network.profiles.nb-iot.loss.p_bad_to_good"]),
    "bad weather value": (["weather.mean_c=mild"], ["weather.mean_c", "'mild'"]),
    "list where a mapping belongs": (["fleet.building=[4, 10]"], ["fleet.building", "dictionary"]),
    "list for a site": (["fleet.sites[0]=[north, 3]"], ["fleet.sites[0]", "dictionary"]),
    "version 2": (["version=2"], ["version", "should be 1"]),
    "horizon shorter than a tick": (["horizon=30s"], ["horizon", "control_period"]),
    "unknown network class": (
        ["fleet.sites[0].network={satellite: 1.0}"],
        ["fleet.sites[0].network", "'satellite'", "known: ethernet, lora, lte-m, nb-iot, wifi"],
    ),
    "shares not summing to 1": (["fleet.sites[0].network={wifi: 0.5, lte-m: 0.2}"], ["fleet.sites[0].network", "sum to 1", "0.7"]),
    "duplicate site names": (["fleet.sites[1].name=north"], ["fleet.sites", "unique", "north"]),
    "link cut of an unknown site": (
        ["network.link_cuts=[{start: 1h, end: 2h, sites: [east]}]"],
        ["network.link_cuts[0].sites", "east"],
    ),
    "sample larger than the fleet": (["outputs.sample_devices=7"], ["outputs.sample_devices", "fleet size (6)"]),
    "odd ring degree": (["topology={kind: ring, degree: 1}"], ["topology.degree", "even", "'ring'"]),
    "degree not below the group": (["topology.degree=4"], ["topology.degree", "smallest group of devices (3)"]),
    "consensus too large for lora": (
        ["fleet.sites[1].network={lora: 1.0}", "workloads.consensus.dim=64"],
        ["workloads.consensus", "'lora'", "max_payload_bytes (115) of 3 devices", "workloads.consensus.dtype=int8 (99 bytes)"],
    ),
    "unregistered learner": (["learner.name=q-learning-v9"], ["learner.name", "'q-learning-v9'", "known:", "diffusion-v1", "rule-based-v1"]),
    "unknown learner param": (["learner.params={bogus: 1}"], ["learner.params.bogus", "unknown key"]),
    "bad learner param": (["learner.params.deadband_c=-1"], ["learner.params.deadband_c", "greater than 0"]),
    "currency not a code": (["tariff.currency=euro"], ["tariff.currency", "ISO 4217", "'euro'"]),
    "tou tariff with a gap": (["tariff.periods[1].start_h=8"], ["tariff.periods", "[7.0, 8.0) are not covered"]),
}


@pytest.mark.parametrize("overrides, words", BAD.values(), ids=BAD.keys())
def test_bad_input_names_the_field_path(tiny_scenario_file, overrides, words):
    msg = config_error(tiny_scenario_file, overrides)
    assert str(tiny_scenario_file) in msg
    for word in words:
        assert word in msg


def test_unknown_keys_written_in_the_file_are_rejected(tiny_raw, write_scenario):
    tiny_raw["outputs"]["plots"] = True
    tiny_raw["colour"] = "blue"
    msg = config_error(write_scenario(tiny_raw))
    assert "  - colour: unknown key" in msg and "  - outputs.plots: unknown key" in msg


def test_malformed_yaml_gives_line_and_column(write_scenario):
    path = write_scenario("version: 1\nname: tiny\nfleet: {sites: [\n")
    msg = config_error(path)
    assert msg.startswith(f"{path}: malformed YAML at line ") and ", column " in msg


@pytest.mark.parametrize("text, kind", [("- version: 1\n- name: tiny\n", "list"), ("just words\n", "str"), ("", "NoneType")])
def test_the_top_level_must_be_a_mapping(write_scenario, text, kind):
    assert "top level must be a mapping" in config_error(write_scenario(text)) and kind in config_error(write_scenario(text))


# --- message sizes against links and broker --------------------------------------------------

P = (22 * 32 + 32 + 32 * 32 + 32 + 32 * 4 + 4) + (22 * 32 + 32 + 32 * 32 + 32 + 32 * 1 + 1)
"""One device's parameters, actor (22 features -> 32 -> 32 -> 4 levels) and critic (-> 1): 3,749."""
ONE_ARRAY = 21 + 10 + 4
"""Codec bytes of a message of one 1-D array besides its values: header, descriptor, CRC."""


def test_learner_messages_a_link_cannot_carry_are_refused_naming_devices_limit_and_what_fits():
    # thermostats-small-v1: site north has 50 devices, 20 % of them (10) on LTE-M: 8188 - 100 bytes of headers
    msg = config_error("thermostats-small-v1", ["learner.name=diffusion-v1"])
    assert f"messages of {ONE_ARRAY + 4 * P:,} bytes" in msg  # 15,031
    assert "the 'lte-m' link's max_payload_bytes (8,088) of 10 devices" in msg and "'wifi'" not in msg
    assert f"learner.params.comm.dtype=float16 ({ONE_ARRAY + 2 * P:,} bytes)" in msg  # 7,533
    assert f"learner.params.comm.dtype=int8 ({ONE_ARRAY + P:,} bytes)" in msg  # 3,784
    assert load_scenario("thermostats-small-v1", ["learner.name=diffusion-v1", "learner.params.comm.dtype=float16"])


def test_the_broker_limit_and_the_collector_link_count_too(tiny_scenario_file):
    msg = config_error(tiny_scenario_file, ["learner.name=diffusion-v1", "network.broker.max_packet_bytes=4000"])
    assert "15,031 bytes exceed network.broker.max_packet_bytes (4,000)" in msg and "comm.dtype=int8 (3,784 bytes)" in msg
    assert "float16" not in msg  # 7,533 bytes do not fit either
    # the centralized learner's experience goes up to the collector: T = 8 transitions of 22 features in float16
    # (observations (9, 22), actions (8,), rewards (8,)): 21 + 3 descriptors (14 + 10 + 10) + 2 * (198 + 8 + 8) + 4
    experience = 21 + 34 + 2 * (9 * 22 + 8 + 8) + 4
    msg = config_error(tiny_scenario_file, ["learner.name=centralized-v1", "network.collector_link=lora"])
    assert f"(centralized-v1, experience messages): messages of {experience} bytes exceed the collector's 'lora' link" in msg
    assert "no single setting fits" in msg.lower()
    # a learner of the devices alone (diffusion) is not checked against the collector's link
    assert load_scenario(tiny_scenario_file, ["learner.name=diffusion-v1", "network.collector_link=lora",
                                              "workloads.telemetry.enabled=false"])


def test_a_class_whose_share_rounds_to_no_device_is_not_checked(tiny_scenario_file):
    # site north's 3 devices: shares 0.9 and 0.1 give 2.7 and 0.3 devices, rounded to 3 and 0 (largest remainder)
    sc = load_scenario(tiny_scenario_file, ["learner.name=diffusion-v1", "fleet.sites[0].network={wifi: 0.9, lte-m: 0.1}"])
    assert sc.fleet.sites[0].class_counts == {"wifi": 3, "lte-m": 0}


# --- --set overrides -----------------------------------------------------------------------


def test_overrides_reach_nested_keys_and_parse_durations(tiny_scenario_file):
    scenario = load_scenario(tiny_scenario_file, ["workloads.telemetry.period=10min", "horizon=1d"])
    assert scenario.workloads.telemetry.period == 600 and scenario.horizon == 86400


@pytest.mark.parametrize("key", ["fleet.sites[0].devices", "fleet.sites.0.devices"])
def test_overrides_index_lists(tiny_scenario_file, key):
    scenario = load_scenario(tiny_scenario_file, [f"{key}=7"])
    assert [s.devices for s in scenario.fleet.sites] == [7, 3] and scenario.n_devices == 10


def test_override_values_are_read_as_yaml(tiny_scenario_file):
    scenario = load_scenario(tiny_scenario_file, ["fleet.hvac.power_levels_kw=[0, 1.5, 3]", "outputs.baseline=false"])
    assert scenario.fleet.hvac.power_levels_kw == (0.0, 1.5, 3.0)
    assert scenario.outputs.baseline is False


def test_overrides_create_missing_sections():
    assert apply_overrides({"a": 1}, ["b.c.d=2", "a=3"]) == {"a": 3, "b": {"c": {"d": 2}}}


@pytest.mark.parametrize("item, words", [("nokey", "write key=value"), ("=5", "write key=value"),
                                          ("fleet.sites[5].devices=1", "not an index"),
                                          ("fleet.hvac.power_levels_kw[1].kw=2", "is a value, not a section")])
def test_malformed_overrides_are_errors(tiny_raw, item, words):
    with pytest.raises(ConfigError, match="--set") as info:
        apply_overrides(tiny_raw, [item])
    assert words in str(info.value)


def test_an_override_below_a_value_fails_validation_at_that_value(tiny_scenario_file):
    assert "  - name: Input should be a valid string" in config_error(tiny_scenario_file, ["name.part=x"])


def test_an_override_creating_an_unknown_key_is_rejected(tiny_scenario_file):
    assert "outputs.colour: unknown key" in config_error(tiny_scenario_file, ["outputs.colour=red"])


def test_the_seed_argument_overrides_the_file_and_set(tiny_scenario_file):
    assert load_scenario(tiny_scenario_file).seed == 0
    assert load_scenario(tiny_scenario_file, seed=42).seed == 42
    assert load_scenario(tiny_scenario_file, ["seed=5"], seed=42).seed == 42


# --- link profiles -----------------------------------------------------------------------


def test_a_profile_override_changes_one_field(tiny_scenario_file):
    profiles = load_scenario(tiny_scenario_file, ["network.profiles.wifi.latency_s=50ms"]).network.profiles
    assert profiles["wifi"] == DEFAULT_PROFILES["wifi"].model_copy(update={"latency_s": 0.05})
    assert {name: p for name, p in profiles.items() if name != "wifi"} == {
        name: p for name, p in DEFAULT_PROFILES.items() if name != "wifi"
    }


def test_a_loss_override_merges_into_the_same_model_and_replaces_another(tiny_scenario_file):
    merged = load_scenario(tiny_scenario_file, ["network.profiles.nb-iot.loss.loss_bad=0.9"]).network.profiles["nb-iot"]
    assert merged.loss == GilbertElliottLoss(p_good_to_bad=0.01, p_bad_to_good=0.25, loss_good=0.005, loss_bad=0.9)
    replaced = load_scenario(tiny_scenario_file, ["network.profiles.nb-iot.loss={model: independent, p: 0.1}"]).network.profiles["nb-iot"]
    assert replaced.loss == IndependentLoss(p=0.1) and replaced.up_bps == DEFAULT_PROFILES["nb-iot"].up_bps


def test_a_new_profile_needs_every_field(tiny_scenario_file):
    msg = config_error(tiny_scenario_file, ["network.profiles.sat={latency_s: 300ms}"])
    for field in ("jitter_s", "up_bps", "down_bps", "max_payload_bytes", "overhead_bytes"):
        assert f"network.profiles.sat.{field}: required but missing" in msg
    scenario = load_scenario(tiny_scenario_file, [f"network.profiles.sat={SAT}", "fleet.sites[0].network={sat: 1.0}"])
    assert scenario.network.profiles["sat"].latency_s == 0.3 and set(DEFAULT_PROFILES) < set(scenario.network.profiles)


# --- EPW weather -------------------------------------------------------------------------


def test_an_epw_path_is_resolved_against_the_scenario_folder(tiny_raw, write_scenario, tmp_path, monkeypatch):
    tiny_raw["weather"] = {"source": "epw", "path": "weather/x.epw"}
    path = write_scenario(tiny_raw)
    monkeypatch.chdir(tmp_path.parent)
    scenario = load_scenario(path)
    assert scenario.weather == EpwWeatherConfig(path=str(tmp_path / "weather" / "x.epw"))
    rerun = tmp_path.parent / f"{tmp_path.name}-rerun.yaml"
    rerun.write_text(dump_scenario(scenario))
    assert load_scenario(rerun) == scenario


def test_a_missing_epw_fails_when_the_simulation_is_built(tiny_raw, write_scenario, tmp_path):
    from fleet.sim.engine import Simulation

    tiny_raw["weather"] = {"source": "epw", "path": "x.epw"}
    scenario = load_scenario(write_scenario(tiny_raw))
    with pytest.raises(ConfigError, match="does not exist") as info:
        Simulation(scenario)
    assert str(tmp_path / "x.epw") in str(info.value)
    write_epw(tmp_path / "x.epw", np.full(8760, 5.0))
    assert Simulation(scenario).world.n == 6
