"""`synthloom compare`: the table of pipeline runs from MLflow, sorted best first, and its
bar chart, logged as a small comparison run."""

from __future__ import annotations

import math
import time
from pathlib import Path

from synthloom.metrics.headline import HEADLINE_METRICS
from tracking.client import ensure_experiment, mlflow_at


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
