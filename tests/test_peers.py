"""Peer generators (SMOTE, SDV Gaussian copula / CTGAN / TVAE, GReaT) on a tiny table.

Each adapter: fit, sample rows in the schema's types, save, load, same seed -> same rows.
Adapters whose package is absent are skipped with the install command as the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloom.config import validate_config
from synthloom.errors import SynthloomError
from synthloom.methods import GENERATORS, build_generator, generator_class
from synthloom.methods.peers import PEER_PACKAGES, PeerNotInstalled, missing_peer, require_peer
from synthloom.methods.peers.frames import from_peer_frame, to_peer_frame
from synthloom.methods.peers.smote import SmoteGenerator, _allocate
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

pytestmark = pytest.mark.usefixtures("one_thread")


def needs(method: str):
    reason = missing_peer(method)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def check_rows(frame: pd.DataFrame, schema: TableSchema, n: int) -> None:
    assert list(frame.columns) == schema.names
    assert len(frame) == n
    assert frame["income"].dtype == "float64" and frame["age"].dtype == "float64"
    ages = frame["age"].dropna()
    assert (ages == ages.round()).all()  # integer column stays whole
    assert frame["married"].dtype == "boolean"
    assert set(frame["home"].dropna()) <= {"owner", "parents", "rent"}
    assert set(frame["status"].dropna()) <= {"bad", "good"}


def test_every_peer_is_registered_with_a_config() -> None:
    for name in PEER_PACKAGES:
        assert name in GENERATORS
        cfg = validate_config(
            {"data": {"source": "x.csv"}, "method": {"name": name}, "generate": {"num_rows": 5}},
            "inline",
        )
        generator = build_generator(cfg.method.model_dump())
        assert type(generator) is generator_class(name)


def test_ctgan_batch_must_fit_pac() -> None:
    with pytest.raises(SynthloomError, match="multiple of pac"):
        validate_config(
            {
                "data": {"source": "x.csv"},
                "method": {"name": "ctgan", "batch_size": 55},
                "generate": {"num_rows": 5},
            },
            "inline",
        )


def test_missing_peer_names_the_install_command(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sdv" else real(name, *a)
    )
    reason = missing_peer("ctgan")
    assert reason is not None and 'pip install ".[peers]"' in reason and "'sdv'" in reason
    with pytest.raises(PeerNotInstalled, match=r"\.\[peers\]"):
        require_peer("tvae")
    assert missing_peer("marginals") is None  # not a peer


def test_frames_round_trip(mixed_table, mixed_schema) -> None:
    peer = to_peer_frame(mixed_table, mixed_schema)
    assert str(peer["age"].dtype) == "Int64"
    assert set(peer["married"].dropna()) == {"True", "False"}
    back = from_peer_frame(peer, mixed_schema)
    pd.testing.assert_series_equal(back["income"], mixed_table["income"], check_names=False)
    assert back["married"].equals(mixed_table["married"].astype("boolean"))
    assert back["home"].tolist() == mixed_table["home"].tolist()
    garbage = from_peer_frame(
        pd.DataFrame({"age": ["x", "41.6"], "married": ["yes", "?"]}), mixed_schema
    )
    assert garbage["age"].isna().tolist() == [True, False] and garbage["age"][1] == 42.0
    assert garbage["married"].tolist()[0] is True and garbage["married"].isna().tolist()[1]
    assert garbage["home"].isna().all()  # a column the peer did not return is missing


def test_allocate_keeps_shares_and_total() -> None:
    counts = _allocate(10, pd.Series({"a": 7, "b": 2, "c": 1}))
    assert sum(counts.values()) == 10 and counts == {"a": 7, "b": 2, "c": 1}
    assert sum(_allocate(7, pd.Series({"a": 1, "b": 1, "c": 1})).values()) == 7


@needs("smote")
def test_smote_interpolates_within_classes(tmp_path: Path, mixed_table, mixed_schema) -> None:
    gen = SmoteGenerator(k_neighbors=3).fit(mixed_table, mixed_schema, seed=0)
    rows = gen.sample(200, seed=1)
    check_rows(rows, mixed_schema, 200)
    # class shares follow training; numbers stay inside the training range (interpolation)
    real_share = (mixed_table["status"] == "good").mean()
    assert abs((rows["status"] == "good").mean() - real_share) <= 0.01
    income = mixed_table["income"].dropna()
    assert rows["income"].dropna().between(income.min(), income.max()).all()
    # the income -> status relation survives (interpolation within a class)
    assert (
        rows.groupby("status")["income"].mean()["good"]
        > rows.groupby("status")["income"].mean()["bad"] + 5
    )
    # gaps come back at roughly the training rate
    assert 0 < rows["income"].isna().mean() < 0.2
    gen.save(tmp_path / "m")
    again = SmoteGenerator.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.sample(50, seed=3), gen.sample(50, seed=3))
    assert not gen.sample(50, seed=4).equals(gen.sample(50, seed=3))


@needs("smote")
def test_smote_regression_and_no_target(mixed_table, mixed_schema) -> None:
    from dataclasses import replace

    regression = replace(mixed_schema, target="income", task="regression")
    rows = SmoteGenerator().fit(mixed_table, regression, seed=0).sample(90, seed=0)
    check_rows(rows, regression, 90)
    unsupervised = replace(mixed_schema, target=None, task=None)
    rows = SmoteGenerator().fit(mixed_table, unsupervised, seed=0).sample(33, seed=0)
    check_rows(rows, unsupervised, 33)


@needs("smote")
def test_smote_all_numeric_and_single_row_class() -> None:
    schema = TableSchema(
        columns=(
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema("y", ColumnKind.CATEGORICAL, categories=("a", "b")),
        ),
        target="y",
        task="classification",
    )
    frame = pd.DataFrame({"x": np.arange(20.0), "y": ["a"] * 19 + ["b"]})
    gen = SmoteGenerator(k_neighbors=5).fit(frame, schema)
    rows = gen.sample(40, seed=0)
    assert len(rows) == 40 and (rows["y"] == "b").sum() == 2
    assert (rows.loc[rows["y"] == "b", "x"] == 19.0).all()  # copies of the lone row
    assert gen.describe()["copied_rows"] == 2


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("gaussian_copula", {"default_distribution": "norm"}),
        (
            "ctgan",
            {"epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32]},
        ),
        ("tvae", {"epochs": 2, "batch_size": 100, "compress_dims": [32], "decompress_dims": [32]}),
    ],
)
def test_sdv_peers_fit_sample_save_load(
    tmp_path: Path, mixed_table, mixed_schema, method, params
) -> None:
    if missing_peer(method):
        pytest.skip(missing_peer(method))
    gen = build_generator({"name": method, **params}).fit(mixed_table, mixed_schema, seed=0)
    rows = gen.sample(120, seed=5)
    check_rows(rows, mixed_schema, 120)
    assert rows["income"].isna().any()  # SDV models the training gaps
    gen.save(tmp_path / "m")
    again = generator_class(method).load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.sample(40, seed=7), gen.sample(40, seed=7))
    assert not gen.sample(40, seed=8).equals(gen.sample(40, seed=7))
    if method == "gaussian_copula":  # a copula keeps the strong income -> status relation
        means = rows.groupby("status")["income"].mean()
        assert means["good"] > means["bad"]
    else:
        assert gen.describe()["num_parameters"] > 0


@needs("great")
def test_great_fits_and_samples_with_a_tiny_lm(tmp_path: Path, mixed_table, mixed_schema) -> None:
    from synthloom.methods.peers.great import GReaTGenerator
    from synthloom.models.tiny import tiny_causal_lm

    model, tokenizer = tiny_causal_lm(0)
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    gen = GReaTGenerator(
        llm=str(tmp_path / "lm"),
        max_steps=2,
        batch_size=4,
        sample_batch_size=8,
        max_attempts_factor=2,
    )
    gen.fit(mixed_table.head(40), mixed_schema, seed=0)
    assert gen.describe()["steps"] == 2 and np.isfinite(gen.describe()["final_loss"])
    assert gen.state["max_length"] > 20  # room for one sentence of five columns
    rows = gen.sample(6, seed=0)
    # a random LM rarely writes a complete row; what comes back has the schema's columns
    assert list(rows.columns) == mixed_schema.names and len(rows) <= 6
    assert 6 <= gen.last_attempts <= 12
    gen.save(tmp_path / "m")
    assert (tmp_path / "m" / "model" / "model.safetensors").is_file()
    again = GReaTGenerator.load(tmp_path / "m")
    assert again.state == gen.state
    pd.testing.assert_frame_equal(again.sample(4, seed=1), again.sample(4, seed=1))


def test_great_state_with_integer_keys_survives_json() -> None:
    # be-great keeps an integer target's distribution as {np.int64 value: share}; json.dumps
    # refused it (diamonds' price) after the whole fine-tuning had run
    import json

    from synthloom.methods.peers.great import from_json, to_json

    state = {
        "conditional_col_dist": {np.int64(326): np.float64(0.25), np.int64(2757): 0.75},
        "num_cols": ["carat", "price"],
        "col_stats": {"carat": {"mean": np.float32(0.5), "nulls": np.int64(0)}},
        "max_length": 60,
        "values": np.array([1.5, 2.0]),
    }
    back = from_json(json.loads(json.dumps(to_json(state))))
    assert back["conditional_col_dist"] == {326: 0.25, 2757: 0.75}
    assert all(type(k) is int for k in back["conditional_col_dist"])
    assert back["col_stats"] == {"carat": {"mean": 0.5, "nulls": 0}} and back["max_length"] == 60
    assert back["values"] == [1.5, 2.0] and back["num_cols"] == ["carat", "price"]
    with pytest.raises(TypeError):
        json.dumps(state)  # what save() used to do


@needs("great")
def test_great_keeps_only_complete_rows_and_counts_tries(
    tmp_path: Path, mixed_table, mixed_schema
) -> None:
    """The sampling loop on scripted generations: parse, type, drop incomplete, stop at budget."""
    from synthloom.methods.peers.great import GReaTGenerator
    from synthloom.models.tiny import tiny_causal_lm

    model, tokenizer = tiny_causal_lm(0)
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    gen = GReaTGenerator(llm=str(tmp_path / "lm"), max_steps=1, batch_size=4, sample_batch_size=4)
    gen.fit(mixed_table.head(20), mixed_schema, seed=0)
    good = "status is good, income is 51.5, age is 33, home is rent, married is True"
    broken = "status is bad, income is 12.0, age is"
    calls, half_complete = [], [True]

    def scripted_generate(input_ids, **kwargs):
        calls.append(len(input_ids))
        texts = [good if half_complete[0] and i % 2 == 0 else broken for i in range(len(input_ids))]
        return tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]

    gen.great.model.generate = scripted_generate
    rows = gen.sample(5, seed=0)  # 2 complete rows per batch of 4: three batches
    assert calls == [4, 4, 4] and gen.last_attempts == 12
    assert len(rows) == 5
    assert rows.iloc[0].to_dict() == {
        "income": 51.5,
        "age": 33.0,
        "home": "rent",
        "married": True,
        "status": "good",
    }
    half_complete[0] = False  # nothing parses completely: stop at 5 x 10 = 50 tries
    rows = gen.sample(10, seed=0)
    assert gen.last_attempts == 50 and calls[-1] == 2  # the last batch only fills the budget
    assert len(rows) == 0 and list(rows.columns) == mixed_schema.names
