"""Reliability (issue 20): hostile sources and tables, runaway requests, SIGTERM."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.cli import main
from synthloom.artifacts import sha256_files
from synthloom.errors import DataError
from synthloom.ingest import load_source, prepare_seed_table, source_files


def write_config(tmp_path: Path, source: str, name: str = "hostile", **sections) -> Path:
    """A small marginals pipeline config on `source` (sections override the defaults)."""
    config = {
        "data": {"source": source, "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 200, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "plots": False},
        "tracking": {"enabled": False},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data")},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- 1. a directory as source


def test_root_directory_as_source_is_refused_before_prefect_starts(tmp_path, capsys) -> None:
    path = write_config(tmp_path, "/")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.source is a directory" in err and "save_to_disk" in err and "Fix:" in err
    assert "Traceback" not in err
    assert not (tmp_path / "data" / "prefect").exists()  # nothing started, nothing walked


def test_plain_directory_is_refused_without_listing_below_it(tmp_path, monkeypatch) -> None:
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "notes.txt").write_text("x")
    (tree / "locked").chmod(0)  # walking into it would raise PermissionError
    try:
        monkeypatch.setattr(Path, "rglob", lambda *a, **k: pytest.fail("walked the tree"))
        with pytest.raises(DataError, match=r"data\.source is a directory.*Fix: point"):
            source_files(str(tree))
        with pytest.raises(DataError, match=r"data\.source is a directory"):
            load_source(str(tree))
    finally:
        (tree / "locked").chmod(0o755)


def test_dataset_directory_hashes_its_own_files_only(tmp_path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"x": [0.5, 1.5, 2.5], "y": ["a", "b", "a"]})
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(tmp_path / "dd")
    root = tmp_path / "dd"
    files = source_files(str(root))
    names = sorted(str(f.relative_to(root)) for f in files)
    assert "dataset_dict.json" in names
    assert any(n.startswith("train/") and n.endswith(".arrow") for n in names)
    assert any(n.startswith("test/") for n in names)
    first = sha256_files(root, files)

    (root / "unrelated").mkdir()
    (root / "unrelated" / "big.bin").write_bytes(b"\0" * 1000)
    (root / "train" / "elsewhere").symlink_to(tmp_path)  # a link out is not followed
    assert source_files(str(root)) == files
    assert sha256_files(root, source_files(str(root))) == first

    ds.map(lambda r: {"x": r["x"] + 1}).save_to_disk(tmp_path / "dd2" / "train")
    (tmp_path / "dd2" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert sha256_files(tmp_path / "dd2", source_files(str(tmp_path / "dd2"))) != first


def test_hashing_reads_at_most_max_bytes(tmp_path, monkeypatch) -> None:
    import synthloom.artifacts as artifacts

    small, big = tmp_path / "a.bin", tmp_path / "b.bin"
    small.write_bytes(b"1" * 10)
    big.write_bytes(b"2" * 1000)
    read: list[str] = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: read.append(Path(p).name) or real(p))
    first = sha256_files(tmp_path, [small, big], max_bytes=100)
    assert read == ["a.bin"]  # the big file past the budget is described, not read
    big.write_bytes(b"2" * 1001)
    assert sha256_files(tmp_path, [small, big], max_bytes=100) != first  # its size counts


# ---------------------------------------------------------------- 4. only the target column


def test_table_of_only_the_target_is_refused_at_ingest() -> None:
    df = pd.DataFrame({"status": ["good", "bad"] * 20, "id": range(40)})
    with pytest.raises(DataError, match=r"only column left after data.drop_columns is the target"):
        prepare_seed_table(df, source="t.csv", target="status", drop_columns=["id"])
    with pytest.raises(DataError, match=r"no feature columns.*Fix: add feature columns"):
        prepare_seed_table(df[["status"]], source="t.csv", target="status")
    frame, schema = prepare_seed_table(df[["status"]], source="t.csv", target=None)
    assert schema.task is None and list(frame.columns) == ["status"]


def test_only_target_csv_run_stops_at_ingest_with_the_fix(tmp_path, capsys) -> None:
    csv = tmp_path / "only_target.csv"
    pd.DataFrame({"status": ["good", "bad"] * 30}).to_csv(csv, index=False)
    assert main(["run", str(write_config(tmp_path, str(csv)))]) == 2
    err = capsys.readouterr().err
    assert "no feature columns" in err and "XGBoost" not in err and "Traceback" not in err
    run = next((tmp_path / "data" / "runs").iterdir())
    stages = {
        s["name"]: s["status"] for s in json.loads((run / "summary.json").read_text())["stages"]
    }
    assert stages["ingest"] == "failed" and stages["evaluate"] == "pending"
