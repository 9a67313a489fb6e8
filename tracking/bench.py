"""MLflow for a bench: one parent run per bench execution, every generator's pipeline run
nested under it, plus a nested run for the real-data reference.

Nesting is MLflow's `mlflow.parentRunId` tag. A generator's pipeline run is an ordinary
pipeline run (tracking/pipeline.py, with its own nested stage runs); the bench tags it with
the parent after it finished, so `synthloom compare` and the MLflow UI both see it. A rerun
of the bench reuses finished pipeline runs and re-parents them to the new bench run. Only
`MlflowClient` calls are used here: no global active run that a pipeline run would collide
with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthloom.config import flatten
from tracking.client import ensure_experiment, finite_metrics, git_commit, mlflow_at

PARENT_TAG = "mlflow.parentRunId"
BENCH_TAG = "synthloom.bench_id"


def start_bench_run(
    uri: str, experiment: str, data_dir: str | Path, bench_id: str, config: dict[str, Any]
) -> str:
    """Create the bench's parent run (status RUNNING) with the flattened config as params."""
    mlflow = mlflow_at(uri)
    client = mlflow.tracking.MlflowClient()
    run = client.create_run(
        ensure_experiment(mlflow, experiment, data_dir),
        run_name=bench_id,
        tags={
            BENCH_TAG: bench_id,
            "dataset": config["data"]["source"],
            "git_commit": git_commit(),
            "kind": "bench",
        },
    )
    params = {k: str(v)[:500] for k, v in flatten(config).items()}
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[start : start + 100])
    return run.info.run_id


def adopt_run(uri: str, parent_id: str, child_id: str, bench_id: str, label: str) -> None:
    """Nest a finished pipeline run under the bench run and label it with its generator."""
    client = mlflow_at(uri).tracking.MlflowClient()
    client.set_tag(child_id, PARENT_TAG, parent_id)
    client.set_tag(child_id, BENCH_TAG, bench_id)
    client.set_tag(child_id, "bench.generator", label)


def log_reference_run(
    uri: str, parent_id: str, bench_id: str, metrics: dict[str, Any], files: list[Path]
) -> str:
    """A nested run holding the real-data reference metrics; returns its id."""
    client = mlflow_at(uri).tracking.MlflowClient()
    experiment_id = client.get_run(parent_id).info.experiment_id
    run = client.create_run(
        experiment_id,
        run_name="real-reference",
        tags={PARENT_TAG: parent_id, BENCH_TAG: bench_id, "bench.generator": "real"},
    )
    _log_metrics(client, run.info.run_id, metrics)
    for path in files:
        if Path(path).is_file():
            client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def finish_bench_run(
    uri: str,
    parent_id: str,
    metrics_by_generator: dict[str, dict[str, Any]],
    files: list[Path],
    status: str,
) -> None:
    """Log `<generator>.<metric>` metrics and the comparison files; end the parent run."""
    client = mlflow_at(uri).tracking.MlflowClient()
    flat = {
        f"{label}.{key}": value
        for label, metrics in metrics_by_generator.items()
        for key, value in metrics.items()
    }
    _log_metrics(client, parent_id, flat)
    for path in files:
        if Path(path).is_file():
            client.log_artifact(parent_id, str(path))
    client.set_tag(parent_id, "status", status)
    client.set_terminated(parent_id, status="FINISHED" if status == "completed" else "FAILED")


def _log_metrics(client: Any, run_id: str, metrics: dict[str, Any]) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, v, now, 0) for k, v in finite_metrics(metrics).items()]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])
