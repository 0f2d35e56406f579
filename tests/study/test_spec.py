"""The study file: points from variants and axes, through the --set mechanism, checked up front."""

import pytest

from fleet.errors import ConfigError
from fleet.scenario import load_scenario
from fleet.study import load_study


def test_points_are_the_variants_crossed_with_each_axis_in_order(write_study):
    study = load_study(
        write_study(
            {
                "axes": {
                    "topology.kind": ["ring", "complete"],
                    "network": {
                        "wifi": {"fleet.sites[0].network": {"wifi": 1.0}},
                        "lte": {"fleet.sites[0].network": {"lte-m": 1.0}},
                    },
                },
                "seeds": "3-4",
            }
        )
    )
    assert [p.name for p in study.points] == [
        f"{v}_{k}_{n}" for v in ("rule-based", "independent") for k in ("ring", "complete") for n in ("wifi", "lte")
    ]
    assert [r.name for r in study.runs[:2]] == ["rule-based_ring_wifi-seed3", "rule-based_ring_wifi-seed4"]
    run = next(r for r in study.runs if r.name == "independent_complete_lte-seed4")
    expected = load_scenario(
        study.path.parent / "tiny.yaml",
        ["learner.name=independent-v1", "topology.kind=complete", "fleet.sites[0].network={lte-m: 1.0}"],
        seed=4,
    )
    assert run.scenario == expected


def test_a_value_axis_labels_numbers_with_the_field_name(write_study):
    study = load_study(
        write_study(
            {
                "variants": {},
                "axes": {"learner.name": ["independent-v1"], "learner.params.lr": [0.3, 0.03]},
                "report": {},
            }
        )
    )
    assert [p.name for p in study.points] == ["independent-v1_lr0.3", "independent-v1_lr0.03"]


def test_a_study_of_no_variant_and_no_axis_is_one_point_named_after_it(write_study):
    study = load_study(write_study({"variants": {}, "report": {}}))
    assert [r.name for r in study.runs] == ["tiny-study-seed0", "tiny-study-seed1"]


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"axes": {"learner.nmae": ["x"]}}, ["2 of 2 points", "learner.nmae: unknown key"]),
        (
            {"axes": {"reward.discomfort_per_degh": [1, -1]}},
            [
                "2 of 4 points",
                "point rule-based_discomfort_per_degh-1",
                "point independent_discomfort_per_degh-1",
                "greater than or equal to 0",
            ],
        ),
        (
            {"axes": {"topology.degree": [2, 50]}},
            ["2 of 4 points", "topology.degree (50) must be smaller than the smallest group"],
        ),
        (
            {"axes": {"learner.params.lr": [-1]}, "variants": {"a": {"learner.name": "independent-v1"}}},
            ["point a_lr-1", "learner.params.lr"],
        ),
        (
            {"axes": {"learner.name": ["diffusion-v1"]}},
            ["learner.name is set by both variants.rule-based and axes.learner.name"],
        ),
        (
            {"variants": {"a": {"learner.name": "independent-v1"}, "b": {"learner.name": "independent-v1"}}},
            ["points a and b make the same scenario"],
        ),
        (
            {"report": {"reference": "diffusion"}},
            ["report.reference", "not a variant nor an axis label", "independent, rule-based"],
        ),
        (
            {"report": {"pairs": [["independent", "diffusion"]]}},
            ["report.pairs", "'diffusion' is not a variant nor an axis label", "independent, rule-based"],
        ),
        ({"report": {"pairs": [["independent", "independent"]]}}, ["report.pairs", "two different labels"]),
        (
            {"axes": {"topology.kind": ["ring"]}, "report": {"pairs": [["independent", "ring"]]}},
            ["report.pairs: independent and ring are labels of different axes"],
        ),
        ({"axes": {"fleet.sites[0].network": [{"wifi": 1.0}]}}, ["no usable label", "give the axis a name"]),
        ({"seeds": "4-2"}, ["seeds"]),
        ({"seeds": [1, 1]}, ["a seed is listed twice"]),
        ({"report": {"metrics": ["tail.peak_kw"]}}, ["tail.<kpi> takes a cumulative KPI"]),
        ({"report": {"metrics": ["rewrd"]}}, ["'rewrd' is neither reward nor bytes_sent"]),
        ({"variants": {"a": {}, "A": {"learner.name": "independent-v1"}}, "report": {}}, ["differ only in case"]),
        ({"scenario": "nowhere.yaml"}, ["nowhere.yaml: no such scenario file"]),
        ({"runs": 3}, ["runs: unknown key"]),
    ],
)
def test_a_bad_study_is_refused_naming_every_failing_point(write_study, changes, words):
    with pytest.raises(ConfigError) as info:
        load_study(write_study(changes))
    for word in words:
        assert word in str(info.value)
