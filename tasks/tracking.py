"""MLflow tracking: one run per pipeline run, a nested run per stage, and the run table.

Default store: `sqlite:///<data_dir>/mlflow/mlflow.db` with artifacts under
`<data_dir>/mlflow/artifacts`. A resumed pipeline run appends to the MLflow run it
started (its id is kept in summary.json) and adds nested runs for the stages it ran.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from synthloom.artifacts import read_manifest
from synthloom.config import flatten
from synthloom.metrics.headline import HEADLINE_METRICS


def default_tracking_uri(data_dir: str | Path) -> str:
    return "sqlite:///" + str((Path(data_dir) / "mlflow" / "mlflow.db").resolve())


def _artifact_root(data_dir: str | Path) -> str:
    return (Path(data_dir) / "mlflow" / "artifacts").resolve().as_uri()


def mlflow_at(uri: str):  # noqa: ANN202 - mlflow is imported lazily (slow import)
    """The `mlflow` module with its tracking URI set to `uri`."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


def ensure_experiment(mlflow: Any, name: str, data_dir: str | Path) -> str:
    """The id of experiment `name`, created with its artifacts under `data_dir` if absent."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    Path(data_dir, "mlflow", "artifacts").mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=f"{_artifact_root(data_dir)}/{name}")


def git_commit() -> str:
    """The short commit hash of the checkout holding this code, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def _metric_name(name: str) -> str:
    """MLflow accepts letters, digits, _ - . space / in metric names; map the rest to _."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `metrics` as floats, keys made valid MLflow metric names."""
    return {
        _metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
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
        Metric(_metric_name(name), float(value), now, int(step))
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
        existing = mlflow.get_run(parent.info.run_id).data.params
        params = {k: str(v)[:500] for k, v in flatten(config).items() if k not in existing}
        if params:
            mlflow.log_params(params)
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


def runs_table(uri: str, experiment: str | None, metrics: list[str] | None = None):  # noqa: ANN201
    """A pandas frame of pipeline runs (parent runs only), newest first."""
    import pandas as pd

    mlflow = mlflow_at(uri)
    if experiment:
        if mlflow.get_experiment_by_name(experiment) is None:
            return pd.DataFrame()
        names = [experiment]
    else:
        names = [e.name for e in mlflow.search_experiments()]
    frame = mlflow.search_runs(
        experiment_names=names,
        filter_string="tags.`synthloom.run_id` != ''",
        order_by=["start_time DESC"],
    )
    if frame.empty:
        return frame
    if "tags.stage" in frame:
        frame = frame[frame["tags.stage"].isna()]
    wanted = list(metrics) if metrics else list(HEADLINE_METRICS)
    out = pd.DataFrame(
        {
            "run": frame["tags.synthloom.run_id"],
            "method": frame.get("tags.method"),
            "dataset": frame.get("tags.dataset"),
            "status": frame.get("tags.status"),
            "wall_s": frame["metrics.pipeline_wall_seconds"].round(1)
            if "metrics.pipeline_wall_seconds" in frame
            else math.nan,
        }
    )
    for name in wanted:
        column = f"metrics.{name}"
        if column in frame:
            out[name] = frame[column].round(4)
    return out.reset_index(drop=True)


# Metrics where a smaller value is better; `dcr_share` is best at 0.5 (sorted by |x - 0.5|).
_LOWER_IS_BETTER = ("error", "rmse", "copy", "gap", "seconds", "_std", "wall", "mb")


def sort_runs(table, metric: str):  # noqa: ANN001, ANN201 - pandas frame in and out
    """Best first: ascending for errors/costs, descending for scores, |x - 0.5| for DCR."""
    if metric == "dcr_share":
        return table.sort_values(metric, key=lambda s: (s - 0.5).abs(), na_position="last")
    ascending = any(word in metric for word in _LOWER_IS_BETTER)
    return table.sort_values(metric, ascending=ascending, na_position="last")


def plot_comparison(table, metrics: list[str], path: str | Path) -> Path:  # noqa: ANN001
    """A PNG with one horizontal bar chart per metric, one bar per run (table order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        f"{run} ({method})" for run, method in zip(table["run"], table["method"], strict=True)
    ]
    height = max(2.0, 0.35 * len(labels) + 1.2)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 2.5, height))
    axes = [axes] if len(metrics) == 1 else list(axes)
    positions = list(range(len(labels)))
    for index, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        values = table[metric].astype(float).fillna(0.0).tolist()
        ax.barh(positions, values, color="#4C72B0")
        ax.set_yticks(positions, labels if index == 0 else [""] * len(labels))
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_comparison(
    uri: str,
    experiment: str | None,
    png: Path,
    table,
    data_dir: str | Path,  # noqa: ANN001
) -> str:
    """Log the comparison PNG and table as a small MLflow run tagged `synthloom.comparison`
    in the compared experiment (or `synthloom-comparisons`); returns its run id.

    A separate run keeps finished pipeline runs unchanged; `runs_table` skips it (it has no
    `synthloom.run_id` tag)."""
    import tempfile

    mlflow = mlflow_at(uri)
    experiment_id = ensure_experiment(mlflow, experiment or "synthloom-comparisons", data_dir)
    name = time.strftime("comparison-%Y%m%dT%H%M%S")
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=name,
        tags={"synthloom.comparison": "true", "compared_runs": ",".join(map(str, table["run"]))},
    ) as run:
        mlflow.log_artifact(str(png), artifact_path="comparison")
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "comparison.csv"
            table.to_csv(csv, index=False)
            mlflow.log_artifact(str(csv), artifact_path="comparison")
        return run.info.run_id
