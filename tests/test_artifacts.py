from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from synthloom.artifacts import (
    atomic_write_json,
    read_table,
    sha256_tree,
    staged_directory,
    write_table,
)


def test_table_round_trip_keeps_schema(tmp_path: Path, mixed_table, mixed_schema) -> None:
    path = write_table(mixed_table, tmp_path / "t.parquet", mixed_schema)
    frame, schema = read_table(path)
    assert schema == mixed_schema
    pd.testing.assert_frame_equal(frame, mixed_table)
    assert not list(tmp_path.glob(".*tmp*"))


def test_staged_directory_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "stage"
    with staged_directory(final) as tmp:
        (tmp / "a.txt").write_text("one")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), staged_directory(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed half way")
    assert (final / "a.txt").read_text() == "one"  # the previous complete stage survives
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


def test_a_killed_process_staged_directory_is_removed_by_the_next_stage_run(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)  # exited: no process has this pid now (none reuses it so fast)
    final = tmp_path / "ingest"
    stale = tmp_path / f".ingest.tmp-{dead_pid}-0badc0de"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "train.parquet").write_text("half")
    stale_file = tmp_path / f".ingest.tmp-{dead_pid}-feedbeef"
    stale_file.write_text("half")
    live = tmp_path / f".ingest.tmp-{os.getpid()}-12345678"  # a live process's: kept
    live.mkdir()
    other = tmp_path / f".filter.tmp-{dead_pid}-0badc0de"  # another stage's: not ours to judge
    other.mkdir()
    with staged_directory(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ingest", live.name, other.name])


def test_hashes_change_with_content(tmp_path: Path) -> None:
    atomic_write_json({"a": 1}, tmp_path / "d" / "x.json")
    first = sha256_tree(tmp_path / "d")
    atomic_write_json({"a": 2}, tmp_path / "d" / "x.json")
    assert sha256_tree(tmp_path / "d") != first
