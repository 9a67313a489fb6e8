"""Lockstep decoding of many guided sequences over a pool of prefilled prompts.

The engine behind CorrSynth and K-class CFG (`corrsynth.py`, `cfg.py`). Vocabulary:
- a *prompt pool* holds distinct prompts, each prefilled ONCE (batch 1, no padding) and
  stored right-aligned in one left-padded KV cache (zeros in the pad slots, masked out);
  every row of every decoding batch copies its prompt's KV from the pool, so a prompt used
  by many rows or many rounds costs one prefill;
- a *row* is one sequence the model is run on: (pool prompt, the tokens generated so far);
- a *stream* is one sample being written: it owns one or more rows, all fed the same
  generated tokens (CorrSynth: one row per stream; CFG: the conditional row and the rows
  of its contrast prompts, all continuing the stream's own prefix).

Per step: ONE batched forward pass over all rows still in the batch (attention mask and
per-row position ids handle the different prompt lengths), log-softmax, then `guidance`
maps the live rows' log-probs to one score row per live stream, and
`sample_next_token` (temperature + top-p AFTER guidance, uniforms drawn up front per
(stream, step)) picks each stream's token.

Finished streams: a stream stops when its text contains a stop string (the closing
delimiter) or it samples an end-of-sequence token. From the next step on it is DROPPED:
its rows leave the guidance input (so a CorrSynth sequence is no longer anybody's contrast
and the remaining contrast weights are renormalised) and are removed from the batch once
enough of them pile up (until then they are fed the pad token and their outputs ignored).
Its distribution after the delimiter would only describe the next example block, which is
no useful contrast.

With `end_tokens` (a (V,) bool mask) the guided scores go through
`guidance.end_passthrough`: end tokens keep the stream's own log-probs (its first row's),
and a stream inside the closing delimiter is decoded from its own distribution. With
`repeat_passthrough` n > 0 the tokens that would repeat an n-gram of the stream's own
tokens keep their own log-probs too (the guidance module's "repeat passthrough"). With
`no_repeat_ngram` n > 0 a stream never repeats an n-gram of its own tokens (applied to the
final scores, `synthloom.samplers.ngram_block`). With `closing_ramp` the closing line's
first token gains a bias that grows past the seeds' length, added to the guided scores
(`synthloom.samplers.closing_ramp`).

Costs are counted: `forward_passes` = model calls, `sequence_steps` = rows fed to those
calls (one row = one sequence evaluated for one step; the paper's count of model
evaluations), excluding the prompt prefill, which `PromptPool` counts itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.methods.text.guidance import end_passthrough
from synthloom.methods.text.prompts import CLOSE
from synthloom.methods.text.sampling import StopWatch, encode_prompt, end_of_sequence_ids
from synthloom.models.kv_cache import PreallocatedKVCache, cache_kwargs
from synthloom.samplers.closing_ramp import ClosingRamp
from synthloom.samplers.ngram_block import NgramBlock
from synthloom.samplers.token_sampling import sample_next_token

# guidance(log_probs of the live rows (R', V), live stream ids (S',)) -> scores (S', V)
Guidance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "Guidance",
    "LockstepOutput",
    "PromptPool",
    "decode_lockstep",
    "end_token_mask",
    "prefill_prompts",
]


def end_token_mask(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """(V,) bool: end-of-sequence ids and every token whose text contains a newline."""
    vocab = model.get_output_embeddings().weight.shape[0]
    texts = tokenizer.batch_decode([[i] for i in range(min(vocab, len(tokenizer)))])
    mask = torch.zeros(vocab, dtype=torch.bool)
    mask[[i for i, t in enumerate(texts) if "\n" in t]] = True
    mask[end_of_sequence_ids(model, tokenizer)] = True
    return mask


@dataclass
class PromptPool:
    """Prefilled prompts. keys/values: per layer (P, n_kv_heads, width, head_dim), prompt p
    in the last lengths[p] slots (zeros before); mask (P, width) bool, True on real tokens;
    last_log_probs (P, V): next-token log-probs after each prompt (float32)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor
    last_log_probs: torch.Tensor
    forward_passes: int
    prompt_tokens: int

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


@dataclass
class LockstepOutput:
    """Per stream: texts (cut before the first stop string, not stripped), token_ids
    (generated, end-of-sequence excluded), stop_reasons ("stop_string", "eos" or "budget").

    forward_passes / sequence_steps: decoding model calls / rows fed to them (prefill
    excluded). generated_tokens: tokens sampled over all streams (stop tokens included).
    """

    texts: list[str]
    token_ids: list[list[int]]
    stop_reasons: list[str]
    forward_passes: int
    sequence_steps: int
    generated_tokens: int

    @property
    def finished(self) -> list[bool]:
        return [reason != "budget" for reason in self.stop_reasons]


def prefill_prompts(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]
) -> PromptPool:
    """Run every prompt once through the model (batch 1, no padding: no pad slot is ever
    computed) and gather the KV caches into one right-aligned pool."""
    assert prompts, "at least one prompt"
    device = model.device
    encoded = [encode_prompt(tokenizer, p).to(device) for p in prompts]
    lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
    width = int(lengths.max())
    num_layers = model.config.get_text_config(decoder=True).num_hidden_layers
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    last = []
    with torch.inference_mode():
        for p, ids in enumerate(encoded):
            kv = PreallocatedKVCache(num_layers, len(ids))
            logits = model(
                input_ids=ids[None], **cache_kwargs(kv), use_cache=True, logits_to_keep=1
            ).logits[0, -1]
            last.append(torch.log_softmax(logits.float(), dim=-1))
            for layer_idx, layer in enumerate(kv.layers):
                if p == 0:  # allocate the pool once the per-layer shapes are known
                    shape = (len(prompts), layer.keys.shape[1], width, layer.keys.shape[3])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros(shape[:3] + layer.values.shape[3:]))
                keys[layer_idx][p, :, width - len(ids) :] = layer.keys[0]
                values[layer_idx][p, :, width - len(ids) :] = layer.values[0]
    mask = torch.arange(width)[None, :] >= (width - lengths)[:, None]  # (P, W)
    return PromptPool(
        keys=keys,
        values=values,
        mask=mask.to(device),
        lengths=lengths.to(device),
        last_log_probs=torch.stack(last),
        forward_passes=len(prompts),
        prompt_tokens=int(lengths.sum()),
    )


def decode_lockstep(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pool: PromptPool,
    row_prompt: Sequence[int],
    row_stream: Sequence[int],
    guidance: Guidance,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    stop_strings: Sequence[str] = (CLOSE,),
    compact_fraction: float = 0.25,
    end_tokens: torch.Tensor | None = None,
    no_repeat_ngram: int = 0,
    repeat_passthrough: int = 0,
    closing_ramp: ClosingRamp | None = None,
) -> LockstepOutput:
    """Decode streams 0..S-1 in lockstep (see the module doc).

    row_prompt[r]: the pool prompt of row r; row_stream[r]: its stream, non-decreasing in r
    (a stream's rows are contiguous, in the order `guidance` expects them). Finished rows
    are dropped from the batch once they make up `compact_fraction` of it (0 = at once).
    Greedy at temperature 0. Sampled outputs are reproducible for a seeded `generator` and
    independent of when rows are dropped.
    """
    device = model.device
    row_stream_t = torch.as_tensor(list(row_stream), dtype=torch.long, device=device)
    row_prompt_t = torch.as_tensor(list(row_prompt), dtype=torch.long, device=device)
    assert len(row_stream_t) == len(row_prompt_t) > 0, "one prompt and one stream per row"
    assert bool((row_stream_t[1:] >= row_stream_t[:-1]).all()), "rows grouped by stream"
    num_streams = int(row_stream_t.max()) + 1
    assert int(row_stream_t.unique().numel()) == num_streams, "streams numbered 0..S-1"

    width = pool.width
    kv = PreallocatedKVCache.from_memory(
        [(k[row_prompt_t], v[row_prompt_t]) for k, v in zip(pool.keys, pool.values, strict=True)],
        width + max_new_tokens,
    )
    mask = torch.zeros(len(row_prompt_t), width + max_new_tokens, dtype=torch.long, device=device)
    mask[:, :width] = pool.mask[row_prompt_t].long()
    positions = pool.lengths[row_prompt_t]  # (R,) position of each row's first new token
    log_probs = pool.last_log_probs.to(device)[row_prompt_t]  # (R, V)
    uniforms = None
    if temperature > 0:  # one uniform per (stream, step), independent of compaction
        rng_device = generator.device if generator is not None else "cpu"
        uniforms = torch.rand(num_streams, max_new_tokens, generator=generator, device=rng_device)
        uniforms = uniforms.to(device)

    eos_ids = set(end_of_sequence_ids(model, tokenizer))
    watch = StopWatch(tokenizer, stop_strings)
    block = NgramBlock(no_repeat_ngram)
    repeats = NgramBlock(repeat_passthrough)  # tokens that keep their own log-probs
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out_ids: list[list[int]] = [[] for _ in range(num_streams)]
    texts: list[str | None] = [None] * num_streams
    reasons = ["budget"] * num_streams
    live = torch.ones(num_streams, dtype=torch.bool, device=device)
    rows = torch.arange(len(row_prompt_t), device=device)  # original row of each batch slot
    forward_passes = sequence_steps = generated = 0
    with torch.inference_mode():
        for step in range(max_new_tokens):
            batch_streams = row_stream_t[rows]  # (R',)
            live_rows = live[batch_streams]  # (R',)
            streams = batch_streams[live_rows].unique_consecutive()  # (S',)
            live_log_probs = log_probs[live_rows]  # (R'', V)
            scores = guidance(live_log_probs, streams)  # (S', V)
            if end_tokens is not None or repeats.n:
                owner = batch_streams[live_rows]
                first = torch.ones_like(owner, dtype=torch.bool)
                first[1:] = owner[1:] != owner[:-1]  # each stream's first (own) row
                inside = torch.tensor(
                    [
                        end_tokens is not None
                        and _inside_delimiter(tokenizer, out_ids[s], stop_strings)
                        for s in streams
                    ],
                    dtype=torch.bool,
                )
                # tokens that keep the stream's own log-prob: (V,) end tokens, or (S', V)
                # with each stream's repeats added
                passthrough = (
                    (end_tokens if end_tokens is not None else torch.zeros_like(scores[0]))
                    .bool()
                    .to(scores.device)
                )
                if repeats.n:
                    passthrough = passthrough[None, :].repeat(len(streams), 1)
                    for i, s in enumerate(streams.tolist()):
                        repeat = repeats.banned(s, out_ids[s])
                        if repeat:
                            passthrough[i, sorted(repeat)] = True
                scores = end_passthrough(scores, live_log_probs[first], passthrough, inside)
            if closing_ramp is not None:
                scores = closing_ramp.apply(scores, step)
            if block.n:
                live_streams = streams.tolist()
                scores = block.masked(scores, live_streams, [out_ids[s] for s in live_streams])
            u = uniforms[streams, step] if uniforms is not None else None
            tokens = sample_next_token(scores, temperature, top_p, u)  # (S',)
            generated += len(streams)
            for stream, tok in zip(streams.tolist(), tokens.tolist(), strict=True):
                if tok in eos_ids:
                    reasons[stream] = "eos"
                    continue
                out_ids[stream].append(tok)
                cut = watch.cut(out_ids[stream], tok)
                if cut is not None:
                    texts[stream], reasons[stream] = cut, "stop_string"
            for stream in streams.tolist():
                if reasons[stream] != "budget":
                    live[stream] = False
            if step + 1 == max_new_tokens or not bool(live.any()):
                break
            stream_token = torch.full((num_streams,), pad_id, dtype=torch.long, device=device)
            stream_token[streams] = tokens
            dead = int((~live[batch_streams]).sum())
            if dead and dead >= compact_fraction * len(rows):  # drop finished rows
                keep = live[batch_streams].nonzero().squeeze(1)
                kv.select_rows(keep)
                rows, mask, positions = rows[keep], mask[keep], positions[keep]
            mask[:, width + step] = 1
            logits = model(
                input_ids=stream_token[row_stream_t[rows]][:, None],
                attention_mask=mask[:, : width + step + 1],
                position_ids=(positions + step)[:, None],
                **cache_kwargs(kv),
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            log_probs = torch.log_softmax(logits.float(), dim=-1)  # (R', V)
            forward_passes += 1
            sequence_steps += len(rows)
    for stream in range(num_streams):
        if texts[stream] is None:
            texts[stream] = tokenizer.decode(out_ids[stream], skip_special_tokens=True)
    return LockstepOutput(
        texts=[t or "" for t in texts],
        token_ids=out_ids,
        stop_reasons=reasons,
        forward_passes=forward_passes,
        sequence_steps=sequence_steps,
        generated_tokens=generated,
    )


def _inside_delimiter(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], stop_strings: Sequence[str]
) -> bool:
    """The text ends with a proper, non-empty prefix of "\n" + a stop string."""
    if not ids:
        return False
    tail = tokenizer.decode(ids[-4:], skip_special_tokens=True)
    for stop in stop_strings:
        line = "\n" + stop
        if any(tail.endswith(line[:i]) for i in range(1, len(line))):
            return True
    return False
