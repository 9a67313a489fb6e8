"""The rectified scaling law and its fit (SynthLLM, arXiv 2503.19551; Lin et al. 2024).

    L(D) = B / (D_l + D^beta) + E

D is the training-set size, L the downstream error. E is the irreducible error (the plateau),
B and beta the power-law term, D_l the "pre-learned data size" that flattens the curve at small
D (the rectification; D_l = 0 gives the plain power law B * D^-beta + E).

Fit: least squares on log L (every point weighs by its relative error, as in SynthLLM's
fits), with bounds that keep the parameters meaningful (B > 0, D_l >= 0, beta > 0, E >= 0).
The objective has flat valleys (B and D_l trade off when D^beta >> D_l), so it is started
from several points: a grid over (beta, D_l), each with the best non-negative (B, E) for the
linear-in-(B, E) problem, and the best few grid points are refined with scipy's trust-region
least squares; the best refined fit wins.

Reported: B, D_l, beta, E, R^2 of log L (the fitted objective) and of L, and the size where
the curve comes within `rel_tol` (1%) of E: L(D*) = (1 + rel_tol) E, i.e.
D* = (B / (rel_tol E) - D_l)^(1 / beta) (0 when the curve starts there; infinite when E = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares, nnls

BETA_BOUNDS = (1e-3, 3.0)
_LOG_DL_BOUNDS = (-30.0, 40.0)  # D_l = exp(u); exp(-30) ~ 1e-13 reads as 0


@dataclass(frozen=True)
class ScalingFit:
    """A fitted rectified scaling law (see the module docstring)."""

    B: float
    D_l: float
    beta: float
    E: float
    r2_log: float
    r2: float
    plateau_size: float  # D where L(D) = (1 + rel_tol) * E; inf when E == 0
    rel_tol: float
    num_points: int
    restarts: int

    def predict(self, sizes: Sequence[float] | np.ndarray) -> np.ndarray:
        return rectified_law(np.asarray(sizes, dtype=float), self.B, self.D_l, self.beta, self.E)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def rectified_law(
    sizes: np.ndarray | float, B: float, D_l: float, beta: float, E: float
) -> np.ndarray:
    """L(D) = B / (D_l + D^beta) + E, elementwise."""
    return B / (D_l + np.power(np.asarray(sizes, dtype=float), beta)) + E


def plateau_size(B: float, D_l: float, beta: float, E: float, rel_tol: float = 0.01) -> float:
    """The size D* with L(D*) = (1 + rel_tol) E: (B / (rel_tol E) - D_l)^(1/beta)."""
    if E <= 0:
        return math.inf
    base = B / (rel_tol * E) - D_l
    if base <= 0:
        return 0.0
    with np.errstate(over="ignore"):
        value = float(np.power(base, 1.0 / beta))
    return value if math.isfinite(value) else math.inf


def _r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    total = float(np.sum((observed - observed.mean()) ** 2))
    if total == 0:
        return math.nan
    return 1.0 - float(np.sum((observed - predicted) ** 2)) / total


def fit_rectified_law(
    sizes: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    *,
    rel_tol: float = 0.01,
    restarts: int = 8,
    grid_betas: int = 16,
    grid_dls: int = 12,
) -> ScalingFit:
    """Fit L(D) = B / (D_l + D^beta) + E to (size, error) points (sizes may repeat: seeds).

    Needs at least 4 distinct sizes (4 parameters) and positive errors; non-finite points are
    dropped. `restarts` = how many of the best grid starts are refined."""
    d = np.asarray(sizes, dtype=float)
    loss = np.asarray(errors, dtype=float)
    ok = np.isfinite(d) & np.isfinite(loss) & (d > 0) & (loss > 0)
    d, loss = d[ok], loss[ok]
    if np.unique(d).size < 4:
        raise ValueError(
            f"the rectified law has 4 parameters: it needs errors at >= 4 distinct sizes "
            f"with positive finite values, got {np.unique(d).size}"
        )
    log_loss = np.log(loss)
    e_max = float(loss.max())

    def residuals(p: np.ndarray) -> np.ndarray:
        log_b, log_dl, beta, e = p
        pred = np.exp(log_b) / (np.exp(log_dl) + np.power(d, beta)) + e
        return np.log(pred) - log_loss

    lower = [-50.0, _LOG_DL_BOUNDS[0], BETA_BOUNDS[0], 0.0]
    upper = [80.0, _LOG_DL_BOUNDS[1], BETA_BOUNDS[1], e_max]

    starts = _grid_starts(d, loss, grid_betas, grid_dls)
    starts.sort(key=lambda s: s[0])
    best: tuple[float, np.ndarray] | None = None
    for _, start in starts[:restarts]:
        x0 = np.clip(start, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
        result = least_squares(
            residuals, x0, bounds=(lower, upper), x_scale="jac", max_nfev=2000, method="trf"
        )
        cost = float(np.sum(result.fun**2))
        if math.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, result.x)
    assert best is not None, "no start gave a finite fit"
    log_b, log_dl, beta, e = (float(v) for v in best[1])
    b, dl = math.exp(log_b), math.exp(log_dl)
    if log_dl <= _LOG_DL_BOUNDS[0] + 1e-6:
        dl = 0.0
    pred = rectified_law(d, b, dl, beta, e)
    return ScalingFit(
        B=b,
        D_l=dl,
        beta=beta,
        E=e,
        r2_log=_r2(log_loss, np.log(pred)),
        r2=_r2(loss, pred),
        plateau_size=plateau_size(b, dl, beta, e, rel_tol),
        rel_tol=rel_tol,
        num_points=int(d.size),
        restarts=min(restarts, len(starts)),
    )


def _grid_starts(
    d: np.ndarray, loss: np.ndarray, n_beta: int, n_dl: int
) -> list[tuple[float, np.ndarray]]:
    """(log-space cost, [log B, log D_l, beta, E]) for a grid of (beta, D_l); for each, (B, E)
    is the non-negative least-squares solution of loss ~ B * x + E with x = 1/(D_l + D^beta)."""
    starts: list[tuple[float, np.ndarray]] = []
    log_loss = np.log(loss)
    weights = 1.0 / loss  # linearised log residual: (pred - loss) / loss
    for beta in np.geomspace(0.05, 2.0, n_beta):
        d_beta = np.power(d, beta)
        scale = float(np.median(d_beta))
        for dl in [0.0, *np.geomspace(1e-2 * scale, 1e2 * scale, n_dl - 1)]:
            x = 1.0 / (dl + d_beta)
            a = np.stack([x * weights, weights], axis=1)
            (b, e), _ = nnls(a, loss * weights)
            b = max(float(b), 1e-12)  # b = 0: error not falling with D (a flat fit, E = level)
            pred = b * x + e
            cost = float(np.sum((np.log(pred) - log_loss) ** 2))
            starts.append(
                (cost, np.array([math.log(b), math.log(max(dl, 1e-13)), float(beta), float(e)]))
            )
    return starts


def log_spaced_sizes(smallest: int, largest: int, num: int) -> list[int]:
    """`num` integer sizes from `smallest` to `largest`, evenly spaced in log D (distinct)."""
    if not 1 <= smallest <= largest:
        raise ValueError(f"need 1 <= smallest <= largest, got {smallest}, {largest}")
    raw = np.geomspace(smallest, largest, num)
    return sorted({int(round(v)) for v in raw})


def nested_subsets(
    num_rows: int,
    sizes: Sequence[int],
    seed: int,
    strata: Sequence[object] | np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """Row indices for each size; every smaller subset is a prefix of every larger one.

    The order is one seeded permutation. With `strata` (e.g. class labels) it interleaves the
    groups by fractional rank ((i + u) / n_group), so every prefix holds each group in about
    its overall share and a small subset is not left with one class. Sizes above `num_rows`
    are left out."""
    rng = np.random.default_rng(seed)
    if strata is None:
        order = rng.permutation(num_rows)
    else:
        groups = np.asarray(strata, dtype=object)
        assert len(groups) == num_rows, "one stratum per row"
        rank = np.empty(num_rows)
        codes = {g: i for i, g in enumerate(dict.fromkeys(groups.tolist()))}
        code_of = np.array([codes[g] for g in groups.tolist()])
        for c in range(len(codes)):
            members = np.flatnonzero(code_of == c)
            rng.shuffle(members)
            rank[members] = (np.arange(members.size) + rng.random(members.size)) / members.size
        order = np.argsort(rank, kind="stable")
    return {int(s): order[: int(s)] for s in sorted(set(sizes)) if 0 < s <= num_rows}
