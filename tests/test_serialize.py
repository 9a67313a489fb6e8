from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from synthloom.schema import ColumnKind, ColumnSchema, TableSchema
from synthloom.serialize import (
    dequantize_numbers,
    parse_record,
    parse_records,
    serialize_record,
    serialize_table,
)


def test_json_round_trip_keeps_values_and_types(mixed_table, mixed_schema) -> None:
    texts = serialize_table(mixed_table, mixed_schema, "json")
    first = json.loads(texts[0])
    assert list(first) == mixed_schema.names
    assert isinstance(first["age"], int) and isinstance(first["married"], bool)
    frame, reasons = parse_records(texts, mixed_schema, "json")
    assert not reasons
    assert len(frame) == len(mixed_table)
    np.testing.assert_allclose(frame["income"].astype(float), mixed_table["income"], rtol=1e-6)
    assert frame["income"].isna().sum() == mixed_table["income"].isna().sum()
    assert (frame["home"] == mixed_table["home"]).all()


def test_compact_is_shorter_and_round_trips(mixed_table, mixed_schema) -> None:
    full = serialize_table(mixed_table, mixed_schema, "json")
    compact = serialize_table(mixed_table, mixed_schema, "compact")
    assert sum(map(len, compact)) < 0.6 * sum(map(len, full))
    frame, reasons = parse_records(compact, mixed_schema, "compact")
    assert not reasons and len(frame) == len(mixed_table)
    assert (frame["status"] == mixed_table["status"]).all()


def test_float_rounding_and_integers() -> None:
    schema = TableSchema(
        (ColumnSchema("x", ColumnKind.NUMERIC), ColumnSchema("n", ColumnKind.NUMERIC, integer=True))
    )
    text = serialize_record({"x": 1 / 3, "n": 4.0}, schema, "json", float_digits=4)
    assert text == '{"x": 0.3333, "n": 4}'


@pytest.mark.parametrize(
    ("text", "error", "column"),
    [
        ("no json here", "not valid JSON", None),
        ('{"income": 1.0, "age": 30', "not valid JSON", None),
        ('{"income": 1.0, "age": 30, "home": "rent", "married": true}', "missing column", "status"),
        (
            '{"income": 1.0, "age": 30, "home": "rent", "married": true, "status": "good", "x": 1}',
            "unknown column",
            "x",
        ),
        (
            '{"income": 1.0, "age": "old", "home": "rent", "married": true, "status": "good"}',
            "non-numeric value",
            "age",
        ),
        (
            '{"income": 1.0, "age": null, "home": "rent", "married": true, "status": "good"}',
            "missing value",
            "age",
        ),
        (
            '{"income": 1.0, "age": 3, "home": "rent", "married": "maybe", "status": "good"}',
            "non-boolean value",
            "married",
        ),
        (
            '{"income": 1.0, "age": 3, "home": ["a"], "married": true, "status": "good"}',
            "nested value",
            "home",
        ),
    ],
)
def test_parse_reports_why_a_text_is_invalid(mixed_schema, text, error, column) -> None:
    result = parse_record(text, mixed_schema, "json")
    assert not result.ok
    assert (result.error, result.column) == (error, column)


def test_parse_tolerates_text_around_the_record(mixed_schema) -> None:
    text = 'Here: {"income": null, "age": 30, "home": "rent", "married": false, "status": "bad"} trailing'
    result = parse_record(text, mixed_schema, "json")
    assert result.ok and result.record["age"] == 30.0 and result.record["income"] is None


def test_raw_format_for_single_text_columns() -> None:
    schema = TableSchema((ColumnSchema("code", ColumnKind.TEXT),))
    frame = pd.DataFrame({"code": ["def f():\n    return 1\n", "x = 2"]})
    texts = serialize_table(frame, schema, "raw")
    assert texts == list(frame["code"])
    parsed, reasons = parse_records([*texts, "   "], schema, "raw")
    assert len(parsed) == 2 and reasons == {"empty text": 1}
    with pytest.raises(ValueError, match="exactly one text column"):
        serialize_table(
            pd.DataFrame({"a": [1]}), TableSchema((ColumnSchema("a", ColumnKind.NUMERIC),)), "raw"
        )


def _numbers_schema() -> TableSchema:
    return TableSchema(
        (
            ColumnSchema("n", ColumnKind.NUMERIC, integer=True, minimum=0, maximum=2000),
            ColumnSchema("x", ColumnKind.NUMERIC, nullable=True, minimum=-5.0, maximum=5.0),
            ColumnSchema("c", ColumnKind.CATEGORICAL, categories=("a", "b")),
        )
    )


def test_number_digits_rounds_whole_and_fractional_numbers() -> None:
    schema = _numbers_schema()
    row = {"n": 1658, "x": -0.012345, "c": "a"}
    assert json.loads(serialize_record(row, schema, number_digits=2)) == {
        "n": 1700,
        "x": -0.012,
        "c": "a",
    }
    assert json.loads(serialize_record(row, schema))["n"] == 1658  # null: as it is
    assert serialize_record({"n": 5, "x": 0.0, "c": "b"}, schema, "compact", number_digits=2) == (
        '[5, 0.0, "b"]'
    )


def test_dequantize_spreads_over_the_rounding_interval_and_keeps_zeros() -> None:
    schema = _numbers_schema()
    frame = pd.DataFrame(
        {"n": [1700] * 400 + [0, 5, 2000], "x": [-0.012] * 400 + [0.0, None, 4.9], "c": "a"}
    )
    out = dequantize_numbers(frame, schema, 2, np.random.default_rng(0))
    n, x = out["n"].to_numpy(), out["x"].to_numpy()
    assert out["n"].dtype == np.int64 and (out["c"] == "a").all()
    assert n[:400].min() >= 1650 and n[:400].max() <= 1750 and len(set(n[:400])) > 50
    assert abs(n[:400].mean() - 1700) < 5  # centred on the written value
    assert (x[:400] >= -0.0125).all() and (x[:400] <= -0.0115).all() and np.std(x[:400]) > 2e-4
    assert n[400] == 0 and n[401] == 5  # zero kept; 5 at 2 digits is exact for an integer
    assert x[400] == 0.0 and np.isnan(x[401])
    assert n[402] <= 2000 and 4.85 <= x[402] <= 5.0  # never past the column's maximum
    assert frame["n"].iloc[0] == 1700  # the input is not changed
    again = dequantize_numbers(frame, schema, 2, np.random.default_rng(0))
    assert again.equals(out)


def test_record_schema_puts_the_target_first_and_keeps_the_rest_in_order() -> None:
    from synthloom.serialize import record_schema

    schema = TableSchema(_numbers_schema().columns, target="c", task="classification")
    first = record_schema(schema, "target_first")
    assert first.names == ["c", "n", "x"] and first.target == "c"
    assert record_schema(schema, "schema") is schema
    assert record_schema(_numbers_schema(), "target_first").names == ["n", "x", "c"]  # no target
    text = serialize_record({"n": 3, "x": 0.5, "c": "b"}, first)
    assert text == '{"c": "b", "n": 3, "x": 0.5}'
    assert parse_record(text, first).record == {"c": "b", "n": 3, "x": 0.5}
    with pytest.raises(ValueError, match="target_first"):
        record_schema(schema, "alphabetical")


def test_key_aliases_are_short_distinct_and_stable() -> None:
    from synthloom.serialize import key_aliases

    churn = ["state", "account_length", "total_day_minutes", "total_day_calls",
             "total_day_charge", "total_eve_calls", "number_customer_service_calls", "churn"]  # fmt: skip
    aliases = key_aliases(churn)
    assert aliases == {
        "state": "s", "account_length": "al", "total_day_minutes": "tdm",
        "total_day_calls": "tdca", "total_day_charge": "tdch", "total_eve_calls": "tec",
        "number_customer_service_calls": "ncsc", "churn": "c",
    }  # fmt: skip
    assert key_aliases(churn) == aliases  # deterministic
    # camelCase, digits, names with the same words, and widening that chases itself
    hard = ["creditScore2", "a_b", "aB", "ab", "a", "", "__", "x"]
    got = key_aliases(hard)
    assert got["creditScore2"] == "cs2" and len(set(got.values())) == len(hard)
    assert all(got.values())


def test_aliased_record_schema_round_trips_rows_under_the_column_names() -> None:
    from synthloom.serialize import alias_names, column_key, record_schema, restore_names

    schema = TableSchema(_numbers_schema().columns, target="c", task="classification")
    written = record_schema(schema, "target_first", keys="aliases")
    assert written.names == ["c", "n", "x"] and written.target == "c"
    long = TableSchema(
        tuple(replace(col, name=f"{col.name}_value_of_the_row") for col in schema.columns),
        target="c_value_of_the_row",
        task="classification",
    )
    short = record_schema(long, "target_first", keys="aliases")
    assert short.names == ["cvotr", "nvotr", "xvotr"] and short.target == "cvotr"
    assert column_key(short, "x_value_of_the_row") == "xvotr" and column_key(long, "n") == "n"
    frame = pd.DataFrame({"n_value_of_the_row": [3], "x_value_of_the_row": [0.5],
                          "c_value_of_the_row": ["b"]})  # fmt: skip
    (text,) = serialize_table(frame, short)
    assert text == '{"cvotr": "b", "nvotr": 3, "xvotr": 0.5}'
    parsed, reasons = parse_records([text], short)
    assert not reasons
    back = restore_names(parsed, short)
    assert back.to_dict(orient="records") == [
        {"c_value_of_the_row": "b", "n_value_of_the_row": 3.0, "x_value_of_the_row": 0.5}
    ]
    assert list(alias_names(back, short).columns) == short.names
    assert restore_names(parsed, long) is parsed  # no aliases: unchanged
    with pytest.raises(ValueError, match="names or aliases"):
        record_schema(schema, "schema", keys="short")
