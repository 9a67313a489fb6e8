"""Label margins: how much more likely the generator finds a sample under its own label.

For a sample x with label y and one scoring prompt per label (`fewshot_prompt` with that
label's seeds and description), the generator's log-likelihood of the sample's text and the
closing delimiter is

    l_k(x) = sum_t log p(x_t | prompt_k, x_<t)          (tokens of "x\\n</text>")

and the label margin is m(x) = l_y(x) - logsumexp_k l_k(x): the log posterior of y under a
uniform label prior, <= 0, near 0 when only y's prompt explains x. It is the quantity
K-class classifier-free guidance contrasts during decoding, computed after the fact for any
generator's samples. Each prompt is prefilled once; its KV cache is copied to a batch of
samples, which are scored in one forward pass of their own tokens (right padded; padding
positions come after every real token, so a causal model needs no mask for them).
Scoring N samples under K prompts is N x K scores; `progress` (a factory: total ->
update(done)) hears about them batch by batch, so a long filter is not silent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.methods.text.base import ModelBox, SeedSet
from synthloom.methods.text.prompts import CLOSE, fewshot_prompt
from synthloom.methods.text.sampling import encode_prompt
from synthloom.metrics.student import unit_rows
from synthloom.models.kv_cache import PreallocatedKVCache, cache_kwargs

Progress = Callable[[int], Callable[[int], None]]  # total scores -> update(done so far)

__all__ = [
    "generator_margin_scorer",
    "label_margin_scorer",
    "label_log_likelihoods",
    "label_margins",
    "scoring_prompts",
    "seed_classifier_margin_scorer",
]


def scoring_prompts(
    seeds_by_label: Mapping[str, Sequence[str]],
    *,
    task: str,
    descriptions: Mapping[str, str] | None = None,
    max_examples: int = 10,
) -> dict[str, str]:
    """One few-shot prompt per label: its first `max_examples` seeds and its description."""
    descriptions = descriptions or {}
    return {
        label: fewshot_prompt(
            label, list(texts)[:max_examples], task=task, description=descriptions.get(label)
        )
        for label, texts in seeds_by_label.items()
    }


def label_log_likelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    prompts: Sequence[str],
    *,
    batch_size: int = 32,
    max_text_tokens: int = 128,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, K) float64: l_k(texts[n]) under prompts[k] (see the module doc). Texts are cut to
    `max_text_tokens` tokens before the closing delimiter is appended; `progress(N * K)`
    gets the scores done after every batch."""
    if not texts:
        return np.zeros((0, len(prompts)))
    report = progress(len(texts) * len(prompts)) if progress is not None else None
    done = 0
    close = tokenizer("\n" + CLOSE, add_special_tokens=False).input_ids
    encoded = [
        tokenizer(t.strip(), add_special_tokens=False).input_ids[:max_text_tokens] + close
        for t in texts
    ]
    out = np.zeros((len(texts), len(prompts)))
    order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths per batch
    config = model.config.get_text_config(decoder=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for k, prompt in enumerate(prompts):
        prompt_ids = encode_prompt(tokenizer, prompt)[None].to(model.device)  # (1, P)
        kv = PreallocatedKVCache(config.num_hidden_layers, prompt_ids.shape[1])
        with torch.inference_mode():
            first = model(input_ids=prompt_ids, **cache_kwargs(kv), use_cache=True).logits[0, -1]
        memory = [(layer.keys, layer.values) for layer in kv.layers]  # (1, h, P, d) each
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows, k] = _score_batch(model, memory, first, [encoded[i] for i in rows], pad)
            done += len(rows)
            if report is not None:
                report(done)
    return out


def generator_margin_scorer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: SeedSet,
    *,
    task: str,
    max_examples: int = 10,
    progress: Progress | None = None,
) -> Callable[[list[str], list[str]], np.ndarray]:
    """(texts, labels) -> (N,) generator label margins m(x) over the seeds' labels, each
    label's scoring prompt built from its seeds and description (`scoring_prompts`)."""
    names = list(seeds.label_names)
    prompts = scoring_prompts(
        {label: seeds.for_label(label) for label in names},
        task=task,
        descriptions=seeds.descriptions,
        max_examples=max_examples,
    )

    def score(texts: list[str], labels: list[str]) -> np.ndarray:
        ll = label_log_likelihoods(
            model, tokenizer, texts, [prompts[n] for n in names], progress=progress
        )
        return label_margins(ll, [names.index(label) for label in labels])

    return score


def seed_classifier_margin_scorer(
    seeds: SeedSet, embed: Callable[[list[str]], np.ndarray]
) -> Callable[[list[str], list[str]], np.ndarray]:
    """(texts, labels) -> (N,) log p(label | x) of a logistic regression (C = 1) on the
    seeds' unit sentence embeddings: the cheap margin (no generator pass)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(unit_rows(embed(list(seeds.texts))), list(seeds.labels))

    def score(texts: list[str], labels: list[str]) -> np.ndarray:
        proba = clf.predict_proba(unit_rows(embed(texts)))
        column = np.searchsorted(clf.classes_, np.asarray(labels))
        return np.log(np.maximum(proba[np.arange(len(texts)), column], 1e-300))

    return score


def label_margin_scorer(
    rules: Mapping[str, object],
    seeds: SeedSet,
    *,
    models: ModelBox,
    scorer_model: str | None,
    task: str | None,
    embed: Callable[[list[str]], np.ndarray] | None,
    progress: Progress | None = None,
) -> Callable[[list[str], list[str]], np.ndarray] | None:
    """The label-margin rule's scorer for `rules` (None when the rule is off): the generator
    `scorer_model` under per-label prompts (`progress` hears its scores), or a classifier on
    the seeds' embeddings."""
    if rules.get("label_margin_keep") is None:
        return None
    if rules.get("label_margin_score") == "seed_classifier":
        if embed is None:
            raise ValueError("label_margin_score: seed_classifier needs sentence embeddings")
        return seed_classifier_margin_scorer(seeds, embed)
    model, tokenizer = models.causal_lm(scorer_model or "smollm2-135m-instruct")
    return generator_margin_scorer(
        model, tokenizer, seeds, task=task or "short texts", progress=progress
    )


def label_margins(log_likelihoods: np.ndarray, label_index: Sequence[int]) -> np.ndarray:
    """(N,) m = l_y - logsumexp_k l_k for each row's own label column `label_index[n]`."""
    ll = np.asarray(log_likelihoods, dtype=np.float64)
    top = ll.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(ll - top).sum(axis=1))
    return ll[np.arange(len(ll)), np.asarray(label_index)] - lse


def _score_batch(
    model: PreTrainedModel,
    memory: list[tuple[torch.Tensor, torch.Tensor]],
    first: torch.Tensor,
    batch: list[list[int]],
    pad: int,
) -> np.ndarray:
    """Sum of token log-probs of each continuation in `batch` after a prefilled prompt:
    `memory` its per-layer (1, h, P, d) keys and values, `first` (V,) its next-token logits."""
    prompt_len = memory[0][0].shape[2]
    width = max(len(ids) for ids in batch)
    device = first.device
    tokens = torch.full((len(batch), width), pad, dtype=torch.long, device=device)
    valid = torch.zeros((len(batch), width), dtype=torch.bool, device=device)
    for row, ids in enumerate(batch):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        valid[row, : len(ids)] = True
    rows = len(batch)
    kv = PreallocatedKVCache.from_memory(
        [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in memory],
        prompt_len + width,
    )
    with torch.inference_mode():
        positions = torch.arange(prompt_len, prompt_len + width, device=device)
        logits = model(
            input_ids=tokens,
            position_ids=positions.expand(len(batch), -1),
            **cache_kwargs(kv),
            use_cache=True,
        ).logits  # (B, T, V): logits[:, t] predicts token t + 1
        predicting = torch.cat([first.expand(rows, -1)[:, None], logits[:, :-1]], dim=1)
        predicting = predicting.to(torch.promote_types(predicting.dtype, torch.float32))
        picked = predicting.gather(-1, tokens[..., None])[..., 0]  # (B, T)
        picked = picked - torch.logsumexp(predicting, dim=-1)  # log-probs
        return (picked * valid).sum(dim=1).double().cpu().numpy()
