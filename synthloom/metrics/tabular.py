"""One call for the whole tabular evaluation: quality, MLE, privacy and detection.

Protocol (TabSyn, arXiv 2310.09656; DiffLM, arXiv 2411.03250), per piece:
- "quality":   `column_quality(train, synthetic)`: sdmetrics column shapes / pair trends (all
               pairs), as error percentages; the real side is the generator's training data.
- "mle":       `mle_scores(synthetic, test)` and the reference `mle_scores(train, test)`
               (prefixed ``real_``), XGBoost grid, selection on a 1/9 validation split, scored on
               the real test set; ``mle_<metric>_gap`` compares the two means, signed so that a
               positive gap means the synthetic rows are worse (AUC: real - synthetic; RMSE:
               synthetic - real).
- "privacy":   `dcr_scores(synthetic, dcr_train, dcr_holdout)` (ideal 0.5) and
               `exact_copy_rate` against the full `train` (and against `dcr_holdout`, the base
               rate of real duplicates).
- "detection": `c2st_score(train, synthetic)`, sdmetrics LogisticDetection (1.0 = best).

Row caps (the expensive pieces scale with rows): the synthetic rows, `train` for quality /
detection / the real MLE reference, and the MLE training rows are sampled down to `max_rows`
with a fixed `sample_seed`; `test` is never sampled. `dcr_train` and `dcr_holdout` are both sampled
to the same size, min(len(dcr_train), len(dcr_holdout), max_rows), so that 0.5 stays the ideal
`dcr_share`. The exact-copy rate is a hash lookup and uses all rows.

The result is one flat dict: floats, per-seed lists, a few strings (``mle_metric``, notes), the
per-column shape scores as ``column_shape_score.<column>`` and wall-clock seconds per piece as
``time_<piece>_s``. Pass a previously computed `real_mle` (the output of `mle_scores` on the real
train rows, same seeds/grid/test) to skip the reference refit when evaluating many synthetic sets
against the same split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from synthloom.metrics.detection import c2st_score
from synthloom.metrics.mle import mle_scores
from synthloom.metrics.privacy import dcr_scores, exact_copy_rate
from synthloom.metrics.quality import column_quality
from synthloom.schema import TableSchema

PIECES = ("quality", "mle", "privacy", "detection")


def cap_rows(frame: pd.DataFrame, max_rows: int | None, seed: int = 0) -> pd.DataFrame:
    """`frame` itself when it has at most `max_rows` rows, else a seeded sample (row order kept)."""
    if max_rows is None or len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)


def dcr_reference_pair(
    dcr_train: pd.DataFrame, dcr_holdout: pd.DataFrame, max_rows: int | None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The equal-size (train, holdout) pair DCR is measured against, capped at `max_rows`."""
    n_ref = min(len(dcr_train), len(dcr_holdout))
    if max_rows is not None:
        n_ref = min(n_ref, max_rows)
    return cap_rows(dcr_train, n_ref, seed), cap_rows(dcr_holdout, n_ref, seed)


def evaluate_tabular(
    synthetic: pd.DataFrame,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    dcr_train: pd.DataFrame,
    dcr_holdout: pd.DataFrame,
    schema: TableSchema,
    seeds: Iterable[int] = (0, 1, 2),
    grid: str | Mapping[str, Sequence[Any]] = "tabsyn",
    include: Iterable[str] = PIECES,
    max_rows: int | None = 5000,
    sample_seed: int = 0,
    real_mle: Mapping[str, Any] | None = None,
    n_jobs: int = 1,
) -> dict[str, float | list | str]:
    """Run the selected pieces and return one flat dict of metrics (see the module docstring)."""
    include = set(include)
    unknown = include - set(PIECES)
    if unknown:
        raise ValueError(f"unknown evaluation pieces {sorted(unknown)}; choose from {PIECES}")
    seeds = list(seeds)
    syn = cap_rows(synthetic, max_rows, sample_seed)
    real = cap_rows(train, max_rows, sample_seed)
    out: dict[str, Any] = {"eval_n_synthetic": float(len(synthetic))}

    if "quality" in include:
        t0 = time.perf_counter()
        q = column_quality(real, syn, schema)
        per_column = q.pop("column_shape_scores")
        out.update(q)
        out.update({f"column_shape_score.{k}": v for k, v in per_column.items()})
        out["time_quality_s"] = time.perf_counter() - t0

    if "mle" in include and schema.target is not None and schema.task is not None:
        t0 = time.perf_counter()
        syn_mle = mle_scores(syn, test, schema, seeds=seeds, grid=grid, n_jobs=n_jobs)
        out.update(syn_mle)
        out["time_mle_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if real_mle is None:
            real_mle = mle_scores(real, test, schema, seeds=seeds, grid=grid, n_jobs=n_jobs)
            out["time_real_mle_s"] = time.perf_counter() - t0
        out.update({f"real_{k}": v for k, v in real_mle.items()})
        metric = syn_mle["mle_metric"]
        syn_mean = float(syn_mle[f"mle_{metric}_mean"])
        real_mean = float(real_mle.get(f"mle_{metric}_mean", math.nan))
        gap = real_mean - syn_mean if metric == "auc" else syn_mean - real_mean
        out[f"mle_{metric}_gap"] = gap

    if "privacy" in include:
        t0 = time.perf_counter()
        ref_train, ref_holdout = dcr_reference_pair(dcr_train, dcr_holdout, max_rows, sample_seed)
        out.update(
            dcr_scores(
                syn,
                ref_train,
                ref_holdout,
                schema,
            )
        )
        out["exact_copy_rate"] = exact_copy_rate(synthetic, train, schema)
        out["exact_copy_rate_holdout"] = exact_copy_rate(synthetic, dcr_holdout, schema)
        out["time_privacy_s"] = time.perf_counter() - t0

    if "detection" in include:
        t0 = time.perf_counter()
        out["c2st"] = c2st_score(real, syn, schema, seed=sample_seed)
        out["time_detection_s"] = time.perf_counter() - t0

    return out
