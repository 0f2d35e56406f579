"""The project's own studies (benchmarks/studies/) stay valid studies of what they claim."""

from pathlib import Path

import pytest

from fleet.study import load_study

STUDIES = Path(__file__).resolve().parents[2] / "benchmarks" / "studies"


@pytest.mark.parametrize(
    "name", ["learning-study", "learning-study-80d-winter", "learning-study-confirm", "comm-study", "comm-study-more"]
)
def test_every_point_of_the_shipped_studies_is_a_valid_scenario(name):
    study = load_study(STUDIES / f"{name}.yaml")
    assert study.spec.report.reference == "rule-based"
    tail_days = study.spec.report.tail * study.runs[0].scenario.horizon / 86400
    assert tail_days == 5
    for run in study.runs:  # the train-then-test variants stop learning for exactly the tail
        until = run.scenario.learner.params.get("learn_until")
        assert until is None or until == study.runs[0].scenario.horizon - tail_days * 86400  # resolved: seconds


def test_the_planner_studies_report_over_the_forecast_on_seeds_that_their_tuning_never_used():
    tune = load_study(STUDIES / "planner-tune.yaml")
    assert tune.spec.seeds == (0, 1, 2, 3, 4)
    for name in ("planner-forecast", "planner-forecast-cold"):
        study = load_study(STUDIES / f"{name}.yaml")
        assert study.spec.seeds == (5, 6, 7, 8, 9), name
        assert study.spec.report.tail * study.runs[0].scenario.horizon == 5 * 86400, name  # the last 5 of 40 days
        for run in [*tune.runs, *study.runs]:
            assert (run.scenario.weather.forecast is None) == run.name.startswith("planner-persistence"), run.name
            assert run.scenario.control_period == 900, run.name


def test_the_confirming_study_remakes_the_main_studys_runs_on_its_first_five_seeds():
    main = {r.name: r.scenario for r in load_study(STUDIES / "learning-study.yaml").runs}
    confirm = load_study(STUDIES / "learning-study-confirm.yaml")
    assert confirm.spec.seeds == tuple(range(10))
    for run in confirm.runs:
        if run.seed < 5:
            assert run.scenario == main[run.name], run.name


def test_the_feeder_studies_report_on_seeds_that_their_tuning_never_used():
    tuning = ["feeder-tune", "feeder-tune-auction", "feeder-tune-auction-period", "feeder-tune-coop"]
    report = ["feeder-peak", "feeder-peak-thermostats"]
    tuned = {seed for name in tuning for seed in load_study(STUDIES / f"{name}.yaml").spec.seeds}
    for name in report:
        study = load_study(STUDIES / f"{name}.yaml")
        assert study.spec.seeds == (5, 6, 7, 8, 9) and not tuned & set(study.spec.seeds), name
        assert {run.scenario.horizon for run in study.runs} == {86400}, name  # one day, as the docs say


@pytest.mark.parametrize(
    "tuning, report",
    [
        ("feeder-tune-guard", "feeder-peak-coop-3d"),
        ("feeder-tune-ier", "feeder-peak-ier-3d"),
        ("feeder-tune-ier", "feeder-peak-ier-overloaded-3d"),
    ],
)
def test_the_guarded_feeder_studies_run_the_scenarios_3_days_on_seeds_that_their_tuning_never_used(tuning, report):
    tuned = set(load_study(STUDIES / f"{tuning}.yaml").spec.seeds)
    study = load_study(STUDIES / f"{report}.yaml")
    assert study.spec.seeds == (5, 6, 7, 8, 9) and not tuned & set(study.spec.seeds)
    assert {run.scenario.horizon for run in study.runs} == {3 * 86400}
    params = {run.name: run.scenario.learner.params for run in study.runs}
    assert all(p["comfort_guard"] for p in params.values())
    for name, p in params.items():  # each learner alike on both networks
        assert p == params[name.replace("nbiot-lossy", "wifi-mix")], name


def test_the_ier_report_runs_the_point_its_tuning_chose():
    tuned = {run.point: run.scenario.learner.params for run in load_study(STUDIES / "feeder-tune-ier.yaml").runs}
    for run in load_study(STUDIES / "feeder-peak-ier-3d.yaml").runs:
        assert run.scenario.learner.params == tuned["coordination-never"], run.name


def test_the_guard_target_study_re_runs_the_guarded_points_as_they_were_reported():
    """Nothing re-tuned: each shielded-* run is the scenario of the run it re-makes, its name without the prefix."""
    before = {
        r.name: r.scenario
        for name in ("feeder-peak-ier-3d", "feeder-peak-coop-3d")
        for r in load_study(STUDIES / f"{name}.yaml").runs
    }
    assert before["dqn-wifi-mix-seed5"] != before["ter-iql-wifi-mix-seed5"]  # the scenarios tell the points apart
    study = load_study(STUDIES / "feeder-peak-guard-target-3d.yaml")
    points = {f"{p}-{net}" for p in ("ier-alone", "ter-iql", "dqn") for net in ("wifi-mix", "nbiot-lossy")}
    assert {r.point.removeprefix("shielded-") for r in study.runs} == points and study.spec.seeds == (5, 6, 7, 8, 9)
    for run in study.runs:
        assert run.scenario == before[run.name.removeprefix("shielded-")], run.name


def test_the_equal_comfort_studies_hold_both_learners_to_one_limit_chosen_on_other_seeds():
    tune = {r.point: r.scenario for r in load_study(STUDIES / "diff-cost-tune.yaml").runs}
    assert {r.seed for r in load_study(STUDIES / "diff-cost-tune.yaml").runs} == {0, 1, 2, 3, 4}
    for name in ("diff-cost", "diff-cost-cold"):
        study = load_study(STUDIES / f"{name}.yaml")
        assert study.spec.seeds == (5, 6, 7, 8, 9), name
        assert study.spec.report.tail * study.runs[0].scenario.horizon == 5 * 86400, name  # the last 5 of 40 days
        learners = [r.scenario for r in study.runs if r.point != "rule-based"]
        assert {s.learner.name for s in learners} == {"independent-v1", "diffusion-v1"}, name
        for s in learners:  # discomfort only a constraint, at one limit for both learners
            assert s.reward.discomfort_per_degh == 0, name
            assert s.learner.params["discomfort_limit"] == learners[0].learner.params["discomfort_limit"], name
    # the report's learners are tuning variants as they were tried on seeds 0-4 (the small climate's limit)
    report = {r.point: r.scenario for r in load_study(STUDIES / "diff-cost.yaml").runs}
    for point, tuned in (("independent", "independent-limit-lr1e-3"), ("diffusion", "diffusion-limit")):
        assert report[point].learner == tune[tuned].learner, point


def test_the_overestimate_screen_changes_only_the_target_and_the_twins_next_observation():
    """feeder-tune-ier-q: its baselines are feeder-tune-ier's runs, and each candidate is one of them with only
    double_q and ier_next_obs set."""
    tuned = {r.name: r.scenario for r in load_study(STUDIES / "feeder-tune-ier.yaml").runs}
    study = load_study(STUDIES / "feeder-tune-ier-q.yaml")
    assert study.spec.seeds == (0, 1, 2)
    for run in study.runs:
        base = tuned[
            run.name.replace(run.point, "ter-iql" if run.point.startswith("ter-iql") else "coordination-never")
        ]
        params, base_params = dict(run.scenario.learner.params), dict(base.learner.params)
        new = {k for k in ("double_q", "ier_next_obs") if params.pop(k) != base_params.pop(k)}
        assert params == base_params and run.scenario.horizon == base.horizon, run.name
        assert bool(new) == (run.point not in ("ter-iql", "coordination-never")), run.name
        assert new or run.scenario == base, run.name
