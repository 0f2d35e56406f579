"""Learner defaults, presets and shipped policies: the settings the learning study found, by name."""

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import torch
import yaml

from fleet.errors import ConfigError
from fleet.learners import REGISTRY, make_learner
from fleet.learners.shipped import POLICIES, policy_path, presets
from fleet.scenario import apply_overrides, dump_scenario, load_scenario
from fleet.statefile import load
from fleet.testing import _context

REPO = Path(__file__).resolve().parents[2]


@cache
def study_variants() -> dict[str, dict]:
    """The learning study's variants (benchmarks/studies/learning-study.yaml): name -> overrides."""
    return yaml.safe_load((REPO / "benchmarks" / "studies" / "learning-study.yaml").read_text())["variants"]


def study_config(variant: str):
    """The learner config of a study variant, the study's policy file by its shipped name, and
    its parameters' encoding as the learner's default (the study sends float16 so that LTE-M
    links carry them; a learner's default is float32)."""
    sets = study_variants()[variant]
    name = sets["learner.name"]
    params = apply_overrides(
        {},
        [
            f"{k.removeprefix('learner.params.')}={v}"
            for k, v in sets.items()
            if k.startswith("learner.params.") and "dtype" not in k
        ],
    )
    if params.get("init_policy") == POLICIES["clone-v1"]:
        params["init_policy"] = "clone-v1"
    return name, REGISTRY[name].config_cls.model_validate(params)


@pytest.mark.parametrize("variant", ["diffusion", "centralized", "independent-adam"])
def test_each_learners_defaults_are_its_study_settings_from_a_random_start(variant):
    name, config = study_config(variant)
    assert REGISTRY[name].config_cls() == config


@pytest.mark.parametrize(
    "variant, preset",
    [
        ("diffusion-imitation-lr0.03", "clone-finetune"),
        ("centralized-imitation-lr3e-4", "clone-finetune"),
        ("independent-imitation-adam", "clone-finetune"),
        ("imitation-frozen", "clone-frozen"),
        ("rule-based-preheat", "preheat"),
    ],
)
def test_presets_are_the_study_variants_that_beat_the_thermostat(variant, preset):
    name, config = study_config(variant)
    scenario = load_scenario(
        "thermostats-small-v1",
        [f"learner.name={name}", f"learner.preset={preset}", "fleet.sites[0].network={wifi: 1.0}"],
    )
    assert scenario.learner.params == config.model_dump(mode="json")


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_shipped_policy_name_starts_every_device_from_its_file(name):
    assert Path(policy_path(name)) == REPO / POLICIES[name] and policy_path("my.pt") == "my.pt"
    saved = load(Path(policy_path(name)), "policy", 1 << 26)["layers"]
    learner = make_learner("independent-v1", {"init_policy": name}, _context(3, 0))
    theirs = [t for layer in saved for t in (layer["weight"], layer["bias"])]
    assert len(theirs) == len(learner.core.actor.parameters)
    for mine, t in zip(learner.core.actor.parameters, theirs):
        assert torch.equal(mine.detach(), t.expand_as(mine))


def test_the_resolved_scenario_holds_every_learner_parameter_and_reloads_to_itself(tmp_path):
    sc = load_scenario(
        "thermostats-small-v1",
        [
            "learner.name=diffusion-v1",
            "learner.preset=clone-finetune",
            "learner.params.comm.dtype=float16",
            "learner.params.hidden=32",
        ],
    )
    params = sc.learner.params
    assert set(params) == set(REGISTRY["diffusion-v1"].config_cls.model_fields)  # every field, defaults included
    # preset over defaults
    assert (params["init_policy"], params["lr"], params["optimizer"]) == ("clone-v1", 0.006, "sgd")
    assert params["comm"] == {**REGISTRY["diffusion-v1"].config_cls().comm.model_dump(mode="json"), "dtype": "float16"}
    path = tmp_path / "scenario.yaml"
    path.write_text(dump_scenario(sc))
    assert load_scenario(path) == sc


def test_params_override_single_preset_keys_and_an_unknown_preset_lists_the_known():
    sc = load_scenario(
        "thermostats-small-v1",
        [
            "learner.name=centralized-v1",
            "learner.preset=clone-finetune",
            "learner.params.lr=0.001",
            "learner.params.params_dtype=float16",
        ],
    )
    assert (sc.learner.params["lr"], sc.learner.params["init_policy"]) == (0.001, "clone-v1")
    with pytest.raises(
        ConfigError,
        match="learner: preset 'fast' is not a preset of centralized-v1; "
        "known presets of centralized-v1: clone-finetune",
    ):
        load_scenario("thermostats-small-v1", ["learner.name=centralized-v1", "learner.preset=fast"])


def test_every_preset_is_valid_for_its_learner():
    for learner, named in presets().items():
        for params in named.values():
            REGISTRY[learner].config_cls.model_validate(params)


def test_the_planners_city_preset_is_the_frontier_variant_chosen_and_plans_two_fifteenths_of_the_default():
    """planner-v1's ``city`` preset is ``replan-6h-grid-0.5`` of benchmarks/studies/planner-frontier.yaml. Its
    programme per device-day is ticks x grid points x plans a day: 96 x 32 x 4 against the defaults' 96 x 80 x 12
    (15-minute ticks over 24 h, a 12-28 degC grid by 0.5 or 0.2 degC, a plan every 6 or 2 h), 2/15 of the work."""
    study = yaml.safe_load((REPO / "benchmarks" / "studies" / "planner-frontier.yaml").read_text())
    sets = study["variants"]["replan-6h-grid-0.5"]
    chosen = {k.removeprefix("learner.params."): v for k, v in sets.items() if k != "learner.name"}
    config = REGISTRY["planner-v1"].config_cls.model_validate(chosen)
    scenario = load_scenario("thermostats-small-v1", ["learner.name=planner-v1", "learner.preset=city"])
    assert scenario.learner.params == config.model_dump(mode="json")
    ctx = replace(_context(2, 0), control_period_s=900.0)

    def work_per_day(params: dict) -> int:
        learner = make_learner("planner-v1", params, ctx)
        steps, _, points = learner.values.shape
        return (steps - 1) * points * (96 // learner.update_every)

    assert work_per_day({}) == 96 * 80 * 12
    assert work_per_day(scenario.learner.params) == 96 * 32 * 4 == work_per_day({}) * 2 // 15


def test_the_cooperative_feeder_preset_is_the_variant_the_feeder_study_reports():
    """cooperative-v1's ``feeder`` preset is the ``shielded-ter-iql-*`` variant of the 3-day feeder study."""
    study = yaml.safe_load((REPO / "benchmarks" / "studies" / "feeder-peak-guard-target-3d.yaml").read_text())
    chosen = REGISTRY["cooperative-v1"].config_cls.model_validate(
        study["variants"]["shielded-ter-iql-wifi-mix"]["learner.params"]
    )
    scenario = load_scenario("feeder-peak-v1", ["learner.name=cooperative-v1", "learner.preset=feeder"])
    assert scenario.learner.params == chosen.model_dump(mode="json")
    params = scenario.learner.params
    assert params["comfort_guard"] and params["ter"] and params["iql"] and not params["ier"]


def test_the_planner_teacher_preset_is_the_variant_reported_on_fresh_seeds():
    """diffusion-v1's ``planner-teacher`` is the ``teacher-w1.0`` variant of benchmarks/studies/teacher-w1.yaml."""
    study = yaml.safe_load((REPO / "benchmarks" / "studies" / "teacher-w1.yaml").read_text())
    sets = study["variants"]["teacher-w1.0"]
    chosen = {k.removeprefix("learner.params."): v for k, v in sets.items() if k.startswith("learner.params.")}
    chosen["comm"] = {"dtype": chosen.pop("comm.dtype")}
    config = REGISTRY["diffusion-v1"].config_cls.model_validate(chosen)
    scenario = load_scenario("thermostats-small-v1", ["learner.name=diffusion-v1", "learner.preset=planner-teacher"])
    assert scenario.learner.params == config.model_dump(mode="json")
    assert scenario.learner.params["teacher"]["planner"]["discomfort_per_degh"] == 1.0


def test_the_centralized_planner_teacher_preset_is_the_variant_reported_in_both_climates():
    """centralized-v1's ``planner-teacher`` is the variant of central-teacher-w1.yaml and central-teacher-cold.yaml."""
    for study_file in ("central-teacher-w1.yaml", "central-teacher-cold.yaml"):
        study = yaml.safe_load((REPO / "benchmarks" / "studies" / study_file).read_text())
        sets = study["variants"]["central-teacher-w1.0-lr0.003"]
        chosen = {k.removeprefix("learner.params."): v for k, v in sets.items() if k.startswith("learner.params.")}
        config = REGISTRY["centralized-v1"].config_cls.model_validate(chosen)
        preset = ["learner.name=centralized-v1", "learner.preset=planner-teacher"]
        assert load_scenario("thermostats-small-v1", preset).learner.params == config.model_dump(mode="json")
