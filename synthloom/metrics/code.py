"""Metrics for synthetic code (DiffLM's code data kind, arXiv 2411.03250): validity, copying,
n-gram diversity and embedding distance to the real corpus.

`code_metrics(synthetic, real)` returns, for lists of source texts:

* ``parse_rate``: share of synthetic items that ``ast.parse`` accepts (syntax warnings muted);
* ``duplicate_rate``: share of synthetic items whose stripped text equals that of an EARLIER
  synthetic item (so k identical items add k - 1 duplicates);
* ``copy_rate``: share of synthetic items whose stripped text equals some stripped real item;
* ``distinct_ngrams_n`` for n in {1, 2, `ngram`}: distinct-n over the synthetic set,

      distinct_n = |{n-grams of all items}| / sum_i max(len(tokens_i) - n + 1, 0)

  (n-grams do not cross items; NaN when there is none). Tokens come from `code_tokens`;
* with ``encoder=(model, tokenizer)`` (``synthloom.models.encoder.load_encoder``), on unit-norm
  mean-pooled embeddings (``encode_texts``, truncated to `max_length` tokens):
  ``embedding_mean_cosine_to_real`` = mean_s max_r cos(e_s, e_r), and ``embedding_mmd2``, the
  biased (V-statistic) squared MMD with a Gaussian kernel,

      k(x, y) = exp(-||x - y||^2 / h),  h = median of ||x - y||^2 over distinct pooled pairs
      MMD^2   = mean k(S, S) + mean k(R, R) - 2 mean k(S, R)   (>= 0; 0 when S equals R)

  (`embedding_mmd2_bandwidth` reports h; pass `bandwidth` to fix it across runs);
* ``n_synthetic`` and ``n_real``.

Rates are NaN when `synthetic` is empty; the embedding metrics are NaN when either list is empty.
"""

from __future__ import annotations

import ast
import io
import math
import tokenize
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["code_metrics", "code_tokens", "distinct_ngrams", "embedding_mmd2", "parses"]

# Layout tokens carry no content for n-gram diversity.
_LAYOUT = frozenset(
    {
        tokenize.ENCODING,
        tokenize.ENDMARKER,
        tokenize.NEWLINE,
        tokenize.NL,
        tokenize.INDENT,
        tokenize.DEDENT,
    }
)
_MEDIAN_SAMPLE = 2000


def parses(text: str) -> bool:
    """True when ``ast.parse(text)`` succeeds (SyntaxWarning/DeprecationWarning muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def code_tokens(text: str) -> list[str]:
    """Token strings of `text` from Python's `tokenize`, without layout tokens.

    NEWLINE/NL/INDENT/DEDENT/ENCODING/ENDMARKER are dropped; comments and strings are one
    token each. When tokenizing fails (unbalanced brackets, bad indentation, an unterminated
    string, ...) the text is split on whitespace instead.
    """
    try:
        return [
            tok.string
            for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type not in _LAYOUT
        ]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return text.split()


def distinct_ngrams(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """|distinct n-grams| / total n-grams over `token_lists` (n-grams within each list only).

    NaN when no list has `n` tokens. Raises ValueError for n < 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen) / total if total else math.nan


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, float64, clipped at 0."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def embedding_mmd2(
    x: np.ndarray, y: np.ndarray, *, bandwidth: float | None = None, seed: int = 0
) -> tuple[float, float]:
    """(MMD^2, h): biased squared MMD between row sets `x` and `y` with kernel exp(-d^2 / h).

    h is `bandwidth` when given, else the median squared distance over distinct pairs of the
    pooled rows (over a seeded sample of 2000 rows when there are more); h = 1 when that
    median is 0. NaN (and h) when either set is empty. Memory O(max(len(x), len(y))^2).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if bandwidth is None:
        pooled = np.concatenate([x, y]) if len(x) and len(y) else (x if len(x) else y)
        if len(pooled) > _MEDIAN_SAMPLE:
            rng = np.random.default_rng(seed)
            pooled = pooled[rng.choice(len(pooled), _MEDIAN_SAMPLE, replace=False)]
        d = _sq_dists(pooled, pooled)[np.triu_indices(len(pooled), k=1)]
        h = float(np.median(d)) if d.size else 1.0
        h = h if h > 0 else 1.0
    else:
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        h = float(bandwidth)
    if len(x) == 0 or len(y) == 0:
        return math.nan, h
    kxx = np.exp(-_sq_dists(x, x) / h).mean()
    kyy = np.exp(-_sq_dists(y, y) / h).mean()
    kxy = np.exp(-_sq_dists(x, y) / h).mean()
    return float(max(kxx + kyy - 2.0 * kxy, 0.0)), h


def code_metrics(
    synthetic: Sequence[str],
    real: Sequence[str],
    *,
    encoder: tuple[Any, Any] | None = None,
    ngram: int = 4,
    max_length: int = 256,
    bandwidth: float | None = None,
) -> dict[str, float]:
    """Validity, duplication, copying and diversity of synthetic code (module docstring).

    `synthetic` and `real` are lists of source texts; `encoder` an optional
    ``(model, tokenizer)`` pair from ``load_encoder``. Returns a flat dict of floats (counts
    as floats too): parse_rate, duplicate_rate, copy_rate, distinct_ngrams_1,
    distinct_ngrams_2, distinct_ngrams_<ngram>, n_synthetic, n_real and, with an encoder,
    embedding_mean_cosine_to_real, embedding_mmd2, embedding_mmd2_bandwidth.
    """
    synthetic = [str(s) for s in synthetic]
    real = [str(r) for r in real]
    n = len(synthetic)
    out: dict[str, float] = {"n_synthetic": float(n), "n_real": float(len(real))}

    stripped = [s.strip() for s in synthetic]
    seen: set[str] = set()
    duplicates = 0
    for s in stripped:
        duplicates += s in seen
        seen.add(s)
    real_set = {r.strip() for r in real}
    out["parse_rate"] = sum(parses(s) for s in synthetic) / n if n else math.nan
    out["duplicate_rate"] = duplicates / n if n else math.nan
    out["copy_rate"] = sum(s in real_set for s in stripped) / n if n else math.nan

    tokens = [code_tokens(s) for s in synthetic]
    for k in sorted({1, 2, int(ngram)}):
        out[f"distinct_ngrams_{k}"] = distinct_ngrams(tokens, k)

    if encoder is not None:
        out.update(_embedding_metrics(synthetic, real, encoder, max_length, bandwidth))
    return out


def _embedding_metrics(
    synthetic: list[str],
    real: list[str],
    encoder: tuple[Any, Any],
    max_length: int,
    bandwidth: float | None,
) -> dict[str, float]:
    """embedding_mean_cosine_to_real, embedding_mmd2 and its bandwidth (module docstring)."""
    from synthloom.models.encoder import encode_texts

    model, tokenizer = encoder
    if not synthetic or not real:
        return {
            "embedding_mean_cosine_to_real": math.nan,
            "embedding_mmd2": math.nan,
            "embedding_mmd2_bandwidth": math.nan,
        }
    syn = encode_texts(model, tokenizer, synthetic, max_length=max_length).astype(np.float64)
    ref = encode_texts(model, tokenizer, real, max_length=max_length).astype(np.float64)
    best = np.full(len(syn), -np.inf)
    for start in range(0, len(ref), 4096):
        best = np.maximum(best, (syn @ ref[start : start + 4096].T).max(axis=1))
    mmd2, h = embedding_mmd2(syn, ref, bandwidth=bandwidth)
    return {
        "embedding_mean_cosine_to_real": float(best.mean()),
        "embedding_mmd2": mmd2,
        "embedding_mmd2_bandwidth": h,
    }
