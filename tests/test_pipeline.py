"""The tabular flow on a real Prefect runtime and MLflow store: caching, failure, resume, kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from cli.main import main
from synthloom.config import load_config
from synthloom.runs import run_id_for

REPO = Path(__file__).resolve().parent.parent


def small_config(tmp_path: Path, table, **overrides) -> Path:
    csv = tmp_path / "seed.csv"
    if not csv.exists():
        table.to_csv(csv, index=False)
    config = {
        "data": {"source": str(csv), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 300, "batch_size": 128},
        "evaluate": {"mle_seeds": [0], "mle_grid": "small"},
        "tracking": {"experiment": "tests"},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data")},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def summary_of(tmp_path: Path, config_path: Path) -> dict:
    run_id = run_id_for(load_config(config_path))
    return json.loads((tmp_path / "data" / "runs" / run_id / "summary.json").read_text())


def stage(summary: dict, name: str) -> dict:
    return next(s for s in summary["stages"] if s["name"] == name)


def test_fresh_starts_a_new_run_id_even_when_one_is_given(tmp_path: Path, mixed_table) -> None:
    config = load_config(small_config(tmp_path, mixed_table))
    derived = run_id_for(config)
    assert run_id_for(config, given="mine") == "mine"
    assert run_id_for(config, fresh=True).startswith(derived + "-")
    fresh = run_id_for(config, fresh=True, given="mine")
    assert fresh.startswith("mine-") and len(fresh) > len("mine-")


@pytest.mark.integration
def test_run_then_rerun_reuses_every_stage(
    tmp_path: Path, mixed_table, capsys, mlflow_dataset_inputs
) -> None:
    path = small_config(tmp_path, mixed_table)
    assert main(["run", str(path)]) == 0
    first = summary_of(tmp_path, path)
    assert first["status"] == "completed"
    assert [s["status"] for s in first["stages"]] == ["completed"] * 5
    assert not any(s["cached"] for s in first["stages"])
    assert stage(first, "generate")["rows_out"] == 300
    assert 0 < first["metrics"]["filter_valid_row_rate"] <= 1
    assert first["metrics"]["column_shape_error_pct"] < 15  # marginals match single columns
    assert "mle_auc_mean" in first["metrics"] and "real_mle_auc_mean" in first["metrics"]
    assert first["mlflow_run_id"]
    assert first["wall_seconds"] >= sum(s["seconds"] for s in first["stages"])
    run_dir = Path(first["artifact_dir"])
    for name in (
        "ingest/train.parquet",
        "generate/synthetic.parquet",
        "filter/synthetic.parquet",
        "evaluate/metrics.json",
        "evaluate/columns.png",
        "ingest/manifest.json",
    ):
        assert (run_dir / name).is_file(), name
    out = capsys.readouterr().out
    assert "summary.json" in out and "column_shape_error_pct" in out

    assert main(["run", str(path)]) == 0
    second = summary_of(tmp_path, path)
    assert all(s["cached"] for s in second["stages"])
    assert second["metrics"] == first["metrics"]
    assert second["attempt"] == 2
    # MLflow shows what the run learned from and what it made, once each after the rerun
    assert mlflow_dataset_inputs(tmp_path / "data", first["mlflow_run_id"]) == {
        "seed": (str(run_dir / "ingest" / "train.parquet"), stage(first, "fit")["rows_in"]),
        "synthetic": (
            str(run_dir / "filter" / "synthetic.parquet"),
            stage(first, "filter")["rows_out"],
        ),
    }

    assert main(["compare", "--experiment", "tests", "--data-dir", str(tmp_path / "data")]) == 0
    assert first["run_id"] in capsys.readouterr().out


@pytest.mark.integration
def test_changed_filter_reuses_upstream_stages(tmp_path: Path, mixed_table) -> None:
    path = small_config(tmp_path, mixed_table)
    assert main(["run", str(path), "--run-id", "r1"]) == 0
    assert main(["run", str(path), "--run-id", "r1", "--set", "filter.drop_duplicates=false"]) == 0
    summary = json.loads((tmp_path / "data" / "runs" / "r1" / "summary.json").read_text())
    cached = {s["name"]: s["cached"] for s in summary["stages"]}
    assert cached == {
        "ingest": True,
        "fit": True,
        "generate": True,
        "filter": False,
        "evaluate": False,
    }


@pytest.mark.integration
def test_injected_failure_then_rerun_continues(tmp_path: Path, mixed_table, capsys) -> None:
    path = small_config(tmp_path, mixed_table)
    assert main(["run", str(path), "--set", "run.fail_at_stage=filter"]) == 1
    failed = summary_of(tmp_path, path)
    assert failed["status"] == "failed"
    assert failed["error"]["stage"] == "filter"
    assert [s["status"] for s in failed["stages"]] == [
        "completed",
        "completed",
        "completed",
        "failed",
        "pending",
    ]
    assert "synthloom resume" in capsys.readouterr().err
    assert not (Path(failed["artifact_dir"]) / "filter").exists()

    assert main(["resume", failed["run_id"], "--data-dir", str(tmp_path / "data")]) == 0
    resumed = summary_of(tmp_path, path)
    assert resumed["status"] == "completed"
    assert [s["cached"] for s in resumed["stages"]] == [True, True, True, False, False]


@pytest.mark.integration
def test_bad_seed_data_exits_2_with_a_clear_message(tmp_path: Path, mixed_table) -> None:
    """The real CLI in its own process: one paragraph naming the column and the fix."""
    path = small_config(tmp_path, mixed_table, data__target="no_such_column")
    proc = _cli("run", str(path), data_dir=tmp_path / "data")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, output
    assert "no_such_column" in output and "Fix:" in output
    assert "Traceback" not in output
    assert summary_of(tmp_path, path)["error"]["stage"] == "ingest"


def test_cli_config_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["validate", str(REPO / "pipeline_configs" / "quickstart.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["resume", "nope", "--data-dir", str(tmp_path)]) == 2
    assert "Cannot resume" in capsys.readouterr().err


def _cli(*args: str, data_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, SYNTHLOOM_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.pop("PREFECT_HOME", None)  # each process uses <data_dir>/prefect, as a user's would
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.integration
def test_killed_run_resumes_without_recomputing(tmp_path: Path, mixed_table) -> None:
    """A real SIGKILL during evaluation; resume recomputes only evaluation and ends with the
    same output as an uninterrupted run of the same config."""
    path = small_config(
        tmp_path, mixed_table, evaluate__mle_grid="tabsyn", evaluate__mle_seeds=[0, 1, 2]
    )
    config = load_config(path)
    run_id = run_id_for(config)
    killed_dir = tmp_path / "data"
    proc = _cli("run", str(path), "--set", f"run.data_dir={killed_dir}", data_dir=killed_dir)
    summary_path = killed_dir / "runs" / run_id / "summary.json"
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and proc.poll() is None:
        if summary_path.is_file():
            try:
                state = {
                    s["name"]: s["status"] for s in json.loads(summary_path.read_text())["stages"]
                }
            except json.JSONDecodeError:
                state = None
            if state and state["evaluate"] == "running":
                break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.stdout.read()}"
    orphans = psutil.Process(proc.pid).children(recursive=True)  # Prefect's ephemeral server
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert orphans and all(p.is_running() for p in orphans)  # what a real kill leaves behind
    assert state == {
        "ingest": "completed",
        "fit": "completed",
        "generate": "completed",
        "filter": "completed",
        "evaluate": "running",
    }
    assert not (killed_dir / "runs" / run_id / "evaluate").exists()

    resumed = _cli("resume", run_id, data_dir=killed_dir)
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "stopped an orphaned Prefect server" in output
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in orphans)
    after = json.loads(summary_path.read_text())
    assert [s["cached"] for s in after["stages"]] == [True, True, True, True, False]

    clean_dir = tmp_path / "clean"
    clean = _cli("run", str(path), "--set", f"run.data_dir={clean_dir}", data_dir=clean_dir)
    output = clean.communicate(timeout=300)[0]
    assert clean.returncode == 0, output
    reference = json.loads((clean_dir / "runs" / run_id / "summary.json").read_text())

    def results(metrics: dict) -> dict:  # wall-clock timings differ between any two runs
        return {
            k: v for k, v in metrics.items() if not k.startswith("time_") and "per_second" not in k
        }

    assert results(after["metrics"]) == results(reference["metrics"])
    assert len(results(after["metrics"])) > 20
    for name in ("generate/synthetic.parquet", "filter/synthetic.parquet"):
        resumed_bytes = (killed_dir / "runs" / run_id / name).read_bytes()
        assert resumed_bytes == (clean_dir / "runs" / run_id / name).read_bytes(), name
