"""Row filter for synthetic tables: each rule removes rows and counts what it removed.

Rules run in this order (each sees only the rows the previous ones kept):
1. `type_errors`: a value that cannot be coerced to its column's kind (e.g. "abc" in
   a numeric column) - the coerced frame is what later rules and stages see;
2. `incomplete`: a missing value in a column that had none in the training data;
3. `out_of_domain_categories`: a categorical value never seen in training;
4. `out_of_range_numbers`: a number outside [min - w*(max-min), max + w*(max-min)];
5. `duplicates`: a row identical to an earlier kept synthetic row;
6. `training_copies`: a row identical to some training row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synthloom.schema import ColumnKind, TableSchema

RULES = (
    "type_errors",
    "incomplete",
    "out_of_domain_categories",
    "out_of_range_numbers",
    "duplicates",
    "training_copies",
)


@dataclass
class FilterResult:
    kept: pd.DataFrame
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return len(self.kept) + sum(self.removed.values())


def coerce_to_schema(frame: pd.DataFrame, schema: TableSchema) -> tuple[pd.DataFrame, pd.Series]:
    """Coerce every column to its kind; return the frame and a mask of rows with a bad value."""
    out = pd.DataFrame(index=frame.index)
    bad = pd.Series(False, index=frame.index)
    for col in schema.columns:
        raw = (
            frame[col.name]
            if col.name in frame
            else pd.Series(None, index=frame.index, dtype=object)
        )
        was_missing = raw.isna()
        if col.kind is ColumnKind.NUMERIC:
            value = pd.to_numeric(raw, errors="coerce").astype("float64")
        elif col.kind is ColumnKind.DATETIME:
            value = pd.to_datetime(raw, errors="coerce")
        elif col.kind is ColumnKind.BOOLEAN:
            value = raw.map(_parse_bool).astype("boolean")
        else:
            value = raw.map(lambda v: None if pd.isna(v) else str(v)).astype(object)
        bad |= value.isna() & ~was_missing
        out[col.name] = value
    return out, bad


def _parse_bool(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return pd.NA
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "yes", "1", "1.0"}:
        return True
    if text in {"false", "no", "0", "0.0"}:
        return False
    return pd.NA


def _row_keys(frame: pd.DataFrame) -> pd.Series:
    """A hashable key per row where NaN equals NaN (for copy and duplicate checks)."""
    return pd.util.hash_pandas_object(frame.astype(object).where(frame.notna(), None), index=False)


def filter_table(
    synthetic: pd.DataFrame,
    schema: TableSchema,
    train: pd.DataFrame,
    *,
    drop_type_errors: bool = True,
    drop_incomplete: bool = True,
    categories_in_domain: bool = True,
    numeric_range_widening: float | None = 0.1,
    drop_duplicates: bool = True,
    drop_training_copies: bool = False,
) -> FilterResult:
    """Apply the enabled rules in order; `removed[rule]` counts the rows each one dropped."""
    frame, bad_type = coerce_to_schema(synthetic.reset_index(drop=True), schema)
    removed = dict.fromkeys(RULES, 0)

    def drop(rule: str, mask: pd.Series) -> None:
        nonlocal frame
        removed[rule] = int(mask.sum())
        frame = frame.loc[~mask]

    if drop_type_errors:
        drop("type_errors", bad_type.loc[frame.index])
    if drop_incomplete:
        required = [c.name for c in schema.columns if not c.nullable]
        drop(
            "incomplete",
            frame[required].isna().any(axis=1) if required else pd.Series(False, index=frame.index),
        )
    if categories_in_domain:
        mask = pd.Series(False, index=frame.index)
        for col in schema.columns:
            if col.kind is ColumnKind.CATEGORICAL and col.categories is not None:
                values = frame[col.name]
                mask |= values.notna() & ~values.isin(col.categories)
        drop("out_of_domain_categories", mask)
    if numeric_range_widening is not None:
        mask = pd.Series(False, index=frame.index)
        for col in schema.columns:
            if (
                col.kind is ColumnKind.NUMERIC
                and col.minimum is not None
                and col.maximum is not None
            ):
                margin = numeric_range_widening * (col.maximum - col.minimum)
                values = frame[col.name]
                mask |= values.notna() & (
                    (values < col.minimum - margin) | (values > col.maximum + margin)
                )
        drop("out_of_range_numbers", mask)
    if drop_duplicates:
        drop("duplicates", _row_keys(frame).duplicated())
    if drop_training_copies and len(frame):
        train_keys = set(_row_keys(coerce_to_schema(train, schema)[0]).tolist())
        drop("training_copies", _row_keys(frame).isin(train_keys))
    return FilterResult(kept=frame.reset_index(drop=True), removed=removed)
