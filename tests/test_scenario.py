"""Scenario files: the shipped ones load and round-trip; every bad input names its field path."""

import os
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.config import EpwWeatherConfig
from devices.weather import write_epw
from fleet.errors import ConfigError
from fleet.net.profiles import DEFAULT_PROFILES, GilbertElliottLoss, IndependentLoss
from fleet.scenario import (
    MAX_SCENARIO_BYTES,
    FleetConfig,
    Scenario,
    SiteConfig,
    apply_overrides,
    dump_scenario,
    list_scenarios,
    load_scenario,
)

SHIPPED = list_scenarios()
SAT = "{latency_s: 300ms, jitter_s: 50ms, up_bps: 1e5, down_bps: 1e6, max_payload_bytes: 4096, overhead_bytes: 120}"


def config_error(path, overrides=(), **kwargs) -> str:
    """The message of the ConfigError that loading ``path`` must raise."""
    with pytest.raises(ConfigError) as info:
        load_scenario(path, list(overrides), **kwargs)
    return str(info.value)


# --- the shipped scenarios ---------------------------------------------------------------


def test_six_scenarios_are_shipped():
    assert [name for name, _, _ in SHIPPED] == [
        "city-10k-v1",
        "feeder-peak-v1",
        "nbiot-lossy-v1",
        "thermostats-cold-v1",
        "thermostats-small-v1",
        "thermostats-small-v2",
    ]


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
    "negative capacitance": (
        ["fleet.building.capacitance_kwh_per_c=-5"],
        ["fleet.building.capacitance_kwh_per_c", "(0, inf]"],
    ),
    "zero capacitance": (
        ["fleet.building.capacitance_kwh_per_c=0"],
        ["fleet.building.capacitance_kwh_per_c", "(0, inf]"],
    ),
    "uniform capacitance below 0": (
        ["fleet.building.capacitance_kwh_per_c={dist: uniform, low: -1, high: 8}"],
        ["fleet.building.capacitance_kwh_per_c", "(0, inf]", "[-1.0, 8.0]"],
    ),
    "unclipped normal capacitance": (
        ["fleet.building.capacitance_kwh_per_c={dist: normal, mean: 6, std: 1}"],
        ["fleet.building.capacitance_kwh_per_c", "clip bounds"],
    ),
    "zero bandwidth": (["network.profiles.wifi.up_bps=0"], ["network.profiles.wifi.up_bps", "greater than 0"]),
    "bad loss probability": (
        ["network.profiles.nb-iot.loss.p_bad_to_good=0"],
        ["network.profiles.nb-iot.loss.p_bad_to_good"],
    ),
    "bad weather value": (["weather.mean_c=mild"], ["weather.mean_c", "'mild'"]),
    "list where a mapping belongs": (["fleet.building=[4, 10]"], ["fleet.building", "dictionary"]),
    "list for a site": (["fleet.sites[0]=[north, 3]"], ["fleet.sites[0]", "dictionary"]),
    "version 2": (["version=2"], ["version", "should be 1"]),
    "horizon shorter than a tick": (["horizon=30s"], ["horizon", "control_period"]),
    "unknown network class": (
        ["fleet.sites[0].network={satellite: 1.0}"],
        ["fleet.sites[0].network", "'satellite'", "known: ethernet, lora, lte-m, nb-iot, wifi"],
    ),
    "shares not summing to 1": (
        ["fleet.sites[0].network={wifi: 0.5, lte-m: 0.2}"],
        ["fleet.sites[0].network", "sum to 1", "0.7"],
    ),
    "duplicate site names": (["fleet.sites[1].name=north"], ["fleet.sites", "unique", "north"]),
    "link cut of an unknown site": (
        ["network.link_cuts=[{start: 1h, end: 2h, sites: [east]}]"],
        ["network.link_cuts[0].sites", "east"],
    ),
    "sample larger than the fleet": (["outputs.sample_devices=7"], ["outputs.sample_devices", "fleet size (6)"]),
    "install at the horizon": (
        ["fleet.installs=[{at: 2h, fraction: 0.5}]"],
        ["fleet.installs[0].at", "horizon (7200 s)"],
    ),
    "install of a device not in the fleet": (
        ["fleet.installs=[{at: 1h, devices: [0]}, {at: 1h, devices: [2, 6]}]"],
        ["fleet.installs[1].devices", "index 6 out of range", "6 devices"],
    ),
    "install by share and by list": (
        ["fleet.installs=[{at: 1h, fraction: 0.5, devices: [1]}]"],
        ["fleet.installs[0]", "either 'fraction'", "not both or none"],
    ),
    "install naming no devices": (["fleet.installs=[{at: 1h}]"], ["fleet.installs[0]", "either 'fraction'"]),
    "install of a device twice": (
        ["fleet.installs=[{at: 1h, devices: [3, 1, 3]}]"],
        ["fleet.installs[0]", "3 listed twice"],
    ),
    "install of more than the fleet": (
        ["fleet.installs=[{at: 1h, fraction: 1.5}]"],
        ["fleet.installs[0].fraction", "less than or equal to 1"],
    ),
    "odd ring degree": (["topology={kind: ring, degree: 1}"], ["topology.degree", "even", "'ring'"]),
    "degree not below the group": (["topology.degree=4"], ["topology.degree", "smallest group of devices (3)"]),
    "consensus too large for lora": (
        ["fleet.sites[1].network={lora: 1.0}", "workloads.consensus.dim=64"],
        [
            "workloads.consensus",
            "'lora'",
            "max_payload_bytes (115) of 3 devices",
            "workloads.consensus.dtype=int8 (99 bytes)",
        ],
    ),
    "unregistered learner": (
        ["learner.name=q-learning-v9"],
        ["learner.name", "'q-learning-v9'", "known:", "diffusion-v1", "rule-based-v1"],
    ),
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


@pytest.mark.parametrize(
    "text, kind", [("- version: 1\n- name: tiny\n", "list"), ("just words\n", "str"), ("", "NoneType")]
)
def test_the_top_level_must_be_a_mapping(write_scenario, text, kind):
    assert "top level must be a mapping" in config_error(write_scenario(text)) and kind in config_error(
        write_scenario(text)
    )


# --- bounds: what a scenario file may cost to read and check ---------------------------------


def peak_bytes(fn, *args):
    """The most memory Python held (tracemalloc) while ``fn(*args)`` ran, and what it raised."""
    tracemalloc.start()
    try:
        fn(*args)
        raised = None
    except Exception as e:  # noqa: BLE001 - returned to the test, which says what it expects
        raised = e
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, raised


def test_a_fleet_over_the_device_bound_is_refused_before_any_device_is_named(tiny_raw, write_scenario):
    for site in tiny_raw["fleet"]["sites"]:
        site["devices"] = 600_000  # each site below a million, 1.2 million in all
    assert "1,200,000 devices in all, more than 1,000,000" in config_error(write_scenario(tiny_raw))
    tiny_raw["fleet"]["sites"] = [{"name": f"s{i}", "devices": 1_000_000, "feeder_kw": 1.0} for i in range(200)]
    peak, raised = peak_bytes(load_scenario, write_scenario(tiny_raw))
    assert isinstance(raised, ConfigError), raised
    assert "200,000,000 devices in all" in str(raised) and "FLEET_MAX_DEVICES" in str(raised)
    assert peak < 16 * 2**20  # the names of 200 million devices would take 12 GB


def test_the_device_bound_is_raised_by_an_environment_variable(tiny_raw, write_scenario, monkeypatch):
    for site in tiny_raw["fleet"]["sites"]:
        site["devices"] = 600_000
    tiny_raw["fleet"]["external"] = ["d1199999"]
    monkeypatch.setenv("FLEET_MAX_DEVICES", "1200000")
    peak, raised = peak_bytes(load_scenario, write_scenario(tiny_raw))
    assert raised is None and peak < 16 * 2**20  # checking an external device lists no names
    assert load_scenario(write_scenario(tiny_raw)).n_devices == 1_200_000
    monkeypatch.setenv("FLEET_MAX_DEVICES", "a lot")
    assert "FLEET_MAX_DEVICES='a lot'" in config_error(write_scenario(tiny_raw))


class Name(str):
    """A site name that counts the comparisons made with it."""

    compared = 0

    def __eq__(self, other):
        Name.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_site_names_are_checked_for_repeats_in_linear_time():
    n = 2000
    sites = [SiteConfig.model_construct(name=Name(f"s{i}"), devices=1, feeder_kw=1.0) for i in range(n)]
    Name.compared = 0
    FleetConfig(sites=sites)
    assert Name.compared <= n  # comparing every pair would take n (n - 1) / 2, 2 million


def test_a_scenario_file_over_1_mib_is_refused(tiny_raw, write_scenario):
    text = yaml.safe_dump(tiny_raw) + "# padding\n" * (MAX_SCENARIO_BYTES // 10)
    assert MAX_SCENARIO_BYTES == 2**20 and len(text) > 2**20
    assert f"is larger than {2**20:,} bytes" in config_error(write_scenario(text))


@pytest.mark.timeout(60)  # a hang guard: a FIFO without a writer blocks its reader for ever
def test_a_fifo_is_not_a_scenario_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    assert "not a file" in config_error(tmp_path / "pipe.yaml")


def test_a_billion_laughs_is_refused_at_its_first_alias(tiny_raw):
    lines = yaml.safe_dump(tiny_raw).splitlines()
    lines += ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]  # i: 9**9 lols
    first = len(lines) - 7  # the line "b: &b [*a, ...]", 1-based
    peak, raised = peak_bytes(_load_text, "\n".join(lines) + "\n")
    assert isinstance(raised, ConfigError), raised
    assert f"line {first}, column {len('b: &b [') + 1}: aliases (*name) are not accepted" in str(raised)
    assert peak < 16 * 2**20


def _load_text(text):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "s.yaml").write_text(text)
        load_scenario(Path(folder) / "s.yaml")


def test_deep_nesting_is_refused(write_scenario):
    msg = config_error(write_scenario("version: 1\nfleet: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    assert "line 2" in msg and "nested deeper than 32 levels" in msg


@pytest.mark.parametrize(
    "key, text, words",
    [
        ("start_day", "2024-13-45", ["'2024-13-45' is not a valid timestamp (month must be in 1..12)"]),
        ("seed", "9" * 5000, [f"'{'9' * 40}'... is not a valid int", "4300 digits"]),
    ],
)
def test_a_scalar_yaml_cannot_build_is_an_error_at_its_line(tiny_raw, write_scenario, key, text, words):
    lines = yaml.safe_dump(tiny_raw, sort_keys=False).splitlines()
    line = next(i for i, s in enumerate(lines, start=1) if s.startswith(f"{key}:"))
    lines[line - 1] = f"{key}: {text}"
    msg = config_error(write_scenario("\n".join(lines) + "\n"))
    for word in [f"line {line}, column {len(key) + 3}", *words]:
        assert word in msg


def test_a_duration_longer_than_64_characters_is_refused(tiny_scenario_file):
    msg = config_error(tiny_scenario_file, ["horizon=" + "1" * 100 + "!"])
    assert "horizon: a duration is written in at most 64 characters" in msg


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
    assert (
        "15,031 bytes exceed network.broker.max_packet_bytes (4,000)" in msg and "comm.dtype=int8 (3,784 bytes)" in msg
    )
    assert "float16" not in msg  # 7,533 bytes do not fit either
    # the centralized learner's experience goes up to the collector: T = 8 transitions of 22 features in float16
    # (observations (9, 22), actions (8,), rewards (8,), log-probabilities (8,)): 21 + 4 descriptors
    # (14 + 10 + 10 + 10) + 2 * (198 + 8 + 8 + 8) + 4
    experience = 21 + 44 + 2 * (9 * 22 + 8 + 8 + 8) + 4
    msg = config_error(tiny_scenario_file, ["learner.name=centralized-v1", "network.collector_link=lora"])
    assert (
        f"(centralized-v1, experience messages): messages of {experience} bytes exceed the collector's 'lora' link"
        in msg
    )
    assert "no single setting fits" in msg.lower()
    # a learner of the devices alone (diffusion) is not checked against the collector's link
    assert load_scenario(
        tiny_scenario_file,
        ["learner.name=diffusion-v1", "network.collector_link=lora", "workloads.telemetry.enabled=false"],
    )


def test_a_class_whose_share_rounds_to_no_device_is_not_checked(tiny_scenario_file):
    # site north's 3 devices: shares 0.9 and 0.1 give 2.7 and 0.3 devices, rounded to 3 and 0 (largest remainder)
    sc = load_scenario(
        tiny_scenario_file, ["learner.name=diffusion-v1", "fleet.sites[0].network={wifi: 0.9, lte-m: 0.1}"]
    )
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


@pytest.mark.parametrize(
    "item, words",
    [
        ("nokey", "write key=value"),
        ("=5", "write key=value"),
        ("fleet.sites[5].devices=1", "not an index"),
        ("fleet.hvac.power_levels_kw[1].kw=2", "is a value, not a section"),
    ],
)
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
    replaced = load_scenario(
        tiny_scenario_file, ["network.profiles.nb-iot.loss={model: independent, p: 0.1}"]
    ).network.profiles["nb-iot"]
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


# --- fuzz: a mutated scenario raises ConfigError or loads, in bounded memory ----------------------

TOKENS = [
    "9" * 5000,
    "2024-13-45",
    "[" * 5000,
    "1" * 100 + "!",
    "*a",
    "&a ",
    "<<: *a",
    "!!binary ",
    "!!python/object/apply:os.system ",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "? ",
    "|",
    "\n",
    "\n  ",
    "\t",
    "#",
    "'",
    '"',
    "~",
    ".nan",
    "-.inf",
    "1e999",
    "0x1F",
    "1_000",
    "1:30:00",
    "\x00",
    "\ufeff",
    "\x85",
    "%YAML 1.1\n---\n",
    "---\n",
    "1000000000",
    "-1",
    "d99999",
    "epw",
]
"""What a mutation writes, the likeliest first (Hypothesis favours the start of a list): scalars that are
hard to build, aliases and tags, YAML syntax, values the scenarios use."""
SHIPPED_TEXTS = [path.read_text() for _, _, path in SHIPPED]
EDITS = st.lists(
    st.tuples(
        st.sampled_from(["delete", "insert", "replace", "repeat"]),
        st.integers(0, 3000),
        st.integers(0, 40),
        st.sampled_from(TOKENS),
    ),
    min_size=1,
    max_size=4,
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**80), 2**1100) | st.floats() | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
"""A value written out by yaml.safe_dump, nested or not."""
REPLACEMENTS = st.lists(st.tuples(st.integers(0, 500), st.sampled_from(TOKENS) | VALUES), min_size=1, max_size=3)


def mutated(text: str, edits) -> str:
    """``text`` with each edit applied at the start of a YAML token (after a space, a newline or
    ``-:[{,``): delete a span, insert a token, replace a span by it, repeat a span."""
    for op, at, length, token in edits:
        starts = [0] + [k + 1 for k, c in enumerate(text) if c in " \n-:[{,"]
        i = starts[at % len(starts)]
        j = min(len(text), i + length)
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + token + text[i:]
        elif op == "repeat":
            text = text[:i] + text[i:j] * 4 + text[j:]
        else:
            text = text[:i] + token + text[j:]
    return text


def replaced(text: str, replacements) -> str:
    """``text`` with scalars (keys or values, picked by index) replaced, keeping the YAML well formed:
    a token as a plain scalar where the emitter allows (quoted where it must), or a value dumped."""
    events = list(yaml.parse(text))
    for index, new in replacements:
        scalars = [k for k, event in enumerate(events) if isinstance(event, yaml.ScalarEvent)]
        k = scalars[index % len(scalars)]
        if isinstance(new, str):
            events[k : k + 1] = [yaml.ScalarEvent(None, None, (True, True), new)]
        else:
            events[k : k + 1] = list(yaml.parse(yaml.safe_dump(new)))[2:-2]  # without the stream and document events
    return yaml.emit(events, allow_unicode=True)


@pytest.mark.timeout(600)  # a hang guard for the whole test, not a measurement
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    text=st.sampled_from(SHIPPED_TEXTS),
    mutation=st.tuples(st.just(mutated), EDITS) | st.tuples(st.just(replaced), REPLACEMENTS),
)
def test_fuzz_a_mutated_scenario_file(tmp_path, text, mutation):
    """Shipped scenarios with their text edited (mostly malformed YAML) or scalars replaced
    (well-formed YAML, values of every kind): the loader raises nothing but ConfigError."""
    mutate, changes = mutation
    path = tmp_path / "mutated.yaml"
    path.write_bytes(mutate(text, changes).encode("utf-8", "surrogatepass"))
    peak, raised = peak_bytes(load_scenario, path)
    assert raised is None or isinstance(raised, ConfigError), repr(raised)
    assert peak < 32 * 2**20


def test_horizon_beyond_a_century_is_refused(tiny_scenario_file):
    with pytest.raises(ConfigError, match="horizon"):
        load_scenario(tiny_scenario_file, overrides=["horizon=1e308"])
