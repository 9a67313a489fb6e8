"""The comparison table: one row per generator plus the real-data reference, every number
traceable to the MLflow run (and synthloom run) it came from.

Columns (`COLUMNS`), per row:
- quality: `column_shape_error_pct`, `pair_trend_error_pct` (sdmetrics, thresholds 0);
- MLE: `mle_mean`, `mle_std` (over the evaluate seeds), `mle_best` (best-of-N), in the
  metric named by `mle_metric` (AUC for classification, RMSE for regression);
- privacy: `dcr_share` (0.5 ideal), `exact_copy_rate`; detection: `c2st` (1 = indistinguishable);
- `valid_row_rate` = rows kept by the filter / rows the generator attempted (DiffLM and GReaT
  count every generation they tried, unparsable ones included);
- cost: `fit_s` (compute seconds of the fitting stages: fit, or serialize + train_vae +
  train_diffusion), `sample_s` (the generate stage), `rows_per_s` = kept rows / `sample_s`,
  `peak_rss_mb` (the process's peak resident memory while that generator's pipeline ran,
  see flows/bench.py);
- `rows` (kept synthetic rows), `status`, `note`, `run_id`, `mlflow_run_id`.
A skipped or failed generator keeps its row with the reason in `note` and empty metrics.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

FIT_STAGES = ("fit", "serialize", "train_vae", "train_diffusion")
COLUMNS = (
    "generator",
    "method",
    "status",
    "rows",
    "valid_row_rate",
    "column_shape_error_pct",
    "pair_trend_error_pct",
    "mle_metric",
    "mle_mean",
    "mle_std",
    "mle_best",
    "dcr_share",
    "exact_copy_rate",
    "c2st",
    "fit_s",
    "sample_s",
    "rows_per_s",
    "peak_rss_mb",
    "run_id",
    "mlflow_run_id",
    "note",
)
REFERENCE_LABEL = "real data (reference)"


def _mle(metrics: dict[str, Any]) -> dict[str, Any]:
    metric = metrics.get("mle_metric")  # run summaries keep numbers only: infer it there
    if metric is None:
        metric = next((m for m in ("auc", "rmse") if f"mle_{m}_mean" in metrics), None)
    if metric is None:
        return {}
    return {
        "mle_metric": metric,
        "mle_mean": metrics.get(f"mle_{metric}_mean"),
        "mle_std": metrics.get(f"mle_{metric}_std"),
        "mle_best": metrics.get(f"mle_{metric}_best"),
    }


def _shared_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "column_shape_error_pct",
        "pair_trend_error_pct",
        "dcr_share",
        "exact_copy_rate",
        "c2st",
    )
    return {k: metrics.get(k) for k in keys} | _mle(metrics)


def reference_row(metrics: dict[str, Any], mlflow_run_id: str | None) -> dict[str, Any]:
    """The real-data row (metrics from `synthloom.bench.reference.real_reference_metrics`)."""
    return {
        "generator": REFERENCE_LABEL,
        "method": "real",
        "status": "completed",
        "rows": int(metrics.get("eval_n_synthetic", 0)),
        **_shared_metrics(metrics),
        "mlflow_run_id": mlflow_run_id,
        "note": "MLE: trained on real train rows; other metrics: the real validation split "
        "measured as if synthetic",
    }


def generator_row(
    label: str,
    method: str,
    summary: dict[str, Any],
    peak_rss_mb: float | None,
    note: str | None = None,
) -> dict[str, Any]:
    """A generator's row from its pipeline run summary (see tasks/recorder.py)."""
    metrics = summary.get("metrics") or {}
    stages = {s["name"]: s for s in summary.get("stages", [])}
    fitted = [stages[n] for n in FIT_STAGES if stages.get(n, {}).get("status") == "completed"]
    fit_s = sum(s.get("compute_seconds") or 0.0 for s in fitted) if fitted else None
    generate = stages.get("generate", {})
    sample_s = generate.get("compute_seconds") if generate.get("status") == "completed" else None
    flt = stages.get("filter", {})
    kept = flt.get("rows_out") if flt.get("status") == "completed" else None
    attempts = metrics.get("generate_attempts") or generate.get("rows_out")
    valid = (
        kept / attempts if kept is not None and attempts else metrics.get("filter_valid_row_rate")
    )
    error = (summary.get("error") or {}).get("message")
    return {
        "generator": label,
        "method": method,
        "status": summary.get("status", "failed"),
        "rows": kept,
        "valid_row_rate": valid,
        **_shared_metrics(metrics),
        "fit_s": fit_s,
        "sample_s": sample_s,
        "rows_per_s": kept / sample_s if kept is not None and sample_s else None,
        "peak_rss_mb": peak_rss_mb,
        "run_id": summary.get("run_id"),
        "mlflow_run_id": summary.get("mlflow_run_id"),
        "note": note or error,
    }


def unavailable_row(label: str, method: str, status: str, note: str) -> dict[str, Any]:
    """A generator that did not run (status "skipped") with the reason and the fix."""
    return {"generator": label, "method": method, "status": status, "note": note}


def comparison_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows in the given order with every column of `COLUMNS` (missing values as None/NaN)."""
    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=list(COLUMNS))
    numeric = [c for c in COLUMNS if c not in ("generator", "method", "status", "mle_metric")]
    numeric = [c for c in numeric if c not in ("run_id", "mlflow_run_id", "note")]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


def to_markdown(frame: pd.DataFrame) -> str:
    """The table as Markdown: one line per row, the MLE as mean ± std (best-of-N)."""
    metrics = frame["mle_metric"].dropna().unique().tolist()
    mle_name = f"MLE {metrics[0].upper()}" if len(metrics) == 1 else "MLE"
    header = (
        "| generator | rows | valid | shape err % | trend err % | "
        f"{mle_name} mean ± std (best) | DCR share | copies | C2ST | fit s | sample s | "
        "rows/s | peak RSS MB | MLflow run |"
    )
    lines = [header, "|" + "---|" * 14]
    for row in frame.to_dict("records"):
        if row["status"] != "completed":
            lines.append(
                f"| {row['generator']} | {row['status']}: {row['note'] or ''} |" + " |" * 12
            )
            continue
        mle = (
            f"{_fmt(row['mle_mean'], '.3f')} ± {_fmt(row['mle_std'], '.3f')} "
            f"({_fmt(row['mle_best'], '.3f')})"
            if row["mle_mean"] is not None and not math.isnan(row["mle_mean"])
            else "–"
        )
        rows = _fmt(row["rows"], ".0f")
        lines.append(
            f"| {row['generator']} | {rows} | {_fmt(row['valid_row_rate'], '.1%')} | "
            f"{_fmt(row['column_shape_error_pct'], '.2f')} | "
            f"{_fmt(row['pair_trend_error_pct'], '.2f')} | {mle} | "
            f"{_fmt(row['dcr_share'], '.3f')} | {_fmt(row['exact_copy_rate'], '.2%')} | "
            f"{_fmt(row['c2st'], '.3f')} | {_fmt(row['fit_s'], '.1f')} | "
            f"{_fmt(row['sample_s'], '.1f')} | {_fmt(row['rows_per_s'], '.0f')} | "
            f"{_fmt(row['peak_rss_mb'], '.0f')} | {row['mlflow_run_id'] or '–'} |"
        )
    return "\n".join(lines) + "\n"
