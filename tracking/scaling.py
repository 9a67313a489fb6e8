"""MLflow for a scaling study: one parent run, a nested run per curve.

Per curve: `error` (mean over seeds) and `error_std` with step = D, `error_seed_<s>` per seed
with step = D, the fitted parameters (B, D_l, beta, E, R^2, plateau size) as metrics and the
curve's plot. Parent: the study config as params, every curve's parameters as
`<label>_<param>`, the overlay plot, fits.json and points.csv.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.scaling import FIT_KEYS
from tracking.client import (
    ensure_experiment,
    finite_metrics,
    git_commit,
    log_config_params,
    mlflow_at,
)


def log_scaling_study(
    summary: dict[str, Any],
    config: dict[str, Any],
    fit_dir: str | Path,
    *,
    uri: str,
    experiment: str,
    data_dir: str | Path,
) -> str:
    """Log the study (or append to its earlier MLflow run); returns the parent run id."""
    from mlflow.entities import Metric

    mlflow = mlflow_at(uri)
    experiment_id = ensure_experiment(mlflow, experiment, data_dir)
    fit_dir = Path(fit_dir)
    fits = json.loads((fit_dir / "fits.json").read_text(encoding="utf-8"))
    points = pd.read_csv(fit_dir / "points.csv")
    tags = {
        "synthloom.study_id": summary["run_id"],
        "kind": "scaling",
        "curves": ",".join(fits),
        "git_commit": git_commit(),
        "status": summary["status"],
    }
    client = mlflow.tracking.MlflowClient()
    with mlflow.start_run(
        run_id=summary.get("mlflow_run_id"),
        experiment_id=experiment_id,
        run_name=summary["run_id"],
        tags=tags,
    ) as parent:
        mlflow.set_tags(tags)
        log_config_params(mlflow, parent.info.run_id, config)
        mlflow.log_metrics(finite_metrics(summary["metrics"]))
        mlflow.log_metrics(
            finite_metrics(
                {
                    f"{label}_{key}": fit[key]
                    for label, fit in fits.items()
                    if fit.get("fitted")
                    for key in FIT_KEYS
                }
            )
        )
        for label, fit in fits.items():
            with mlflow.start_run(
                run_name=label,
                nested=True,
                experiment_id=experiment_id,
                tags={**tags, "curve": label},
            ) as child:
                now = int(time.time() * 1000)
                curve = points[points["curve"] == label]
                finite = curve[curve["error"].apply(lambda v: math.isfinite(float(v)))]
                metrics = []
                for size, group in finite.groupby("size"):
                    step = int(size)
                    metrics.append(Metric("error", float(group["error"].mean()), now, step))
                    metrics.append(
                        Metric("error_std", float(group["error"].std(ddof=0)), now, step)
                    )
                    for _, row in group.iterrows():
                        metrics.append(
                            Metric(f"error_seed_{int(row['seed'])}", float(row["error"]), now, step)
                        )
                for start in range(0, len(metrics), 1000):
                    client.log_batch(child.info.run_id, metrics=metrics[start : start + 1000])
                mlflow.set_tag("metric", fit.get("metric", ""))
                if fit.get("fitted"):
                    mlflow.log_metrics(finite_metrics({k: fit[k] for k in FIT_KEYS}))
                else:
                    mlflow.set_tag("fit_failed", fit.get("reason", ""))
                plot = fit_dir / f"curve_{label}.png"
                if plot.is_file():
                    mlflow.log_artifact(str(plot))
        for name in ("overlay.png", "fits.json", "points.csv"):
            if (fit_dir / name).is_file():
                mlflow.log_artifact(str(fit_dir / name))
        summary_path = Path(summary["artifact_dir"]) / "summary.json"
        if summary_path.is_file():
            mlflow.log_artifact(str(summary_path))
        return parent.info.run_id
