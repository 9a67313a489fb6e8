"""Decode records from latent injections into a frozen causal LM (DiffLM, arXiv 2411.03250, 3.4).

`decode_records(model, tokenizer, injection)` turns a batch of injections (soft prompt, KV
memory or embedding offset, see `synthloom.models.injection`) into one text per row: the
tokens the model writes after BOS, up to the first stop token (excluded) or the token budget.

The loop is written by hand rather than through `model.generate()` because every row of a
batch sits at the same position (same prefix length, one BOS, one new token per step), so:
- no attention mask is ever built (step 0 is plain causal, later steps attend to every
  cached position);
- the KV cache is allocated once for the whole budget and written in place, where
  `DynamicCache` concatenates (copies) it at every step (+10% tokens/s at batch 64 and 96
  new tokens on the 2-core CPU);
- sampling inverts each row's CDF at one uniform draw instead of calling
  `torch.multinomial`, which draws an exponential variate per vocabulary entry (batch 64,
  SmolLM2's 49k vocabulary, one thread: 82 ms per step -> 4 ms, against ~180 ms for the
  forward pass);
- finished rows are dropped from the batch (cache and injection index-selected) once enough
  of them have piled up, so the rows still writing run on a smaller, faster batch;
- under a schema constraint, the output head scores only the tokens the rows' grammar
  states allow (`synthloom.models.output_head`): a digit or a category is one of a few
  hundred tokens, not of 49k.
`benchmarks/difflm_decode_throughput.py` compares the loop with `model.generate()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.methods.difflm.grammar import END, TokenConstraint
from synthloom.models.injection import Injection
from synthloom.models.kv_cache import PreallocatedKVCache, cache_kwargs
from synthloom.models.output_head import split_output_head
from synthloom.samplers.token_sampling import NUCLEUS_CANDIDATES  # noqa: F401 - re-exported
from synthloom.samplers.token_sampling import sample_next_token as _sample


@dataclass
class DecodeResult:
    """What `decode_records` produced, every per-row field in the injection's row order.

    texts: the decoded record text of each row (stop token excluded, special tokens skipped).
    token_ids: the generated token ids of each row (stop token excluded).
    num_tokens: (B,) number of generated tokens per row, stop token excluded.
    finished: (B,) True where the row emitted a stop token, False where it ran out of budget.
    forward_passes: model forward calls made (step 0 included).
    row_forwards: sum over forward calls of the rows in the batch (less than
        B * forward_passes when finished rows were dropped).
    seconds: wall time of the whole call.
    """

    texts: list[str]
    token_ids: list[list[int]]
    num_tokens: torch.Tensor
    finished: torch.Tensor
    forward_passes: int
    row_forwards: int
    seconds: float

    @property
    def generated_tokens(self) -> int:
        """Tokens the model produced, stop tokens included (what throughput should count)."""
        return int(self.num_tokens.sum() + self.finished.sum())


def decode_records(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    injection: Injection,
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.5,
    top_p: float = 1.0,
    stop_token_ids: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
    min_batch_to_compact: int = 4,
    constraint: TokenConstraint | None = None,
    restrict_vocabulary: bool = True,
    profile: dict[str, float] | None = None,
) -> DecodeResult:
    """Decode one record per injection row: BOS, then tokens until a stop token or the budget.

    Step 0 feeds the injection and the BOS embedding to the model (eval mode) with an empty
    cache: soft prompt -> [prefix_embeds, BOS] at positions 0..k; KV memory -> the cache is
    seeded with the memory and BOS sits at position k; input embedding -> BOS + offset at
    position 0. Each later step feeds only the token just sampled (its embedding, plus the
    offset in input-embedding mode). Sampling: softmax(logits / temperature), restricted to
    the top-p nucleus when top_p < 1 (a top-256 selection per step, a full-vocabulary sort
    when some row's nucleus is wider); temperature 0 means greedy (argmax, first index on
    ties). A row that samples a token in `stop_token_ids` (default: the tokenizer's eos;
    `()` disables stopping) is finished. Finished rows are dropped from the batch (one copy
    of the filled cache) as soon as at least `min_batch_to_compact` finished rows are still
    in it (1 = at once; more than the batch size = never).

    With a `constraint` (schema-constrained decoding, `grammar.py`), each step's logits are
    masked to the tokens the row's grammar state allows, and a row is finished (its last
    token kept) as soon as its state reaches the end of the record. With
    `restrict_vocabulary` (default) and a model whose logits are a linear head over its
    body's last hidden state (`split_output_head`), a step computes the logits of only the
    U tokens some row's state allows (their ascending union, when U <= V / 2): the same
    masked distribution, and the same token for the same uniform draw (the CDF is inverted
    in token-id order either way), without the other V - U rows of the head and a
    V-wide softmax per row.

    `profile`, when given, accumulates wall seconds per phase of the loop: "forward" (the
    model's body, or the whole model when the head is not split), "head" (output logits),
    "grammar" (masks, unions and state updates), "sampling", "other" (embedding the next
    token, compaction, bookkeeping); on CUDA each phase ends with a synchronize, which
    slows the loop a little.

    Greedy outputs do not depend on batch composition or compaction. Sampling draws one
    uniform per (row, step) from `generator` up front, so sampled outputs are reproducible for
    a seeded generator and do not depend on compaction either. `autocast_dtype` runs the
    forward passes under `torch.autocast` (for GPUs; on CPU autocast re-casts the weights at
    every step, so cast the model itself if a lower precision is wanted). Injection tensors
    are moved to the model's device and dtype. The cache holds k + max_new_tokens positions.
    """
    start = time.perf_counter()
    device = model.device
    dtype = model.get_input_embeddings().weight.dtype
    config = model.config.get_text_config(decoder=True)
    stops = _stop_ids(tokenizer, stop_token_ids, device)
    bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.bos_token_id
    assert bos_id is not None, "tokenizer and model config define no BOS token"

    batch, prefix_len = injection.batch_size, injection.prefix_length
    injection = _to(injection, device, dtype)
    embed = model.get_input_embeddings()
    out_ids = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=device)
    num_tokens = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)  # original row of each batch position
    states = constraint.start_states(batch) if constraint is not None else None
    # One uniform per (row, step), drawn up front: a row's sample never depends on which
    # other rows are still in the batch, so compaction does not change sampled outputs.
    uniforms = None
    if temperature > 0:
        rng_device = generator.device if generator is not None else "cpu"
        uniforms = torch.rand(batch, max_new_tokens, generator=generator, device=rng_device)
        uniforms = uniforms.to(device)  # (B, T)
    forward_passes = row_forwards = 0
    if max_new_tokens <= 0 or batch == 0:
        return _result(tokenizer, out_ids, num_tokens.zero_(), finished, 0, 0, start)

    # Step 0 inputs: (B, q, H) embeddings at positions (1, q); the cache holds k + budget slots.
    bos = embed(torch.full((batch, 1), bos_id, dtype=torch.long, device=device))  # (B, 1, H)
    if injection.prefix_embeds is not None:
        inputs = torch.cat([injection.prefix_embeds, bos], dim=1)  # (B, k+1, H)
        kv = PreallocatedKVCache(config.num_hidden_layers, prefix_len + max_new_tokens)
    elif injection.past_key_values is not None:
        inputs = bos  # (B, 1, H); the memory stands for positions 0..k-1
        kv = PreallocatedKVCache.from_memory(injection.past_key_values, prefix_len + max_new_tokens)
    else:
        inputs = bos + injection.embed_offset[:, None, :]  # (B, 1, H)
        kv = PreallocatedKVCache(config.num_hidden_layers, max_new_tokens)
    position = 0 if injection.prefix_embeds is not None else prefix_len
    offset = injection.embed_offset  # (B, H) or None; follows compaction

    amp = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else nullcontext()
    )
    split = split_output_head(model) if constraint is not None and restrict_vocabulary else None
    vocab = split.weight.shape[0] if split is not None else 0
    clock = _PhaseClock(profile, device)
    with torch.inference_mode(), amp:
        for step in range(max_new_tokens):
            q = inputs.shape[1]
            positions = torch.arange(position, position + q, device=device)[None]  # (1, q)
            clock.lap("other")
            candidates = None
            if split is None:
                logits = model(
                    inputs_embeds=inputs,
                    position_ids=positions,
                    **cache_kwargs(kv),
                    use_cache=True,
                    logits_to_keep=1,
                ).logits[:, -1]  # (B', V)
                clock.lap("forward")
            else:
                hidden = split.body(
                    inputs_embeds=inputs, position_ids=positions, **cache_kwargs(kv), use_cache=True
                ).last_hidden_state[:, -1]  # (B', H)
                clock.lap("forward")
                ids, allowed = constraint.candidates(states)  # (U,), (B', U)
                clock.lap("grammar")
                if 2 * ids.numel() <= vocab:
                    candidates = ids
                    logits = split.logits(hidden, ids)  # (B', U)
                else:
                    allowed = None
                    logits = split.logits(hidden)  # (B', V)
                clock.lap("head")
            forward_passes += 1
            row_forwards += len(rows)
            position += q
            if states is not None:
                if candidates is None:
                    allowed = constraint.allowed(states)
                logits = logits.masked_fill(~allowed, float("-inf"))
                clock.lap("grammar")
            u = uniforms[rows, step] if uniforms is not None else None  # (B',)
            token = _sample(logits, temperature, top_p, u)  # (B',)
            if candidates is not None:
                token = candidates[token]
            clock.lap("sampling")
            out_ids[rows, step] = token
            if states is not None:  # the record ends with its last token, kept
                states = constraint.advance(states, token.tolist())
                stopped = torch.tensor([s == END for s in states], device=device)
                stopped &= ~finished[rows]
                length = step + 1
                clock.lap("grammar")
            else:  # the stop token ends the record and is not part of it
                stopped = torch.isin(token, stops) & ~finished[rows]  # (B',) newly finished
                length = step
            if stopped.any():
                done = rows[stopped]
                finished[done] = True
                num_tokens[done] = length
            if step + 1 == max_new_tokens:
                break
            live = ~finished[rows]  # (B',) rows still writing
            n_live = int(live.sum())
            if n_live == 0:
                break
            if len(rows) - n_live >= min_batch_to_compact:  # drop finished rows
                keep = live.nonzero().squeeze(1)
                rows, token = rows[keep], token[keep]
                kv.select_rows(keep)
                if states is not None:
                    states = [states[i] for i in keep.tolist()]
                if offset is not None:
                    offset = offset[keep]
            inputs = embed(token)[:, None, :]  # (B', 1, H)
            if offset is not None:
                inputs = inputs + offset[:, None, :]
        clock.lap("other")
    return _result(tokenizer, out_ids, num_tokens, finished, forward_passes, row_forwards, start)


class _PhaseClock:
    """Adds the wall time since the previous lap to `profile[phase]`; inert for None."""

    def __init__(self, profile: dict[str, float] | None, device: torch.device) -> None:
        self.profile = profile
        self.sync = device.type == "cuda" and profile is not None
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.profile is None:
            return
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.profile[phase] = self.profile.get(phase, 0.0) + now - self.last
        self.last = now


def batched(
    injection_fn: Callable[[int], Injection], n: int, batch_size: int
) -> Iterator[Injection]:
    """Yield `injection_fn(size)` for consecutive batches covering `n` rows (last one smaller)."""
    assert batch_size > 0, "batch_size must be positive"
    for first in range(0, n, batch_size):
        yield injection_fn(min(batch_size, n - first))


def _stop_ids(
    tokenizer: PreTrainedTokenizerBase, stop_token_ids: Sequence[int] | None, device: torch.device
) -> torch.Tensor:
    if stop_token_ids is None:
        assert tokenizer.eos_token_id is not None, "no stop_token_ids and no eos token"
        stop_token_ids = [tokenizer.eos_token_id]
    return torch.tensor(list(stop_token_ids), dtype=torch.long, device=device)


def _to(injection: Injection, device: torch.device, dtype: torch.dtype) -> Injection:
    """The injection's tensors on the model's device and in its dtype."""
    if injection.prefix_embeds is not None:
        return Injection(prefix_embeds=injection.prefix_embeds.to(device, dtype))
    if injection.embed_offset is not None:
        return Injection(embed_offset=injection.embed_offset.to(device, dtype))
    return Injection(
        past_key_values=tuple(
            (k.to(device, dtype), v.to(device, dtype)) for k, v in injection.past_key_values
        )
    )


def _result(
    tokenizer: PreTrainedTokenizerBase,
    out_ids: torch.Tensor,
    num_tokens: torch.Tensor,
    finished: torch.Tensor,
    forward_passes: int,
    row_forwards: int,
    start: float,
) -> DecodeResult:
    ids = [row[:n].tolist() for row, n in zip(out_ids.cpu(), num_tokens.tolist(), strict=True)]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return DecodeResult(
        texts=texts,
        token_ids=ids,
        num_tokens=num_tokens.cpu(),
        finished=finished.cpu(),
        forward_passes=forward_passes,
        row_forwards=row_forwards,
        seconds=time.perf_counter() - start,
    )
