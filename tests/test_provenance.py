"""run.json says which code made a run: the git commit, and whether tracked files differed."""

import json
import subprocess

from fleet.provenance import SOURCE_ROOT, git_revision


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_commit_and_dirty_of_a_checkout(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    commit = git(tmp_path, "log", "-1", "--format=%H")
    assert git_revision(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked")
    assert git_revision(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_revision(tmp_path) == {"commit": commit, "dirty": True}


def test_no_checkout_no_commit(tmp_path):
    assert git_revision(tmp_path) is None


def test_run_json_records_the_version_and_the_commit(tiny_run):
    info = json.loads((tiny_run / "run.json").read_text())
    assert info["fleet_version"] == __import__("fleet").__version__
    if (SOURCE_ROOT / ".git").exists():  # tests run from a checkout
        assert info["git"]["commit"] == git(SOURCE_ROOT, "rev-parse", "HEAD") and isinstance(info["git"]["dirty"], bool)
    else:
        assert info["git"] is None
