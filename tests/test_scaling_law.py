"""The rectified scaling law fit, the nested subsets and the curve measurement on a tiny table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthloom.scaling.curve import summarize_points, tabular_error_curve, text_error_curve
from synthloom.scaling.law import (
    fit_rectified_law,
    log_spaced_sizes,
    nested_subsets,
    plateau_size,
    rectified_law,
)


@pytest.mark.parametrize(
    "true",
    [
        {"B": 50.0, "D_l": 20.0, "beta": 0.6, "E": 0.1},
        {"B": 200.0, "D_l": 100.0, "beta": 0.8, "E": 0.05},
        {"B": 3.0, "D_l": 2.0, "beta": 0.5, "E": 0.02},
    ],
)
def test_fit_recovers_known_parameters_from_noisy_points(true: dict) -> None:
    rng = np.random.default_rng(1)
    sizes = np.repeat(log_spaced_sizes(10, 100_000, 12), 3)  # 3 "seeds" per size
    clean = rectified_law(sizes, **true)
    noisy = clean * np.exp(rng.normal(0.0, 0.02, sizes.size))  # 2% multiplicative noise
    fit = fit_rectified_law(sizes, noisy)

    def log_cost(B: float, D_l: float, beta: float, E: float) -> float:  # noqa: N803
        return float(np.sum((np.log(rectified_law(sizes, B, D_l, beta, E)) - np.log(noisy)) ** 2))

    # the optimiser reaches (at least) the true parameters' cost: the global valley
    assert log_cost(fit.B, fit.D_l, fit.beta, fit.E) <= log_cost(**true) + 1e-9
    assert fit.E == pytest.approx(true["E"], rel=0.1)
    assert fit.beta == pytest.approx(true["beta"], rel=0.1)
    assert fit.D_l == pytest.approx(true["D_l"], rel=0.35)
    assert fit.B == pytest.approx(true["B"], rel=0.35)
    # the curve itself is recovered over and beyond the measured range
    grid = np.geomspace(10, 1_000_000, 30)
    assert np.allclose(fit.predict(grid), rectified_law(grid, **true), rtol=0.05)
    assert fit.r2_log > 0.99
    assert fit.plateau_size == pytest.approx(
        plateau_size(true["B"], true["D_l"], true["beta"], true["E"]), rel=0.6
    )


def test_plain_power_law_gives_a_small_d_l_and_bounds_hold() -> None:
    sizes = np.array(log_spaced_sizes(20, 20_000, 10), dtype=float)
    fit = fit_rectified_law(sizes, 4.0 * sizes**-0.5 + 0.05)
    assert fit.beta == pytest.approx(0.5, rel=0.05)
    assert fit.E == pytest.approx(0.05, rel=0.05)
    assert fit.D_l < 0.2  # no rectification in the data
    assert fit.B > 0 and fit.E >= 0


def test_plateau_size_formula() -> None:
    b, dl, beta, e = 10.0, 5.0, 0.5, 0.1
    d_star = plateau_size(b, dl, beta, e, rel_tol=0.01)
    assert rectified_law(d_star, b, dl, beta, e) == pytest.approx(1.01 * e)
    assert plateau_size(b, dl, beta, 0.0) == math.inf
    assert plateau_size(1e-6, 5.0, beta, e) == 0.0  # already within 1% at D = 0


def test_fit_needs_four_sizes() -> None:
    with pytest.raises(ValueError, match="4 distinct sizes"):
        fit_rectified_law([10, 10, 20, 40], [0.5, 0.5, 0.4, 0.3])


def test_nested_subsets_are_prefixes_and_stratified() -> None:
    labels = np.array(["a"] * 90 + ["b"] * 10)
    subsets = nested_subsets(100, [10, 20, 50, 100, 500], seed=3, strata=labels)
    assert list(subsets) == [10, 20, 50, 100]  # 500 > rows: left out
    assert np.array_equal(subsets[20][:10], subsets[10])
    assert np.array_equal(subsets[100][:50], subsets[50])
    assert sorted(subsets[100].tolist()) == list(range(100))
    assert (labels[subsets[10]] == "b").sum() == 1  # about its 10% share in every prefix
    assert (labels[subsets[50]] == "b").sum() == 5
    other = nested_subsets(100, [10], seed=4, strata=labels)
    assert not np.array_equal(other[10], subsets[10])


def test_log_spaced_sizes() -> None:
    assert log_spaced_sizes(10, 1000, 3) == [10, 100, 1000]
    sizes = log_spaced_sizes(5, 50, 20)
    assert sizes == sorted(set(sizes)) and sizes[0] == 5 and sizes[-1] == 50


def test_tabular_curve_error_falls_with_size(mixed_table, mixed_schema) -> None:
    train, test = mixed_table.iloc[:200], mixed_table.iloc[200:]
    points = tabular_error_curve(
        train, test, mixed_schema, sizes=[20, 50, 200, 400], seeds=[0, 1], grid="small"
    )
    assert set(points["size"]) == {20, 50, 200}  # 400 > 200 rows
    assert (points["metric"] == "1-auc").all() and len(points) == 6
    summary = summarize_points(points)
    assert summary["mean"].iloc[-1] < summary["mean"].iloc[0]  # more rows, lower error
    assert summary["mean"].iloc[-1] < 0.3  # income predicts status


def test_text_curve_uses_the_student_on_nested_subsets() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(["x", "y"] * 100)
    emb = rng.normal(size=(200, 4)) + (labels == "x")[:, None] * 1.5
    seen: list[int] = []

    def nearest_centroid(tr, tr_y, te, te_y, *, seed):  # a real (if simple) student
        seen.append(len(tr_y))
        tr_y, te_y = np.asarray(tr_y), np.asarray(te_y)
        cents = {c: tr[tr_y == c].mean(0) for c in set(tr_y.tolist())}
        names = sorted(cents)
        dist = np.stack([((te - cents[c]) ** 2).sum(1) for c in names], 1)
        pred = np.asarray(names)[dist.argmin(1)]
        return {"accuracy": float((pred == te_y).mean()), "macro_f1": 0.0}

    points = text_error_curve(
        emb[:150],
        labels[:150],
        emb[150:],
        labels[150:],
        sizes=[4, 16, 150],
        seeds=[0],
        student=nearest_centroid,
    )
    assert seen == [4, 16, 150]
    assert (points["metric"] == "1-accuracy").all()
    assert points["error"].iloc[-1] < 0.3


def test_flat_errors_give_a_flat_fit() -> None:
    fit = fit_rectified_law([50, 100, 200, 400, 800], [0.5, 0.52, 0.49, 0.51, 0.53])
    assert fit.E == pytest.approx(0.51, abs=0.01)  # no scaling: the plateau is the level
    assert fit.B < 1e-6 and fit.plateau_size == 0.0
