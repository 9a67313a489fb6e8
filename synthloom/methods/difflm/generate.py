"""DiffLM generation (arXiv 2411.03250, section 3.3): latents -> injection -> decode -> parse.

Batches of latents come from the latent diffusion model (or N(0, I) in the no-diffusion
ablation); the VAE's injector turns them into soft prompts (or KV memory / embedding
offsets) for the frozen decoder, which writes one serialized record per latent. Records
that do not parse into the schema are counted by reason and retried with new latents
until `num_rows` valid rows exist or `max_attempts` latents were spent. With
`constrained` (default) the decoder can only write records of the schema's grammar
(`grammar.py`): keys in order, known categories, well-formed numbers inside the widened
training range.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthloom.methods.difflm.decode import decode_records
from synthloom.methods.difflm.grammar import RecordGrammar, TokenConstraint
from synthloom.schema import TableSchema
from synthloom.serialize import parse_record


def sample_latents(diffusion: Any | None, n: int, latent_dim: int, seed: int) -> np.ndarray:
    """(n, latent_dim) latents: from the diffusion model, or the prior N(0, I) when None."""
    if diffusion is None:
        return np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    return np.asarray(diffusion.sample(n, seed=seed), dtype=np.float32)


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
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Generate until `num_rows` records parse (or `max_attempts` latents are spent).

    Returns (valid rows in schema order, every generated text with its parse outcome,
    stats: attempts, valid_rate, valid_rows_per_second, tokens_per_second, forward_passes,
    unfinished (hit the token budget), invalid {reason: count})."""
    fmt = method["serialization"]
    constraint = None
    if method.get("constrained", True) and fmt in ("json", "compact"):
        grammar = RecordGrammar.for_schema(
            schema, fmt, method["float_digits"], method.get("range_widening", 0.1)
        )
        vocab_size = models.decoder.get_input_embeddings().weight.shape[0]
        constraint = TokenConstraint.build(
            grammar, models.decoder_tokenizer, vocab_size, models.decoder.device
        )
    valid_parts: list[pd.DataFrame] = []
    texts: list[dict[str, Any]] = []
    invalid: Counter = Counter()
    attempts = valid = tokens = forward_passes = unfinished = 0
    start = time.perf_counter()
    batch_index = 0
    while valid < num_rows and attempts < max_attempts:
        size = min(method["decode_batch_size"], max_attempts - attempts)
        batch_seed = seed * 1_000_003 + batch_index
        z = torch.from_numpy(sample_latents(diffusion, size, method["latent_dim"], batch_seed))
        with torch.no_grad():
            injection = vae.inject(z.to(device))
        generator = torch.Generator(device="cpu").manual_seed(batch_seed)
        result = decode_records(
            models.decoder,
            models.decoder_tokenizer,
            injection,
            max_new_tokens=method["max_record_tokens"],
            temperature=method["temperature"],
            top_p=method["top_p"],
            generator=generator,
            constraint=constraint,
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
    stats = {
        "attempts": attempts,
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
