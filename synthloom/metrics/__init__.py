"""Metrics for synthetic tables (TabSyn / DiffLM protocol, arXiv 2310.09656 / 2411.03250).

Plain functions over pandas frames and a `TableSchema`; see each module for its contract:
`quality` (sdmetrics shapes / pair trends), `mle` (XGBoost machine-learning efficacy),
`privacy` (DCR, exact copies), `detection` (C2ST) and `tabular` (all of them in one call).
"""

from synthloom.metrics.detection import c2st_score
from synthloom.metrics.mle import GRIDS, encode_features, mle_scores
from synthloom.metrics.privacy import dcr_distances, dcr_scores, exact_copy_rate
from synthloom.metrics.quality import column_quality
from synthloom.metrics.tabular import PIECES, cap_rows, dcr_reference_pair, evaluate_tabular

__all__ = [
    "GRIDS",
    "PIECES",
    "c2st_score",
    "cap_rows",
    "dcr_reference_pair",
    "column_quality",
    "dcr_distances",
    "dcr_scores",
    "encode_features",
    "evaluate_tabular",
    "exact_copy_rate",
    "mle_scores",
]
