"""Privacy: distance to closest record (DCR) and the exact-copy rate.

DCR protocol (TabSyn, arXiv 2310.09656, §"privacy protection"; DiffLM, arXiv 2411.03250): split
the real data into `dcr_train` (rows the generator saw) and `dcr_holdout` (rows it did not), of
equal size. Encode every row, and for each synthetic row s take

    d_train(s)   = min_{r in dcr_train}   ||enc(s) - enc(r)||_1
    d_holdout(s) = min_{r in dcr_holdout} ||enc(s) - enc(r)||_1

    dcr_share = mean_s( [d_train < d_holdout] + 0.5 * [d_train == d_holdout] )

i.e. the share of synthetic rows closer to the training rows, ties counted half. A generator that
does not memorise gives ~0.5 (with equal-sized sets); copying the training rows gives 1.0.
TabSyn's own score counts ties as "closer to holdout" (strict <); it is returned as
``dcr_share_strict`` for comparison.

Encoding (all non-text columns, the target included, as in TabSyn):
- numeric and datetime (epoch seconds) columns min-max scaled by the `dcr_train` range,
  (x - min) / (max - min) (a constant column is scaled by 1); values outside that range are kept;
- a missing numeric value is set to 0.5 (mid-range) and flagged in an extra indicator column
  (added only for columns that have a missing value in one of the three frames), so missing vs
  missing costs 0 and missing vs present costs 1 + |x - 0.5|, i.e. 1 to 1.5;
- categorical/boolean columns one-hot over the schema's categories plus "missing" and "other"
  indicators (see `synthloom.metrics.mle.encode_features`): a mismatch costs 2, as in TabSyn.
Distances are computed with torch.cdist (p=1, float64) in chunks of synthetic rows, so memory is
O(chunk_size * n_reference): 5k x 5k rows need ~40 MB at the default chunk of 1024.

`exact_copy_rate(synthetic, train, schema)`: the share of synthetic rows equal, in every column
(text included; NaN equals NaN), to some row of `train`. Values are compared as they are (no
rounding), after normalising dtypes (booleans, datetimes, category strings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthloom.metrics.mle import category_levels, numeric_values, one_hot
from synthloom.schema import ColumnKind, TableSchema

DEFAULT_CHUNK = 1024


def _dcr_encode(frames: Sequence[pd.DataFrame], schema: TableSchema) -> list[np.ndarray]:
    """Encode `frames` (first one = dcr_train, which sets the numeric ranges) for DCR."""
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for col in schema.columns:
        if col.kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
            vals = [numeric_values(f[col.name], col.kind) for f in frames]
            ref_vals = vals[0][~np.isnan(vals[0])]
            lo = float(ref_vals.min()) if ref_vals.size else 0.0
            hi = float(ref_vals.max()) if ref_vals.size else 1.0
            span = hi - lo if hi > lo else 1.0
            any_nan = any(np.isnan(v).any() for v in vals)
            for out, v in zip(blocks, vals, strict=True):
                nan = np.isnan(v)
                scaled = np.where(nan, 0.5, (v - lo) / span)
                out.append(scaled[:, None])
                if any_nan:
                    out.append(nan.astype(np.float64)[:, None])
        elif col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            levels = category_levels(schema, col.name, *frames)
            for out, f in zip(blocks, frames, strict=True):
                out.append(one_hot(f[col.name], levels))
    width = sum(b.shape[1] for b in blocks[0]) if blocks and blocks[0] else 0
    return [
        np.concatenate(b, axis=1) if b else np.zeros((len(f), width))
        for b, f in zip(blocks, frames, strict=True)
    ]


def _min_l1(x: np.ndarray, ref: np.ndarray, chunk_size: int) -> np.ndarray:
    """For each row of x, the L1 distance to its nearest row of ref (chunked torch.cdist)."""
    import torch

    if len(ref) == 0:
        return np.full(len(x), np.inf)
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float64))
    out = np.empty(len(x), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(x), chunk_size):
            q = torch.from_numpy(np.ascontiguousarray(x[start : start + chunk_size], np.float64))
            out[start : start + len(q)] = torch.cdist(q, r, p=1).min(dim=1).values.numpy()
    return out


def dcr_distances(
    synthetic: pd.DataFrame,
    dcr_train: pd.DataFrame,
    dcr_holdout: pd.DataFrame,
    schema: TableSchema,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """(d_train, d_holdout): per synthetic row, the L1 DCR to dcr_train and to dcr_holdout."""
    enc_tr, enc_syn, enc_ho = _dcr_encode([dcr_train, synthetic, dcr_holdout], schema)
    return _min_l1(enc_syn, enc_tr, chunk_size), _min_l1(enc_syn, enc_ho, chunk_size)


def dcr_scores(
    synthetic: pd.DataFrame,
    dcr_train: pd.DataFrame,
    dcr_holdout: pd.DataFrame,
    schema: TableSchema,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """TabSyn DCR summary: ``dcr_share`` (ideal 0.5, ties half), ``dcr_share_strict`` (TabSyn's
    strict <), ``dcr_train_median``/``dcr_holdout_median``, ``dcr_train_zero_share`` (synthetic
    rows at distance 0 from a training row) and the three row counts."""
    d_tr, d_ho = dcr_distances(synthetic, dcr_train, dcr_holdout, schema, chunk_size=chunk_size)
    n = len(d_tr)
    if n == 0:
        share = strict = med_tr = med_ho = zero = math.nan
    else:
        share = float(np.mean((d_tr < d_ho) + 0.5 * (d_tr == d_ho)))
        strict = float(np.mean(d_tr < d_ho))
        med_tr, med_ho = float(np.median(d_tr)), float(np.median(d_ho))
        zero = float(np.mean(d_tr == 0))
    return {
        "dcr_share": share,
        "dcr_share_strict": strict,
        "dcr_train_median": med_tr,
        "dcr_holdout_median": med_ho,
        "dcr_train_zero_share": zero,
        "dcr_n_synthetic": float(n),
        "dcr_n_train": float(len(dcr_train)),
        "dcr_n_holdout": float(len(dcr_holdout)),
    }


def _row_keys(frame: pd.DataFrame, schema: TableSchema) -> list[tuple[Any, ...]]:
    """Hashable per-row keys, missing values as None, dtypes normalised per schema kind."""
    cols: list[list[Any]] = []
    for col in schema.columns:
        s = frame[col.name]
        missing = s.isna().to_numpy()
        if col.kind is ColumnKind.NUMERIC:
            vals: list[Any] = numeric_values(s, col.kind).tolist()
        elif col.kind is ColumnKind.DATETIME:
            dt = pd.to_datetime(s, errors="coerce")
            vals = dt.to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
        else:  # categorical, boolean, text: compare as strings
            vals = s.astype(object).map(str).tolist()
        cols.append([None if m else v for v, m in zip(vals, missing, strict=True)])
    return list(zip(*cols, strict=True)) if cols else [() for _ in range(len(frame))]


def exact_copy_rate(synthetic: pd.DataFrame, train: pd.DataFrame, schema: TableSchema) -> float:
    """Share of synthetic rows identical (all schema columns, NaN == NaN) to some train row."""
    if len(synthetic) == 0:
        return math.nan
    seen = set(_row_keys(train, schema))
    return float(np.mean([k in seen for k in _row_keys(synthetic, schema)]))
