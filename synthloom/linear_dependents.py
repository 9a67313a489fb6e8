"""Exact linear dependents: a numeric column that is a linear function of another one.

Real tables carry accounting identities (a charge billed per minute: charge = 0.17 x
minutes, rounded to cents). A generator that models both columns reproduces the identity
only approximately; one that models the source and writes the dependent back from it keeps
it exactly in every row and spends no capacity on it.

`find_linear_dependents(frame, schema)` finds, in schema order, each numeric column b with
an earlier numeric column a such that on every row
    |b - (s a + c)| <= 0.5 x 10^-decimals(b) + |s| x 0.5 x 10^-decimals(a)
(the rounding both columns carry), with |corr(a, b)| >= 0.9999, and round(s a + c) equals
b exactly on at least 95 % of the rows (b = 3a +- 1 is within an integer a's rounding, but
not an identity). The slope is the least-squares slope shortened to the fewest significant
digits that still fit (0.1699994 -> 0.17), and an intercept inside the rounding is 0.
Neither column may have gaps or fewer than 3 distinct values, the target is never one of
them, and a dependent is never a source.
`write_dependents(columns, rules)` returns each dependent as round(s a + c, decimals(b)),
halves rounded away from zero (as a bill is), clipped to b's training range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from synthloom.metrics.mle import numeric_values
from synthloom.schema import ColumnKind, TableSchema

# share of rows the identity must write exactly (rounded half up to b's decimals)
_EXACT_SHARE = 0.95


def find_linear_dependents(
    frame: pd.DataFrame, schema: TableSchema, max_decimals: int
) -> dict[str, dict[str, Any]]:
    """Numeric columns that are an exact linear function of an earlier one (module
    docstring): {dependent: {source, slope, intercept, decimals, low, high}}. A column
    found dependent is never a source, so every chain resolves in one step."""
    numbers: dict[str, np.ndarray] = {}
    decimals: dict[str, int | None] = {}
    for col in schema.columns:
        if col.kind is not ColumnKind.NUMERIC or col.name == schema.target:
            continue
        values = numeric_values(frame[col.name], col.kind).astype(float)
        if np.isnan(values).any() or len(np.unique(values)) < 3:
            continue
        numbers[col.name] = values
        decimals[col.name] = 0 if col.integer else observed_decimals(values, max_decimals)
    derived: dict[str, dict[str, Any]] = {}
    names = list(numbers)
    for i, name in enumerate(names):
        b = numbers[name]
        for source in names[:i]:
            if source in derived:
                continue
            a = numbers[source]
            if abs(np.corrcoef(a, b)[0, 1]) < 0.9999:
                continue
            fitted = _simplest_line(a, b, decimals[source], decimals[name])
            if fitted is not None:
                derived[name] = {
                    "source": source,
                    "slope": fitted[0],
                    "intercept": fitted[1],
                    "decimals": decimals[name],
                    "low": float(b.min()),
                    "high": float(b.max()),
                }
                break
    return derived


def _simplest_line(
    a: np.ndarray, b: np.ndarray, decimals_a: int | None, decimals_b: int | None
) -> tuple[float, float] | None:
    """(slope, intercept) with b = slope a + intercept on every row up to both columns'
    rounding, or None. The least-squares slope is shortened to the fewest significant
    digits that still fit (0.1699994 -> 0.17) and an intercept inside the rounding is 0,
    so a per-minute rate decodes as the rate itself."""
    slope, _ = np.polyfit(a, b, 1)
    tolerance = (_half_unit(decimals_b, b) + abs(slope) * _half_unit(decimals_a, a)) * (1 + 1e-6)
    for digits in range(1, 13):
        short = float(f"{slope:.{digits}g}")
        intercept = float(np.mean(b - short * a))
        if abs(intercept) <= tolerance:
            intercept = 0.0
        line = short * a + intercept
        if np.abs(b - line).max() > tolerance:
            continue
        if decimals_b is None or np.mean(_round_half_up(line, decimals_b) == b) >= _EXACT_SHARE:
            return short, intercept
        return None  # within the rounding but not the identity that wrote b
    return None


def _round_half_up(values: np.ndarray, decimals: int) -> np.ndarray:
    """Rounded to `decimals`, halves away from zero (as a bill is; numpy rounds them to
    even); the 1e-9 absorbs the binary error of a product like 0.17 x 265.5."""
    scale = 10.0**decimals
    return np.sign(values) * np.floor(np.abs(values) * scale + 0.5 + 1e-9) / scale


def _half_unit(decimals: int | None, values: np.ndarray) -> float:
    """Half the last written digit's unit (the rounding a value can carry); for a column
    written with more decimals than counted, a millionth of its spread."""
    if decimals is None:
        return 1e-6 * float(np.std(values))
    return 0.5 * 10.0 ** (-decimals)


def write_dependents(
    columns: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """{dependent: values} from the decoded source columns in `columns` (see the module
    docstring)."""
    out: dict[str, np.ndarray] = {}
    for name, rule in rules.items():
        values = rule["slope"] * np.asarray(columns[rule["source"]], dtype=float)
        values = np.clip(values + rule["intercept"], rule["low"], rule["high"])
        decimals = rule["decimals"]
        out[name] = values if decimals is None else _round_half_up(values, decimals)
    return out


def rule_text(rule: Mapping[str, Any]) -> str:
    """One rule as the logs and run info write it: "0.17 x total_day_minutes + 0"."""
    return f"{rule['slope']:g} x {rule['source']} + {rule['intercept']:g}"


def observed_decimals(values: np.ndarray, limit: int) -> int | None:
    """The fewest decimals (<= limit) that write every observed value exactly; None: more."""
    for decimals in range(limit + 1):
        if np.allclose(np.round(values, decimals), values, rtol=0, atol=1e-9):
            return decimals
    return None
