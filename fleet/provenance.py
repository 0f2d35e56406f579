"""Which code made a run: recorded in run.json next to the package version.

Where fleet is imported from a git checkout (an editable install, or the source tree), run.json
records its commit and whether tracked files differed from it; an installed wheel has no
checkout, and records none.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds the ``fleet`` package: a checkout's root, or site-packages."""


def git_revision(root: Path = SOURCE_ROOT) -> dict | None:
    """``{"commit": "<40 hex digits>", "dirty": bool}`` of the git checkout at ``root``, or None
    where ``root`` is not the top of a checkout (or git is missing). ``dirty``: a tracked file
    differs from the commit (untracked files, such as runs/, do not count)."""
    if not (root / ".git").exists():  # a file in a worktree, a folder in a clone
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.strip(), "dirty": bool(changed.strip())}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout
