"""Diversity and fidelity of a synthetic text set (labels aside; the student is in `student.py`).

* ``distinct_n`` (n = 1, 2, 3): |distinct word n-grams| / |word n-grams| over the whole set
  (lower-cased ``\\w+`` tokens; n-grams do not cross texts);
* ``self_bleu``: mean over texts i of BLEU(i, references = every other text) (sacrebleu
  sentence BLEU, exponential smoothing, scaled to [0, 1]); higher = less diverse. Computed on
  a seeded sample of at most `self_bleu_samples` texts;
* ``mean_pairwise_cosine``: mean over pairs i < j of cos(e_i, e_j) of unit embeddings;
* ``vendi_score`` (Friedman & Dieng 2023): exp(-sum_i l_i log l_i), l_i the eigenvalues of
  K / n, K_ij = cos(e_i, e_j); 1 for identical texts, n for mutually orthogonal ones;
* ``mmd2_to_real``: biased RBF MMD^2 between synthetic and real embeddings, median-heuristic
  bandwidth (`synthloom.metrics.code.embedding_mmd2`);
* ``mauve``: MAUVE (Pillutla et al. 2021) on the same embeddings, only when the `mauve-text`
  package is importable.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence

import numpy as np

from synthloom.filters.text import word_tokens
from synthloom.metrics.code import distinct_ngrams, embedding_mmd2

__all__ = [
    "diversity_metrics",
    "fidelity_metrics",
    "mean_pairwise_cosine",
    "self_bleu",
    "vendi_score",
]


def self_bleu(texts: Sequence[str], *, max_texts: int = 200, seed: int = 0) -> float:
    """Mean sentence BLEU of each text against all others, in [0, 1] (NaN under 2 texts)."""
    from sacrebleu.metrics import BLEU

    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        return math.nan
    if len(texts) > max_texts:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), max_texts, replace=False))]
    bleu = BLEU(effective_order=True)
    scores = [
        bleu.sentence_score(text, texts[:i] + texts[i + 1 :]).score for i, text in enumerate(texts)
    ]
    return float(np.mean(scores) / 100.0)


def mean_pairwise_cosine(emb: np.ndarray) -> float:
    """Mean of cos(e_i, e_j) over pairs i < j (NaN under 2 rows)."""
    e = _unit(emb)
    n = len(e)
    if n < 2:
        return math.nan
    total = e.sum(axis=0)
    # sum_{i != j} e_i . e_j = |sum e|^2 - sum |e_i|^2 = |sum e|^2 - n
    return float((total @ total - n) / (n * (n - 1)))


def vendi_score(emb: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K / n), K the cosine-similarity matrix."""
    e = _unit(emb)
    n = len(e)
    if n == 0:
        return math.nan
    # K / n and E^T E / n share their non-zero eigenvalues; use the smaller matrix
    gram = (e.T @ e if e.shape[1] < n else e @ e.T) / n
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    eig = eig[eig > 1e-12]
    return float(np.exp(-(eig * np.log(eig)).sum()))


def diversity_metrics(
    texts: Sequence[str],
    emb: np.ndarray | None = None,
    *,
    self_bleu_samples: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """distinct_1/2/3, self_bleu, and with embeddings mean_pairwise_cosine and vendi_score."""
    tokens = [word_tokens(t) for t in texts]
    out = {f"distinct_{n}": distinct_ngrams(tokens, n) for n in (1, 2, 3)}
    out["self_bleu"] = self_bleu(texts, max_texts=self_bleu_samples, seed=seed)
    out["mean_words"] = float(np.mean([len(t) for t in tokens])) if tokens else math.nan
    if emb is not None:
        out["mean_pairwise_cosine"] = mean_pairwise_cosine(emb)
        out["vendi_score"] = vendi_score(emb)
    return out


def fidelity_metrics(
    synthetic_emb: np.ndarray, real_emb: np.ndarray, *, mauve: bool = True, seed: int = 0
) -> dict[str, float]:
    """mmd2_to_real (and its bandwidth), and mauve when requested and installed."""
    mmd2, bandwidth = embedding_mmd2(synthetic_emb, real_emb, seed=seed)
    out = {"mmd2_to_real": mmd2, "mmd2_bandwidth": bandwidth}
    if mauve and importlib.util.find_spec("mauve") is not None and len(synthetic_emb) > 1:
        import mauve as mauve_text

        result = mauve_text.compute_mauve(
            p_features=np.asarray(real_emb), q_features=np.asarray(synthetic_emb), seed=seed
        )
        out["mauve"] = float(result.mauve)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
