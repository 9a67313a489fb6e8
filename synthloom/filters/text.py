"""Filter rules for synthetic labelled text; each rule counts the samples it removes.

`filter_texts(samples, seeds, rules, ...)` applies, in order (a sample is charged to the
first rule that removes it; null/false switches a rule off; keys of TextFilterConfig):

1. ``too_short`` / ``too_long``: fewer than `min_chars` / more than `max_chars` characters
   (an empty text is ``too_short``);
2. ``degenerate``: under 3 distinct words, or under half of the non-space characters are
   letters or digits;
3. ``repetitive``: repeated word 3-grams / all word 3-grams > `max_repeated_ngram_share`
   (a 3-gram is repeated when it occurred earlier in the same text);
4. ``prompt_leakage``: echoes of the prompt: a delimiter or a fragment of one (``<text``,
   ``/text>``), "Example(s) N:", "examples of", 'with label "', a chat-style preamble
   ("Here's/Here is/Sure/Certainly/Below is/As an AI"), or the task description itself;
5. ``seed_copy``: shares a word `seed_ngram`-gram (lower-cased ``\\w+`` tokens) with a seed,
   equals a seed, or (`seed_cosine`, needs `embed`) has cosine >= `seed_cosine` between its
   unit embedding and a seed's: a paraphrased copy that shares no long n-gram;
6. ``exact_duplicate``: same text as an earlier kept sample after lower-casing and collapsing
   whitespace;
7. ``near_duplicate``: MinHash (datasketch, 128 permutations, character 5-gram shingles)
   estimated Jaccard >= `minhash_threshold` with an earlier kept sample, or (mode
   ``embedding``) cosine of unit embeddings >= `embedding_threshold`;
8. ``label_inconsistent`` (off by default): a logistic regression trained on the seeds'
   embeddings predicts another label than the sample's;
9. ``low_label_margin`` (`label_margin_keep`, needs `label_margin`): per label, the samples
   left so far are ranked by their label margin (how much better their own label explains
   them than the others, `synthloom.methods.text.label_margin`) and only the best
   `label_margin_keep` share is kept (rounded up): selection of the worst tail, not
   rejection of every sample a classifier doubts. Kept rows get a `label_margin` column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloom.methods.text.prompts import CLOSE, OPEN

__all__ = [
    "RULES",
    "TextFilterResult",
    "filter_texts",
    "leaks_prompt",
    "nearest_seed_cosine",
    "word_ngrams",
    "word_tokens",
]

RULES = (
    "too_short",
    "too_long",
    "degenerate",
    "repetitive",
    "prompt_leakage",
    "seed_copy",
    "exact_duplicate",
    "near_duplicate",
    "label_inconsistent",
    "low_label_margin",
)
_WORD = re.compile(r"\w+")
_LEAK_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"<\s*/?\s*text\b",  # delimiters and fragments: <text, </text, text>
        r"\btext\s*>",
        r"\bexamples?\s*(?:#\s*)?\d+\s*[:.)]",  # "Example 1:", "Examples 2."
        r"\bexamples? of\b",
        r"\bwith (?:the )?label\b",
        r"\blabel\s*:",
        r"^\s*(?:here'?s|here is|here are|sure\b|certainly\b|below is|as an ai)",
        r"\bnew (?:snippet|example|sample)s?\b",
    )
]
Embed = Callable[[list[str]], np.ndarray]
# (texts, their labels) -> (N,) label margins, higher = more clearly of its own label
LabelMargin = Callable[[list[str], list[str]], np.ndarray]


@dataclass
class TextFilterResult:
    """kept: the samples that passed (input columns, input order); removed: the others with
    a `reason` column; counts: rule -> samples removed (every rule listed, 0 when none)."""

    kept: pd.DataFrame
    removed: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def word_tokens(text: str) -> list[str]:
    """Lower-cased ``\\w+`` tokens."""
    return _WORD.findall(text.lower())


def leaks_prompt(text: str, task: str | None = None) -> bool:
    """Whether `text` echoes the prompt (rule 4 of the module doc)."""
    if OPEN in text or CLOSE in text or any(p.search(text) for p in _LEAK_PATTERNS):
        return True
    return bool(task) and task.strip().lower() in text.lower()


def filter_texts(
    samples: pd.DataFrame,
    seeds: pd.DataFrame,
    rules: dict[str, Any],
    *,
    task: str | None = None,
    embed: Embed | None = None,
    label_margin: LabelMargin | None = None,
) -> TextFilterResult:
    """Apply the rules of the module doc to `samples` (columns text, label, ...) given the
    `seeds` (columns text, label). `embed` (texts -> unit rows) is needed by the embedding
    near-duplicate mode and the label-consistency rule; `task` by the leakage rule;
    `label_margin` by the label-margin selection."""
    texts = samples["text"].fillna("").astype(str).tolist()
    labels = samples["label"].astype(str).tolist()
    reason: list[str | None] = [None] * len(texts)

    def apply(rule: str, test: Callable[[int], bool]) -> None:
        for i in range(len(texts)):
            if reason[i] is None and test(i):
                reason[i] = rule

    lo, hi = rules.get("min_chars"), rules.get("max_chars")
    if lo is not None:
        apply("too_short", lambda i: len(texts[i].strip()) < max(lo, 1))
    if hi is not None:
        apply("too_long", lambda i: len(texts[i].strip()) > hi)
    if rules.get("degenerate", True):
        apply("degenerate", lambda i: _degenerate(texts[i]))
    share = rules.get("max_repeated_ngram_share")
    if share is not None:
        apply("repetitive", lambda i: repeated_ngram_share(word_tokens(texts[i]), 3) > share)
    if rules.get("prompt_leakage", True):
        apply("prompt_leakage", lambda i: leaks_prompt(texts[i], task))
    n, cosine = rules.get("seed_ngram"), rules.get("seed_cosine")
    if n is not None or cosine is not None:
        seed_texts = seeds["text"].astype(str).tolist()
        grams = ngrams_of(seed_texts, n) if n else set()
        exact = {_normal(t) for t in seed_texts}
        close = _close_to_seeds(texts, reason, seed_texts, embed, cosine) if cosine else set()
        apply(
            "seed_copy",
            lambda i: (
                i in close
                or _normal(texts[i]) in exact
                or bool(n and shares_ngram(texts[i], grams, n))
            ),
        )
    if rules.get("exact_duplicates", True):
        seen: set[str] = set()

        def repeat(i: int) -> bool:
            key = _normal(texts[i])
            if key in seen:
                return True
            seen.add(key)
            return False

        apply("exact_duplicate", repeat)
    mode = rules.get("near_duplicates")
    if mode == "minhash":
        _minhash_duplicates(texts, reason, rules.get("minhash_threshold", 0.7))
    elif mode == "embedding":
        assert embed is not None, "near_duplicates: embedding needs an embed function"
        _embedding_duplicates(texts, reason, embed, rules.get("embedding_threshold", 0.95))
    if rules.get("label_consistency", False):
        assert embed is not None, "label_consistency needs an embed function"
        _label_inconsistent(texts, labels, reason, seeds, embed)
    margins = None
    keep_share = rules.get("label_margin_keep")
    if keep_share is not None:
        if label_margin is None:
            raise ValueError("text_filter.label_margin_keep needs a label_margin scorer")
        margins = _keep_best_margins(texts, labels, reason, label_margin, keep_share)

    removed_mask = np.array([r is not None for r in reason], dtype=bool)
    kept = samples.loc[~removed_mask].reset_index(drop=True)
    if margins is not None:
        kept["label_margin"] = margins[~removed_mask]
    removed = samples.loc[removed_mask].copy()
    removed["reason"] = [r for r in reason if r is not None]
    counts = {rule: int(sum(r == rule for r in reason)) for rule in RULES}
    return TextFilterResult(kept=kept, removed=removed.reset_index(drop=True), counts=counts)


def repeated_ngram_share(tokens: Sequence[str], n: int) -> float:
    """(word n-grams that occurred earlier in the same text) / (all word n-grams); 0 when
    the text has fewer than n tokens."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _degenerate(text: str) -> bool:
    if len(set(word_tokens(text))) < 3:
        return True
    visible = [c for c in text if not c.isspace()]
    return sum(c.isalnum() for c in visible) < 0.5 * len(visible)


def word_ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The set of n-grams (tuples) of a token list; empty when it is shorter than n."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def ngrams_of(texts: Iterable[str], n: int) -> set[tuple[str, ...]]:
    """Every word n-gram (lower-cased ``\\w+`` tokens) of `texts`."""
    return {g for t in texts for g in word_ngrams(word_tokens(t), n)}


def shares_ngram(text: str, grams: set[tuple[str, ...]], n: int) -> bool:
    """Whether `text` has a word n-gram in `grams` (the seed_copy rule's n-gram test)."""
    return bool(word_ngrams(word_tokens(text), n) & grams)


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _minhash_duplicates(texts: list[str], reason: list[str | None], threshold: float) -> None:
    """Mark samples whose MinHash Jaccard estimate with an EARLIER kept sample reaches
    `threshold` (LSH candidates, then the estimate checked against the threshold)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    hashes: dict[str, MinHash] = {}
    for i, text in enumerate(texts):
        if reason[i] is not None:
            continue
        norm = _normal(text)
        shingles = {norm[j : j + 5] for j in range(max(len(norm) - 4, 1))}
        mh = MinHash(num_perm=128, seed=1)
        mh.update_batch([s.encode() for s in shingles])
        if any(mh.jaccard(hashes[k]) >= threshold for k in lsh.query(mh)):
            reason[i] = "near_duplicate"
            continue
        key = str(i)
        lsh.insert(key, mh)
        hashes[key] = mh


def nearest_seed_cosine(sample_emb: np.ndarray, seed_emb: np.ndarray) -> np.ndarray:
    """(N,) max_j cos(sample_i, seed_j): each sample's cosine to its nearest seed."""
    return (_unit(sample_emb) @ _unit(seed_emb).T).max(axis=1)


def _close_to_seeds(
    texts: list[str],
    reason: list[str | None],
    seed_texts: list[str],
    embed: Embed | None,
    threshold: float,
) -> set[int]:
    """Indices of the not-yet-removed samples whose cosine with some seed is >= threshold."""
    if embed is None:
        raise ValueError(
            "text_filter.seed_cosine needs sentence embeddings: pass `embed` to filter_texts, "
            "or set text_filter.seed_cosine: null to switch the paraphrase check off"
        )
    alive = [i for i, r in enumerate(reason) if r is None]
    if not alive or not seed_texts:
        return set()
    nearest = nearest_seed_cosine(embed([texts[i] for i in alive]), embed(seed_texts))
    return {i for i, c in zip(alive, nearest, strict=True) if c >= threshold}


def _embedding_duplicates(
    texts: list[str], reason: list[str | None], embed: Embed, threshold: float
) -> None:
    """Mark samples whose embedding cosine with an EARLIER kept sample reaches `threshold`."""
    alive = [i for i, r in enumerate(reason) if r is None]
    if not alive:
        return
    emb = _unit(embed([texts[i] for i in alive]))
    kept: list[int] = []
    for pos, i in enumerate(alive):
        if kept and float((emb[kept] @ emb[pos]).max()) >= threshold:
            reason[i] = "near_duplicate"
        else:
            kept.append(pos)


def _label_inconsistent(
    texts: list[str], labels: list[str], reason: list[str | None], seeds: pd.DataFrame, embed: Embed
) -> None:
    from sklearn.linear_model import LogisticRegression

    alive = [i for i, r in enumerate(reason) if r is None]
    seed_labels = seeds["label"].astype(str).tolist()
    if not alive or len(set(seed_labels)) < 2:
        return
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(_unit(embed(seeds["text"].astype(str).tolist())), seed_labels)
    predicted = clf.predict(_unit(embed([texts[i] for i in alive])))
    for i, p in zip(alive, predicted, strict=True):
        if p != labels[i]:
            reason[i] = "label_inconsistent"


def _keep_best_margins(
    texts: list[str],
    labels: list[str],
    reason: list[str | None],
    label_margin: LabelMargin,
    keep_share: float,
) -> np.ndarray:
    """Score the samples still alive; per label keep the ceil(keep_share * n) best margins
    (ties broken by sample order) and mark the rest ``low_label_margin``. Returns (N,)
    margins, NaN for samples removed before this rule."""
    margins = np.full(len(texts), np.nan)
    alive = [i for i, r in enumerate(reason) if r is None]
    if not alive:
        return margins
    margins[alive] = label_margin([texts[i] for i in alive], [labels[i] for i in alive])
    for label in sorted({labels[i] for i in alive}):
        members = [i for i in alive if labels[i] == label]
        keep = int(np.ceil(keep_share * len(members) - 1e-9))
        ranked = sorted(members, key=lambda i: (-margins[i], i))
        for i in ranked[keep:]:
            reason[i] = "low_label_margin"
    return margins


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
