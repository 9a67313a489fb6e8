"""Batched sampling of text continuations with a hand-written KV-cached loop.

`sample_continuations(model, tokenizer, prompt, num, ...)`: `num` independent continuations
of ONE prompt. The prompt is tokenized once and prefilled once at batch 1; its KV cache is
then copied to `num` rows (`PreallocatedKVCache.select_rows` with a zero index) and the rows
decode in lockstep. Few-shot prompts are long (hundreds of tokens) and samples short, so
the prefill is most of the work that per-sample `generate()` calls would repeat.

`sample_prompts(model, tokenizer, prompts, copies=...)`: `copies[i]` continuations of
prompts[i] (default one each), all prompts in one batch: the distinct prompts are prefilled
once, left padded with an attention mask, and each prompt's cache row is then copied to its
continuations, so several few-shot prompts decode together in one wide batch.

Both stop a row when its decoded continuation contains one of `stop_strings` (the text is
cut before the first one; finished=True) or when it samples an end-of-sequence token
(finished=True); rows that reach `max_new_tokens` are finished=False with their full text.
Finished rows are dropped from the batch (one copy of the cache) once a few of them pile up.
With `no_repeat_ngram` n > 0 a row never repeats an n-gram of its own generated tokens
(`synthloom.samplers.ngram_block`); with `closing_ramp` the closing line grows likelier
past the seeds' length (`synthloom.samplers.closing_ramp`). Sampling is temperature +
top-p by inverse CDF on uniforms drawn up front from `generator`
(`synthloom.samplers.token_sampling`), so the output does not depend on which rows were
dropped; temperature 0 is greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.methods.text.prompts import CLOSE
from synthloom.models.kv_cache import PreallocatedKVCache, cache_kwargs
from synthloom.samplers.closing_ramp import ClosingRamp
from synthloom.samplers.ngram_block import NgramBlock
from synthloom.samplers.token_sampling import sample_next_token

__all__ = ["Continuations", "chat_prompt", "sample_continuations", "sample_prompts"]

# Drop finished rows from the batch once at least this many sit in it.
_MIN_FINISHED_TO_COMPACT = 4


@dataclass
class Continuations:
    """Per-row texts (stop string excluded) and whether each row stopped by itself.

    generated_tokens: tokens sampled over all rows (stop tokens included).
    forward_passes: model forward calls (the prefill counts one).
    prompt_tokens: prompt tokens prefilled (the prompt once for `sample_continuations`;
        the sum of the prompts' lengths for `sample_prompts`).
    """

    texts: list[str]
    finished: list[bool]
    generated_tokens: int
    forward_passes: int
    prompt_tokens: int


def chat_prompt(tokenizer: PreTrainedTokenizerBase, user_message: str) -> str:
    """`user_message` as one user turn in the tokenizer's chat template, with the assistant
    turn opened (`add_generation_prompt=True`); without a template: message + blank line."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}],
            tokenize=False,
            add_generation_prompt=True,
        )
    return f"{user_message}\n\n"


def sample_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    num: int,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    stop_strings: Sequence[str] = (CLOSE,),
    generator: torch.Generator,
    no_repeat_ngram: int = 0,
    closing_ramp: ClosingRamp | None = None,
) -> Continuations:
    """`num` sampled continuations of `prompt`, sharing its prefill (see the module doc)."""
    ids = encode_prompt(tokenizer, prompt)[None].to(model.device)  # (1, P)
    prompt_len = ids.shape[1]
    if num <= 0 or max_new_tokens <= 0:
        return Continuations([""] * max(num, 0), [False] * max(num, 0), 0, 0, prompt_len)
    kv = _new_cache(model, prompt_len + max_new_tokens)
    with torch.inference_mode():
        logits = model(input_ids=ids, **cache_kwargs(kv), use_cache=True, logits_to_keep=1).logits
    kv.select_rows(torch.zeros(num, dtype=torch.long, device=model.device))  # copy to num rows
    positions = torch.full((num,), prompt_len, dtype=torch.long, device=model.device)
    return _decode(
        model,
        tokenizer,
        kv,
        logits[:, -1].expand(num, -1),
        positions,
        None,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop_strings=stop_strings,
        generator=generator,
        prompt_tokens=prompt_len,
        no_repeat_ngram=no_repeat_ngram,
        closing_ramp=closing_ramp,
    )


def sample_prompts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    stop_strings: Sequence[str] = (CLOSE,),
    generator: torch.Generator,
    copies: Sequence[int] | None = None,
    no_repeat_ngram: int = 0,
    closing_ramp: ClosingRamp | None = None,
) -> Continuations:
    """`copies[i]` continuations of prompts[i] (default 1), rows grouped by prompt in order,
    in one left-padded batch; each prompt is prefilled once."""
    copies = [1] * len(prompts) if copies is None else [int(c) for c in copies]
    if len(copies) != len(prompts) or any(c < 0 for c in copies):
        raise ValueError("copies: one count >= 0 per prompt")
    keep = [i for i, c in enumerate(copies) if c > 0]
    prompts, copies = [prompts[i] for i in keep], [copies[i] for i in keep]
    num = sum(copies)
    if num == 0 or max_new_tokens <= 0:
        return Continuations([""] * num, [False] * num, 0, 0, 0)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    lengths = torch.tensor([len(e) for e in encoded], device=model.device)  # (P,)
    width = int(lengths.max())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(prompts), width), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros(
        (len(prompts), width + max_new_tokens), dtype=torch.long, device=model.device
    )
    for row, tokens in enumerate(encoded):  # left padding
        ids[row, width - len(tokens) :] = tokens.to(model.device)
        mask[row, width - len(tokens) : width] = 1
    # positions count real tokens only: 0 at each row's first prompt token
    prefill_positions = (mask[:, :width].cumsum(dim=1) - 1).clamp(min=0)  # (B, W)
    kv = _new_cache(model, width + max_new_tokens)
    with torch.inference_mode():
        logits = model(
            input_ids=ids,
            attention_mask=mask[:, :width],
            position_ids=prefill_positions,
            **cache_kwargs(kv),
            use_cache=True,
            logits_to_keep=1,
        ).logits
    rows = torch.repeat_interleave(
        torch.arange(len(prompts), device=model.device),
        torch.tensor(copies, device=model.device),
    )  # (B,) the prompt of each row
    if num != len(prompts):
        kv.select_rows(rows)
    return _decode(
        model,
        tokenizer,
        kv,
        logits[rows, -1],
        lengths[rows],
        mask[rows],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop_strings=stop_strings,
        generator=generator,
        prompt_tokens=int(lengths.sum()),
        no_repeat_ngram=no_repeat_ngram,
        closing_ramp=closing_ramp,
    )


def _decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    kv: PreallocatedKVCache,
    first_logits: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor | None,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str],
    generator: torch.Generator,
    prompt_tokens: int,
    no_repeat_ngram: int = 0,
    closing_ramp: ClosingRamp | None = None,
) -> Continuations:
    """The lockstep loop after the prefill.

    first_logits (B, V): next-token logits of every row; positions (B,): the position of
    each row's first new token; mask (B, W + max_new_tokens) or None: the attention mask of
    every cache slot (None when no row is padded); `kv` holds B rows of W filled slots.
    """
    device = first_logits.device
    batch = first_logits.shape[0]
    stops = torch.tensor(end_of_sequence_ids(model, tokenizer), dtype=torch.long, device=device)
    watch = StopWatch(tokenizer, stop_strings)
    block = NgramBlock(no_repeat_ngram)
    rng_device = generator.device if generator is not None else "cpu"
    uniforms = None
    if temperature > 0:  # one uniform per (row, step), independent of compaction
        uniforms = torch.rand(batch, max_new_tokens, generator=generator, device=rng_device)
        uniforms = uniforms.to(device)
    out_ids: list[list[int]] = [[] for _ in range(batch)]
    texts: list[str | None] = [None] * batch  # set when a row finishes
    finished = [False] * batch
    rows = torch.arange(batch, device=device)  # original row of each batch position
    filled = mask.shape[1] - max_new_tokens if mask is not None else 0  # W (padded rows)
    logits, forward_passes, generated = first_logits, 1, 0
    with torch.inference_mode():
        for step in range(max_new_tokens):
            u = uniforms[rows, step] if uniforms is not None else None
            if closing_ramp is not None:
                logits = closing_ramp.apply(logits, step)
            if block.n:
                batch_rows = rows.tolist()
                logits = block.masked(logits, batch_rows, [out_ids[r] for r in batch_rows])
            token = sample_next_token(logits, temperature, top_p, u)  # (B',)
            eos = torch.isin(token, stops).tolist()
            for row, tok, is_eos in zip(rows.tolist(), token.tolist(), eos, strict=True):
                if finished[row]:  # rides along until the next compaction; output ignored
                    continue
                generated += 1
                if is_eos:
                    texts[row] = tokenizer.decode(out_ids[row], skip_special_tokens=True)
                    finished[row] = True
                    continue
                out_ids[row].append(tok)
                cut = watch.cut(out_ids[row], tok)
                if cut is not None:
                    texts[row], finished[row] = cut, True
            writing = [pos for pos, row in enumerate(rows.tolist()) if not finished[row]]
            if not writing or step + 1 == max_new_tokens:
                break
            if len(rows) - len(writing) >= _MIN_FINISHED_TO_COMPACT:  # drop finished rows
                index = torch.tensor(writing, dtype=torch.long, device=device)
                kv.select_rows(index)
                rows, token, positions = rows[index], token[index], positions[index]
                mask = mask[index] if mask is not None else None
            step_mask = None
            if mask is not None:
                mask[:, filled + step] = 1
                step_mask = mask[:, : filled + step + 1]
            logits = model(
                input_ids=token[:, None],
                attention_mask=step_mask,
                position_ids=(positions + step)[:, None],
                **cache_kwargs(kv),
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            forward_passes += 1
    for row in range(batch):
        if texts[row] is None:
            texts[row] = tokenizer.decode(out_ids[row], skip_special_tokens=True)
    return Continuations(
        texts=[t or "" for t in texts],
        finished=finished,
        generated_tokens=generated,
        forward_passes=forward_passes,
        prompt_tokens=prompt_tokens,
    )


class StopWatch:
    """Finds stop strings in a row's decoded text, decoding the row only when the newest
    token could have completed one (its text holds a stop string's last character, or is
    an incomplete multi-byte character)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_strings if s]
        self.last_chars = {s[-1] for s in self.stops} | {"\ufffd"}
        self._pieces: dict[int, str] = {}

    def cut(self, ids: list[int], newest: int) -> str | None:
        """The text before the first stop string when `ids` decodes to one, else None."""
        if not self.stops:
            return None
        piece = self._pieces.get(newest)
        if piece is None:
            piece = self._pieces[newest] = self.tokenizer.decode([newest])
        if not any(c in piece for c in self.last_chars):
            return None
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return text[: min(hits)] if hits else None


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """(P,) token ids; the tokenizer's special tokens are added unless the text already
    starts with the BOS token (a rendered chat template may)."""
    bos = tokenizer.bos_token
    add = not (bos and text.startswith(bos))
    return tokenizer(text, return_tensors="pt", add_special_tokens=add).input_ids[0]


def _new_cache(model: PreTrainedModel, max_len: int) -> PreallocatedKVCache:
    config = model.config.get_text_config(decoder=True)
    return PreallocatedKVCache(config.num_hidden_layers, max_len)


def end_of_sequence_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-sequence ids: the tokenizer's eos plus the model's generation-config eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(ids)
