"""The marl-eval export, checked against marl-eval's documented layout, and the TensorBoard export.

marl-eval (``id-marl-eval`` 0.0.4) cannot be installed beside this project's pins: it requires
pandas==1.4.4, which has no wheel for Python 3.11 and no longer builds. So the file is checked
against the layout its README documents ("Data Structure for Raw Experiment data") and that
``marl_eval/utils/data_processing_utils.py::data_process_pipeline`` and
``marl_eval/utils/diagnose_data_errors.py::DiagnoseData`` of github.com/instadeepai/marl-eval read:
environment -> task -> algorithm -> run -> ``step_<i>`` holding ``step_count`` (an int) and
each metric as a list of numbers, then ``absolute_metrics``; keys lower case (the pipeline
lower-cases them); no comma in an algorithm name; the same algorithms on every task, the same
number of runs for every algorithm, the same steps in every run, the same metrics at every step
and in ``absolute_metrics`` (``DiagnoseData.check_metric`` compares those too).
"""

import json
import math

import numpy as np
import pytest

from fleet.study import load_study
from fleet.study.export import write_tensorboard
from fleet.study.folder import StudyFolder
from fleet.study.tables import curves, figures, load_runs


def check_marl_eval_layout(doc: dict) -> None:
    """Assert what marl-eval's loader needs of a raw-data file (see the module docstring)."""

    def numbers(values) -> bool:
        return (
            isinstance(values, list)
            and values
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        )

    for environment, tasks in doc.items():
        assert environment == environment.lower()
        algorithms_per_task = {task: sorted(algorithms) for task, algorithms in tasks.items()}
        assert len({tuple(a) for a in algorithms_per_task.values()}) == 1
        runs_per_algorithm, steps_per_run, metric_sets = set(), set(), set()
        for task, algorithms in tasks.items():
            for algorithm, runs in algorithms.items():
                assert algorithm == algorithm.lower() and "," not in algorithm and task == task.lower()
                runs_per_algorithm.add(len(runs))
                for steps in runs.values():
                    assert list(steps)[-1] == "absolute_metrics"
                    logged = [s for s in steps if s != "absolute_metrics"]
                    assert logged == [f"step_{i}" for i in range(len(logged))]
                    steps_per_run.add(len(logged))
                    counts = [steps[s]["step_count"] for s in logged]
                    assert all(isinstance(c, int) for c in counts) and counts == sorted(counts)
                    for s in logged:
                        metrics = {k: v for k, v in steps[s].items() if k != "step_count"}
                        assert all(k == k.lower() and numbers(v) for k, v in metrics.items())
                        metric_sets.add(tuple(sorted(metrics)))
                    assert all(numbers(v) for v in steps["absolute_metrics"].values())
                    metric_sets.add(tuple(sorted(steps["absolute_metrics"])))
        assert len(runs_per_algorithm) == 1 and len(steps_per_run) == 1 and len(metric_sets) == 1


def test_the_marl_eval_export_has_marl_eval_layout_with_the_runs_numbers(local_study):
    doc = json.loads((local_study / "results" / "marl_eval.json").read_text())
    check_marl_eval_layout(doc)
    runs = doc["fleet"]["thermostats-tiny"]
    assert set(runs) == {"rule-based", "independent"} and set(runs["independent"]) == {"seed_0", "seed_1"}
    table = json.loads((local_study / "results" / "table.json").read_text())
    seed1 = runs["independent"]["seed_1"]
    assert seed1["absolute_metrics"] == {"reward": [table["points"]["independent"]["reward"]["per_seed"]["1"]]}
    # 8 metrics intervals of 15 min; the step count is the 1-min control ticks accounted so far
    assert [seed1[f"step_{i}"]["step_count"] for i in range(8)] == [15, 30, 45, 60, 75, 90, 105, 120]
    # charts/mean_reward has gaps (none for the rule-based thermostat, none before a first update): left out
    assert set(seed1["step_0"]) == {"step_count", "reward"}


def test_the_layout_check_catches_what_marl_eval_rejects():
    good = {
        "fleet": {
            "t": {
                "a": {"seed_0": {"step_0": {"step_count": 1, "reward": [1.0]}, "absolute_metrics": {"reward": [1.0]}}}
            }
        }
    }
    check_marl_eval_layout(good)
    for broken in (
        {"fleet": {"t": {"A,b": good["fleet"]["t"]["a"]}}},
        {
            "fleet": {
                "t": {
                    "a": {"seed_0": {"step_0": {"step_count": 1, "reward": 1.0}, "absolute_metrics": {"reward": [1.0]}}}
                }
            }
        },
        {"fleet": {"t": {"a": {"seed_0": {"step_0": {"step_count": 1, "reward": [1.0]}}}}}},
        {
            "fleet": {
                "t": {
                    "a": {"seed_0": {"step_0": {"step_count": 1, "reward": [1.0]}, "absolute_metrics": {"cost": [1.0]}}}
                }
            }
        },
    ):
        with pytest.raises(AssertionError):
            check_marl_eval_layout(broken)


def test_the_tensorboard_export_holds_each_runs_curves_and_figures(local_study, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study = load_study(local_study.parent / "study.yaml")
    runs = load_runs(study, StudyFolder(local_study))
    found, values = curves(study, runs), figures(study, runs)
    write_tensorboard(tmp_path / "tb", study.spec.seeds, found, values)
    events = EventAccumulator(str(tmp_path / "tb" / "independent" / "seed1")).Reload()
    reward = events.Scalars("curves/reward")
    time_s, by_seed = found["reward"]["independent"]
    assert [e.step for e in reward] == [int(t) for t in time_s]
    assert np.allclose([e.value for e in reward], by_seed[:, 1], rtol=1e-6)
    assert events.Scalars("figures/kpis.peak_kw")[0].value == pytest.approx(
        values["independent"][1]["kpis.peak_kw"], rel=1e-6
    )
