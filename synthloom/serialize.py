"""Records <-> text for LLM-based generators (DiffLM arXiv 2411.03250, section 3.1).

Formats:
- "json": one JSON object per record, keys = column names in schema order (the paper's);
  `{"Status": "good", "Seniority": 9, "Income": 129.5, "Home": null}`.
- "compact": a JSON array of the values in schema order, no keys: `["good", 9, 129.5, null]`
  (fewer tokens per record, so faster decoding; the column order is fixed by the schema).
- "raw": a single text column (code, a JSON tool spec) whose value is the record itself.

Keys: a json record's keys are the column names, or with `record_schema(..., keys="aliases")`
short distinct aliases (`key_aliases`: "total_day_minutes" -> "tdm"), which cut a wide
table's tokens per record (mlc_churn: ~245 -> ~150) while each value keeps its own key;
`restore_names` maps a frame of such records back to the column names.

Values: numeric -> int when the column holds whole numbers, else a float rounded to
`float_digits` significant digits (with `number_digits` set, every number, whole or not, is
rounded to that many significant digits first: 1658 -> 1700 at 2; `dequantize_numbers`
spreads generated values back over their rounding interval); boolean -> true/false; datetime -> ISO 8601 string;
categorical/text -> string; missing -> null.
`parse_record` is strict: the text must hold exactly the schema's columns with values of
the right type; it returns the reason otherwise (counted as invalid generations).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

SerialFormat = Literal["json", "compact", "raw"]
FORMATS: tuple[str, ...] = ("json", "compact", "raw")


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def encode_value(
    value: Any, column: ColumnSchema, float_digits: int = 6, number_digits: int | None = None
) -> Any:
    """One cell as a JSON value (see the module docstring)."""
    if _missing(value):
        return None
    if column.kind is ColumnKind.NUMERIC:
        number = float(value)
        if number_digits is not None:
            number = float(f"{number:.{number_digits}g}")
        if column.integer and number.is_integer():
            return int(number)
        return float(f"{number:.{float_digits}g}")
    if column.kind is ColumnKind.BOOLEAN:
        return bool(value)
    if column.kind is ColumnKind.DATETIME:
        return pd.Timestamp(value).isoformat()
    return str(value)


KEY_ALIASES = "key_aliases"  # TableSchema.extra of an aliased record schema: {alias: name}


def _name_words(name: str) -> list[str]:
    """`name` split at separators, camelCase humps and digit runs, lower-cased:
    "total_day_minutes" -> [total, day, minutes]; "creditScore2" -> [credit, score, 2]."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^\W\d_]+", name)
    return [w.lower() for w in words]


def _alias(words: list[str], extra: int) -> str:
    """Initials of `words` (a digit run whole), the last word widened by `extra` letters
    (past its end: a counter appended)."""
    if not words:
        words = ["c"]
    head = "".join(w if w.isdigit() else w[0] for w in words[:-1])
    last = words[-1]
    if last.isdigit():
        return head + last + (str(extra) if extra else "")
    if extra < len(last):
        return head + last[: 1 + extra]
    return head + last + str(extra - len(last) + 1)


def key_aliases(names: Sequence[str]) -> dict[str, str]:
    """{name: alias}: short, distinct record keys, deterministic in `names` and their order.

    An alias is the initials of the name's words ("number_customer_service_calls" ->
    "ncsc"); names whose aliases clash widen their last word one letter at a time
    ("total_day_calls" / "total_day_charge" -> "tdca" / "tdch") until no two are equal;
    names with the same words ("a_b", "aB") get their position as a last word first; names
    still clashing after 32 rounds get "_<position>" appended."""
    words = {name: _name_words(name) for name in names}
    same = Counter(tuple(w) for w in words.values())
    for i, name in enumerate(names):
        if same[tuple(words[name])] > 1:
            words[name] = [*words[name], str(i)]
    extra = dict.fromkeys(names, 0)
    for _ in range(32):
        aliases = {name: _alias(words[name], extra[name]) for name in names}
        counts = Counter(aliases.values())
        clashing = [name for name in names if counts[aliases[name]] > 1]
        if not clashing:
            return aliases
        for name in clashing:
            extra[name] += 1
    # widening can chase itself ("a_b" vs "ab"): the rest get "_<position>" (no alias
    # above contains "_", and positions differ)
    return {
        name: f"{aliases[name]}_{i}" if counts[aliases[name]] > 1 else aliases[name]
        for i, name in enumerate(names)
    }


def record_schema(
    schema: TableSchema, column_order: str = "schema", keys: str = "names"
) -> TableSchema:
    """The schema records are written in: its columns in `column_order` (`schema`: the
    table's; `target_first`: the target column moved to the front; no target: unchanged),
    named by `keys` (`names`: the column names; `aliases`: `key_aliases` of them, the
    target renamed alike, the {alias: name} map kept in `extra["key_aliases"]`)."""
    if column_order not in ("schema", "target_first"):
        raise ValueError(f"unknown column order {column_order!r}; use schema or target_first")
    if keys not in ("names", "aliases"):
        raise ValueError(f"unknown record keys {keys!r}; use names or aliases")
    if column_order == "target_first" and schema.target is not None:
        target = schema.column(schema.target)
        rest = tuple(c for c in schema.columns if c.name != schema.target)
        schema = replace(schema, columns=(target, *rest))
    if keys == "names":
        return schema
    aliases = key_aliases(schema.names)
    return replace(
        schema,
        columns=tuple(replace(c, name=aliases[c.name]) for c in schema.columns),
        target=None if schema.target is None else aliases[schema.target],
        extra={**schema.extra, KEY_ALIASES: {a: n for n, a in aliases.items()}},
    )


def column_key(schema: TableSchema, name: str) -> str:
    """The record key of column `name` under `schema` (a `record_schema`)."""
    names = schema.extra.get(KEY_ALIASES) or {}
    for alias, original in names.items():
        if original == name:
            return alias
    return name


def alias_names(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """`frame` (columns named as in the table) with its columns renamed to a
    `record_schema`'s keys (unchanged where `schema` has no aliases)."""
    names = schema.extra.get(KEY_ALIASES)
    return frame.rename(columns={n: a for a, n in names.items()}) if names else frame


def restore_names(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """`frame` with a `record_schema`'s aliased columns renamed back to the column names
    (unchanged where `schema` has no aliases)."""
    names = schema.extra.get(KEY_ALIASES)
    return frame.rename(columns=names) if names else frame


def condition_schema(schema: TableSchema, column: str, value: str) -> TableSchema:
    """`schema` with `column` (categorical or boolean) allowed only `value`, not null: the
    record language of rows conditioned on column == value."""
    columns = tuple(
        replace(c, categories=(value,), nullable=False) if c.name == column else c
        for c in schema.columns
    )
    return replace(schema, columns=columns)


def _raw_column(schema: TableSchema) -> str:
    text = schema.names_of(ColumnKind.TEXT)
    if len(schema.columns) != 1 or len(text) != 1:
        raise ValueError(
            "the raw format needs a table with exactly one text column (code, a JSON spec); "
            f"this one has columns {schema.names}"
        )
    return text[0]


def serialize_record(
    row: Mapping[str, Any],
    schema: TableSchema,
    fmt: SerialFormat = "json",
    float_digits: int = 6,
    number_digits: int | None = None,
) -> str:
    """The text of one record."""
    if fmt == "raw":
        return str(row[_raw_column(schema)])
    values = [encode_value(row[c.name], c, float_digits, number_digits) for c in schema.columns]
    if fmt == "compact":
        return json.dumps(values, ensure_ascii=False)
    if fmt == "json":
        return json.dumps(dict(zip(schema.names, values, strict=True)), ensure_ascii=False)
    raise ValueError(f"unknown serialization format {fmt!r}; choose one of {FORMATS}")


def value_spans(text: str, fmt: SerialFormat) -> list[tuple[int, int]]:
    """Character spans [start, end) of `text` that carry a record's VALUES, for a loss on
    the value slots only (the grammar writes braces, keys and separators at generation).

    json / compact (as `serialize_record` writes them): per value, a string's characters
    after its opening quote through its closing quote (the content, and the decision to
    end it); any other value's characters and the one separator after it (the decision
    to end a number). raw, or a text `serialize_record` would not have written: the whole
    text, [(0, len(text))].
    """
    whole = [(0, len(text))]
    if fmt == "raw":
        return whole
    try:
        parsed = json.loads(text)
    except ValueError:
        return whole
    if fmt == "json" and isinstance(parsed, dict):
        keys = [json.dumps(k, ensure_ascii=False) + ": " for k in parsed]
        values = list(parsed.values())
        opening, closing = "{", "}"
    elif fmt == "compact" and isinstance(parsed, list):
        keys, values, opening, closing = [""] * len(parsed), parsed, "[", "]"
    else:
        return whole
    spans, pos = [], len(opening)
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        pos += len(key)
        piece = json.dumps(value, ensure_ascii=False)
        if isinstance(value, str):
            spans.append((pos + 1, pos + len(piece)))
        else:
            spans.append((pos, pos + len(piece) + 1))
        pos += len(piece) + (2 if i < len(values) - 1 else 0)  # ", "
    if pos + len(closing) != len(text) or not text.startswith(opening):
        return whole  # not the canonical layout: score everything
    return spans


def serialize_table(
    frame: pd.DataFrame,
    schema: TableSchema,
    fmt: SerialFormat = "json",
    float_digits: int = 6,
    number_digits: int | None = None,
) -> list[str]:
    """`serialize_record` for every row, in order (`frame`'s columns named as in the
    table, or already as `schema`'s keys)."""
    frame = alias_names(frame, schema)
    return [
        serialize_record(row, schema, fmt, float_digits, number_digits)
        for row in frame[schema.names].to_dict(orient="records")
    ]


def dequantize_numbers(
    frame: pd.DataFrame, schema: TableSchema, number_digits: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Spread numbers written at `number_digits` significant digits over their rounding
    interval: a value v != 0 becomes v + u * 10^(floor(log10 |v|) - number_digits + 1),
    u ~ Uniform(-1/2, 1/2), kept inside the column's [minimum, maximum] (or at v, where v
    itself is outside) and rounded for integer columns (so a whole number written exactly, e.g. 5 at 2 digits, stays 5).
    Zeros and missing values are kept (a point mass at 0 stays one). A copy is returned."""
    out = frame.copy()
    for column in schema.columns:
        if column.kind is not ColumnKind.NUMERIC or column.name not in out:
            continue
        values = pd.to_numeric(out[column.name], errors="coerce").to_numpy(dtype=float)
        moved = np.isfinite(values) & (values != 0)
        exponent = np.floor(np.log10(np.abs(values[moved]))) - number_digits + 1
        spread = values[moved] + rng.uniform(-0.5, 0.5, moved.sum()) * 10.0**exponent
        low = np.minimum(-np.inf if column.minimum is None else column.minimum, values[moved])
        high = np.maximum(np.inf if column.maximum is None else column.maximum, values[moved])
        spread = np.clip(spread, low, high)
        if column.integer:
            spread = np.round(spread)
        values[moved] = spread
        series = pd.Series(values, index=out.index)
        if column.integer and not np.isnan(values).any():
            series = series.astype("int64")
        out[column.name] = series
    return out


@dataclass(frozen=True)
class ParseResult:
    """A typed record, or why the text is invalid (`error`) and in which column, if any."""

    record: dict[str, Any] | None
    error: str | None = None
    column: str | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


def _decode_value(value: Any, column: ColumnSchema) -> tuple[Any, str | None]:
    """A JSON value back to the column's type, or an error reason."""
    if value is None:
        return None, (None if column.nullable else "missing value")
    kind = column.kind
    if kind is ColumnKind.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None, "non-numeric value"
        try:
            number = float(value)
        except ValueError:
            return None, "non-numeric value"
        return (number, None) if math.isfinite(number) else (None, "non-finite number")
    if kind is ColumnKind.BOOLEAN:
        if isinstance(value, bool):
            return value, None
        text = str(value).strip().lower()
        if text in {"true", "false"}:
            return text == "true", None
        return None, "non-boolean value"
    if kind is ColumnKind.DATETIME:
        try:
            return pd.Timestamp(str(value)), None
        except (ValueError, TypeError):
            return None, "unparseable date"
    if isinstance(value, (dict, list)):
        return None, "nested value"
    return str(value), None


def _json_payload(text: str, opener: str) -> Any:
    """The first complete JSON value that starts with `opener` in `text` (None if none)."""
    start = text.find(opener)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return value


def parse_record(text: str, schema: TableSchema, fmt: SerialFormat = "json") -> ParseResult:
    """Parse one generated text back into a typed record, or say why it is invalid."""
    if fmt == "raw":
        return (
            ParseResult({_raw_column(schema): text})
            if text.strip()
            else ParseResult(None, "empty text")
        )
    payload = _json_payload(text, "{" if fmt == "json" else "[")
    if payload is None:
        return ParseResult(None, "not valid JSON")
    if fmt == "compact":
        if not isinstance(payload, list) or len(payload) != len(schema.columns):
            return ParseResult(None, "wrong number of values")
        payload = dict(zip(schema.names, payload, strict=True))
    if not isinstance(payload, dict):
        return ParseResult(None, "not a JSON object")
    missing = [n for n in schema.names if n not in payload]
    if missing:
        return ParseResult(None, "missing column", missing[0])
    unknown = [k for k in payload if k not in set(schema.names)]
    if unknown:
        return ParseResult(None, "unknown column", str(unknown[0]))
    record: dict[str, Any] = {}
    for column in schema.columns:
        value, error = _decode_value(payload[column.name], column)
        if error is not None:
            return ParseResult(None, error, column.name)
        record[column.name] = value
    return ParseResult(record)


def parse_records(
    texts: Sequence[str], schema: TableSchema, fmt: SerialFormat = "json"
) -> tuple[pd.DataFrame, Counter]:
    """Valid records as a frame in schema column order, and a count of invalid ones by reason."""
    rows, reasons = [], Counter()
    for text in texts:
        result = parse_record(text, schema, fmt)
        if result.ok:
            rows.append(result.record)
        else:
            reasons[result.error or "invalid"] += 1
    return pd.DataFrame(rows, columns=schema.names), reasons
