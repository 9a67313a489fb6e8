"""Tasks of a scaling study: find a run's data, measure one curve, fit and plot all curves.

A curve's training rows are a finished run's filtered synthetic set (`filter/synthetic.parquet`)
or, for the reference curve, the real train split (`ingest/train.parquet`); every curve is
scored on the real test split (`ingest/test.parquet`). Text data (one text column and a label)
uses the fast embedding student; other tables the MLE model (see synthloom.scaling.curve).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloom.artifacts import atomic_write_json, read_manifest, read_table
from synthloom.errors import ConfigError, StageError
from synthloom.scaling.curve import summarize_points, tabular_error_curve, text_error_curve
from synthloom.scaling.law import fit_rectified_law
from synthloom.scaling.plots import CurveToPlot, plot_scaling_curves
from synthloom.schema import ColumnKind, TableSchema
from tasks.recorder import load_summary
from tasks.runtime import StageOutput, StageRun, file_refs, stage

FIT_KEYS = ("B", "D_l", "beta", "E", "r2_log", "r2", "plateau_size")


def run_inputs(data_dir: str | Path, run_id: str, label: str) -> dict[str, Any]:
    """The synthetic, train and test file refs ({path, sha256}) of a finished run.

    Raises ConfigError naming the run and the fix when the run or its stages are missing."""
    run_dir = Path(data_dir) / "runs" / run_id
    summary = load_summary(run_dir)
    if summary is None:
        known = sorted(p.name for p in (Path(data_dir) / "runs").glob("*") if p.is_dir())
        raise ConfigError(
            f"Scaling curve {label!r}: run {run_id!r} does not exist under {run_dir.parent} "
            f"(runs there: {', '.join(known[-10:]) or 'none'}). Fix: set `run` to one of those "
            "ids, `config` to a pipeline config to run first, or run.data_dir to where it lives."
        )
    ingest, filtered = read_manifest(run_dir / "ingest"), read_manifest(run_dir / "filter")
    if ingest is None or filtered is None or "synthetic" not in filtered["files"]:
        raise ConfigError(
            f"Scaling curve {label!r}: run {run_id!r} has no finished filter stage (status "
            f"{summary['status']}). Fix: `synthloom resume {run_id}`, then run the study again."
        )
    seed = file_refs(ingest)
    return {
        "run_id": run_id,
        "method": json.loads((run_dir / "config.json").read_text())["method"]["name"],
        "synthetic": file_refs(filtered)["synthetic"],
        "train": seed["train"] if "train" in seed else seed["real_train"],  # text runs
        "test": seed["test"],
    }


def text_columns(schema: TableSchema) -> tuple[str, str] | None:
    """(text column, label column) when a table with a schema is labelled text, else None."""
    texts = schema.names_of(ColumnKind.TEXT)
    if len(texts) == 1 and schema.target is not None and schema.task == "classification":
        return texts[0], schema.target
    return None


def same_test_split(inputs: dict[str, dict[str, Any]]) -> None:
    """Curves are comparable only when scored on the same real test rows."""
    hashes = {label: found["test"]["sha256"] for label, found in inputs.items()}
    if len(set(hashes.values())) > 1:
        listed = ", ".join(f"{label} ({inputs[label]['run_id']})" for label in hashes)
        raise ConfigError(
            f"Scaling study: the curves' runs have different real test splits ({listed}), so "
            "their errors are not comparable. Fix: use runs of the same data source with the "
            "same data.* split settings and run.seed, or study them separately."
        )


@stage("scaling-curve", config=("sizes", "seeds", "student"))
def measure_curve(
    run: StageRun,
    label: str,
    rows_file: dict[str, Any],
    test_file: dict[str, Any],
    sizes: list[int],
    seeds: list[int],
    student: dict[str, Any],
    device: str,
) -> StageOutput:
    """Error on the real test split of the student trained on nested subsets of the rows."""
    rows, schema = read_table(rows_file["path"])
    test, test_schema = read_table(test_file["path"])
    schema = test_schema or schema
    plain_text = {"text", "label"} <= set(test.columns)  # labelled-text runs: no schema
    if schema is None and not plain_text:
        raise StageError(f"Scaling curve {label!r}: {test_file['path']} holds no schema.")
    usable = [s for s in sizes if s <= len(rows)]
    run.log.info(
        "curve %s: %d rows, sizes %s (skipped above %d: %s), seeds %s",
        label,
        len(rows),
        usable,
        len(rows),
        [s for s in sizes if s > len(rows)],
        seeds,
    )
    text = ("text", "label") if schema is None else text_columns(schema)
    if text is None:
        points = tabular_error_curve(
            rows, test, schema, sizes=usable, seeds=seeds, grid=student["mle_grid"]
        )
    else:
        points = _text_points(rows, test, text, usable, seeds, student["encoder"], device)
    points.insert(0, "curve", label)
    points.to_parquet(run.out / "points.parquet", index=False)
    finite = points[np.isfinite(points["error"])]
    metrics: dict[str, Any] = {"points": len(points), "finite_points": len(finite)}
    if len(finite):
        top = finite[finite["size"] == finite["size"].max()]
        metrics |= {
            "largest_size": int(top["size"].iloc[0]),
            "error_at_largest": float(top["error"].mean()),
        }
    return StageOutput(
        files={"points": ("points.parquet", len(points))},
        rows_in=len(rows),
        rows_out=len(points),
        metrics=metrics,
        counts={"sizes_above_available_rows": len(sizes) - len(usable)},
        info={"metric": points["metric"].iloc[0] if len(points) else None},
    )


def _text_points(
    rows: pd.DataFrame,
    test: pd.DataFrame,
    columns: tuple[str, str],
    sizes: list[int],
    seeds: list[int],
    encoder_name: str,
    device: str,
) -> pd.DataFrame:
    """Embed both sides once with the sentence encoder, then run the fast student per subset."""
    from synthloom.metrics.student import fast_student_scores
    from synthloom.models.encoder import encode_texts, load_encoder

    text, label = columns
    rows = rows[rows[text].notna() & rows[label].notna()].reset_index(drop=True)
    model, tokenizer = load_encoder(encoder_name, device=device)
    train_emb = encode_texts(model, tokenizer, rows[text].astype(str).tolist())
    test_emb = encode_texts(model, tokenizer, test[text].astype(str).tolist())
    return text_error_curve(
        train_emb,
        rows[label].astype(str).tolist(),
        test_emb,
        test[label].astype(str).tolist(),
        sizes=sizes,
        seeds=seeds,
        student=fast_student_scores,
    )


@stage("scaling-fit", config=("fit", "title"))
def fit_curves(
    run: StageRun,
    curve_files: dict[str, dict[str, Any]],
    fit: dict[str, Any],
    title: str,
) -> StageOutput:
    """Fit the rectified law to every curve; write fits.json, points.csv and the plots.

    A curve with fewer than 4 sizes holding a finite error gets no fit (fits.json says why)."""
    frames = {label: pd.read_parquet(ref["path"]) for label, ref in curve_files.items()}
    fits: dict[str, Any] = {}
    plotted: list[CurveToPlot] = []
    metrics: dict[str, Any] = {}
    for label, points in frames.items():
        metric = str(points["metric"].iloc[0]) if len(points) else "error"
        try:
            result = fit_rectified_law(
                points["size"],
                points["error"],
                rel_tol=fit["rel_tol"],
                restarts=fit["restarts"],
            )
        except ValueError as err:
            fits[label] = {"fitted": False, "reason": str(err), "metric": metric}
            plotted.append(CurveToPlot(label, points, None, metric))
            run.log.warning("curve %s: no fit (%s)", label, err)
            continue
        fits[label] = {"fitted": True, "metric": metric, **result.to_dict()}
        fits[label]["points"] = summarize_points(points).to_dict(orient="records")
        metrics |= {f"{label}_{k}": v for k, v in result.to_dict().items() if k in FIT_KEYS}
        plotted.append(CurveToPlot(label, points, result, metric))
        run.log.info(
            "curve %s: B=%.4g D_l=%.4g beta=%.3f E=%.4g R2(log)=%.3f plateau D=%.4g",
            label,
            result.B,
            result.D_l,
            result.beta,
            result.E,
            result.r2_log,
            result.plateau_size,
        )
    atomic_write_json(fits, run.out / "fits.json")
    pd.concat(frames.values(), ignore_index=True).to_csv(run.out / "points.csv", index=False)
    files: dict[str, tuple[str, int | None]] = {
        "fits": ("fits.json", None),
        "points": ("points.csv", sum(len(f) for f in frames.values())),
    }
    factor = fit["extrapolate_factor"]
    for curve in plotted:
        name = f"curve_{curve.label}.png"
        plot_scaling_curves([curve], run.out / name, extrapolate_factor=factor, title=curve.label)
        files[f"plot_{curve.label}"] = (name, None)
    plot_scaling_curves(plotted, run.out / "overlay.png", extrapolate_factor=factor, title=title)
    files["overlay"] = ("overlay.png", None)
    return StageOutput(
        files=files,
        rows_in=sum(len(f) for f in frames.values()),
        rows_out=len(fits),
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        counts={"curves_fitted": sum(1 for f in fits.values() if f["fitted"])},
    )
