"""Tests for synthloom.splits: deterministic, stratified splits and the DCR pair."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from synthloom.errors import DataError
from synthloom.ingest.inference import prepare_seed_table
from synthloom.splits import SPLIT_NAMES, Splits, split_table


def _table(n: int = 500, minority: float = 0.2, target_kind: str = "class"):
    rng = np.random.default_rng(0)
    n_min = int(n * minority)
    df = pd.DataFrame(
        {
            "row": np.arange(n, dtype=float),
            "x": rng.normal(size=n),
            "y": ["rare"] * n_min + ["common"] * (n - n_min)
            if target_kind == "class"
            else rng.normal(size=n),
        }
    )
    return prepare_seed_table(df, source="t.csv", target="y")


def test_sizes_partition_and_names():
    frame, schema = _table()
    s = split_table(frame, schema, seed=0, validation=0.1, test=0.2)
    assert (len(s.train), len(s.validation), len(s.test)) == (350, 50, 100)
    rows = [set(s.train["row"]), set(s.validation["row"]), set(s.test["row"])]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    assert set().union(*rows) == set(frame["row"])
    assert tuple(s.as_dict()) == SPLIT_NAMES
    for name, part in s.as_dict().items():
        assert isinstance(part.index, pd.RangeIndex) and part.index.start == 0, name
        assert list(part.columns) == list(frame.columns), name
        assert part["row"].is_monotonic_increasing, name


def test_same_seed_same_frames_other_seed_differs():
    frame, schema = _table()
    a = split_table(frame, schema, seed=7)
    b = split_table(frame, schema, seed=7)
    c = split_table(frame, schema, seed=8)
    for name in SPLIT_NAMES:
        pd.testing.assert_frame_equal(a.as_dict()[name], b.as_dict()[name])
    assert not a.train.equals(c.train)
    assert not a.dcr_train.equals(c.dcr_train)


def test_stratified_keeps_class_shares():
    frame, schema = _table(n=1000, minority=0.1)
    s = split_table(frame, schema, seed=1)
    assert s.stratified
    for part in (s.train, s.validation, s.test):
        assert (part["y"] == "rare").mean() == pytest.approx(0.1, abs=0.005)


def test_rare_class_falls_back_to_unstratified(caplog):
    df = pd.DataFrame({"x": np.arange(100.0), "y": ["a"] * 60 + ["b"] * 39 + ["c"]})
    frame, schema = prepare_seed_table(df, source="t.csv", target="y")
    with caplog.at_level(logging.WARNING, logger="synthloom.splits"):
        s = split_table(frame, schema, seed=0)
    assert not s.stratified
    assert "falling back to an unstratified" in caplog.text and "'c'" in caplog.text
    assert len(s.train) + len(s.validation) + len(s.test) == 100


def test_regression_is_not_stratified():
    frame, schema = _table(target_kind="float")
    assert schema.task == "regression"
    s = split_table(frame, schema, seed=0)
    assert not s.stratified and len(s.test) == 100


def test_dcr_pair_equal_size_and_holdout_is_test():
    frame, schema = _table()
    s = split_table(frame, schema, seed=2)
    assert len(s.dcr_train) == len(s.dcr_holdout) == len(s.test)
    pd.testing.assert_frame_equal(s.dcr_holdout, s.test)
    assert set(s.dcr_train["row"]) <= set(s.train["row"])


def test_dcr_holdout_shrinks_when_train_is_smaller():
    frame, schema = _table(n=200)
    s = split_table(frame, schema, seed=0, validation=0.1, test=0.7)
    assert len(s.train) == 40 and len(s.test) == 140
    assert len(s.dcr_train) == len(s.dcr_holdout) == 40
    assert set(s.dcr_holdout["row"]) <= set(s.test["row"])
    pd.testing.assert_frame_equal(s.dcr_train, s.train)


def test_zero_validation_gives_empty_frame():
    frame, schema = _table()
    s = split_table(frame, schema, seed=0, validation=0.0, test=0.25)
    assert len(s.validation) == 0 and list(s.validation.columns) == list(frame.columns)
    assert len(s.train) == 375


@pytest.mark.parametrize(
    ("validation", "test"),
    [(-0.1, 0.2), (0.1, 0.0), (0.1, -0.2), (0.5, 0.5), (0.7, 0.4), (float("nan"), 0.2)],
)
def test_bad_fractions_raise_value_error(validation, test):
    frame, schema = _table(n=50)
    with pytest.raises(ValueError):
        split_table(frame, schema, seed=0, validation=validation, test=test)


def test_too_small_table_is_a_data_error():
    frame, schema = _table(n=3, minority=0.34)
    with pytest.raises(DataError, match="too few"):
        split_table(frame, schema, seed=0, validation=0.4, test=0.5)


def test_splits_is_frozen():
    frame, schema = _table(n=50)
    s = split_table(frame, schema, seed=0)
    assert isinstance(s, Splits)
    with pytest.raises(AttributeError):
        s.train = frame  # type: ignore[misc]
