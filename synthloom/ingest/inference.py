"""Validate and coerce a raw seed table and infer its schema: `prepare_seed_table`, `infer_schema`.

Both take the DataFrame `synthloom.ingest.sources.load_source` returns (or any DataFrame)
and raise `synthloom.errors.DataError` for every problem a user can fix, its message naming
the source, the column, the offending values with their rows (up to 5, data rows counted
from 1) and the fix. `prepare_seed_table` returns the coerced frame and its TableSchema;
`infer_schema` returns the schema only and leaves the frame as it is.

Inference rules
---------------
Strings that are empty or only whitespace count as missing. For each column, in order:

1. ``column_types`` (numeric, categorical, boolean, datetime, text) overrides inference;
   values that cannot be converted to the declared kind are an error listing them.
2. bool dtype (or Python bools) -> **boolean**.
3. int/float dtype -> **numeric** (``integer=True`` when every value is whole). A 0/1 integer
   column stays numeric.
4. datetime dtype -> **datetime** (time zones are converted to UTC and dropped).
5. Strings (evaluated on the distinct values, weighted by their counts):
   a. all values (case-insensitive, stripped) within {true, false}, {yes, no} or {0, 1}
      -> **boolean**;
   b. every value parses as a number -> **numeric**; at least `NUMERIC_PARSE_SHARE` (90%)
      parse but some do not -> DataError naming up to 5 offending values and their rows.
      Thousands separators ("1,007", "12,345.6") are read, and in a ``;``-delimited CSV
      decimal commas ("3,14", "12.345,6"); the count per column is in
      ``schema.extra["coerced_numbers"]`` with the style read (`THOUSANDS_COMMA_STYLE`,
      `DECIMAL_COMMA_STYLE`);
   c. at least `DATETIME_PARSE_SHARE` (95%) of the values are ISO-like dates
      (``YYYY-MM-DD`` optionally followed by a time and a UTC offset) -> **datetime**; the
      rest become missing (counted in ``schema.extra["coerced_to_missing"]``). Declare other
      date formats as datetime;
   d. mean length > `TEXT_MEAN_CHARS` (40) characters or mean > `TEXT_MEAN_WORDS` (6) words
      -> **text**;
   e. otherwise **categorical**. An inferred categorical column may have at most
      `max_categories` distinct values, by default ``min(1000, max(20, n_rows // 5))``
      (`default_max_categories`: at least 5 rows per category on average, never fewer than
      20 nor more than 1000 allowed); more looks like an identifier and is an error.
      Columns declared categorical in ``column_types`` are not limited.

The target column (optional): categorical or boolean -> ``task="classification"``; numeric ->
``"regression"``, except an *inferred* numeric target whose values are whole with at most
`TARGET_MAX_INT_CLASSES` (10) distinct values, which becomes categorical (strings such as
"0", "1") for classification. An inferred text target is treated as categorical. Datetime
and declared-text targets, targets with a single distinct value, and unknown target names
are errors. Rows whose target is missing are dropped by `prepare_seed_table` (counted in
``extra["rows_dropped_missing_target"]``).

Coerced frame conventions (every later stage relies on them): numeric -> float64 with NaN;
categorical and text -> object dtype holding Python ``str`` or ``None``; boolean -> pandas
nullable ``"boolean"``; datetime -> ``datetime64[ns]`` (naive). Column order is preserved and
the index is a fresh RangeIndex.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from synthloom.errors import DataError, data_error
from synthloom.ingest._text import MAX_SHOWN, check_duplicate_names, did_you_mean, quote_names
from synthloom.ingest.sources import CSV_READ_KEY
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

__all__ = [
    "DATETIME_PARSE_SHARE",
    "DECIMAL_COMMA_STYLE",
    "NUMERIC_PARSE_SHARE",
    "TARGET_MAX_INT_CLASSES",
    "TEXT_MEAN_CHARS",
    "TEXT_MEAN_WORDS",
    "THOUSANDS_COMMA_STYLE",
    "default_max_categories",
    "infer_schema",
    "prepare_seed_table",
]

_KIND_NAMES = tuple(k.value for k in ColumnKind)
_BOOL_PAIRS = ({"true", "false"}, {"yes", "no"}, {"0", "1"})
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_BOOL_WORDS_DECLARED = {**_BOOL_WORDS, "t": True, "f": False, "y": True, "n": False}
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
NUMERIC_PARSE_SHARE = 0.9
DATETIME_PARSE_SHARE = 0.95
TEXT_MEAN_CHARS = 40
TEXT_MEAN_WORDS = 6
TARGET_MAX_INT_CLASSES = 10


def default_max_categories(n_rows: int) -> int:
    """Distinct values an inferred categorical column may have: min(1000, max(20, n_rows // 5))."""
    return min(1000, max(20, n_rows // 5))


def prepare_seed_table(
    df: pd.DataFrame,
    *,
    source: str,
    target: str | None,
    drop_columns: Sequence[str] = (),
    column_types: Mapping[str, str] | None = None,
    max_categories: int | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, TableSchema]:
    """Validate, coerce and describe a seed table.

    Drops `drop_columns`, applies `column_types` overrides, infers every other column's
    kind (rules in the module docstring), coerces the frame to the conventions there, drops
    rows with a missing target, and, when `max_rows` is set and the table is larger, keeps a
    seeded random sample of `max_rows` rows (stratified on a classification target when every
    class allows it; original row order kept). Returns the coerced frame (RangeIndex) and
    its TableSchema, whose ``extra`` records the source and any rows dropped or sampled.
    Raises DataError for every problem a user can fix.
    """
    read = dict(df.attrs.get(CSV_READ_KEY) or {}) if isinstance(df, pd.DataFrame) else {}
    df = _check_frame(df, source)
    drop = list(drop_columns or ())
    missing = [c for c in drop if c not in df.columns]
    if missing:
        raise data_error(
            source,
            f"data.drop_columns names {quote_names(missing)}, which the table does not have. "
            f"Available columns: {quote_names(df.columns)}.",
            "remove those names from data.drop_columns or fix their spelling (case-sensitive).",
            column=missing[0],
        )
    types = dict(column_types or {})
    dropped_and_typed = [c for c in types if c in drop]
    if dropped_and_typed:
        raise data_error(
            source,
            f"{quote_names(dropped_and_typed)} appear in both data.drop_columns and data.column_types.",
            "remove them from one of the two.",
            column=dropped_and_typed[0],
        )
    if target is not None and target in drop:
        raise data_error(
            source,
            f"the target {target!r} is listed in data.drop_columns.",
            "remove it from data.drop_columns or choose another data.target.",
            column=target,
        )
    df = df.drop(columns=drop)
    if df.shape[1] == 0:
        raise data_error(
            source,
            "no columns are left after data.drop_columns.",
            "drop fewer columns.",
        )
    if target is not None and list(df.columns) == [target]:
        raise data_error(
            source,
            f"the only column{' left after data.drop_columns' if drop else ''} is the target "
            f"{target!r}: there are no feature columns to predict it from, so no model can "
            "learn it and machine-learning efficacy cannot be measured.",
            "add feature columns to the table"
            + (" (or drop fewer with data.drop_columns)" if drop else "")
            + ", or leave data.target unset to synthesize the single column without a "
            "prediction task.",
            column=target,
        )
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise data_error(
            source,
            f"data.max_rows is {max_rows!r}; it must be a positive whole number.",
            "set data.max_rows to a positive integer, or leave it unset to keep every row.",
        )

    frame, kinds, extra = _infer_and_coerce(
        df, source, target, types, max_categories, decimal_comma=read.get("delimiter") == ";"
    )
    extra = {"source": source, **({"csv": read} if read else {}), **extra}

    if target is not None:
        keep = frame[target].notna().to_numpy()
        if not keep.all():
            extra["rows_dropped_missing_target"] = int((~keep).sum())
            frame = frame.loc[keep].reset_index(drop=True)
    extra["rows"] = len(frame)

    if max_rows is not None and len(frame) > max_rows:
        frame = _sample_rows(frame, max_rows, seed, target if _is_class(kinds, target) else None)
        extra["sampled_from_rows"] = extra["rows"]
        extra["rows"] = len(frame)

    schema = _build_schema(frame, kinds, target, extra)
    return frame, schema


def infer_schema(
    df: pd.DataFrame,
    target: str | None,
    column_types: Mapping[str, str] | None = None,
    max_categories: int | None = None,
    *,
    source: str = "seed table",
) -> TableSchema:
    """Infer the TableSchema of `df` (rules in the module docstring) without changing `df`.

    Performs the same checks as `prepare_seed_table` (except for drop_columns/max_rows) and
    raises DataError the same way. Rows with a missing target are ignored for the statistics.
    """
    read = dict(df.attrs.get(CSV_READ_KEY) or {}) if isinstance(df, pd.DataFrame) else {}
    df = _check_frame(df, source)
    frame, kinds, extra = _infer_and_coerce(
        df,
        source,
        target,
        dict(column_types or {}),
        max_categories,
        decimal_comma=read.get("delimiter") == ";",
    )
    if target is not None:
        frame = frame.loc[frame[target].notna().to_numpy()]
    return _build_schema(frame, kinds, target, {"source": source, **extra})


def _check_frame(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise data_error(
            source,
            f"expected a table, got {type(df).__name__}.",
            "load the data with synthloom.ingest.load_source.",
        )
    names = [str(c) for c in df.columns]
    check_duplicate_names(source, names, "the table")
    if df.shape[1] == 0:
        raise data_error(
            source,
            "the table is empty: it has no columns.",
            "point data.source at a table with data.",
        )
    if df.shape[0] == 0:
        raise data_error(
            source,
            f"the table is empty: it has columns ({quote_names(names)}) but no rows.",
            "point data.source at a table with data rows.",
        )
    out = df.copy()
    out.columns = names
    return out.reset_index(drop=True)


def _is_class(kinds: Mapping[str, ColumnKind], target: str | None) -> bool:
    return target is not None and kinds[target] in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)


def _infer_and_coerce(
    df: pd.DataFrame,
    source: str,
    target: str | None,
    types: dict[str, str],
    max_categories: int | None,
    decimal_comma: bool = False,
) -> tuple[pd.DataFrame, dict[str, ColumnKind], dict[str, Any]]:
    """Check names, then infer and coerce every column. Returns (frame, kinds, extra).

    `decimal_comma` (a ``;``-delimited CSV): numbers are written ``12.345,6``."""
    unknown = [c for c in types if c not in df.columns]
    if unknown:
        raise data_error(
            source,
            f"data.column_types names {quote_names(unknown)}, which the table does not have. "
            f"Available columns: {quote_names(df.columns)}.",
            "remove those names from data.column_types or fix their spelling (case-sensitive).",
            column=unknown[0],
        )
    declared: dict[str, ColumnKind] = {}
    for col, kind in types.items():
        value = getattr(kind, "value", kind)
        if str(value).strip().lower() not in _KIND_NAMES:
            raise data_error(
                source,
                f"data.column_types gives the unknown kind {kind!r}.",
                f"use one of {', '.join(_KIND_NAMES)}.",
                column=col,
            )
        declared[col] = ColumnKind(str(value).strip().lower())
    if target is not None and target not in df.columns:
        raise data_error(
            source,
            f"the target column {target!r} is not in the table"
            f"{did_you_mean(target, df.columns)}. Available columns: {quote_names(df.columns)}.",
            "set data.target to one of the available columns (names are case-sensitive), or "
            "leave it unset for a table without a prediction target.",
            column=target,
        )
    if max_categories is not None and (not isinstance(max_categories, int) or max_categories < 2):
        raise data_error(
            source,
            f"data.max_categories is {max_categories!r}; it must be a whole number >= 2.",
            "set data.max_categories to an integer >= 2, or leave it unset for the default.",
        )
    limit = max_categories if max_categories is not None else default_max_categories(len(df))

    columns: dict[str, pd.Series] = {}
    kinds: dict[str, ColumnKind] = {}
    coerced_missing: dict[str, int] = {}
    coerced_numbers: dict[str, dict[str, Any]] = {}
    for col in df.columns:
        kind, values, lost, separated = _column(
            df[col], col, source, declared.get(col), col == target, limit, decimal_comma
        )
        columns[col], kinds[col] = values, kind
        if lost:
            coerced_missing[col] = lost
        if separated:
            style = DECIMAL_COMMA_STYLE if decimal_comma else THOUSANDS_COMMA_STYLE
            coerced_numbers[col] = {"values": separated, "as": style}
    frame = pd.DataFrame(columns, index=df.index).reset_index(drop=True)
    extra: dict[str, Any] = {}
    if coerced_missing:
        extra["coerced_to_missing"] = coerced_missing
    if coerced_numbers:
        extra["coerced_numbers"] = coerced_numbers
    return frame, kinds, extra


def _column(
    raw: pd.Series,
    name: str,
    source: str,
    declared: ColumnKind | None,
    is_target: bool,
    limit: int,
    decimal_comma: bool = False,
) -> tuple[ColumnKind, pd.Series, int, int]:
    """Infer (or apply the declared) kind of one column.

    Returns (kind, coerced, n_lost, n_separated): values that became missing, and numbers
    read with thousands separators or a decimal comma (`_parse_numbers`)."""
    base, values = _normalise(raw, name, source)
    if values.isna().all():
        what = "the target column" if is_target else "the column"
        raise data_error(
            source,
            f"{what} is entirely empty (all {len(values)} values are missing).",
            "choose another data.target."
            if is_target
            else f"drop it with data.drop_columns: [{name!r}].",
            column=name,
        )

    lost = separated = 0
    if declared is not None:
        kind = declared
        coerced, separated = _coerce_declared(values, base, kind, name, source, decimal_comma)
    elif base == "bool":
        kind, coerced = ColumnKind.BOOLEAN, _to_boolean(values)
    elif base == "number":
        kind, coerced = ColumnKind.NUMERIC, _checked_numeric(values, name, source)
    elif base == "datetime":
        kind, coerced = ColumnKind.DATETIME, _to_datetime_ns(values)
    else:
        kind, coerced, lost, separated = _infer_strings(values, name, source, decimal_comma)

    if is_target:
        if kind is ColumnKind.DATETIME or (kind is ColumnKind.TEXT and declared is not None):
            raise data_error(
                source,
                f"the target column is {kind.value}; a target must be categorical, boolean or "
                "numeric.",
                "choose another data.target, or declare this column categorical/numeric in "
                "data.column_types.",
                column=name,
            )
        if kind is ColumnKind.TEXT:
            kind, coerced = ColumnKind.CATEGORICAL, coerced
        if kind is ColumnKind.NUMERIC and declared is None:
            distinct = coerced.dropna().unique()
            if len(distinct) <= TARGET_MAX_INT_CLASSES and np.all(distinct == np.floor(distinct)):
                kind, coerced = ColumnKind.CATEGORICAL, _to_strings(coerced)
        n_distinct = coerced.dropna().nunique()
        if n_distinct < 2:
            only = coerced.dropna().iloc[0]
            raise data_error(
                source,
                f"the target column has a single distinct value ({_fmt(only)}); there is "
                "nothing for a model to learn or for utility metrics to measure.",
                "choose a target with at least two distinct values, or leave data.target unset.",
                column=name,
            )

    if kind is ColumnKind.CATEGORICAL and declared is None:
        n_distinct = coerced.dropna().nunique()
        if n_distinct > limit:
            examples = ", ".join(repr(v) for v in coerced.dropna().unique()[:3])
            raise data_error(
                source,
                f"the column has {n_distinct} distinct values in {len(coerced)} rows "
                f"(e.g. {examples}), more than the {limit} a categorical column may have; it "
                "looks like an identifier or a high-cardinality column that a synthesizer "
                "cannot learn.",
                f'drop it with data.drop_columns: [{name!r}], declare it "text" in '
                "data.column_types, or raise data.max_categories.",
                column=name,
            )
    return kind, coerced, lost, separated


def _normalise(raw: pd.Series, name: str, source: str) -> tuple[str, pd.Series]:
    """Classify the raw values as bool/number/datetime/str and clean them.

    Returns (base, values). For base "str" the values are Python str (unstripped) or None,
    blank strings counting as None; object columns of Python numbers/bools/datetimes are
    typed. Nested values (lists, dicts, arrays) are a DataError."""
    s = raw
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object).where(s.notna(), None)
    if pd.api.types.is_bool_dtype(s.dtype):
        return "bool", s
    if pd.api.types.is_numeric_dtype(s.dtype):
        return "number", s
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return "datetime", s
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        return "number", s.dt.total_seconds()

    s = s.astype(object)
    mask = s.notna().to_numpy()
    if pd.api.types.infer_dtype(s, skipna=True) == "string":  # fast path: all str
        blank = s.str.strip().eq("").to_numpy()
        return "str", s.where(mask & ~blank, None)
    nonnull = s[mask]
    types = set(map(type, nonnull.tolist()))
    nested = [t for t in types if issubclass(t, (list, tuple, dict, set, np.ndarray))]
    if nested:
        example = nonnull[nonnull.map(lambda v: isinstance(v, tuple(nested)))].iloc[0]
        raise data_error(
            source,
            f"the column holds nested values ({type(example).__name__}, e.g. "
            f"{_fmt(example, 60)}), not single values.",
            f"flatten it into separate columns before loading, or drop it with "
            f"data.drop_columns: [{name!r}].",
            column=name,
        )
    if types and all(issubclass(t, (bool, np.bool_)) for t in types):
        return "bool", s.where(mask, None)
    if types and all(
        issubclass(t, (int, float, np.integer, np.floating)) and not issubclass(t, (bool, np.bool_))
        for t in types
    ):
        return "number", pd.to_numeric(s, errors="coerce")
    if types and all(issubclass(t, (pd.Timestamp, np.datetime64)) for t in types):
        return "datetime", pd.to_datetime(s, errors="coerce", utc=True)
    out = [None if _is_na(v) else (v if isinstance(v, str) else _fmt_str(v)) for v in s.tolist()]
    out = [None if v is None or not v.strip() else v for v in out]
    return "str", pd.Series(out, index=s.index, dtype=object)


def _is_na(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _fmt_str(v: Any) -> str:
    """A value as the string a categorical column stores ("3" for 3.0, "True" for True)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def _fmt(v: Any, width: int = 40) -> str:
    text = repr(_fmt_str(v)) if not isinstance(v, str) else repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _to_strings(s: pd.Series) -> pd.Series:
    return pd.Series(
        [None if _is_na(v) else _fmt_str(v) for v in s.tolist()], index=s.index, dtype=object
    )


def _to_boolean(s: pd.Series) -> pd.Series:
    return pd.Series(
        [pd.NA if _is_na(v) else bool(v) for v in s.tolist()], index=s.index, dtype="boolean"
    )


def _to_datetime_ns(s: pd.Series) -> pd.Series:
    if getattr(s.dtype, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[ns]")


def _checked_numeric(s: pd.Series, name: str, source: str) -> pd.Series:
    values = s.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        rows = np.flatnonzero(inf)
        raise data_error(
            source,
            f"the column holds infinite values at {_rows(rows)}.",
            "replace them with real numbers, or leave the cells empty for missing values.",
            column=name,
        )
    return pd.Series(values, index=s.index, dtype="float64")


def _rows(positions: Sequence[int] | np.ndarray, values: Sequence[Any] | None = None) -> str:
    """'rows 3 ('x'), 9 ('?')' with data rows counted from 1 (the header is not a row)."""
    pos = list(positions)
    parts = []
    for i, p in enumerate(pos[:MAX_SHOWN]):
        parts.append(f"{p + 1}" + (f" ({_fmt(values[i])})" if values is not None else ""))
    more = f" and {len(pos) - MAX_SHOWN} more" if len(pos) > MAX_SHOWN else ""
    word = "row" if len(pos) == 1 else "rows"
    return f"{word} {', '.join(parts)}{more} (data rows counted from 1, header not counted)"


THOUSANDS_COMMA_STYLE = "thousands separator ',' (1,007 -> 1007)"
DECIMAL_COMMA_STYLE = "decimal comma, '.' thousands (12.345,6 -> 12345.6)"
_THOUSANDS_COMMA = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_DECIMAL_COMMA = r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?"


def _parse_numbers(
    values: pd.Series, decimal_comma: bool = False
) -> tuple[pd.Series, np.ndarray, int]:
    """Parse string values as numbers. Returns (parsed float64, positions that failed, how
    many values were read with separators).

    Plain numbers parse as Python writes them. Otherwise "1,007" and "12,345.6" (commas
    between groups of three digits) are read without the commas. With `decimal_comma` (a
    ``;``-delimited file) and a comma in any value of the column, every value is read as
    ``12.345,6`` (comma decimal, '.' thousands): "3,14" is 3.14, and "1.5" is not a number."""
    stripped = values.str.strip()
    present = values.notna().to_numpy()
    if decimal_comma and stripped.str.contains(",", regex=False).fillna(False).any():
        fits = stripped.str.fullmatch(_DECIMAL_COMMA).fillna(False).to_numpy(dtype=bool)
        local = stripped.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        parsed = pd.to_numeric(local.where(fits), errors="coerce").astype("float64")
        marked = stripped.str.contains(r"[.,]").fillna(False).to_numpy(dtype=bool)
        separated = int((fits & marked & parsed.notna().to_numpy()).sum())
    else:
        parsed = pd.to_numeric(stripped, errors="coerce").astype("float64")
        grouped = parsed.isna().to_numpy() & stripped.str.fullmatch(_THOUSANDS_COMMA).fillna(
            False
        ).to_numpy(dtype=bool)
        separated = int(grouped.sum())
        if separated:
            plain = pd.to_numeric(stripped.str.replace(",", "", regex=False), errors="coerce")
            parsed = parsed.where(~grouped, plain.astype("float64"))
    failed = np.flatnonzero(present & parsed.isna().to_numpy())
    return parsed, failed, separated


def _numeric_error(
    values: pd.Series, failed: np.ndarray, name: str, source: str, declared: bool
) -> DataError:
    n_nonnull = int(values.notna().sum())
    shown = [values.iloc[p] for p in failed[:MAX_SHOWN]]
    why = (
        "is declared numeric in data.column_types"
        if declared
        else f"looks numeric ({n_nonnull - len(failed)} of {n_nonnull} values are numbers)"
    )
    return data_error(
        source,
        f"the column {why}, but {len(failed)} value(s) are not numbers: {_rows(failed, shown)}.",
        "clean those values in the file (leave a cell empty for a missing value), or declare "
        f'the column "categorical" or "text" in data.column_types (e.g. {{{name!r}: categorical}}).',
        column=name,
    )


def _coerce_declared(
    values: pd.Series,
    base: str,
    kind: ColumnKind,
    name: str,
    source: str,
    decimal_comma: bool = False,
) -> tuple[pd.Series, int]:
    """The values coerced to the declared kind, and how many numbers had separators."""
    if kind is ColumnKind.NUMERIC:
        if base == "str":
            parsed, failed, separated = _parse_numbers(values, decimal_comma)
            if len(failed):
                raise _numeric_error(values, failed, name, source, declared=True)
            return _checked_numeric(parsed, name, source), separated
    return _coerce_declared_kind(values, base, kind, name, source), 0


def _coerce_declared_kind(
    values: pd.Series, base: str, kind: ColumnKind, name: str, source: str
) -> pd.Series:
    if kind is ColumnKind.NUMERIC:
        if base == "datetime":
            raise data_error(
                source,
                "the column holds dates, which cannot be declared numeric.",
                'declare it "datetime" in data.column_types (or convert it in the file).',
                column=name,
            )
        return _checked_numeric(values, name, source)  # bool or number (str: see caller)
    if kind in (ColumnKind.CATEGORICAL, ColumnKind.TEXT):
        return _to_strings(values)
    if kind is ColumnKind.BOOLEAN:
        if base == "bool":
            return _to_boolean(values)
        mapped: list[Any] = []
        bad: list[int] = []
        for i, v in enumerate(values.tolist()):
            if _is_na(v):
                mapped.append(pd.NA)
                continue
            key = _fmt_str(v).strip().lower()
            if key in ("1.0", "0.0"):
                key = key[0]
            if key in _BOOL_WORDS_DECLARED and base != "datetime":
                mapped.append(_BOOL_WORDS_DECLARED[key])
            else:
                mapped.append(pd.NA)
                bad.append(i)
        if bad:
            raise data_error(
                source,
                "the column is declared boolean in data.column_types, but these values are not "
                f"true/false, yes/no or 1/0: {_rows(bad, [values.iloc[i] for i in bad[:MAX_SHOWN]])}.",
                'clean those values, or declare the column "categorical" instead.',
                column=name,
            )
        return pd.Series(mapped, index=values.index, dtype="boolean")
    if kind is ColumnKind.DATETIME:
        if base == "datetime":
            return _to_datetime_ns(values)
        if base != "str":
            raise data_error(
                source,
                f"the column holds {base} values, which cannot be read as dates.",
                "convert them to ISO dates (YYYY-MM-DD) in the file, or declare another kind.",
                column=name,
            )
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
        retry = parsed.isna() & values.notna()
        if retry.any():
            with contextlib.suppress(ValueError, TypeError):
                again = pd.to_datetime(values[retry], format="mixed", errors="coerce", utc=True)
                parsed = parsed.where(~retry, again)
        failed = np.flatnonzero(values.notna().to_numpy() & parsed.isna().to_numpy())
        if len(failed):
            raise data_error(
                source,
                "the column is declared datetime in data.column_types, but these values are not "
                f"dates: {_rows(failed, [values.iloc[p] for p in failed[:MAX_SHOWN]])}.",
                "clean those values (ISO dates such as 2024-03-31 are safest), or declare the "
                'column "categorical".',
                column=name,
            )
        return _to_datetime_ns(parsed)
    raise AssertionError(kind)


def _infer_strings(
    values: pd.Series, name: str, source: str, decimal_comma: bool = False
) -> tuple[ColumnKind, pd.Series, int, int]:
    """Rule 5 of the module docstring, evaluated on the distinct values (weighted by count).

    Returns (kind, coerced, n_lost, n_separated) as `_column` does."""
    counts = values.value_counts(dropna=True)
    uniq = pd.Series(counts.index.to_numpy(dtype=object), dtype=object)
    weight = counts.to_numpy()
    n = int(weight.sum())

    if len(uniq) <= 12:  # case/space variants of one pair
        lowered = {v.strip().lower() for v in uniq}
        if any(lowered <= pair for pair in _BOOL_PAIRS):
            words = values.str.strip().str.lower().map(_BOOL_WORDS)
            return ColumnKind.BOOLEAN, words.astype("boolean"), 0, 0

    numeric_ok = _parse_numbers(uniq, decimal_comma)[0].notna().to_numpy()
    n_ok = int(weight[numeric_ok].sum())
    if n_ok == n or n_ok / n >= NUMERIC_PARSE_SHARE:
        parsed, failed, separated = _parse_numbers(values, decimal_comma)
        if len(failed):
            raise _numeric_error(values, failed, name, source, declared=False)
        return ColumnKind.NUMERIC, _checked_numeric(parsed, name, source), 0, separated

    iso = uniq.str.strip().str.match(_ISO_DATE).to_numpy(dtype=bool)
    if weight[iso].sum() / n >= DATETIME_PARSE_SHARE:
        stripped = values.str.strip()
        candidates = stripped.where(stripped.str.match(_ISO_DATE).fillna(False).astype(bool))
        parsed_dt = pd.to_datetime(candidates, format="ISO8601", errors="coerce", utc=True)
        n_dt = int(parsed_dt.notna().sum())
        if n_dt / n >= DATETIME_PARSE_SHARE:
            return ColumnKind.DATETIME, _to_datetime_ns(parsed_dt), n - n_dt, 0

    mean_chars = float((uniq.str.len().to_numpy() * weight).sum() / n)
    mean_words = float((uniq.str.count(r"\S+").to_numpy() * weight).sum() / n)
    if mean_chars > TEXT_MEAN_CHARS or mean_words > TEXT_MEAN_WORDS:
        return ColumnKind.TEXT, values.astype(object), 0, 0
    return ColumnKind.CATEGORICAL, values.astype(object), 0, 0


def _sample_rows(frame: pd.DataFrame, n: int, seed: int, stratify: str | None) -> pd.DataFrame:
    chosen: np.ndarray | None = None
    if stratify is not None:
        from sklearn.model_selection import train_test_split

        y = frame[stratify].astype(str).to_numpy()
        with contextlib.suppress(ValueError):
            chosen, _ = train_test_split(
                np.arange(len(frame)), train_size=n, stratify=y, random_state=seed
            )
    if chosen is None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(frame), size=n, replace=False)
    return frame.iloc[np.sort(chosen)].reset_index(drop=True)


def _build_schema(
    frame: pd.DataFrame, kinds: Mapping[str, ColumnKind], target: str | None, extra: dict[str, Any]
) -> TableSchema:
    cols = []
    for name in frame.columns:
        s = frame[name]
        kind = kinds[name]
        nullable = bool(s.isna().any())
        integer = False
        categories = None
        minimum = maximum = None
        if kind is ColumnKind.NUMERIC:
            x = s.to_numpy(dtype="float64")
            x = x[~np.isnan(x)]
            if x.size:
                integer = bool(np.all(x == np.floor(x)))
                minimum, maximum = float(x.min()), float(x.max())
        elif kind is ColumnKind.CATEGORICAL:
            categories = tuple(sorted(str(v) for v in s.dropna().unique()))
        elif kind is ColumnKind.BOOLEAN:
            categories = ("False", "True")
        elif kind is ColumnKind.DATETIME:
            d = s.dropna()
            if len(d):
                minimum = d.min().value / 1e9
                maximum = d.max().value / 1e9
        cols.append(
            ColumnSchema(
                name=name,
                kind=kind,
                nullable=nullable,
                integer=integer,
                categories=categories,
                minimum=minimum,
                maximum=maximum,
            )
        )
    task = None
    if target is not None:
        task = "classification" if _is_class(kinds, target) else "regression"
    return TableSchema(columns=tuple(cols), target=target, task=task, extra=dict(extra))
