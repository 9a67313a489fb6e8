"""SynAlign's distribution matching (arXiv 2502.08661, Sec. 3.3; reconstructed, see METHODS.md):
learn weights w on the simplex that make the synthetic embeddings look like the real ones
under MMD, then resample the synthetic set in proportion to w.

With synthetic embeddings s_1..s_n, real embeddings r_1..r_m and the RBF kernel
k(x, y) = exp(-||x - y||^2 / (2 sigma^2)) (sigma by the median heuristic: the median
pairwise distance over all n + m points, unless given),

    MMD^2(w) = sum_ij w_i w_j k(s_i, s_j) - (2/m) sum_ij w_i k(s_i, r_j)
               + (1/m^2) sum_ij k(r_i, r_j),
    w* = argmin MMD^2(w)  subject to  w_i >= 0, sum_i w_i = 1.

MMD^2 is a convex quadratic in w (the kernel matrix is PSD). It is minimised by
exponentiated gradient (entropic mirror descent) from uniform weights:

    w <- w * exp(-eta * grad) / Z,   grad = 2 K_ss w - (2/m) K_sr 1,

with eta = step / max_ij K_ss[i, j] (default step 0.5: the objective is 2-smooth in the l1
norm when kernel values are <= 1, so each step does not increase MMD^2). Deterministic, and
the weights stay strictly positive, so resampling without replacement can always fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from synthloom.methods.text.uncertainty import median_heuristic_lengthscale, rbf_kernel


@dataclass(frozen=True)
class MMDWeights:
    """Learned simplex weights (one per synthetic row) and the MMD^2 at uniform and learned w."""

    weights: np.ndarray
    bandwidth: float
    mmd2_uniform: float
    mmd2_weighted: float
    iterations: int


def median_heuristic_bandwidth(synthetic: np.ndarray, real: np.ndarray) -> float:
    """sigma = median pairwise Euclidean distance over the pooled synthetic and real rows."""
    return median_heuristic_lengthscale(np.concatenate([synthetic, real], axis=0))


def mmd2(
    synthetic: np.ndarray,
    real: np.ndarray,
    *,
    bandwidth: float,
    weights: np.ndarray | None = None,
) -> float:
    """MMD^2 between sum_i w_i phi(s_i) (uniform w when None) and mean_j phi(r_j), RBF kernel.

    The biased (V-statistic) form above; >= 0 up to rounding.
    """
    n, m = len(synthetic), len(real)
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    k_ss = rbf_kernel(synthetic, synthetic, lengthscale=bandwidth)
    k_sr = rbf_kernel(synthetic, real, lengthscale=bandwidth)
    k_rr = rbf_kernel(real, real, lengthscale=bandwidth)
    value = w @ k_ss @ w - 2.0 / m * np.sum(w @ k_sr) + np.sum(k_rr) / m**2
    return float(max(value, 0.0))


def mmd2_unbiased(synthetic: np.ndarray, real: np.ndarray, *, bandwidth: float) -> float:
    """Unbiased MMD^2 (U-statistic; Gretton et al. 2012, Eq. 3) of two uniform samples:

        1/(n(n-1)) sum_{i!=j} k(s_i, s_j) + 1/(m(m-1)) sum_{i!=j} k(r_i, r_j)
        - 2/(nm) sum_ij k(s_i, r_j).

    Unlike the V-statistic it has no 1/n self-similarity term, so sets of different sizes
    (a pool and its resampled subset) compare fairly. May be slightly negative. Needs
    n, m >= 2.
    """
    n, m = len(synthetic), len(real)
    assert n >= 2 and m >= 2, "the unbiased estimate needs two rows on each side"
    k_ss = rbf_kernel(synthetic, synthetic, lengthscale=bandwidth)
    k_rr = rbf_kernel(real, real, lengthscale=bandwidth)
    k_sr = rbf_kernel(synthetic, real, lengthscale=bandwidth)
    within_s = (k_ss.sum() - np.trace(k_ss)) / (n * (n - 1))
    within_r = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return float(within_s + within_r - 2.0 * k_sr.mean())


def learn_mmd_weights(
    synthetic: np.ndarray,
    real: np.ndarray,
    *,
    bandwidth: float | None = None,
    iterations: int = 500,
    step: float = 0.5,
    tol: float = 1e-12,
) -> MMDWeights:
    """w* on the simplex minimising MMD^2(w) (module docstring) by exponentiated gradient.

    Stops after `iterations` steps or when an update lowers MMD^2 by less than `tol`.
    """
    synthetic = np.asarray(synthetic, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    assert len(synthetic) > 0 and len(real) > 0, "need synthetic and real rows"
    sigma = median_heuristic_bandwidth(synthetic, real) if bandwidth is None else bandwidth
    n, m = len(synthetic), len(real)
    k_ss = rbf_kernel(synthetic, synthetic, lengthscale=sigma)
    linear = rbf_kernel(synthetic, real, lengthscale=sigma).sum(axis=1) / m  # (1/m) K_sr 1
    constant = rbf_kernel(real, real, lengthscale=sigma).sum() / m**2
    eta = step / max(float(k_ss.max()), 1e-12)

    def objective(w: np.ndarray) -> float:
        return float(w @ k_ss @ w - 2.0 * w @ linear + constant)

    log_w = np.full(n, -np.log(n))
    w = np.exp(log_w)
    uniform_value = current = objective(w)
    done = 0
    while done < iterations:
        done += 1
        grad = 2.0 * (k_ss @ w) - 2.0 * linear
        log_w = log_w - eta * grad
        log_w -= logsumexp(log_w)
        w = np.exp(log_w)
        new = objective(w)
        if current - new < tol:
            current = min(current, new)
            break
        current = new
    return MMDWeights(
        weights=w / w.sum(),
        bandwidth=sigma,
        mmd2_uniform=max(uniform_value, 0.0),
        mmd2_weighted=max(objective(w / w.sum()), 0.0),
        iterations=done,
    )


def resample_by_weights(
    weights: np.ndarray, size: int, *, replace: bool, rng: np.random.Generator
) -> np.ndarray:
    """Indices of `size` rows drawn with probability proportional to `weights`.

    Without replacement (the default in SynAlign here, so no sample is duplicated): weighted
    sampling by Efraimidis-Spirakis keys u_i^(1 / w_i), the `size` largest keys win, in
    draw order; zero-weight rows come last; at most len(weights) rows. With replacement:
    i.i.d. draws from the categorical distribution w.
    """
    w = np.asarray(weights, dtype=np.float64)
    assert np.all(w >= 0) and w.sum() > 0, "weights must be non-negative, not all zero"
    if replace:
        return rng.choice(len(w), size=size, replace=True, p=w / w.sum())
    u = rng.random(len(w))
    with np.errstate(divide="ignore"):
        keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)
    order = np.argsort(-keys, kind="stable")
    return order[: min(size, len(w))]
