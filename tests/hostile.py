"""Hostile files for the tests: pickles that run a shell command when they are loaded."""

import io
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class RunsACommand:
    """Unpickling this runs ``touch marker``: what a crafted checkpoint or policy file could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def hostile_pickle(marker: Path) -> bytes:
    """A pickle (as earlier versions wrote checkpoints) whose loading creates ``marker``."""
    return pickle.dumps({"format": 1, "state": RunsACommand(marker)})


def hostile_torch_file(marker: Path) -> bytes:
    """A ``torch.save`` file (as earlier versions wrote policies) whose loading creates ``marker``."""
    import torch

    buffer = io.BytesIO()
    torch.save([RunsACommand(marker)], buffer)
    return buffer.getvalue()


def fleet_cli(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``fleet ARGS...`` in a new Python process."""
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one 'error:' paragraph on stderr naming ``words``, and no traceback."""
    err = done.stderr.strip()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert err.startswith("error: ") and err.count("error:") == 1 and "\n\n" not in err, err
    assert "Traceback" not in err and "weights_only" not in err, err
    for word in words:
        assert word in err, (word, err)
