"""Latent classes (synthloom.latent_classes) and how DiffLM plans its decoding groups from
them and joins their rows (synthloom.methods.difflm.generate: class_groups,
condition_groups, BalancedLatents, concat_rows)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from synthloom.errors import DataError
from synthloom.latent_classes import (
    RELATED_V,
    LatentClasses,
    balanced_labels,
    counts_per_shard,
    cramers_v,
    largest_remainders,
)
from synthloom.methods.difflm.generate import (
    BalancedLatents,
    ClassLatents,
    class_groups,
    concat_rows,
    condition_groups,
)
from synthloom.methods.difflm.latent_diffusion import LatentDiffusionConfig
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema
from synthloom.serialize import column_key, record_schema


def churn_like() -> tuple[pd.DataFrame, TableSchema]:
    """A target `churn` (bool), two flags, a three-valued category and a number."""
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "minutes": rng.normal(180, 50, n).round(1),
            "plan": pd.array(rng.random(n) < 0.1, dtype="boolean"),
            "mail": pd.array(rng.random(n) < 0.3, dtype="boolean"),
            "area": rng.choice(["a", "b", "c"], n).astype(object),
            "churn": pd.array(rng.random(n) < 0.15, dtype="boolean"),
        }
    )
    schema = TableSchema(
        columns=(
            ColumnSchema("minutes", ColumnKind.NUMERIC, minimum=0.0, maximum=400.0),
            ColumnSchema("plan", ColumnKind.BOOLEAN, categories=("False", "True")),
            ColumnSchema("mail", ColumnKind.BOOLEAN, categories=("False", "True")),
            ColumnSchema("area", ColumnKind.CATEGORICAL, categories=("a", "b", "c")),
            ColumnSchema("churn", ColumnKind.BOOLEAN, categories=("False", "True")),
        ),
        target="churn",
    )
    return frame, schema


def test_largest_remainders_sums_exactly_and_favours_the_largest_remainder():
    quota = largest_remainders(np.array([3005.0, 495.0]), 500)
    assert quota.tolist() == [429, 71]  # 429.29 and 70.71: the one left over goes to 70.71
    assert largest_remainders(np.array([1.0, 1.0, 1.0]), 4).tolist() == [2, 1, 1]  # ties: first
    assert largest_remainders(np.array([5.0, 1.0]), 0).tolist() == [0, 0]


def test_target_classes_label_every_row_and_count_the_training_balance():
    frame, schema = churn_like()
    classes, labels = LatentClasses.fit(frame, schema, "target")
    assert classes.columns == ("churn",)
    assert classes.values == (("False",), ("True",))
    assert classes.counts == tuple(np.bincount(labels).tolist())
    assert [classes.values[i][0] for i in labels] == frame["churn"].astype(str).tolist()
    assert classes.balanced(100).sum() == 100
    assert LatentClasses.from_dict(classes.to_dict()) == classes
    assert classes.describe() == f"False {classes.counts[0]}, True {classes.counts[1]}"
    assert classes.describe([7, 3]) == "False 7, True 3"
    labels = balanced_labels(np.asarray(classes.counts), 100, seed=3)
    assert np.bincount(labels).tolist() == classes.balanced(100).tolist()
    assert labels.tolist() == balanced_labels(np.asarray(classes.counts), 100, seed=3).tolist()


def test_target_and_binary_classes_are_the_joint_values_seen_in_training():
    frame, schema = churn_like()
    classes, labels = LatentClasses.fit(frame, schema, "target_and_binary")
    assert classes.columns == ("churn", "plan", "mail")  # target first, flags in schema order
    seen = set(frame[["churn", "plan", "mail"]].astype(str).itertuples(index=False, name=None))
    assert set(classes.values) == seen
    for row, label in zip(frame.itertuples(index=False), labels, strict=True):
        assert classes.values[label] == (str(row.churn), str(row.plan), str(row.mail))
    # a limit the joint values would exceed keeps the columns that fit
    small, _ = LatentClasses.fit(frame, schema, "target_and_binary", limit=4)
    assert small.columns == ("churn", "plan")


def test_cramers_v_of_independent_identical_and_one_valued_columns():
    a = pd.Series(["x", "y"] * 50)
    assert cramers_v(a, a) == pytest.approx(1.0)
    assert cramers_v(a, pd.Series(["p"] * 50 + ["q"] * 50)) == pytest.approx(0.0)
    assert cramers_v(a, pd.Series(["p"] * 100)) == 0.0
    # 2x2 against the closed form |ad - bc| / sqrt(row and column totals' product)
    b = pd.Series(["p"] * 30 + ["q"] * 20 + ["p"] * 10 + ["q"] * 40)
    c = pd.Series(["x"] * 50 + ["y"] * 50)
    assert cramers_v(c, b) == pytest.approx(abs(30 * 40 - 20 * 10) / np.sqrt(50 * 50 * 40 * 60))


def test_target_and_related_joins_only_the_flags_related_to_the_target():
    """`plan` follows churn on 80 % of rows (V about 0.6); `mail` is drawn independently
    (V near 0): the related mode joins plan alone, the binary mode both."""
    frame, schema = churn_like()
    rng = np.random.default_rng(1)
    follows = rng.random(len(frame)) < 0.8
    frame["plan"] = pd.array(
        np.where(follows, frame["churn"].to_numpy(bool), rng.random(len(frame)) < 0.5),
        dtype="boolean",
    )
    assert cramers_v(frame["churn"], frame["plan"]) >= RELATED_V
    assert cramers_v(frame["churn"], frame["mail"]) < RELATED_V
    related, labels = LatentClasses.fit(frame, schema, "target_and_related")
    assert related.columns == ("churn", "plan")
    assert sum(related.counts) == len(labels) == len(frame)
    assert LatentClasses.fit(frame, schema, "target_and_binary")[0].columns == (
        "churn",
        "plan",
        "mail",
    )
    with pytest.raises(ValueError, match="unknown conditioning"):
        LatentClasses.fit(frame, schema, "target_and_everything")


def test_no_classes_without_a_categorical_target_or_with_missing_targets():
    frame, schema = churn_like()
    numeric = TableSchema(columns=schema.columns, target="minutes")
    assert LatentClasses.fit(frame, numeric) is None
    assert LatentClasses.fit(frame, numeric, "target_and_related") is None  # related to nothing
    assert LatentClasses.fit(frame, TableSchema(columns=schema.columns, target=None)) is None
    holes = frame.copy()
    holes.loc[3, "churn"] = pd.NA
    assert LatentClasses.fit(holes, schema) is None


def test_target_and_binary_without_a_class_target_takes_the_two_valued_columns_alone():
    """TabSyn's classes on a regression table; a two-valued column with a gap is left out."""
    frame, schema = churn_like()
    numeric = TableSchema(columns=schema.columns, target="minutes")
    classes, labels = LatentClasses.fit(frame, numeric, "target_and_binary")
    assert classes.columns == ("plan", "mail", "churn") and len(classes) <= 8
    assert sum(classes.counts) == len(labels) == len(frame)
    holes = frame.copy()
    holes.loc[3, "mail"] = pd.NA
    assert LatentClasses.fit(holes, numeric, "target_and_binary")[0].columns == ("plan", "churn")
    flagless = frame[["minutes", "area"]]  # absent columns are no class columns either
    assert LatentClasses.fit(flagless, numeric, "target_and_binary") is None


def test_quotas_for_a_class_column_give_its_exact_counts():
    frame, schema = churn_like()
    classes, _ = LatentClasses.fit(frame, schema, "target_and_binary")
    quota = classes.quotas_for("churn", {"True": 30, "False": 10})
    churn = np.array([v[0] for v in classes.values])
    assert quota[churn == "True"].sum() == 30 and quota[churn == "False"].sum() == 10
    # within a value, the split follows the training counts of the classes holding it
    holders = np.flatnonzero(churn == "True")
    counts = np.array(classes.counts)[holders]
    assert quota[holders[np.argmax(counts)]] == quota[holders].max()
    with pytest.raises(DataError, match="never occurs in the training rows"):
        LatentClasses(("churn",), (("False",),), (5,)).quotas_for("churn", {"True": 1})
    # a class without training rows (a TabSyn model saved before unseen values were dropped)
    unseen = LatentClasses(("churn", "plan"), (("True", "False"), ("True", "True")), (0, 0))
    assert unseen.quotas_for("churn", {"True": 5}).tolist() == [3, 2]


def test_class_groups_force_every_class_column_under_its_record_key():
    frame, schema = churn_like()
    classes, _ = LatentClasses.fit(frame, schema, "target_and_binary")
    written = record_schema(schema, "target_first", "aliases")
    groups = class_groups(written, classes, classes.balanced(50))
    assert sum(g.count for g in groups) == 50
    assert [g.label for g in groups] == list(range(len(classes)))
    keys = [column_key(written, c) for c in ("churn", "plan", "mail")]
    assert keys != ["churn", "plan", "mail"]  # the aliases, as the records are written
    for g in groups:
        assert g.forced == dict(zip(keys, classes.values[g.label], strict=True))
    free = class_groups(written, classes, classes.balanced(50), force=False)
    assert all(g.forced == {} for g in free) and [g.count for g in free] == [
        g.count for g in groups
    ]


def test_condition_groups_with_and_without_classes():
    frame, schema = churn_like()
    written = record_schema(schema, "target_first", "names")
    plain = condition_groups(written, "area", {"a": 3, "b": 0, "c": 2})
    assert [(g.forced, g.count, g.label) for g in plain] == [
        ({"area": "a"}, 3, None),
        ({"area": "b"}, 0, None),
        ({"area": "c"}, 2, None),
    ]
    classes, _ = LatentClasses.fit(frame, schema, "target")
    on_target = condition_groups(written, "churn", {"True": 4, "False": 6}, classes)
    assert {(g.tag, g.count) for g in on_target} == {("True", 4), ("False", 6)}
    assert all(g.forced == {"churn": g.tag} for g in on_target)
    other = condition_groups(written, "area", {"a": 7, "c": 3}, classes)
    for value, n in (("a", 7), ("c", 3)):
        mine = [g for g in other if g.tag == value]
        assert sum(g.count for g in mine) == n
        assert all(g.forced["area"] == value and "churn" in g.forced for g in mine)


class RecordingDiffusion:
    """Stands in for a class-conditional LatentDiffusionModel: each latent is its class and
    the guidance scale it was drawn at."""

    def __init__(self, label_dropout: float = 0.0) -> None:
        self.config = LatentDiffusionConfig(n_classes=2, label_dropout=label_dropout)

    def sample(
        self, n: int, *, seed: int, labels: np.ndarray, guidance_scale: float = 1.0
    ) -> np.ndarray:
        return np.stack([np.asarray(labels, np.float32), np.full(n, guidance_scale)], axis=1)


def test_class_latents_and_balanced_latents_pass_the_labels_and_the_guidance():
    classes = LatentClasses(("y",), (("a",), ("b",)), (75, 25))
    plain = RecordingDiffusion()
    assert ClassLatents(plain, 1, 2.0).sample(3, seed=0).tolist() == [[1, 1]] * 3  # no null class
    guided = ClassLatents(RecordingDiffusion(label_dropout=0.1), 0, 2.0).sample(2, seed=0)
    assert guided.tolist() == [[0, 2], [0, 2]]
    drawn = BalancedLatents(plain, classes).sample(40, seed=5)[:, 0]
    assert np.bincount(drawn.astype(int)).tolist() == [30, 10]
    again = BalancedLatents(plain, classes).sample(40, seed=5)[:, 0]
    assert drawn.tolist() == again.tolist()
    assert drawn.tolist() != sorted(drawn.tolist())  # shuffled
    scaled = BalancedLatents(RecordingDiffusion(label_dropout=0.1), classes, 1.5).sample(4, seed=0)
    assert set(scaled[:, 1]) == {1.5}


def test_counts_per_shard_lays_the_classes_out_one_after_another():
    shards = counts_per_shard(np.array([5, 0, 4]), [4, 4, 1])
    assert shards == [[4, 0, 0], [1, 0, 3], [0, 0, 1]]
    assert np.sum(shards, axis=0).tolist() == [5, 0, 4]
    assert [sum(row) for row in shards] == [4, 4, 1]
    with pytest.raises(ValueError, match="shards to 8"):
        counts_per_shard(np.array([5, 4]), [4, 4])


def test_concat_rows_takes_a_columns_dtype_from_the_groups_that_hold_values():
    """A group whose rows left a field empty holds it as object None; pandas warns that it
    will let such a column decide the dtype. concat_rows keeps the held dtype, warns not."""
    held = pd.DataFrame({"income": [1.5, 2.5], "job": ["a", "b"]})
    empty = pd.DataFrame({"income": pd.Series([None], dtype=object), "job": ["c"]})
    with pytest.warns(FutureWarning):
        pd.concat([held, empty], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = concat_rows([empty, held])
    assert list(rows.columns) == ["income", "job"] and len(rows) == 3
    assert rows["income"].dtype == np.float64 and rows["income"].isna().tolist() == [
        True,
        False,
        False,
    ]
    assert rows["job"].tolist() == ["c", "a", "b"]
    nothing = pd.DataFrame({"income": pd.Series([None], dtype=object), "job": ["d"]})
    both_empty = concat_rows([nothing, nothing])  # a column empty everywhere stays as it was
    assert both_empty["income"].isna().all() and len(both_empty) == 2
