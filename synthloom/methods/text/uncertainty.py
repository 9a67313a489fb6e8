"""SynAlign's uncertainty tracker: a Gaussian process over seed embeddings picks the next
demonstration cluster where the examples shown so far say least (arXiv 2502.08661, Sec. 3.1;
selection loop as in the authors' `Data_fit_selector`, github nighood/SynAlign).

GP prior f ~ GP(0, k) with the RBF kernel k(x, y) = s2 * exp(-||x - y||^2 / (2 l^2)).
Fitted on the chosen points X (noise variance `noise`), the posterior variance at x is

    var(x) = k(x, x) - k(x, X) (K(X, X) + noise * I)^-1 k(X, x),

which depends only on where X lies, never on target values, so the tracker needs no labels
of "usefulness": the unchosen seed with the largest posterior std is the one least covered
by the demonstrations shown so far. Its nearest neighbours (cosine, same label) complete the
demonstration cluster, and the whole cluster joins X. Before anything is chosen every seed
has std sqrt(s2); the first pick is drawn at random (as in the authors' code). When every
candidate has been chosen the tracker forgets those rows and starts a new round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def median_heuristic_lengthscale(points: np.ndarray) -> float:
    """l = median of the pairwise Euclidean distances between distinct rows (1.0 if none > 0)."""
    sq = _squared_distances(points, points)
    upper = sq[np.triu_indices(len(points), k=1)]
    upper = upper[upper > 0]
    return float(np.sqrt(np.median(upper))) if upper.size else 1.0


def rbf_kernel(
    a: np.ndarray, b: np.ndarray, *, lengthscale: float, variance: float = 1.0
) -> np.ndarray:
    """K[i, j] = variance * exp(-||a_i - b_j||^2 / (2 lengthscale^2)); shape (len(a), len(b))."""
    return variance * np.exp(-_squared_distances(a, b) / (2.0 * lengthscale**2))


def gp_posterior_std(
    points: np.ndarray,
    observed: Sequence[int],
    *,
    lengthscale: float,
    variance: float = 1.0,
    noise: float = 1e-8,
) -> np.ndarray:
    """Posterior std of a zero-mean RBF GP at every row of `points`, given the rows `observed`.

    std(x) = sqrt(max(k(x, x) - k(x, X) (K + noise I)^-1 k(X, x), 0)); at an observed row it
    is about sqrt(noise), i.e. 0 up to the jitter; far from every observed row it is
    sqrt(variance).
    """
    points = np.asarray(points, dtype=np.float64)
    prior = np.full(len(points), variance)
    observed = sorted(set(int(i) for i in observed))
    if not observed:
        return np.sqrt(prior)
    x_obs = points[observed]
    gram = rbf_kernel(x_obs, x_obs, lengthscale=lengthscale, variance=variance)
    chol = np.linalg.cholesky(gram + noise * np.eye(len(observed)))
    cross = rbf_kernel(x_obs, points, lengthscale=lengthscale, variance=variance)  # (n_obs, n)
    solved = np.linalg.solve(chol, cross)  # L^-1 k(X, x)
    return np.sqrt(np.clip(prior - np.sum(solved**2, axis=0), 0.0, None))


class GPUncertaintyTracker:
    """Chooses demonstration clusters among `embeddings` rows (one per seed), by max GP std.

    `groups[i]` is row i's label: a cluster never mixes labels. `lengthscale=None` uses the
    median heuristic over all rows. Deterministic for a given `rng`.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        groups: Sequence[str],
        *,
        lengthscale: float | None = None,
        variance: float = 1.0,
        noise: float = 1e-8,
        rng: np.random.Generator,
    ) -> None:
        self.embeddings = np.asarray(embeddings, dtype=np.float64)
        self.groups = list(groups)
        assert len(self.groups) == len(self.embeddings), "one group per embedding row"
        self.lengthscale = (
            median_heuristic_lengthscale(self.embeddings) if lengthscale is None else lengthscale
        )
        self.variance = variance
        self.noise = noise
        self.rng = rng
        self.chosen: list[int] = []
        self.rounds = 1

    def posterior_std(self) -> np.ndarray:
        """Posterior std at every row given the rows chosen so far (this round)."""
        return gp_posterior_std(
            self.embeddings,
            self.chosen,
            lengthscale=self.lengthscale,
            variance=self.variance,
            noise=self.noise,
        )

    def most_uncertain(self, group: str | None = None) -> int:
        """The unchosen row (of `group`, if given) with the largest posterior std.

        Random among the candidates when nothing is chosen yet; ties go to the lowest index.
        When every candidate is chosen, a new round starts: the candidates' rows (the group's,
        or all) are forgotten, rows of other groups stay chosen.
        """
        candidates = self._unchosen(group)
        if not candidates:
            self.chosen = [i for i in self.chosen if group is not None and self.groups[i] != group]
            self.rounds += 1
            candidates = self._unchosen(group)
        assert candidates, f"no rows in group {group!r}"
        if not self.chosen:
            return int(self.rng.choice(candidates))
        std = self.posterior_std()
        return max(candidates, key=lambda i: (std[i], -i))

    def nearest_neighbours(self, index: int, k: int) -> list[int]:
        """`index` and its k-1 nearest rows of the same group by cosine similarity, nearest
        first (chosen or not: a cluster may reuse seeds, as in the authors' code)."""
        same = [i for i, g in enumerate(self.groups) if g == self.groups[index] and i != index]
        unit = self.embeddings / np.clip(
            np.linalg.norm(self.embeddings, axis=1, keepdims=True), 1e-12, None
        )
        sims = unit[same] @ unit[index]
        order = sorted(range(len(same)), key=lambda j: (-sims[j], same[j]))
        return [index] + [same[j] for j in order[: max(k - 1, 0)]]

    def next_cluster(self, k: int, group: str | None = None) -> list[int]:
        """Pick the most uncertain row, return it with its nearest neighbours, mark all chosen."""
        cluster = self.nearest_neighbours(self.most_uncertain(group), k)
        self.chosen.extend(i for i in cluster if i not in self.chosen)
        return cluster

    def _unchosen(self, group: str | None) -> list[int]:
        taken = set(self.chosen)
        return [
            i for i, g in enumerate(self.groups) if i not in taken and (group is None or g == group)
        ]


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = np.sum(a**2, axis=1)[:, None] + np.sum(b**2, axis=1)[None, :] - 2.0 * a @ b.T
    return np.clip(sq, 0.0, None)
