"""Machine-learning efficacy (MLE): train on synthetic rows, test on real rows.

Protocol (TabSyn, Zhang et al. 2024, arXiv 2310.09656, as reused by DiffLM, arXiv 2411.03250):
for each seed, hold out 1/9 of the training rows (seeded shuffle) as validation, fit an XGBoost
model for every setting of the grid on the other 8/9, select the setting with the best
validation score and report that model's score on the REAL test set (the selected model is not
refit on the validation rows, as in TabSyn). The TabSyn grid has 36 settings::

    n_estimators [10, 50, 100] x min_child_weight [1, 10] x max_depth [5, 10, 20] x gamma [0, 1]

Models with fewer trees are read off the largest model with ``iteration_range`` instead of being
refit: with no row/column subsampling boosting is deterministic and sequential, so the first k
trees of a 100-tree model are exactly the k-tree model (checked in the tests); this makes the
grid about 1.6x cheaper with identical results.

Metrics. Classification: ROC AUC on the test set (binary AUC; macro one-vs-rest AUC over the
classes present in the test set for multiclass; model selection by validation AUC, falling back
to validation accuracy where the validation split holds a single class), plus accuracy and macro
F1 as extras. Regression: RMSE in the target's units (selection by validation RMSE) plus R2.

Encoding (shared with the privacy and detection metrics, see `encode_features`): categorical and
boolean columns are one-hot encoded over the schema's categories plus a "missing" and an "other"
(value not among the schema's categories) indicator, so train and test matrices align even when
synthetic data lacks a category; numerics are passed as-is (XGBoost routes NaN itself); datetimes
become epoch seconds; text columns are dropped. Rows whose target is missing are dropped.

Returned keys (classification / regression)::

    mle_metric                      "auc" | "rmse"
    mle_auc_mean, mle_auc_std       over seeds (std with ddof=0, as TabSyn); NaN seeds ignored
    mle_auc_best                    best seed (max AUC / min RMSE)
    mle_auc_per_seed                list[float], one per seed, in `seeds` order
    mle_accuracy_mean, mle_accuracy_per_seed, mle_f1_mean, mle_f1_per_seed   (classification)
    mle_rmse_mean, mle_rmse_std, mle_rmse_best, mle_rmse_per_seed            (regression)
    mle_r2_mean, mle_r2_per_seed                                             (regression)
    mle_selected_params_per_seed    list[str], the selected grid setting per seed
    mle_n_train, mle_n_test         rows used after dropping missing targets
    mle_note                        only present when something was degenerate (e.g. one class)
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthloom.schema import ColumnKind, TableSchema

GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "tabsyn": {
        "n_estimators": (10, 50, 100),
        "min_child_weight": (1, 10),
        "max_depth": (5, 10, 20),
        "gamma": (0.0, 1.0),
    },
    "small": {
        "n_estimators": (10, 50),
        "min_child_weight": (1,),
        "max_depth": (3, 6),
        "gamma": (0.0,),
    },
}

MISSING_LEVEL = "<missing>"
OTHER_LEVEL = "<other>"


# --------------------------------------------------------------------------- encoding helpers


def category_levels(schema: TableSchema, name: str, *frames: pd.DataFrame) -> tuple[str, ...]:
    """The category strings of a categorical/boolean column: the schema's, or (when the schema
    has none) the sorted union of the values observed in `frames`."""
    col = schema.column(name)
    if col.categories is not None:
        return tuple(col.categories)
    if col.kind is ColumnKind.BOOLEAN:
        return ("False", "True")
    seen: set[str] = set()
    for frame in frames:
        if name in frame.columns:
            seen.update(as_strings(frame[name]).dropna().unique().tolist())
    return tuple(sorted(seen))


def as_strings(series: pd.Series) -> pd.Series:
    """Values as str (booleans as "True"/"False"), missing values as None (object dtype)."""
    obj = series.astype(object)
    missing = series.isna().to_numpy()
    out = obj.map(str).astype(object)
    out[missing] = None
    return out


def one_hot(series: pd.Series, levels: Sequence[str]) -> np.ndarray:
    """(n, len(levels) + 2) float64 one-hot block: one column per level, then a missing and an
    "other" (value not among `levels`) indicator."""
    strs = as_strings(series)
    missing = strs.isna().to_numpy()
    codes = pd.Categorical(strs, categories=list(levels)).codes.astype(np.int64)
    n, k = len(series), len(levels)
    codes = np.where(missing, k, np.where(codes < 0, k + 1, codes))
    out = np.zeros((n, k + 2), dtype=np.float64)
    out[np.arange(n), codes] = 1.0
    return out


def numeric_values(series: pd.Series, kind: ColumnKind) -> np.ndarray:
    """float64 values with NaN for missing; datetimes as epoch seconds."""
    if kind is ColumnKind.DATETIME:
        dt = pd.to_datetime(series, errors="coerce")
        ns = dt.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        ns[dt.isna().to_numpy()] = np.nan
        return ns / 1e9
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def encode_features(
    frame: pd.DataFrame,
    schema: TableSchema,
    columns: Sequence[str],
    levels: Mapping[str, Sequence[str]],
) -> tuple[np.ndarray, list[str]]:
    """Encode `columns` of `frame` to a float64 matrix and its column names.

    Numeric/datetime columns give one column (NaN kept; datetimes in epoch seconds);
    categorical/boolean columns give the `one_hot` block over `levels[name]`; text is skipped."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for name in columns:
        kind = schema.column(name).kind
        if kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
            blocks.append(numeric_values(frame[name], kind)[:, None])
            names.append(name)
        elif kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            lv = list(levels[name])
            blocks.append(one_hot(frame[name], lv))
            names.extend(f"{name}={v}" for v in [*lv, MISSING_LEVEL, OTHER_LEVEL])
    if not blocks:
        return np.zeros((len(frame), 0)), []
    return np.concatenate(blocks, axis=1), names


# --------------------------------------------------------------------------- grid + scoring


def grid_settings(grid: str | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every setting of a named grid ("tabsyn", "small") or an explicit {param: values} dict."""
    spec = GRIDS[grid] if isinstance(grid, str) else grid
    keys = list(spec)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*spec.values())]


def _nan_stats(values: list[float], higher_is_better: bool) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    ok = arr[~np.isnan(arr)]
    if ok.size == 0:
        return math.nan, math.nan, math.nan
    best = float(ok.max() if higher_is_better else ok.min())
    return float(ok.mean()), float(ok.std(ddof=0)), best


def _auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC (proba[:, 1]) or macro one-vs-rest AUC over the classes present in `y`."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if present.size < 2:
        return math.nan
    if proba.shape[1] == 2:
        return float(roc_auc_score(y == 1, proba[:, 1]))
    return float(np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]))


def _fit_predict_grid(
    task: str,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_eval: list[np.ndarray],
    settings: list[dict[str, Any]],
    seed: int,
    n_jobs: int,
    n_classes: int,
) -> list[list[np.ndarray]]:
    """Predictions (class probabilities over all `n_classes`, or values) of every setting on every
    matrix of `x_eval`, in `settings` order. Settings that differ only in n_estimators share one
    fit (largest n_estimators) and are read off with iteration_range."""
    import xgboost as xgb

    preds: list[list[np.ndarray]] = [[] for _ in settings]
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for i, s in enumerate(settings):
        key = tuple(sorted((k, v) for k, v in s.items() if k != "n_estimators"))
        groups.setdefault(key, []).append(i)

    present = np.unique(y_fit) if task == "classification" else None
    for key, idx in groups.items():
        params = dict(key)
        n_max = max(int(settings[i]["n_estimators"]) for i in idx)
        common = {
            "n_estimators": n_max,
            "random_state": seed,
            "n_jobs": n_jobs,
            "tree_method": "hist",
            "verbosity": 0,
            **params,
        }
        if task == "classification":
            assert present is not None
            model: Any = xgb.XGBClassifier(**common)
            model.fit(x_fit, np.searchsorted(present, y_fit))
        else:
            model = xgb.XGBRegressor(**common)
            model.fit(x_fit, y_fit)
        for i in idx:
            rng = (0, int(settings[i]["n_estimators"]))
            for x in x_eval:
                if task == "classification":
                    assert present is not None
                    p = model.predict_proba(x, iteration_range=rng)
                    full = np.zeros((len(x), n_classes), dtype=np.float64)
                    full[:, present] = p
                    preds[i].append(full)
                else:
                    preds[i].append(model.predict(x, iteration_range=rng).astype(np.float64))
    return preds


def _describe(setting: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items())


# --------------------------------------------------------------------------- public entry point


def mle_scores(
    train: pd.DataFrame,
    test: pd.DataFrame,
    schema: TableSchema,
    *,
    seeds: Iterable[int] = (0, 1, 2),
    grid: str | Mapping[str, Sequence[Any]] = "tabsyn",
    n_jobs: int = 1,
) -> dict[str, Any]:
    """TabSyn machine-learning efficacy of `train` (synthetic or real rows) on the real `test`.

    See the module docstring for the protocol and the returned keys. Deterministic for fixed
    inputs, seeds and grid."""
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score

    target, task = schema.target, schema.task
    if target is None or task not in ("classification", "regression"):
        raise ValueError("mle_scores needs a schema with a target and a task")
    seeds = list(seeds)
    settings = grid_settings(grid)
    feats = [c for c in schema.features if schema.column(c).kind is not ColumnKind.TEXT]
    levels = {
        c: category_levels(schema, c, train, test)
        for c in feats
        if schema.column(c).kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
    }

    train = train[train[target].notna()].reset_index(drop=True)
    test = test[test[target].notna()].reset_index(drop=True)
    notes: list[str] = []
    metric = "auc" if task == "classification" else "rmse"

    if task == "classification":
        classes = category_levels(schema, target, train, test)
        y_tr_all = pd.Categorical(as_strings(train[target]), categories=list(classes)).codes
        y_te_all = pd.Categorical(as_strings(test[target]), categories=list(classes)).codes
        if (y_te_all < 0).any():
            notes.append(f"dropped {(y_te_all < 0).sum()} test rows with an unknown class")
            test = test[y_te_all >= 0].reset_index(drop=True)
            y_te_all = y_te_all[y_te_all >= 0]
        if (y_tr_all < 0).any():
            notes.append(f"dropped {(y_tr_all < 0).sum()} train rows with an unknown class")
            train = train[y_tr_all >= 0].reset_index(drop=True)
            y_tr_all = y_tr_all[y_tr_all >= 0]
        y_train = y_tr_all.astype(np.int64)
        y_test = y_te_all.astype(np.int64)
        n_classes = len(classes)
    else:
        y_train = train[target].to_numpy(dtype=np.float64)
        y_test = test[target].to_numpy(dtype=np.float64)
        n_classes = 0

    x_train, _ = encode_features(train, schema, feats, levels)
    x_test, _ = encode_features(test, schema, feats, levels)

    out: dict[str, Any] = {"mle_metric": metric, "mle_n_train": len(train), "mle_n_test": len(test)}
    main: list[float] = []
    extra_a: list[float] = []  # accuracy | r2
    extra_b: list[float] = []  # macro f1
    chosen: list[str] = []

    degenerate = None
    if len(train) < 9 or len(test) == 0:
        degenerate = f"too few rows (train {len(train)}, test {len(test)})"
    elif task == "classification" and np.unique(y_train).size < 2:
        degenerate = "train set holds a single class"

    for seed in seeds if degenerate is None else []:
        perm = np.random.default_rng(seed).permutation(len(train))
        n_val = len(train) // 9
        val_idx, fit_idx = perm[:n_val], perm[n_val:]
        y_fit, y_val = y_train[fit_idx], y_train[val_idx]
        if task == "classification" and np.unique(y_fit).size < 2:
            notes.append(f"seed {seed}: fit split holds a single class")
            main.append(math.nan)
            extra_a.append(math.nan)
            extra_b.append(math.nan)
            chosen.append("")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = _fit_predict_grid(
                task,
                x_train[fit_idx],
                y_fit,
                [x_train[val_idx], x_test],
                settings,
                seed,
                n_jobs,
                n_classes,
            )
        if task == "classification":
            val_auc = [_auc(y_val, p[0]) for p in preds]
            if np.all(np.isnan(val_auc)):
                val_score = [float(np.mean(p[0].argmax(1) == y_val)) for p in preds]
            else:
                val_score = [(-math.inf if math.isnan(v) else v) for v in val_auc]
            best = int(np.argmax(val_score))
            proba = preds[best][1]
            label = proba.argmax(1)
            main.append(_auc(y_test, proba))
            extra_a.append(float(accuracy_score(y_test, label)))
            extra_b.append(float(f1_score(y_test, label, average="macro", zero_division=0)))
        else:
            val_rmse = [float(np.sqrt(mean_squared_error(y_val, p[0]))) for p in preds]
            best = int(np.argmin(val_rmse))
            pred = preds[best][1]
            main.append(float(np.sqrt(mean_squared_error(y_test, pred))))
            extra_a.append(float(r2_score(y_test, pred)) if len(y_test) > 1 else math.nan)
        chosen.append(_describe(settings[best]))

    if degenerate is not None:
        notes.append(degenerate)
        main = [math.nan] * len(seeds)
        extra_a = [math.nan] * len(seeds)
        extra_b = [math.nan] * len(seeds)
        chosen = [""] * len(seeds)

    higher = task == "classification"
    mean, std, best_v = _nan_stats(main, higher)
    out.update(
        {
            f"mle_{metric}_mean": mean,
            f"mle_{metric}_std": std,
            f"mle_{metric}_best": best_v,
            f"mle_{metric}_per_seed": main,
        }
    )
    if task == "classification":
        out["mle_accuracy_mean"] = _nan_stats(extra_a, True)[0]
        out["mle_accuracy_per_seed"] = extra_a
        out["mle_f1_mean"] = _nan_stats(extra_b, True)[0]
        out["mle_f1_per_seed"] = extra_b
    else:
        out["mle_r2_mean"] = _nan_stats(extra_a, True)[0]
        out["mle_r2_per_seed"] = extra_a
    out["mle_selected_params_per_seed"] = chosen
    if notes:
        out["mle_note"] = "; ".join(notes)
    return out
