"""MLflow tracking of a pipeline run: one run per pipeline run, a nested run per stage.

The store and experiment come from tracking/client.py. A resumed pipeline run appends to the
MLflow run it started (its id is kept in summary.json) and adds nested runs for the stages
it ran.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from synthloom.artifacts import read_manifest
from tracking.client import (
    ensure_experiment,
    finite_metrics,
    git_commit,
    log_config_params,
    metric_name,
    mlflow_at,
)

# Method config keys that name a model (tagged as `model.<key>` on every run).
MODEL_KEYS = ("encoder", "decoder", "model", "teacher", "student", "generator", "embedder")


def model_tags(method: dict[str, Any]) -> dict[str, str]:
    """`model.<key>` tags for the method's model names (decoder/encoder when present)."""
    return {
        f"model.{key}": str(value)
        for key, value in method.items()
        if (key in MODEL_KEYS or key.endswith("_model")) and isinstance(value, str) and value
    }


def machine_tags(device: str = "auto") -> dict[str, str]:
    """`machine` (gpu/cpu), `machine.device` (the GPU's name or the CPU model) and
    `machine.cpus`: where a run executed; CUDA is only asked when torch is already loaded
    or the config may use it."""
    import os
    import platform
    import sys

    torch = sys.modules.get("torch")
    if torch is None and device != "cpu":
        import torch
    gpu = device != "cpu" and torch is not None and torch.cuda.is_available()
    if gpu:
        name = torch.cuda.get_device_name(0)
    else:
        name = platform.processor() or platform.machine() or "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return {
        "machine": "gpu" if gpu else "cpu",
        "machine.device": name,
        "machine.cpus": str(os.cpu_count() or 0),
    }


STAGE_ARTIFACTS = (
    "metrics.json",
    "columns.png",
    "dcr.png",
    "sample_rows.csv",
    "loss_curves.png",
    "latents.png",
    "sample_texts.csv",
    "embeddings.png",
)


def _log_history(mlflow: Any, path: Path) -> None:
    """A stage's training curves ({metric: [[step, value], ...]}) as MLflow step metrics."""
    if not path.is_file():
        return
    from mlflow.entities import Metric

    history = json.loads(path.read_text(encoding="utf-8"))
    now = int(time.time() * 1000)
    metrics = [
        Metric(metric_name(name), float(value), now, int(step))
        for name, points in history.items()
        if isinstance(points, list)
        for step, value in points
        if value is not None and math.isfinite(float(value))
    ]
    run_id = mlflow.active_run().info.run_id
    client = mlflow.tracking.MlflowClient()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


RESOURCE_KEYS = ("seconds", "cpu_seconds", "stage_peak_rss_mb", "gpu_peak_mb", "attempts")


def stage_resource_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """`stage_<name>_<key>` for the stages this attempt computed (cached ones cost nothing):
    wall seconds, CPU seconds, the stage's own peak RSS, GPU peak memory and attempts."""
    return {
        f"stage_{stage['name']}_{key}": stage.get(key)
        for stage in summary["stages"]
        if stage["status"] == "completed" and not stage["cached"]
        for key in RESOURCE_KEYS
        if stage.get(key) is not None
    }


def log_pipeline_run(
    summary: dict[str, Any],
    config: dict[str, Any],
    *,
    uri: str,
    experiment: str,
    data_dir: str | Path,
) -> str:
    """Log (or append to) the MLflow run of a pipeline run; returns the MLflow run id."""
    mlflow = mlflow_at(uri)
    experiment_id = ensure_experiment(mlflow, experiment, data_dir)
    tags = {
        "synthloom.run_id": summary["run_id"],
        "method": config["method"]["name"],
        "dataset": config["data"]["source"],
        "config_hash": summary["config_hash"][:12],
        "git_commit": git_commit(),
        "status": summary["status"],
        **model_tags(config["method"]),
        **machine_tags((config.get("run") or {}).get("device", "auto")),
        "executor": str((config.get("run") or {}).get("executor", "local")),
    }
    with mlflow.start_run(
        run_id=summary.get("mlflow_run_id") or _logged_run(mlflow, experiment_id, summary),
        experiment_id=experiment_id,
        run_name=summary["run_id"],
        tags=tags,
    ) as parent:
        mlflow.set_tags(tags)
        log_config_params(mlflow, parent.info.run_id, config)
        mlflow.log_metrics(finite_metrics(summary["metrics"]))
        mlflow.log_metrics(finite_metrics(summary["counts"]))
        mlflow.log_metric("pipeline_wall_seconds", summary.get("wall_seconds") or 0.0)
        mlflow.log_metrics(finite_metrics(stage_resource_metrics(summary)))
        for stage in summary["stages"]:
            if stage["status"] != "completed" or stage.get("mlflow_logged"):
                continue
            with mlflow.start_run(
                run_id=_logged_run(mlflow, experiment_id, summary, parent, stage["name"]),
                run_name=stage["name"],
                nested=True,
                experiment_id=experiment_id,
                tags={"stage": stage["name"], **tags},
            ):
                mlflow.log_metrics(
                    finite_metrics(
                        {
                            "seconds": stage["seconds"],
                            "compute_seconds": stage.get("compute_seconds"),
                            "cpu_seconds": stage.get("cpu_seconds"),
                            "peak_rss_mb": stage.get("peak_rss_mb"),
                            "stage_peak_rss_mb": stage.get("stage_peak_rss_mb"),
                            "gpu_peak_mb": stage.get("gpu_peak_mb"),
                            "attempts": stage.get("attempts"),
                            "rows_in": stage["rows_in"],
                            "rows_out": stage["rows_out"],
                            "cached": 1.0 if stage["cached"] else 0.0,
                            **(stage.get("counts") or {}),
                        }
                    )
                )
                stage_dir = Path(stage.get("dir") or "")
                _log_history(mlflow, stage_dir / "history.json")
                for name in STAGE_ARTIFACTS:
                    if (stage_dir / name).is_file():
                        mlflow.log_artifact(str(stage_dir / name))
            stage["mlflow_logged"] = True
        for stage in summary["stages"]:
            stage_dir = Path(stage.get("dir") or "")
            for name in STAGE_ARTIFACTS:
                if stage["status"] == "completed" and (stage_dir / name).is_file():
                    mlflow.log_artifact(str(stage_dir / name), artifact_path="report")
        summary_path = Path(summary["artifact_dir"]) / "summary.json"
        if summary_path.is_file():
            mlflow.log_artifact(str(summary_path))
        if summary["status"] == "completed":
            log_datasets(mlflow, summary, config)
            if (config.get("tracking") or {}).get("log_model", True):
                from tracking.generator_model import log_generator_model  # imports mlflow.pyfunc

                log_generator_model(mlflow, summary, config["method"]["name"])
        return parent.info.run_id


def _logged_run(
    mlflow: Any,
    experiment_id: str,
    summary: dict[str, Any],
    parent: Any = None,
    stage: str | None = None,
) -> str | None:
    """The MLflow run already started for this pipeline run (`parent` None) or for its
    `stage` under `parent`, or None. A process killed while logging (SIGKILL, power loss)
    never wrote the MLflow run id back to summary.json nor marked the stage logged: its
    resume continues those runs instead of leaving them RUNNING beside duplicates."""
    run_id = str(summary["run_id"])
    if "'" in run_id or (stage is not None and "'" in stage):
        return None
    query = f"tags.`synthloom.run_id` = '{run_id}'"
    if stage is not None:
        query += (
            f" and tags.stage = '{stage}' and tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=query,
        output_format="list",
        order_by=["attributes.start_time ASC"],
    )
    if stage is None:
        runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return runs[0].info.run_id if runs else None


# (stage, file key in its manifest, MLflow input context): what a run learned from, what it made
RUN_DATASETS = (
    ("ingest", "train", "seed"),  # tabular: the training split the generator was fitted on
    ("ingest", "seeds", "seed"),  # labelled text: the seed examples
    ("filter", "synthetic", "synthetic"),  # the kept rows, as `synthloom export` writes them
)


def log_datasets(mlflow: Any, summary: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Log the seed table and the kept synthetic rows as the active MLflow run's dataset
    inputs (`mlflow.data`, contexts `seed` and `synthetic`), so the MLflow UI shows what a run
    learned from and what it made: name `<run id>-<context>`, source the Parquet file,
    digest its sha256 prefix, the schema and row count from the rows. Skips a dataset
    already logged (a resumed run). Returns the contexts logged."""
    import pandas as pd

    logged = {
        d.dataset.name
        for d in mlflow.get_run(mlflow.active_run().info.run_id).inputs.dataset_inputs
    }
    target = (config.get("data") or {}).get("target")
    done = []
    for stage_name, key, context in RUN_DATASETS:
        stage = next((s for s in summary["stages"] if s["name"] == stage_name), None)
        manifest = read_manifest(Path(stage.get("dir") or "")) if stage else None
        entry = (manifest or {}).get("files", {}).get(key)
        name = f"{summary['run_id']}-{context}"
        if entry is None or name in logged or not Path(entry["path"]).is_file():
            continue
        frame = pd.read_parquet(entry["path"])
        # MLflow's own UserWarnings here are not the user's business: its local-file source is
        # registered twice (a path "matches both"), and its schema inference hints about
        # integer columns, which only matter for model signatures.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                frame,
                source=str(entry["path"]),
                name=name,
                digest=str(entry.get("sha256") or "")[:16] or None,
                targets=target if target in frame.columns else None,
            )
            mlflow.log_input(dataset, context=context)
        done.append(context)
    return done


def end_status(mlflow_run_id: str, uri: str, status: str) -> None:
    """Mark the MLflow run FINISHED, KILLED (cancelled by a signal) or FAILED after the final
    summary is written."""
    mlflow = mlflow_at(uri)
    ended = {"completed": "FINISHED", "cancelled": "KILLED"}.get(status, "FAILED")
    mlflow.tracking.MlflowClient().set_terminated(mlflow_run_id, status=ended)
