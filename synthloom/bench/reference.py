"""The real-data reference row of a bench: what the metrics read for genuinely real rows.

- MLE: XGBoost trained on the real train split (capped at `max_rows`, same seeds and grid as
  every generator) and scored on the real test split: the ceiling a generator aims for.
- quality, privacy, detection: the real VALIDATION split, which no generator trains on, is
  measured exactly as a synthetic set would be (against train; DCR against the same
  dcr_train / dcr_holdout pair). These are the floors of each metric for new real rows of
  that size: sampling noise in the shape/trend errors, the DCR share of rows that are
  neither copied nor memorised, real duplicates in the exact-copy rate, C2ST of real vs real.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from synthloom.metrics import cap_rows, evaluate_tabular, mle_scores
from synthloom.schema import TableSchema


def real_reference_metrics(
    splits: dict[str, pd.DataFrame],
    schema: TableSchema,
    *,
    seeds: Iterable[int] = (0, 1, 2),
    grid: str = "tabsyn",
    include: Iterable[str] = ("quality", "mle", "privacy", "detection"),
    max_rows: int | None = 5000,
) -> dict[str, Any]:
    """Metrics of the reference row, keyed like `evaluate_tabular`'s (see module docstring).

    `splits` holds train, validation, test, dcr_train and dcr_holdout."""
    include = list(include)
    out: dict[str, Any] = {}
    validation = splits["validation"]
    others = [piece for piece in include if piece != "mle"]
    if others and len(validation):
        out.update(
            evaluate_tabular(
                validation,
                train=splits["train"],
                test=splits["test"],
                dcr_train=splits["dcr_train"],
                dcr_holdout=splits["dcr_holdout"],
                schema=schema,
                include=others,
                max_rows=max_rows,
            )
        )
    if "mle" in include and schema.target is not None and schema.task is not None:
        out.update(
            mle_scores(
                cap_rows(splits["train"], max_rows), splits["test"], schema, seeds=seeds, grid=grid
            )
        )
    out["eval_n_synthetic"] = float(len(validation))
    return out
