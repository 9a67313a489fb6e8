"""`synthloom export`: a finished run's kept rows in each format, with the run's metadata;
clear errors (exit 2) for unknown runs, unfinished runs and unknown formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli.main import main
from synthloom.errors import ConfigError
from synthloom.export import export_format, export_run, read_export_metadata


def _seed_table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    income = rng.normal(50, 15, n).round(1)
    return pd.DataFrame(
        {
            "income": income,
            "home": rng.choice(["rent", "owner", "parents"], n).astype(object),
            "status": np.where(income + rng.normal(0, 5, n) > 50, "good", "bad").astype(object),
        }
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, str]:
    """(data dir, run id) of a real quick marginals run through the CLI."""
    root = tmp_path_factory.mktemp("export")
    _seed_table().to_csv(root / "seed.csv", index=False)
    config = {
        "data": {"source": str(root / "seed.csv"), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 120, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "mle_seeds": [0], "plots": False},
        "tracking": {"enabled": False},
        "run": {"seed": 0, "data_dir": str(root / "data")},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    (run_dir,) = (root / "data" / "runs").iterdir()
    return root / "data", run_dir.name


def _kept(data_dir: Path, run_id: str) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "runs" / run_id / "filter" / "synthetic.parquet")


@pytest.mark.integration
@pytest.mark.parametrize("name", ["rows.csv", "rows.parquet", "rows.jsonl", "rows_hf"])
def test_export_writes_the_kept_rows_and_the_run_metadata(
    finished_run, tmp_path: Path, name: str, capsys
) -> None:
    data_dir, run_id = finished_run
    out = tmp_path / name
    argv = ["export", run_id, "--out", str(out), "--data-dir", str(data_dir)]
    assert main(argv) == 0
    assert f"of run {run_id}" in capsys.readouterr().out

    kept = _kept(data_dir, run_id)
    if name.endswith(".csv"):
        got = pd.read_csv(out)
    elif name.endswith(".parquet"):
        got = pd.read_parquet(out)
    elif name.endswith(".jsonl"):
        got = pd.read_json(out, lines=True)
    else:
        import datasets

        got = datasets.load_from_disk(str(out)).to_pandas()
        info = json.loads(datasets.load_from_disk(str(out)).info.description)
        assert info["run_id"] == run_id
    assert list(got.columns) == list(kept.columns)
    assert len(got) == len(kept) > 0
    assert np.allclose(got["income"].to_numpy(float), kept["income"].to_numpy(float))
    assert list(got["home"]) == list(kept["home"])

    summary = json.loads((data_dir / "runs" / run_id / "summary.json").read_text())
    meta = read_export_metadata(out)
    assert meta["run_id"] == run_id
    assert meta["config_hash"] == summary["config_hash"]
    assert meta["rows"] == len(kept)
    assert meta["metrics"]["column_shape_error_pct"] == pytest.approx(
        summary["metrics"]["column_shape_error_pct"]
    )


@pytest.mark.integration
def test_format_flag_wins_over_the_suffix(finished_run, tmp_path: Path) -> None:
    data_dir, run_id = finished_run
    result = export_run(run_id, tmp_path / "rows.txt", "jsonl", data_dir)
    assert result.format == "jsonl"
    assert len(pd.read_json(tmp_path / "rows.txt", lines=True)) == result.rows


@pytest.mark.integration
def test_export_errors_exit_2_with_the_fix(finished_run, tmp_path: Path, capsys) -> None:
    data_dir, run_id = finished_run
    assert main(["export", "nope", "--out", str(tmp_path / "x.csv"), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert "Cannot export 'nope'" in err and run_id in err and "Traceback" not in err

    code = main(["export", run_id, "--out", str(tmp_path / "x.xlsx"), "--data-dir", str(data_dir)])
    assert code == 2
    assert "--format one of csv, parquet, jsonl, hf" in capsys.readouterr().err
    assert not (tmp_path / "x.xlsx").exists()

    with pytest.raises(SystemExit) as exited:  # argparse rejects an unknown --format
        main(["export", run_id, "--out", str(tmp_path / "x"), "--format", "xlsx"])
    assert exited.value.code == 2


@pytest.mark.integration
def test_hub_push_that_cannot_reach_the_hub_says_so_and_keeps_the_file(
    finished_run, tmp_path: Path
) -> None:
    """No Hub is reachable from CI: the push's failure is the clear error (exit 2) that names
    the endpoint and the fix, and the --out file written before it stays."""
    import os
    import subprocess
    import sys

    data_dir, run_id = finished_run
    out = tmp_path / "rows.csv"
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_not_a_token")
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "export", run_id, "--out", str(out)]
        + ["--hub", "someone/rows", "--data-dir", str(data_dir)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Cannot push run" in done.stderr and "http://127.0.0.1:9" in done.stderr
    assert "Fix:" in done.stderr and "Traceback" not in done.stderr
    assert len(pd.read_csv(out)) == len(_kept(data_dir, run_id))  # written first, kept

    assert main(["export", run_id, "--data-dir", str(data_dir)]) == 2  # neither --out nor --hub


def _fake_run(data_dir: Path, run_id: str, method: str, status: str, kept: pd.DataFrame) -> None:
    """A run directory laid out as the flows write it (summary, config, filter manifest)."""
    run_dir = data_dir / "runs" / run_id
    (run_dir / "filter").mkdir(parents=True)
    kept.to_parquet(run_dir / "filter" / "kept.parquet", index=False)
    (run_dir / "config.json").write_text(json.dumps({"method": {"name": method}}))
    summary = {
        "run_id": run_id,
        "status": status,
        "config_hash": "abc123",
        "metrics": {"distinct_2": 0.9},
        "error": {"stage": "evaluate"} if status == "failed" else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    manifest = {
        "dir": "/elsewhere/runs/x/filter",  # where it was written: the export must not need it
        "files": {"synthetic": {"path": "/elsewhere/runs/x/filter/kept.parquet"}},
    }
    (run_dir / "filter" / "manifest.json").write_text(json.dumps(manifest))


def test_text_runs_export_text_and_label(tmp_path: Path) -> None:
    kept = pd.DataFrame(
        {"text": ["a b c", "d e f"], "label": ["x", "y"], "method": "fewgen", "info": "{}"}
    )
    _fake_run(tmp_path, "text-run", "fewgen", "completed", kept)
    result = export_run("text-run", tmp_path / "out.parquet", data_dir=tmp_path)
    assert result.columns == ("text", "label")
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert got.to_dict("list") == {"text": ["a b c", "d e f"], "label": ["x", "y"]}
    assert read_export_metadata(tmp_path / "out.parquet")["config_hash"] == "abc123"


def test_unfinished_run_is_refused_with_resume(tmp_path: Path) -> None:
    _fake_run(tmp_path, "half", "marginals", "failed", pd.DataFrame({"a": [1]}))
    with pytest.raises(ConfigError, match=r"is failed \(stage evaluate failed\).*resume half"):
        export_run("half", tmp_path / "out.csv", data_dir=tmp_path)
    assert not (tmp_path / "out.csv").exists()


def test_format_from_suffix() -> None:
    assert export_format("a.CSV") == "csv"
    assert export_format("a.pq") == "parquet"
    assert export_format("a.ndjson") == "jsonl"
    assert export_format("folder") == "hf"
    assert export_format("a.csv", "parquet") == "parquet"
    with pytest.raises(ConfigError, match="unknown format"):
        export_format("a.csv", "excel")


@pytest.mark.parametrize("name", ["k.csv", "k.parquet", "k.jsonl", "k_hf"])
def test_every_column_kind_exports(tmp_path: Path, name: str) -> None:
    kept = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-02", None, "2024-03-04"]),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "kind": pd.Categorical(["a", "b", None]),
            "x": [1.5, None, 3.0],
        }
    )
    _fake_run(tmp_path, "kinds", "marginals", "completed", kept)
    result = export_run("kinds", tmp_path / name, data_dir=tmp_path)
    assert result.rows == 3 and result.columns == ("when", "flag", "kind", "x")
    assert read_export_metadata(tmp_path / name)["run_id"] == "kinds"
