"""Column-shape and pair-trend fidelity with the sdmetrics QualityReport (single table).

Protocol (TabSyn, arXiv 2310.09656; DiffLM, arXiv 2411.03250): run the sdmetrics quality report
on real vs synthetic rows and report error rates::

    column_shape_error_pct = (1 - Column Shapes score) * 100
    pair_trend_error_pct   = (1 - Column Pair Trends score) * 100

Column Shapes averages, over columns, KSComplement (numeric, datetime) or TVComplement
(categorical, boolean); both ignore missing values. Column Pair Trends averages, over all column
pairs, CorrelationSimilarity (two continuous columns) or ContingencySimilarity (otherwise, with
continuous columns binned into 10 histogram bins).

TabSyn used an sdmetrics release in which every pair counted. Recent releases (0.32 here) average only
pairs whose real correlation / association exceeds `real_correlation_threshold` (0.5) /
`real_association_threshold` (0.3). These are plain attributes of the report in sdmetrics 0.32
(no constructor argument); setting both to 0 on the report, as done here, is passed on to the
ColumnPairTrends property and restores the all-pairs average.

Binning (ours, a fix of the report): sdmetrics 0.32's report bins each table's continuous
columns on that table's OWN histogram edges, so the real and synthetic bin numbers mean
different ranges whenever the two ranges differ: a credit_data sample whose `Time` never
reached the real maximum (72 months, 0.03 % of rows) scored 0.10 on every pair with `Time`,
where binning both on the real edges gives 0.94. SDMetrics' maintainers specify the bins from
the real column with open outer edges (sdmetrics PR #368), which is what
`ContingencySimilarity.compute(..., continuous_column_names=...)` does; every pair with a
continuous column and a discrete one is rescored that way (`pair_trends_binning="real"`,
the default; `"separate"` keeps the report's score, as published figures before 2026-12-05
used).

Columns or pairs whose metric fails (e.g. a synthetic column that is all missing) score NaN and
sdmetrics leaves them out of the average, so such a column does not raise the error; the counts
are returned (``column_shapes_n_failed``, ``pair_trends_n_failed``) so callers can flag it.

Text columns are left out (sdmetrics has no text sdtype). The unified
`sdmetrics.reports.QualityReport` is used with a one-table metadata; the legacy
`sdmetrics.reports.single_table.QualityReport` it replaces gives the same scores.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pandas as pd

from synthloom.metrics.mle import numeric_values
from synthloom.schema import ColumnKind, TableSchema

_TABLE = "table"


def column_quality(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    pair_trends_binning: str = "real",
) -> dict[str, Any]:
    """sdmetrics quality of `synthetic` against `real` (all pairs counted).

    Returns ``column_shapes_score`` and ``pair_trends_score`` (0..1, higher is better),
    ``column_shape_error_pct`` and ``pair_trend_error_pct`` (0..100, lower is better),
    ``column_shape_scores`` (dict column -> KS/TV complement, NaN where it failed),
    ``column_shapes_n_failed``, ``pair_trends_n_pairs`` and ``pair_trends_n_failed``."""
    from sdmetrics.reports import QualityReport

    if pair_trends_binning not in ("real", "separate"):
        raise ValueError(
            f"pair_trends_binning must be 'real' or 'separate', not {pair_trends_binning!r}"
        )
    cols = schema.sdmetrics_columns
    metadata = {"tables": {_TABLE: schema.sdmetrics_metadata()}}
    report = QualityReport()
    report.real_correlation_threshold = 0
    report.real_association_threshold = 0
    with warnings.catch_warnings():  # e.g. scipy's SmallSampleWarning on an all-missing column
        warnings.simplefilter("ignore")
        report.generate(
            {_TABLE: real[cols].reset_index(drop=True)},
            {_TABLE: synthetic[cols].reset_index(drop=True)},
            metadata,
            verbose=False,
        )
    props = report.get_properties().set_index("Property")["Score"]
    shapes = float(props.get("Column Shapes", math.nan))
    trends = float(props.get("Column Pair Trends", math.nan))

    shape_details = report.get_details("Column Shapes")
    per_column = {str(row["Column"]): float(row["Score"]) for _, row in shape_details.iterrows()}
    pair_details = report.get_details("Column Pair Trends")
    if pair_trends_binning == "real" and len(pair_details):
        pair_details = _rebinned_on_real(pair_details, real[cols], synthetic[cols], schema)
        trends = float(pair_details["Score"].mean())  # NaN (failed) pairs left out, as sdmetrics
    n_pairs = int(len(pair_details))
    n_failed = int(pair_details["Score"].isna().sum()) if n_pairs else 0

    return {
        "column_shapes_score": shapes,
        "pair_trends_score": trends,
        "column_shape_error_pct": (1.0 - shapes) * 100.0,
        "pair_trend_error_pct": (1.0 - trends) * 100.0,
        "column_shape_scores": per_column,
        "column_shapes_n_failed": int(sum(math.isnan(v) for v in per_column.values())),
        "pair_trends_n_pairs": n_pairs,
        "pair_trends_n_failed": n_failed,
    }


def _rebinned_on_real(
    details: pd.DataFrame, real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema
) -> pd.DataFrame:
    """The report's pair details with each continuous-discrete pair's ContingencySimilarity
    recomputed on bins taken from the real column (10 histogram bins, open outer edges);
    datetimes binned as epoch seconds (`numeric_values`)."""
    from sdmetrics.column_pairs import ContingencySimilarity

    kinds = {c.name: c.kind for c in schema.columns if c.name in real.columns}
    continuous = {n for n, k in kinds.items() if k in (ColumnKind.NUMERIC, ColumnKind.DATETIME)}
    real, synthetic = real.copy(), synthetic.copy()
    for name, kind in kinds.items():
        if kind is ColumnKind.DATETIME:
            real[name] = numeric_values(real[name], kind)
            synthetic[name] = numeric_values(synthetic[name], kind)
    details = details.copy()
    for i, row in details.iterrows():
        pair = [str(row["Column 1"]), str(row["Column 2"])]
        binned = [c for c in pair if c in continuous]
        if row["Metric"] != "ContingencySimilarity" or not binned or math.isnan(row["Score"]):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            details.at[i, "Score"] = float(
                ContingencySimilarity.compute(
                    real[pair].reset_index(drop=True),
                    synthetic[pair].reset_index(drop=True),
                    continuous_column_names=binned,
                )
            )
    return details
