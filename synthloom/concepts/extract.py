"""Concept extraction: the high-level concepts of each seed document, as normalised strings.

Two extractors (SynthLLM, arXiv 2503.19551, step 1), selectable by `method.extractor`:

- `extract_concepts_llm`: the LLM is asked for a JSON list of short concept strings per
  document (`concept_prompt`). An output that does not parse as a JSON array of strings is
  re-asked up to `max_retries` times (a fresh sample), then the document is dropped (no
  concepts). Every invalid output and every dropped document is counted.
- `extract_keyphrases`: deterministic statistical keyphrases: links and HTML entities
  removed, then TF-IDF over the corpus
  (word 1-2-grams, English stop words removed, sublinear tf), terms present in at least
  `min_df` documents; a term's score is its TF-IDF weight x `phrase_boost` per word beyond
  the first (RAKE-style preference for phrases); per document the `max_concepts`
  highest-scoring terms (ties by term), where a chosen phrase replaces the chosen words it
  contains and a word inside a chosen phrase is skipped. Fast, needs no model.

Normalisation (`normalize_concept`): lower case, outer punctuation stripped, inner whitespace
collapsed, a leading article (a, an, the) dropped; empty results are discarded and repeats
within one document kept once, in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_ARTICLE = re.compile(r"^(?:the|a|an)\s+")
_SPACES = re.compile(r"\s+")
_ARRAY = re.compile(r"\[.*?\]", re.DOTALL)
_NOISE = re.compile(r"https?://\S+|www\.\S+|&[a-z]+;|&#\d+;")  # links, HTML entities

# prompts -> one completion per prompt (the LLM; tests pass a fake)
Complete = Callable[[list[str]], list[str]]


def normalize_concept(raw: str) -> str:
    text = _SPACES.sub(" ", str(raw)).strip().lower()
    text = text.strip(" \t\"'`.,;:!?()[]{}<>-_*#")
    return _ARTICLE.sub("", text).strip()


def _unique_normalized(items: Sequence[str], limit: int) -> list[str]:
    out: list[str] = []
    for item in items:
        concept = normalize_concept(item)
        if concept and concept not in out:
            out.append(concept)
        if len(out) == limit:
            break
    return out


def parse_concept_list(text: str, max_concepts: int) -> list[str] | None:
    """The first JSON array of strings in `text`, normalised (at most `max_concepts`);
    None when there is no such array or it holds no usable string."""
    for match in _ARRAY.finditer(text):
        try:
            value = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            concepts = _unique_normalized(value, max_concepts)
            if concepts:
                return concepts
    return None


def concept_prompt(document: str, max_concepts: int) -> str:
    """The extraction instruction for one document (sent as a user turn)."""
    return (
        f"List up to {max_concepts} high-level concepts (topics, entities, ideas) of the "
        "text below, as a JSON array of short strings. Answer with the JSON array only.\n\n"
        f"Text: {document.strip()}"
    )


@dataclass
class Extraction:
    """concepts[i]: the concepts of document i ([] when dropped); counts by outcome."""

    concepts: list[list[str]]
    counts: dict[str, int] = field(default_factory=dict)


def extract_concepts_llm(
    documents: Sequence[str],
    complete: Complete,
    *,
    max_concepts: int = 5,
    max_retries: int = 2,
    batch_size: int = 16,
) -> Extraction:
    """Ask `complete` for each document's concept list; retry invalid outputs, then drop.

    counts: llm_calls (prompts sent), invalid_outputs, retried_documents,
    dropped_documents (still invalid after the retries), documents."""
    concepts: list[list[str] | None] = [None] * len(documents)
    counts = {"llm_calls": 0, "invalid_outputs": 0, "retried_documents": 0}
    pending = list(range(len(documents)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        if attempt > 0:
            counts["retried_documents"] += len(pending)
        failed: list[int] = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            outputs = complete([concept_prompt(documents[i], max_concepts) for i in chunk])
            assert len(outputs) == len(chunk), "one completion per prompt"
            counts["llm_calls"] += len(chunk)
            for i, text in zip(chunk, outputs, strict=True):
                parsed = parse_concept_list(text, max_concepts)
                if parsed is None:
                    counts["invalid_outputs"] += 1
                    failed.append(i)
                else:
                    concepts[i] = parsed
        pending = failed
    counts["dropped_documents"] = len(pending)
    counts["documents"] = len(documents)
    return Extraction([c or [] for c in concepts], counts)


def extract_keyphrases(
    documents: Sequence[str],
    *,
    max_concepts: int = 5,
    min_df: int = 2,
    ngram_max: int = 2,
    phrase_boost: float = 1.25,
) -> Extraction:
    """TF-IDF keyphrases per document (see the module docstring). Deterministic."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [_NOISE.sub(" ", str(d)) for d in documents]
    vectorizer = TfidfVectorizer(
        ngram_range=(1, ngram_max),
        stop_words="english",
        sublinear_tf=True,
        min_df=min(min_df, max(len(texts), 1)),
        token_pattern=r"(?u)\b[^\W\d_][\w'-]*[^\W_]\b",  # words of 2+ chars, not numbers
    )
    try:
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no term reaches min_df (tiny or empty corpus)
        return Extraction(
            [[] for _ in texts], {"documents": len(texts), "empty_documents": len(texts)}
        )
    terms = vectorizer.get_feature_names_out()
    out: list[list[str]] = []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        idx, scores = matrix.indices[start:end], matrix.data[start:end]
        boosted = [
            scores[j] * phrase_boost ** (len(terms[idx[j]].split()) - 1) for j in range(len(idx))
        ]
        order = sorted(range(len(idx)), key=lambda j: (-boosted[j], terms[idx[j]]))
        chosen: list[str] = []
        for j in order:
            term = str(terms[idx[j]])
            words = set(term.split())
            if any(words <= set(c.split()) for c in chosen):
                continue  # already said by a chosen phrase
            chosen = [c for c in chosen if not set(c.split()) <= words]
            chosen.append(term)
            if len(chosen) == max_concepts:
                break
        out.append(_unique_normalized(chosen, max_concepts))
    empty = int(np.sum([len(c) == 0 for c in out]))
    return Extraction(out, {"documents": len(texts), "empty_documents": empty})


def llm_completer(
    model: Any,
    tokenizer: Any,
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
) -> Complete:
    """A `Complete` over a causal LM: each prompt as a chat user turn, the answer pre-filled
    with `["` so the model starts the JSON array, decoding stopped at `]` (added back)."""
    import torch

    from synthloom.methods.text.sampling import chat_prompt, sample_prompts

    generator = torch.Generator().manual_seed(seed)

    def complete(prompts: list[str]) -> list[str]:
        rendered = [chat_prompt(tokenizer, p) + '["' for p in prompts]
        result = sample_prompts(
            model,
            tokenizer,
            rendered,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop_strings=("]",),
            generator=generator,
        )
        return [
            '["' + text + ("]" if done else "")
            for text, done in zip(result.texts, result.finished, strict=True)
        ]

    return complete
