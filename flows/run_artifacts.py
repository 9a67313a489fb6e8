"""What a finished run made, on its Prefect flow-run page (the Artifacts tab).

`publish_run_artifacts(summary)` is called by every pipeline flow once its summary is final
(after MLflow tracking): a markdown overview (status, rows kept, wall time, a link to the
MLflow run, the error of a failed run) and three tables read from summary.json:
the stages (status, cached, seconds, rows in and out), the counts each stage recorded (the
filter's rows removed by rule), and the metrics. Keys are `<run id>-overview` etc.
(lowercased, other characters as dashes), so a resumed run adds a version of the same
artifacts. Publishing never fails a run: a Prefect API error is logged as a warning.
"""

from __future__ import annotations

import math
import re
from typing import Any

from synthloom.metrics.headline import HEADLINE_METRICS

ARTIFACTS = ("overview", "stages", "counts", "metrics")  # the key suffixes, in order
MLFLOW_UI = "http://127.0.0.1:5000"  # `synthloom ui`'s MLflow; a run: /#/runs/<id>


def artifact_key(run_id: str, part: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for `part` of `run_id`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-") or "run"
    return f"{slug}-{part}"


def stage_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "stage": s["name"],
            "status": s["status"],
            "cached": s.get("cached"),
            "seconds": s.get("seconds"),
            "rows_in": s.get("rows_in"),
            "rows_out": s.get("rows_out"),
        }
        for s in summary.get("stages", [])
    ]


def count_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """(stage, count, value) for every count a stage recorded, e.g. filter / removed_duplicates."""
    return [
        {"stage": s["name"], "count": name, "value": value}
        for s in summary.get("stages", [])
        for name, value in (s.get("counts") or {}).items()
    ]


def metric_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's numeric metrics, HEADLINE_METRICS first (in their order), then the rest by name;
    NaN and infinity are shown as text (JSON has no number for them)."""
    metrics = summary.get("metrics") or {}
    order = [k for k in HEADLINE_METRICS if k in metrics]
    order += sorted(k for k in metrics if k not in HEADLINE_METRICS)
    rows = []
    for name in order:
        value = metrics[name]
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        rows.append({"metric": name, "value": value})
    return rows


def overview_markdown(summary: dict[str, Any]) -> str:
    run_id = summary.get("run_id", "?")
    stages = {s["name"]: s for s in summary.get("stages", [])}
    kept = (stages.get("filter") or {}).get("rows_out")
    lines = [
        f"# Run `{run_id}`: {summary.get('status')}",
        "",
        "| | |",
        "|---|---|",
        f"| rows kept | {kept if kept is not None else '-'} |",
        f"| wall time | {summary.get('wall_seconds', '-')} s |",
        f"| config hash | `{str(summary.get('config_hash', ''))[:10]}` |",
        f"| artifacts | `{summary.get('artifact_dir', '')}` |",
    ]
    mlflow_run = summary.get("mlflow_run_id")
    if mlflow_run:
        lines.append(
            f"| MLflow run | [`{mlflow_run}`]({MLFLOW_UI}/#/runs/{mlflow_run}) "
            "(with `synthloom ui` running) |"
        )
    else:
        lines.append("| MLflow run | not logged (tracking off, or it failed: see the log) |")
    error = summary.get("error")
    if error:
        lines += ["", f"**Error** in stage `{error.get('stage')}`: {error.get('message')}"]
    lines += ["", f"Export the kept rows: `synthloom export {run_id} --out rows.parquet`."]
    return "\n".join(lines)


def publish_run_artifacts(summary: dict[str, Any]) -> list[str]:
    """Create the run's artifacts on the current flow run; returns their keys. Nothing is
    published for a run a signal cancelled (the process is leaving within seconds)."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if summary.get("status") == "cancelled":
        return []
    run_id = str(summary.get("run_id", "run"))
    tables = {
        "stages": (stage_rows(summary), "stages: status, cache hits, seconds, rows in and out"),
        "counts": (count_rows(summary), "counts per stage (filter: rows removed by each rule)"),
        "metrics": (metric_rows(summary), "metrics, as summary.json and MLflow hold them"),
    }
    published = []
    try:
        key = artifact_key(run_id, "overview")
        create_markdown_artifact(overview_markdown(summary), key=key, description="run overview")
        published.append(key)
        for part, (rows, description) in tables.items():
            if rows:
                key = artifact_key(run_id, part)
                create_table_artifact(rows, key=key, description=description)
                published.append(key)
    except Exception as exc:  # noqa: BLE001 - the dashboard must not fail a finished run
        get_run_logger().warning(
            "Prefect artifacts not published (%s: %s)", type(exc).__name__, exc
        )
    return published


__all__ = ["ARTIFACTS", "artifact_key", "publish_run_artifacts"]
