"""Measure a scaling curve: downstream error on the real test split vs training-set size D.

For every seed, one nested order of the training rows is drawn (`nested_subsets`, stratified by
label for classification); the student is trained on its first D rows for each size D and
scored on the REAL test split:

- tables:  the MLE model of `synthloom.metrics.mle` (XGBoost, TabSyn protocol, `grid`);
           error = 1 - AUC (classification) or RMSE (regression);
- texts:   a student on fixed sentence embeddings (`student(train_emb, train_labels, test_emb,
           test_labels, seed=) -> {"accuracy", ...}`); error = 1 - accuracy.

The result is a long frame with one row per (size, seed): size, seed, error, metric, n_train
(rows actually used) and note (why an error is missing, e.g. a single class in the subset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthloom.metrics.mle import mle_scores
from synthloom.scaling.law import nested_subsets
from synthloom.schema import TableSchema

POINT_COLUMNS = ("size", "seed", "error", "metric", "n_train", "note")
Student = Callable[..., Mapping[str, float]]


def _point(size: int, seed: int, error: float, metric: str, n_train: int, note: str = "") -> dict:
    return {
        "size": int(size),
        "seed": int(seed),
        "error": float(error),
        "metric": metric,
        "n_train": int(n_train),
        "note": note,
    }


def tabular_error_curve(
    train: pd.DataFrame,
    test: pd.DataFrame,
    schema: TableSchema,
    *,
    sizes: Sequence[int],
    seeds: Sequence[int],
    grid: str | Mapping[str, Sequence[Any]] = "small",
) -> pd.DataFrame:
    """Error of the MLE model trained on nested subsets of `train` (see the module docstring).

    Sizes above len(train) are left out; rows with a missing target are dropped first."""
    if schema.target is None or schema.task not in ("classification", "regression"):
        raise ValueError("a scaling curve on a table needs a schema with a target and a task")
    train = train[train[schema.target].notna()].reset_index(drop=True)
    classify = schema.task == "classification"
    metric = "1-auc" if classify else "rmse"
    strata = train[schema.target].astype(str).to_numpy() if classify else None
    rows: list[dict] = []
    for seed in seeds:
        for size, idx in nested_subsets(len(train), sizes, seed, strata).items():
            scores = mle_scores(train.iloc[idx], test, schema, seeds=(seed,), grid=grid)
            value = scores[f"mle_{'auc' if classify else 'rmse'}_mean"]
            error = 1.0 - value if classify else value
            note = scores.get("mle_note", "") if not math.isfinite(error) else ""
            rows.append(_point(size, seed, error, metric, len(idx), note))
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def text_error_curve(
    train_emb: np.ndarray,
    train_labels: Sequence[str],
    test_emb: np.ndarray,
    test_labels: Sequence[str],
    *,
    sizes: Sequence[int],
    seeds: Sequence[int],
    student: Student,
) -> pd.DataFrame:
    """Error (1 - accuracy) of `student` trained on nested subsets of the embedded texts."""
    labels = np.asarray([str(v) for v in train_labels], dtype=object)
    test_labels = [str(v) for v in test_labels]
    rows: list[dict] = []
    for seed in seeds:
        for size, idx in nested_subsets(len(labels), sizes, seed, labels).items():
            if np.unique(labels[idx]).size < 2:
                rows.append(_point(size, seed, math.nan, "1-accuracy", len(idx), "one class"))
                continue
            scores = student(train_emb[idx], list(labels[idx]), test_emb, test_labels, seed=seed)
            rows.append(_point(size, seed, 1.0 - float(scores["accuracy"]), "1-accuracy", len(idx)))
    return pd.DataFrame(rows, columns=list(POINT_COLUMNS))


def summarize_points(points: pd.DataFrame) -> pd.DataFrame:
    """Per size: mean and std (ddof=0) of the finite errors over seeds, and how many there were."""
    finite = points[np.isfinite(points["error"].astype(float))]
    grouped = finite.groupby("size")["error"]
    return (
        pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.size()})
        .reset_index()
        .sort_values("size")
        .reset_index(drop=True)
    )
