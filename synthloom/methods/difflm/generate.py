"""DiffLM generation (arXiv 2411.03250, section 3.3): latents -> injection -> decode -> parse.

Batches of latents come from the latent diffusion model (or N(0, I) in the no-diffusion
ablation); the VAE's injector turns them into soft prompts (or KV memory / embedding
offsets) for the frozen decoder, which writes one serialized record per latent. Records
that do not parse into the schema are counted by reason and retried with new latents
until `num_rows` valid rows exist or `max_attempts` latents were spent. With
`constrained` (default) the decoder can only write records of the schema's grammar
(`grammar.py`): keys in order, known categories, well-formed numbers inside the widened
training range. With `number_digits` set, the numbers of the valid rows are spread over
their rounding interval (`serialize.dequantize_numbers`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthloom.latent_classes import LatentClasses, balanced_labels
from synthloom.methods.difflm.decode import DecodeResult, decode_records
from synthloom.methods.difflm.grammar import RecordGrammar, TokenConstraint
from synthloom.schema import TableSchema
from synthloom.serialize import column_key, condition_schema, dequantize_numbers, parse_record


def sample_latents(diffusion: Any | None, n: int, latent_dim: int, seed: int) -> np.ndarray:
    """(n, latent_dim) latents: from the diffusion model, or the prior N(0, I) when None."""
    if diffusion is None:
        return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    return np.asarray(diffusion.sample(n, seed=seed), dtype=np.float32)


def record_constraint(
    schema: TableSchema, method: dict[str, Any], models: Any
) -> TokenConstraint | None:
    """The schema's token constraint for `models`' decoder, or None where decoding is free
    (`method.constrained` false, or the raw format). Its per-state tables fill lazily and
    stay in the object: build it once and pass it to every batch and shard."""
    fmt = method["serialization"]
    if not method["constrained"] or fmt not in ("json", "compact"):
        return None
    grammar = RecordGrammar.for_schema(
        schema, fmt, method["float_digits"], method["range_widening"]
    )
    vocab_size = models.decoder.get_input_embeddings().weight.shape[0]
    return TokenConstraint.build(
        grammar, models.decoder_tokenizer, vocab_size, models.decoder.device
    )


def decode_latents(
    vae: Any,
    models: Any,
    z: torch.Tensor,
    method: dict[str, Any],
    *,
    temperature: float,
    seed: int,
    constraint: TokenConstraint | None,
    device: torch.device,
) -> DecodeResult:
    """One batch of latents (B, latent_dim) -> injection -> one decoded record text per row,
    at `temperature` (0 = greedy) with `method.top_p` and the record token budget; the
    sampling draws come from a CPU generator seeded with `seed`."""
    with torch.no_grad():
        injection = vae.inject(z.to(device))
    return decode_records(
        models.decoder,
        models.decoder_tokenizer,
        injection,
        max_new_tokens=method["max_record_tokens"],
        temperature=temperature,
        top_p=method["top_p"],
        generator=torch.Generator(device="cpu").manual_seed(seed),
        constraint=constraint,
    )


def generate_valid_rows(
    vae: Any,
    models: Any,
    diffusion: Any | None,
    schema: TableSchema,
    method: dict[str, Any],
    *,
    num_rows: int,
    max_attempts: int,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int, float], None] = lambda done, tried, rate: None,
    constraint: TokenConstraint | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Generate until `num_rows` records parse (or `max_attempts` latents are spent).

    A decoding batch holds at most `method.decode_batch_size` latents and no more than the
    rows still missing need at the valid rate seen so far (all of them before the first
    batch), so the last batch does not decode records that would be thrown away.
    `progress(valid rows, attempts, valid rows/s)` follows every batch. `constraint`: a
    prebuilt `record_constraint` to share across calls (shards); None builds it here.

    Returns (valid rows in schema order, every generated text with its parse outcome,
    stats: attempts, valid, valid_rate, valid_rows_per_second, tokens_per_second, forward_passes,
    unfinished (hit the token budget), invalid {reason: count})."""
    fmt = method["serialization"]
    if constraint is None:
        constraint = record_constraint(schema, method, models)
    valid_parts: list[pd.DataFrame] = []
    texts: list[dict[str, Any]] = []
    invalid: Counter = Counter()
    attempts = valid = tokens = forward_passes = unfinished = 0
    start = time.perf_counter()
    batch_index = 0
    while valid < num_rows and attempts < max_attempts:
        rate = valid / attempts if attempts else 1.0
        needed = math.ceil((num_rows - valid) / max(rate, 0.1))
        size = min(method["decode_batch_size"], max_attempts - attempts, needed)
        batch_seed = seed * 1_000_003 + batch_index
        z = torch.from_numpy(sample_latents(diffusion, size, method["latent_dim"], batch_seed))
        result = decode_latents(
            vae,
            models,
            z,
            method,
            temperature=method["temperature"],
            seed=batch_seed,
            constraint=constraint,
            device=device,
        )
        parsed = [parse_record(text, schema, fmt) for text in result.texts]
        good = [p.record for p in parsed if p.ok]
        invalid.update(p.error for p in parsed if not p.ok)
        if good:
            valid_parts.append(pd.DataFrame(good, columns=schema.names))
        texts.extend(
            {"text": t, "valid": p.ok, "error": p.error, "finished": bool(f), "batch": batch_index}
            for t, p, f in zip(result.texts, parsed, result.finished, strict=True)
        )
        attempts += size
        valid += len(good)
        tokens += int(result.num_tokens.sum())
        forward_passes += result.forward_passes
        unfinished += int((~result.finished).sum())
        batch_index += 1
        progress(min(valid, num_rows), attempts, valid / max(time.perf_counter() - start, 1e-9))
    seconds = time.perf_counter() - start
    rows = (
        pd.concat(valid_parts, ignore_index=True)
        if valid_parts
        else pd.DataFrame(columns=schema.names)
    )
    rows = rows.iloc[:num_rows].reset_index(drop=True)
    if method["number_digits"] is not None:
        rng = np.random.default_rng([seed, 7])
        rows = dequantize_numbers(rows, schema, method["number_digits"], rng)
    stats = {
        "attempts": attempts,
        "valid": valid,
        "valid_rate": valid / attempts if attempts else 0.0,
        "valid_rows_per_second": len(rows) / max(seconds, 1e-9),
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "generated_tokens": tokens,
        "forward_passes": forward_passes,
        "unfinished": unfinished,
        "seconds": seconds,
        "invalid": dict(invalid),
    }
    return rows, pd.DataFrame(texts), stats


@dataclass(frozen=True)
class RowGroup:
    """`count` rows decoded under the record grammar in which each slot of `forced`
    ({record key: value}) admits that value alone, from latents of class `label` of a
    class-conditional diffusion (None: the diffusion as it is); `tag` names the group in
    the generated texts' `condition` column."""

    forced: dict[str, str]
    count: int
    label: int | None
    tag: str


def usable_guidance(diffusion: Any, guidance_scale: float) -> float:
    """`guidance_scale` where the diffusion learnt a null class (label_dropout > 0), else 1:
    a model trained without one has nothing to contrast its classes with."""
    config = getattr(diffusion, "config", None)
    return guidance_scale if getattr(config, "label_dropout", 0.0) > 0 else 1.0


class GuidedLatents:
    """z ~ p(z | c) from a class-conditional latent diffusion for the classes `labels(n,
    seed)` chooses, guided at `guidance_scale` (`usable_guidance`), with the diffusion's
    `sample(n, seed=...)` signature (what `sample_latents` calls)."""

    def __init__(self, diffusion: Any, guidance_scale: float = 1.0) -> None:
        self.diffusion = diffusion
        self.guidance = usable_guidance(diffusion, guidance_scale)

    def labels(self, n: int, seed: int) -> np.ndarray:
        raise NotImplementedError

    def sample(self, n: int, *, seed: int) -> np.ndarray:
        labels = self.labels(n, seed)
        return self.diffusion.sample(n, seed=seed, labels=labels, guidance_scale=self.guidance)


class ClassLatents(GuidedLatents):
    """`GuidedLatents` of one class c."""

    def __init__(self, diffusion: Any, label: int, guidance_scale: float = 1.0) -> None:
        super().__init__(diffusion, guidance_scale)
        self.label = label

    def labels(self, n: int, seed: int) -> np.ndarray:
        return np.full(n, self.label, np.int64)


class BalancedLatents(GuidedLatents):
    """`GuidedLatents` with the n classes laid out in the training balance
    (`LatentClasses.balanced`) and shuffled by the seed: what generation draws, for the
    reconstruction diagnostic's latents."""

    def __init__(self, diffusion: Any, classes: LatentClasses, guidance_scale: float = 1.0):
        super().__init__(diffusion, guidance_scale)
        self.classes = classes

    def labels(self, n: int, seed: int) -> np.ndarray:
        return balanced_labels(np.asarray(self.classes.counts), n, seed)


def class_groups(
    schema: TableSchema, classes: LatentClasses, counts: Any, *, force: bool = True
) -> list[RowGroup]:
    """One group per class c with counts[c] rows, its class columns forced to the class's
    values (`schema`: the record schema, for the keys); `force` false leaves the slots free
    (decoding without the grammar: the class conditions the latents alone)."""
    groups = []
    for c in range(len(classes)):
        values = classes.assignment(c)
        forced = {column_key(schema, k): v for k, v in values.items()} if force else {}
        groups.append(RowGroup(forced, int(counts[c]), c, "|".join(values.values())))
    return groups


def condition_groups(
    schema: TableSchema,
    column: str,
    quotas: dict[str, int],
    classes: LatentClasses | None = None,
) -> list[RowGroup]:
    """Groups giving `column` (a table column name) value v exactly quotas[v] times. Without
    classes: one group per value. With classes holding `column`: each value's count split
    over the classes holding it (`LatentClasses.quotas_for`). With classes not holding it:
    each value's count laid out over the classes in the training balance, the column forced
    beside the class's values."""
    key = column_key(schema, column)
    if classes is None:
        return [RowGroup({key: str(v)}, int(n), None, str(v)) for v, n in quotas.items()]
    if column in classes.columns:
        groups = class_groups(schema, classes, classes.quotas_for(column, quotas))
        position = classes.columns.index(column)
        return [replace(g, tag=classes.values[g.label][position]) for g in groups]
    groups = []
    for value, n in quotas.items():
        for g in class_groups(schema, classes, classes.balanced(int(n))):
            groups.append(replace(g, forced={**g.forced, key: str(value)}, tag=str(value)))
    return groups


def generate_grouped_rows(
    vae: Any,
    models: Any,
    diffusion: Any | None,
    schema: TableSchema,
    method: dict[str, Any],
    *,
    groups: list[RowGroup],
    max_attempts: int,
    seed: int,
    device: torch.device,
    progress: Callable[[int, int, float], None] = lambda done, tried, rate: None,
    constraint_for: Callable[[TableSchema], TokenConstraint | None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Each group's `count` rows (fewer only when the attempt budget runs out): for group j,
    `generate_valid_rows` under the record grammar with the group's slots forced
    (`serialize.condition_schema`), from latents of its class (`ClassLatents`) or the
    diffusion as it is, with seed SeedSequence([seed, j]) and attempts in proportion to its
    count. The class's latents carry the rest of the record (the decoder barely conditions
    it on a written label, docs/methods.md); the forced slots make the written values agree
    with the class. Rows are shuffled (seeded);
    texts gain a `condition` column (the group's tag); stats add up as in one call.
    `constraint_for(schema)`: a cache of record constraints (None builds each here)."""
    total = sum(g.count for g in groups)
    parts, texts, stats = [], [], []
    done_before = 0
    for j, group in enumerate(groups):
        if group.count <= 0:
            continue
        sub = schema
        for key, value in group.forced.items():
            sub = condition_schema(sub, key, value)
        constraint = (
            constraint_for(sub) if constraint_for else record_constraint(sub, method, models)
        )
        latents = diffusion
        if group.label is not None and diffusion is not None:
            latents = ClassLatents(diffusion, group.label, method["guidance_scale"])
        rows, generated, stat = generate_valid_rows(
            vae,
            models,
            latents,
            sub,
            method,
            num_rows=group.count,
            max_attempts=max(1, math.ceil(max_attempts * group.count / total)),
            seed=int(np.random.SeedSequence([seed, j]).generate_state(1)[0]),
            device=device,
            progress=lambda done, tried, rate, base=done_before: progress(base + done, tried, rate),
            constraint=constraint,
        )
        done_before += len(rows)
        parts.append(rows)
        texts.append(generated.assign(condition=group.tag))
        stats.append(stat)
    parts = [p for p in parts if len(p)]  # a group with no valid row adds no dtype to the rest
    rows = concat_rows(parts) if parts else pd.DataFrame(columns=schema.names)
    order = np.random.default_rng([seed, 11]).permutation(len(rows))
    rows = rows.iloc[order].reset_index(drop=True)
    seconds = sum(s["seconds"] for s in stats)  # the groups are decoded one after another
    texts = pd.concat(texts, ignore_index=True) if texts else pd.DataFrame()
    return rows, texts, merge_generation_stats(stats, len(rows), seconds)


def concat_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """`parts` (same columns) one after another, a column's dtype taken from the parts
    holding a value in it: a column all missing in one part (a group whose rows left an
    optional field empty) is dropped from that part before concatenating and comes back
    as gaps, as pandas decided before it deprecated that rule; the first part's column
    order."""
    held = {c for part in parts for c in part.columns if part[c].notna().any()}
    trimmed = [
        part.drop(columns=[c for c in part.columns if c in held and part[c].isna().all()])
        for part in parts
    ]
    return pd.concat(trimmed, ignore_index=True)[list(parts[0].columns)]


ADDITIVE_STATS = (
    "attempts",
    "valid",
    "generated_tokens",
    "forward_passes",
    "unfinished",
    "seconds",
)


def merge_generation_stats(stats: list[dict[str, Any]], rows: int, wall: float) -> dict[str, Any]:
    """Stats of several `generate_valid_rows` calls -> one: ADDITIVE_STATS and the invalid
    reasons add up; valid_rate = valid / attempts; tokens/s = tokens / summed seconds (per
    decoding process); valid rows/s = `rows` / `wall` (the calls' wall time together)."""
    total = {k: sum(s[k] for s in stats) for k in ADDITIVE_STATS}
    invalid: Counter = Counter()
    for s in stats:
        invalid.update(s["invalid"])
    return {
        **total,
        "valid_rate": total["valid"] / total["attempts"] if total["attempts"] else 0.0,
        "valid_rows_per_second": rows / max(wall, 1e-9),
        "tokens_per_second": total["generated_tokens"] / max(total["seconds"], 1e-9),
        "invalid": dict(invalid),
    }
