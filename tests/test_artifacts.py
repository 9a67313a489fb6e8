from __future__ import annotations

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


def test_hashes_change_with_content(tmp_path: Path) -> None:
    atomic_write_json({"a": 1}, tmp_path / "d" / "x.json")
    first = sha256_tree(tmp_path / "d")
    atomic_write_json({"a": 2}, tmp_path / "d" / "x.json")
    assert sha256_tree(tmp_path / "d") != first
