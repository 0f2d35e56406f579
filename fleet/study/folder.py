"""The study folder: one ordinary run directory per run, the study's marker and its results.

::

    DIR/study.json              the study's name, file and resolved spec: marks DIR as that study's
    DIR/runs/<point>-seed<k>/   run directories (``fleet run DIR/runs/<run>/scenario.yaml`` re-makes each)
    DIR/results/                tables, plots and exports (:mod:`fleet.study.tables`), remade at each end

A run is finished when its summary.json says ``completed`` and its scenario.yaml is the run's
scenario. Starting a study again keeps the finished runs and makes the others afresh, whatever
an interrupted or failed attempt left. A folder is refused, before anything is written, when
it holds something else than a study, another study, or a run of this study's name made from
another scenario than the study makes now.
"""

from __future__ import annotations

import json
from pathlib import Path

from fleet import __version__
from fleet.errors import RunDirError
from fleet.scenario import dump_scenario
from fleet.study.spec import Run, Study

MARKER = "study.json"


class StudyFolder:
    """Where a study's runs and results live."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.runs = self.path / "runs"
        self.results = self.path / "results"

    def run_path(self, run: Run) -> Path:
        return self.runs / run.name

    def finished(self, run: Run) -> bool:
        """Whether the run's directory holds the completed run of its scenario."""
        return self.unfinished(run) is None

    def unfinished(self, run: Run) -> str | None:
        """Why the run's directory does not hold the completed run of its scenario (None: it does)."""
        path = self.run_path(run)
        try:
            summary = json.loads((path / "summary.json").read_text())
            same = (path / "scenario.yaml").read_text() == dump_scenario(run.scenario)
        except (OSError, ValueError):
            return "the run stopped before its horizon (interrupted)"
        if summary.get("run", {}).get("status") != "completed":
            return "the run stopped before its horizon (interrupted)"
        if not same:
            return (
                "the run completed, but its scenario.yaml differs from the study's: fleet was changed (upgraded, "
                "or its source edited) while the study ran, and resolves scenarios differently now"
            )
        return None

    def check(self, study: Study) -> None:
        """RunDirError, changing nothing, unless this folder is new, empty or ``study``'s."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a directory; choose another study folder with -o")
        if not path.exists() or not any(path.iterdir()):
            return
        marker = path / MARKER
        if not marker.is_file():
            raise RunDirError(
                f"{path}: holds files but no {MARKER}, so it is not a study folder; nothing was changed. "
                f"Choose another folder with -o"
            )
        try:
            name = json.loads(marker.read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError):
            raise RunDirError(
                f"{marker}: not a study marker this version of fleet can read; nothing was changed. "
                f"Choose another folder with -o"
            ) from None
        if name != study.name:
            raise RunDirError(
                f"{path}: holds the study {name!r}, not {study.name!r}; nothing was changed. "
                f"Choose another folder with -o"
            )
        changed = [run.name for run in study.runs if self._other_scenario(run)]
        if changed:
            raise RunDirError(
                f"{path}: the runs {', '.join(changed)} were made from other scenarios than {study.path} makes now, "
                "so this folder holds another version of the study; nothing was changed. Choose another folder with "
                "-o, "
                f"or restore the study file"
            )

    def _other_scenario(self, run: Run) -> bool:
        """Whether the run's directory holds a scenario other than the run's (written whole: run.json
        comes after it)."""
        path = self.run_path(run)
        try:
            return (path / "run.json").is_file() and (path / "scenario.yaml").read_text() != dump_scenario(run.scenario)
        except OSError:
            return False

    def claim(self, study: Study) -> None:
        """Make the folder (checked first with :meth:`check`) and write the study's marker."""
        self.check(study)
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"{self.path}: cannot create the study folder: {e.strerror}") from None
        marker = {
            "name": study.name,
            "study_file": str(study.path.resolve()),
            "fleet_version": __version__,
            "study": study.spec.model_dump(mode="json"),
        }
        (self.path / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
