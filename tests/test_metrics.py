"""Fast tests for synthloom.metrics and synthloom.plots on small synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthloom.metrics import (
    c2st_score,
    column_quality,
    dcr_distances,
    dcr_scores,
    evaluate_tabular,
    exact_copy_rate,
    mle_scores,
)
from synthloom.plots import plot_column_distributions, plot_dcr_histogram
from synthloom.schema import ColumnKind, ColumnSchema, TableSchema

CATS = ("a", "b", "c")
# XGBoost with 2 threads slows down 10x+ when the 2 cores are shared with other work; the
# numbers do not depend on it (test_mle_threads_do_not_change_results).
N_JOBS = 1


def make_schema(task: str = "classification") -> TableSchema:
    target = (
        ColumnSchema("y", ColumnKind.CATEGORICAL, categories=("neg", "pos"))
        if task == "classification"
        else ColumnSchema("y", ColumnKind.NUMERIC, nullable=True)
    )
    return TableSchema(
        columns=(
            ColumnSchema("x1", ColumnKind.NUMERIC, nullable=True),
            ColumnSchema("x2", ColumnKind.NUMERIC, integer=True),
            ColumnSchema("c", ColumnKind.CATEGORICAL, nullable=True, categories=CATS),
            ColumnSchema("b", ColumnKind.BOOLEAN, nullable=True, categories=("False", "True")),
            ColumnSchema("d", ColumnKind.DATETIME),
            ColumnSchema("t", ColumnKind.TEXT),
            target,
        ),
        target="y",
        task=task,  # type: ignore[arg-type]
    )


def make_frame(n: int, seed: int, task: str = "classification", shift: float = 0.0) -> pd.DataFrame:
    """Learnable frame: y depends on x1, c and b; a few NaN/None/NA values everywhere."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, n)
    x2 = rng.integers(0, 10, n).astype(np.float64) + shift
    c = rng.choice(CATS, n).astype(object)
    b = rng.random(n) < 0.4
    d = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    signal = 2.0 * x1 + (c == "a") * 1.5 - b * 1.0
    if task == "classification":
        y = np.where(signal + rng.normal(0, 0.5, n) > 0.3, "pos", "neg").astype(object)
    else:
        y = signal + rng.normal(0, 0.3, n)
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "c": c,
            "b": pd.array(b, dtype="boolean"),
            "d": pd.Series(d).astype("datetime64[ns]"),
            "t": [f"row {i}" for i in range(n)],
            "y": y,
        }
    )
    frame.loc[rng.random(n) < 0.03, "x1"] = np.nan
    frame.loc[rng.random(n) < 0.03, "c"] = None
    frame.loc[rng.random(n) < 0.03, "b"] = pd.NA
    return frame


@pytest.fixture(scope="module")
def schema() -> TableSchema:
    return make_schema()


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return make_frame(600, seed=0)


# --------------------------------------------------------------------------- quality


def test_quality_identical_is_perfect(real: pd.DataFrame, schema: TableSchema) -> None:
    q = column_quality(real, real.copy(), schema)
    assert q["column_shape_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert q["pair_trend_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert set(q["column_shape_scores"]) == set(schema.sdmetrics_columns)
    # 6 non-text columns -> 15 pairs, all counted (thresholds 0)
    assert q["pair_trends_n_pairs"] == 15 and q["pair_trends_n_failed"] == 0


def test_quality_detects_broken_shapes_and_pairs(real: pd.DataFrame, schema: TableSchema) -> None:
    rng = np.random.default_rng(1)
    shuffled = real.copy()
    for col in shuffled.columns:  # same marginals, pair structure destroyed
        shuffled[col] = shuffled[col].to_numpy()[rng.permutation(len(shuffled))]
    q_shuf = column_quality(real, shuffled, schema)
    assert q_shuf["column_shape_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert q_shuf["pair_trend_error_pct"] > 2.0

    noisy = make_frame(600, seed=5, shift=1.5)
    noisy["c"] = "a"
    q_noise = column_quality(real, noisy, schema)
    assert q_noise["column_shape_error_pct"] > 20.0
    assert q_noise["column_shape_scores"]["x1"] < 0.6
    assert q_noise["column_shape_scores"]["c"] < 0.5


def test_pair_trends_bin_the_synthetic_column_on_the_real_columns_edges(
    real: pd.DataFrame, schema: TableSchema
) -> None:
    # one real row holds a far maximum (x2 = 20); the synthetic rows are the same except that
    # row (x2 = 9): on the real edges every other row falls in the same bin, on the
    # synthetic column's own edges (0..9 instead of 0..20) the bins mean other ranges
    real = real.copy()
    real.loc[real.index[0], "x2"] = 20.0
    synthetic = real.copy()
    synthetic.loc[synthetic.index[0], "x2"] = 9.0
    real_bins = column_quality(real, synthetic, schema)
    separate = column_quality(real, synthetic, schema, pair_trends_binning="separate")
    assert real_bins["pair_trend_error_pct"] < 1.0
    assert separate["pair_trend_error_pct"] > 5.0
    with pytest.raises(ValueError, match="pair_trends_binning"):
        column_quality(real, synthetic, schema, pair_trends_binning="other")


def test_quality_counts_failed_columns(real: pd.DataFrame, schema: TableSchema) -> None:
    broken = real.copy()
    broken["x1"] = np.nan  # sdmetrics cannot score an all-missing column: NaN, counted
    q = column_quality(real, broken, schema)
    assert math.isnan(q["column_shape_scores"]["x1"])
    assert q["column_shapes_n_failed"] == 1 and q["pair_trends_n_failed"] >= 1


# --------------------------------------------------------------------------- MLE


def test_mle_learnable_vs_random_labels(schema: TableSchema) -> None:
    train, test = make_frame(700, seed=1), make_frame(400, seed=2)
    good = mle_scores(train, test, schema, seeds=(0, 1), grid="small", n_jobs=N_JOBS)
    assert good["mle_metric"] == "auc"
    assert good["mle_auc_mean"] > 0.8
    assert len(good["mle_auc_per_seed"]) == 2
    assert good["mle_auc_best"] == max(good["mle_auc_per_seed"])
    assert 0.0 <= good["mle_accuracy_mean"] <= 1.0 and 0.0 <= good["mle_f1_mean"] <= 1.0
    assert "mle_note" not in good

    random_labels = train.copy()
    random_labels["y"] = np.random.default_rng(3).choice(["neg", "pos"], len(train))
    bad = mle_scores(random_labels, test, schema, seeds=(0, 1), grid="small", n_jobs=N_JOBS)
    assert 0.38 < bad["mle_auc_mean"] < 0.62


def test_mle_is_deterministic(schema: TableSchema) -> None:
    train, test = make_frame(400, seed=4), make_frame(200, seed=5)
    a = mle_scores(train, test, schema, seeds=(0, 1), grid="small", n_jobs=N_JOBS)
    b = mle_scores(train, test, schema, seeds=(0, 1), grid="small", n_jobs=N_JOBS)
    assert a == b
    c = mle_scores(train, test, schema, seeds=(2, 3), grid="small", n_jobs=N_JOBS)
    assert c["mle_auc_per_seed"] != a["mle_auc_per_seed"]


def test_mle_threads_do_not_change_results(schema: TableSchema) -> None:
    train, test = make_frame(300, seed=4), make_frame(200, seed=5)
    one = mle_scores(train, test, schema, seeds=(0,), grid="small", n_jobs=1)
    two = mle_scores(train, test, schema, seeds=(0,), grid="small", n_jobs=2)
    assert one == two


def test_mle_single_class_and_missing_target(schema: TableSchema) -> None:
    train, test = make_frame(300, seed=6), make_frame(200, seed=7)
    one_class = train.assign(y="pos")
    out = mle_scores(one_class, test, schema, seeds=(0, 1), grid="small", n_jobs=N_JOBS)
    assert math.isnan(out["mle_auc_mean"]) and "single class" in out["mle_note"]
    assert len(out["mle_auc_per_seed"]) == 2

    holes = train.copy()
    holes.loc[:49, "y"] = None
    out = mle_scores(holes, test, schema, seeds=(0,), grid="small", n_jobs=N_JOBS)
    assert out["mle_n_train"] == 250
    assert out["mle_auc_mean"] > 0.75


def test_mle_regression_and_multiclass() -> None:
    reg = make_schema("regression")
    train, test = (
        make_frame(500, seed=8, task="regression"),
        make_frame(300, seed=9, task="regression"),
    )
    out = mle_scores(train, test, reg, seeds=(0,), grid="small", n_jobs=N_JOBS)
    assert out["mle_metric"] == "rmse" and "mle_auc_mean" not in out
    assert out["mle_rmse_mean"] < 0.5 * float(test["y"].std())
    assert out["mle_r2_mean"] > 0.7

    multi = TableSchema(
        columns=(
            ColumnSchema("x", ColumnKind.NUMERIC),
            ColumnSchema("y", ColumnKind.CATEGORICAL, categories=("k0", "k1", "k2", "k3")),
        ),
        target="y",
        task="classification",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=600)
    y = np.select([x < -0.7, x < 0.0, x < 0.7], ["k0", "k1", "k2"], "k3").astype(object)
    frame = pd.DataFrame({"x": x, "y": y})
    # the synthetic train set lacks class k3: still scored on the real test set, no crash
    out = mle_scores(
        frame[frame.y != "k3"].iloc[:400],
        frame.iloc[400:],
        multi,
        seeds=(0,),
        grid="small",
        n_jobs=N_JOBS,
    )
    assert 0.7 < out["mle_auc_mean"] <= 1.0


def test_mle_truncated_trees_equal_refit() -> None:
    """The grid reads n_estimators=10 off a 50-tree model; check that equals a 10-tree fit."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + rng.normal(0, 0.5, 300) > 0).astype(int)
    kw = {"max_depth": 5, "min_child_weight": 1, "gamma": 1.0, "random_state": 0, "n_jobs": 1}
    big = xgb.XGBClassifier(n_estimators=50, **kw).fit(x, y)
    small = xgb.XGBClassifier(n_estimators=10, **kw).fit(x, y)
    np.testing.assert_array_equal(
        big.predict_proba(x, iteration_range=(0, 10)), small.predict_proba(x)
    )


# --------------------------------------------------------------------------- privacy


def test_dcr_share_extremes(schema: TableSchema) -> None:
    tr, ho = make_frame(300, seed=10), make_frame(300, seed=11)
    assert dcr_scores(tr, tr, ho, schema)["dcr_share"] == pytest.approx(1.0)
    assert dcr_scores(ho, tr, ho, schema)["dcr_share"] == pytest.approx(0.0)
    fresh = dcr_scores(make_frame(300, seed=12), tr, ho, schema)
    assert 0.3 < fresh["dcr_share"] < 0.7
    d_tr, d_ho = dcr_distances(tr, tr, ho, schema, chunk_size=7)  # chunking does not matter
    assert d_tr.shape == (300,) and np.all(d_tr == 0) and np.all(d_ho > 0)


def test_dcr_ties_count_half(schema: TableSchema) -> None:
    tr = make_frame(50, seed=13)
    out = dcr_scores(tr, tr, tr.copy(), schema)
    assert out["dcr_share"] == pytest.approx(0.5) and out["dcr_share_strict"] == 0.0


def test_exact_copy_rate_handles_nan(schema: TableSchema) -> None:
    tr = make_frame(200, seed=14)
    assert tr["x1"].isna().any() and tr["c"].isna().any()
    assert exact_copy_rate(tr, tr, schema) == 1.0
    assert exact_copy_rate(make_frame(200, seed=15), tr, schema) == 0.0
    half = tr.copy()
    half.loc[:99, "x2"] = half.loc[:99, "x2"] + 0.5
    assert exact_copy_rate(half, tr, schema) == pytest.approx(0.5)
    nan_rows = tr[tr["x1"].isna()]
    assert exact_copy_rate(nan_rows, tr, schema) == 1.0


def test_unseen_category_does_not_crash(real: pd.DataFrame, schema: TableSchema) -> None:
    odd = real.copy()
    odd.loc[:20, "c"] = "zzz"
    assert 0.0 <= c2st_score(real, odd, schema) <= 1.0
    assert 0.0 <= dcr_scores(odd, real, make_frame(600, seed=16), schema)["dcr_share"] <= 1.0
    assert (
        mle_scores(odd, real, schema, seeds=(0,), grid="small", n_jobs=N_JOBS)["mle_auc_mean"] > 0.7
    )


# --------------------------------------------------------------------------- detection


def test_c2st_same_vs_shifted(real: pd.DataFrame, schema: TableSchema) -> None:
    same = c2st_score(real, make_frame(600, seed=20), schema)
    shifted = c2st_score(real, make_frame(600, seed=21, shift=1.0), schema)
    assert same > 0.85
    assert shifted < same - 0.3
    assert c2st_score(real, make_frame(600, seed=20), schema) == same  # seeded folds


# --------------------------------------------------------------------------- end to end + plots


def test_evaluate_tabular_small(schema: TableSchema) -> None:
    train, test = make_frame(500, seed=30), make_frame(300, seed=31)
    holdout = make_frame(200, seed=32)
    synthetic = train.sample(n=200, random_state=0)
    out = evaluate_tabular(
        synthetic,
        train=train,
        test=test,
        dcr_train=train,
        dcr_holdout=holdout,
        schema=schema,
        seeds=(0, 1),
        grid="small",
        max_rows=400,
        n_jobs=N_JOBS,
    )
    for key in (
        "column_shape_error_pct",
        "pair_trend_error_pct",
        "column_shape_score.x1",
        "mle_auc_mean",
        "real_mle_auc_mean",
        "mle_auc_gap",
        "dcr_share",
        "exact_copy_rate",
        "c2st",
    ):
        assert key in out, key
    assert out["mle_auc_gap"] == pytest.approx(out["real_mle_auc_mean"] - out["mle_auc_mean"])
    assert out["exact_copy_rate"] == 1.0 and out["exact_copy_rate_holdout"] == 0.0
    assert out["dcr_n_train"] == out["dcr_n_holdout"] == 200
    assert out["real_mle_n_train"] == 400  # capped by max_rows
    assert all(isinstance(v, float | int | str | list) for v in out.values())

    only = evaluate_tabular(
        synthetic,
        train=train,
        test=test,
        dcr_train=train,
        dcr_holdout=holdout,
        schema=schema,
        include=("privacy",),
    )
    assert "dcr_share" in only and "mle_auc_mean" not in only and "c2st" not in only
    with pytest.raises(ValueError):
        evaluate_tabular(
            synthetic,
            train=train,
            test=test,
            dcr_train=train,
            dcr_holdout=holdout,
            schema=schema,
            include=("nope",),
        )


def test_plots_write_png(tmp_path, real: pd.DataFrame, schema: TableSchema) -> None:
    syn = make_frame(300, seed=40, shift=0.5)
    p1 = plot_column_distributions(real, syn, schema, tmp_path / "sub" / "dist.png", max_columns=4)
    d_tr, d_ho = dcr_distances(syn, real, make_frame(300, seed=41), schema)
    p2 = plot_dcr_histogram(d_tr, d_ho, tmp_path / "dcr.png")
    for p in (p1, p2):
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
