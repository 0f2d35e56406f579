"""Studies: many runs of one base scenario, its variants and axes crossed with seeds.

A study file (:mod:`fleet.study.spec`) names a base scenario, the points to run (variants and
axes over scenario fields), the seeds and what to report. ``fleet study STUDY.yaml -o DIR``
validates every point, runs each seed of each point as an ordinary run directory under
``DIR/runs/`` on Ray or local processes (:mod:`fleet.study.engines`), keeps what finished when
it is started again (:mod:`fleet.study.folder`), and ends in tables with intervals over seeds,
learning curves, fleet report's plots and marl-eval and TensorBoard exports
(:mod:`fleet.study.tables`, :mod:`fleet.study.export`).
"""

from fleet.study.runner import Engine, Outcome, run_study, write_results
from fleet.study.spec import Study, load_study

__all__ = ["Engine", "Outcome", "Study", "load_study", "run_study", "write_results"]
