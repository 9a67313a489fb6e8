"""synthloom.linear_dependents: exact linear identities between numeric columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloom.linear_dependents import find_linear_dependents, write_dependents
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema


def _schema(*names: str, integer: tuple[str, ...] = ()) -> TableSchema:
    return TableSchema(
        columns=tuple(ColumnSchema(n, ColumnKind.NUMERIC, integer=n in integer) for n in names)
    )


def test_a_chain_resolves_to_its_first_column_with_an_intercept() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 100, 400).round(1)
    frame = pd.DataFrame(
        {"a": a, "b": (2.5 * a + 10).round(2), "c": (-0.5 * (2.5 * a + 10)).round(3)}
    )
    rules = find_linear_dependents(frame, _schema("a", "b", "c"), max_decimals=6)
    assert set(rules) == {"b", "c"}
    assert all(rule["source"] == "a" for rule in rules.values())  # never from a dependent
    assert rules["b"]["slope"] == 2.5 and rules["b"]["intercept"] == pytest.approx(10, abs=0.01)
    assert rules["c"]["slope"] == pytest.approx(-1.25, abs=1e-6)
    back = write_dependents({"a": a}, rules)
    assert np.abs(back["b"] - frame["b"]).max() <= 0.011
    assert np.abs(back["c"] - frame["c"]).max() <= 0.0011


def test_noise_gaps_and_few_values_are_not_identities() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 1000, 500).astype(float)
    gappy = 3 * a
    gappy[::50] = np.nan
    frame = pd.DataFrame(
        {
            "a": a,
            "off_by_one": 3 * a + rng.integers(-1, 2, 500),  # integers, off by more than 0.5
            "gappy": gappy,
            "flag": (a > 500).astype(float),
            "flag_copy": 2 * (a > 500).astype(float),  # two values: not counted
        }
    )
    schema = _schema("a", "off_by_one", "gappy", "flag", "flag_copy", integer=("a", "off_by_one"))
    assert find_linear_dependents(frame, schema, max_decimals=6) == {}
