"""Frames in the shape peer libraries expect, and their output back in the schema's types.

`to_peer_frame`: the schema's columns in order; numeric as float64, integer columns as
nullable Int64 (so text serialisations read "9", not "9.0"), categorical and text as
Python strings, boolean as the strings "True"/"False", datetime as datetime64; missing
values stay missing (None / NaN / NaT).

`from_peer_frame`: whatever a peer returned, coerced back: numbers parsed (unparsable ->
NaN) and rounded on integer columns, categories and texts as strings, booleans from
True/False in any spelling, datetimes parsed; columns the peer did not return are all
missing. Values are NOT checked against the training domain: the filter stage does that
and counts what it removes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthloom.schema import ColumnKind, TableSchema

_TRUE = {"true", "1", "yes", "1.0"}
_FALSE = {"false", "0", "no", "0.0"}


def to_peer_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The schema's columns of `frame` in plain pandas dtypes (see the module docstring)."""
    out: dict[str, pd.Series] = {}
    for col in schema.columns:
        values = frame[col.name]
        if col.kind is ColumnKind.NUMERIC:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            out[col.name] = numbers.round().astype("Int64") if col.integer else numbers
        elif col.kind is ColumnKind.DATETIME:
            out[col.name] = pd.to_datetime(values, errors="coerce")
        elif col.kind is ColumnKind.BOOLEAN:
            out[col.name] = _as_strings(values.astype("boolean"))
        else:
            out[col.name] = _as_strings(values)
    return pd.DataFrame(out, columns=schema.names).reset_index(drop=True)


def from_peer_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """A peer's output coerced to the schema's column kinds, in schema order."""
    n = len(frame)
    out: dict[str, pd.Series] = {}
    for col in schema.columns:
        if col.name not in frame:
            values = pd.Series([None] * n, dtype=object)
        else:
            values = frame[col.name].reset_index(drop=True)
        if col.kind is ColumnKind.NUMERIC:
            numbers = pd.to_numeric(_blank_to_none(values), errors="coerce").astype("float64")
            out[col.name] = numbers.round() if col.integer else numbers
        elif col.kind is ColumnKind.DATETIME:
            out[col.name] = pd.to_datetime(values, errors="coerce")
        elif col.kind is ColumnKind.BOOLEAN:
            out[col.name] = _parse_booleans(values)
        else:
            out[col.name] = _as_strings(values)
    return pd.DataFrame(out, columns=schema.names)


def _as_strings(values: pd.Series) -> pd.Series:
    """Present values as `str` (numbers that are whole lose their ".0"), missing as None."""

    def text(v: object) -> str | None:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return pd.Series([text(v) for v in values], dtype=object, index=values.index)


def _blank_to_none(values: pd.Series) -> pd.Series:
    if values.dtype != object:
        return values
    return values.map(lambda v: None if isinstance(v, str) and v.strip() in ("", "None") else v)


def _parse_booleans(values: pd.Series) -> pd.Series:
    def parse(v: object) -> bool | None:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        text = str(v).strip().lower()
        return True if text in _TRUE else False if text in _FALSE else None

    return pd.Series([parse(v) for v in values], dtype="boolean")
