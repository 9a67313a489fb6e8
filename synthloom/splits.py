"""Deterministic train / validation / test splits and the DCR pair.

`split_table` shuffles with a given seed, so the same seed gives identical frames. On a
classification target the splits are stratified, so every split keeps the class shares;
when some class is too rare for that (fewer than 2 rows, or fewer rows in a split than
there are classes) it falls back to a plain seeded shuffle, logs a warning and sets
``Splits.stratified = False``.

DCR (distance to closest record) follows TabSyn: ``dcr_holdout`` is the test split and
``dcr_train`` an equal-size seeded sample of the train split. A metric then reports the share
of synthetic rows closer to ``dcr_train`` than to ``dcr_holdout``; 50% is ideal, more means
the synthesizer copies its training rows. When train is smaller than test, the holdout is
shrunk to ``len(train)`` so both stay the same size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from synthloom.errors import data_error
from synthloom.schema import TableSchema

__all__ = ["SPLIT_NAMES", "Splits", "split_table"]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test", "dcr_train", "dcr_holdout")


@dataclass(frozen=True, eq=False)
class Splits:
    """The five frames of a split, each with a fresh RangeIndex and the input's columns.

    `stratified` says whether the train/validation/test split kept the class shares of a
    classification target (False for regression, no target, or the rare-class fallback)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    dcr_train: pd.DataFrame
    dcr_holdout: pd.DataFrame
    stratified: bool = False

    def as_dict(self) -> dict[str, pd.DataFrame]:
        """{name: frame} in SPLIT_NAMES order."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def split_table(
    df: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int,
    validation: float = 0.1,
    test: float = 0.2,
) -> Splits:
    """Split `df` into train/validation/test (plus the DCR pair), deterministically per `seed`.

    `validation` and `test` are shares of the rows: 0 <= validation, 0 < test and
    validation + test < 1, else ValueError. Split sizes are ``round(n * share)``, with at least
    one test row and at least one validation row when `validation` > 0; a table too small to
    leave a train row raises DataError. Stratified on ``schema.target`` when
    ``schema.task == "classification"`` (falling back to unstratified when a class is too
    rare). Rows keep their original relative order inside each split; indexes are reset.
    """
    validation = _check_fraction("validation", validation)
    test = _check_fraction("test", test)
    if validation < 0:
        raise ValueError(f"validation must be >= 0, got {validation}")
    if test <= 0:
        raise ValueError(f"test must be > 0, got {test}")
    if validation + test >= 1:
        raise ValueError(
            f"validation + test must be < 1 so rows are left to train on, got "
            f"{validation} + {test} = {validation + test}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed) % (2**32)

    n = len(df)
    n_test = max(1, round(n * test))
    n_val = max(1, round(n * validation)) if validation > 0 else 0
    if n - n_test - n_val < 1:
        raise data_error(
            str(schema.extra.get("source", "seed table")),
            f"the table has {n} rows, too few for a test share of {test} and a validation "
            f"share of {validation} to leave any training rows.",
            "use a larger table, or lower data.test_fraction / data.validation_fraction.",
        )

    stratify = None
    if schema.task == "classification" and schema.target is not None and schema.target in df:
        stratify = df[schema.target].astype(str).where(df[schema.target].notna(), "<NA>")
        stratify = stratify.to_numpy()

    positions = np.arange(n)
    stratified = False
    if stratify is not None:
        try:
            train_idx, val_idx, test_idx = _three_way(positions, n_val, n_test, seed, stratify)
            stratified = True
        except ValueError as err:
            counts = pd.Series(stratify).value_counts()
            log.warning(
                "split_table: stratified split on %r is impossible (%s; smallest class %r has "
                "%d rows); falling back to an unstratified seeded split.",
                schema.target,
                err,
                counts.index[-1],
                int(counts.iloc[-1]),
            )
    if not stratified:
        train_idx, val_idx, test_idx = _three_way(positions, n_val, n_test, seed, None)

    def take(idx: np.ndarray) -> pd.DataFrame:
        return df.iloc[np.sort(idx)].reset_index(drop=True)

    train, val, test_frame = take(train_idx), take(val_idx), take(test_idx)

    n_dcr = min(len(train), len(test_frame))
    rng = np.random.default_rng(seed)
    dcr_train = take(rng.choice(train_idx, size=n_dcr, replace=False))
    if n_dcr < len(test_frame):
        dcr_holdout = take(rng.choice(test_idx, size=n_dcr, replace=False))
    else:
        dcr_holdout = test_frame.copy()
    return Splits(
        train=train,
        validation=val,
        test=test_frame,
        dcr_train=dcr_train,
        dcr_holdout=dcr_holdout,
        stratified=stratified,
    )


def _three_way(
    positions: np.ndarray, n_val: int, n_test: int, seed: int, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of (train, validation, test); raises ValueError if stratifying fails."""
    rest, test_idx = train_test_split(
        positions, test_size=n_test, random_state=seed, shuffle=True, stratify=stratify
    )
    if n_val == 0:
        return np.asarray(rest), np.asarray([], dtype=int), np.asarray(test_idx)
    rest_strat = stratify[rest] if stratify is not None else None
    train_idx, val_idx = train_test_split(
        rest, test_size=n_val, random_state=seed, shuffle=True, stratify=rest_strat
    )
    return np.asarray(train_idx), np.asarray(val_idx), np.asarray(test_idx)
