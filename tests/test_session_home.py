"""The test session's temporary home (Prefect state, MLflow, a converted decoder: about
0.5 GB) is removed when pytest exits, unless SYNTHLOOM_KEEP_TEST_HOME asks to keep it.
Every `make test` used to leave one per worker behind in the system's temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _pytest_in(tmp: Path, keep: bool) -> list[Path]:
    """Run one small test module in a fresh pytest process whose temp directory is `tmp`;
    return the session homes left in `tmp` afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("SYNTHLOOM_KEEP_TEST_HOME", None)
    env["TMPDIR"] = str(tmp)
    if keep:
        env["SYNTHLOOM_KEEP_TEST_HOME"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    proc = subprocess.run(
        [*cmd, "tests/test_ngram_block.py"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return sorted(tmp.glob("synthloom-tests-*"))


def test_session_home_is_removed_at_exit(tmp_path):
    assert _pytest_in(tmp_path, keep=False) == []


def test_session_home_is_kept_when_asked(tmp_path):
    kept = _pytest_in(tmp_path, keep=True)
    assert len(kept) == 1 and kept[0].is_dir()
