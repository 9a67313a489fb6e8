"""Detection (C2ST): can a classifier tell synthetic rows from real ones?

Protocol (TabSyn, arXiv 2310.09656; DiffLM, arXiv 2411.03250): sdmetrics
`LogisticDetection.compute(real_data, synthetic_data, metadata)`, which fits a logistic regression
(mean imputation, RobustScaler) to label real vs synthetic rows with 3-fold stratified CV and
returns

    c2st = 1 - mean_folds( max(0.5, ROC AUC) * 2 - 1 )

Direction: 1.0 = indistinguishable (AUC 0.5, the best), 0.0 = perfectly separable. TabSyn
reports this number as "C2ST" (higher is better).

Two deviations from calling sdmetrics on the raw frames, both so the metric runs on every schema:
- the frames are encoded here first (`synthloom.metrics.mle.encode_features`: one-hot over the
  schema's categories plus "missing"/"other" indicators, numerics as-is, datetimes as epoch
  seconds) and passed with all-numerical metadata. sdmetrics would one-hot the categoricals
  itself, but its encoder is fit on the real rows only and raises on a synthetic category the
  real rows lack, and it silently drops boolean columns; here booleans count and an unseen
  category lands in "other" (which the classifier can then use). Text columns are left out.
- sdmetrics shuffles its folds with numpy's global RNG and no seed; the global RNG is seeded
  with `seed` for the call (and restored afterwards), so the score is deterministic.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from synthloom.metrics.mle import category_levels, encode_features
from synthloom.schema import ColumnKind, TableSchema


def c2st_score(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema, *, seed: int = 0
) -> float:
    """sdmetrics LogisticDetection score in [0, 1]; 1.0 = synthetic indistinguishable from real.

    NaN when it cannot be computed (no usable column, or too few rows for 3 folds)."""
    from sdmetrics.errors import IncomputableMetricError
    from sdmetrics.single_table import LogisticDetection

    cols = schema.sdmetrics_columns
    levels = {
        c: category_levels(schema, c, real, synthetic)
        for c in cols
        if schema.column(c).kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
    }
    x_real, _ = encode_features(real, schema, cols, levels)
    x_syn, _ = encode_features(synthetic, schema, cols, levels)
    if x_real.shape[1] == 0 or min(len(x_real), len(x_syn)) < 3:
        return math.nan
    names = [f"f{i}" for i in range(x_real.shape[1])]
    metadata = {"columns": {n: {"sdtype": "numerical"} for n in names}}
    real_df = pd.DataFrame(x_real, columns=names)
    syn_df = pd.DataFrame(x_syn, columns=names)

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = LogisticDetection.compute(real_df, syn_df, metadata)
    except IncomputableMetricError:
        return math.nan
    finally:
        np.random.set_state(state)
    return float(score)
