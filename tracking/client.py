"""The MLflow client side every tracking module shares: the default store, an experiment
with its artifacts under the data dir, the commit a run was made from, and metrics MLflow
accepts.

Default store: `sqlite:///<data_dir>/mlflow/mlflow.db` with artifacts under
`<data_dir>/mlflow/artifacts`. mlflow is imported lazily (a slow import).
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any


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


def metric_name(name: str) -> str:
    """MLflow accepts letters, digits, _ - . space / in metric names; map the rest to _."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of `metrics` as floats, keys made valid MLflow metric names."""
    return {
        metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def log_config_params(mlflow: Any, run_id: str, config: dict[str, Any]) -> None:
    """The flattened `config` as params of MLflow run `run_id` (values cut to 500 chars),
    leaving out those the run already has: a resumed run logs only what is new, since MLflow
    refuses to change a logged param."""
    from synthloom.config import flatten

    existing = mlflow.get_run(run_id).data.params
    params = {k: str(v)[:500] for k, v in flatten(config).items() if k not in existing}
    if params:
        mlflow.log_params(params)
