"""DiffLM fitting glue: load the models, train the VAE, encode latents, plot what happened.

The pieces live in their own modules (`synthloom.models.vae`, `.train_vae`, `.beta`,
`.latent_diffusion`); this module wires them from a `method` config dict (the validated
`DiffLMConfig` dumped to a dict), which is all a pipeline stage needs to call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.errors import ConfigError
from synthloom.methods.difflm.beta import BetaSchedule, CyclicalBeta, DecreasingBeta
from synthloom.methods.difflm.numeric_features import fit_numeric_spec, numeric_scores
from synthloom.methods.difflm.train_vae import batches, tokenize_records, train_vae
from synthloom.models.causal_lm import load_causal_lm
from synthloom.models.device import autocast_dtype
from synthloom.models.encoder import load_encoder
from synthloom.models.vae import DiffLMVAE, VAEConfig
from synthloom.serialize import value_spans

ENCODER_MAX_TOKENS = 256


@dataclass
class BaseModels:
    """The trainable encoder and the frozen decoder, with their tokenizers."""

    encoder: PreTrainedModel
    encoder_tokenizer: PreTrainedTokenizerBase
    decoder: PreTrainedModel
    decoder_tokenizer: PreTrainedTokenizerBase


def load_base_models(
    method: dict[str, Any],
    device: torch.device,
    cache_dir: Path,
    decoder_dtype: torch.dtype | None = None,
) -> BaseModels:
    """Encoder and decoder named by `method` (aliases or Hugging Face names) on `device`."""
    encoder, enc_tok = load_encoder(method["encoder"], device=str(device))
    decoder, dec_tok = load_causal_lm(
        method["decoder"], device=str(device), dtype=decoder_dtype, cache_dir=cache_dir
    )
    return BaseModels(encoder, enc_tok, decoder, dec_tok)


ANCHOR_TEXTS = {  # what the decoder reads before BOS at init (`method.injector_init: text`)
    "json": "Here is one record of the table, written as JSON on one line:\n",
    "compact": "Here is one record of the table, its values separated by commas:\n",
    "raw": "Here is one example, written out in full:\n",
}
ANCHOR_FILLER = "Data. "


def anchor_token_ids(tokenizer: PreTrainedTokenizerBase, k: int, text: str) -> list[int]:
    """Exactly k token ids that end with `text`: its last k tokens, or, when it is shorter,
    the text after as many copies of ANCHOR_FILLER as fill the rest."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    filler = tokenizer(ANCHOR_FILLER, add_special_tokens=False)["input_ids"] or ids
    while len(ids) < k:
        ids = filler + ids
    return list(ids[-k:])


def build_vae(
    method: dict[str, Any], models: BaseModels, train_texts: list[str] | None = None
) -> DiffLMVAE:
    """The VAE `method` describes. `injector_init: text` starts the soft prompt / KV memory
    as the decoder's own reading of ANCHOR_TEXTS[serialization] (k tokens) plus a residual
    from z at `injector_residual_scale` of the decoder's scale; `random` is DiffLM's init
    (the residual alone, at full scale). `encoder_numeric_features` fits the numeric spec
    on `train_texts` (numeric_features.py)."""
    spec = (
        fit_numeric_spec(train_texts or [], method["serialization"])
        if method["encoder_numeric_features"]
        else None
    )
    anchored = method["injector_init"] == "text"
    anchor = (
        anchor_token_ids(
            models.decoder_tokenizer,
            method["num_prompts"],
            ANCHOR_TEXTS[method["serialization"]],
        )
        if anchored and method["injection"] != "input_embedding"
        else None
    )
    config = VAEConfig(
        latent_dim=method["latent_dim"],
        num_prompts=method["num_prompts"],
        mode=method["injection"],
        injector_hidden=method["injector_hidden"],
        anchor_ids=anchor,
        residual_scale=method["injector_residual_scale"] if anchor is not None else 1.0,
        encoder_dropout=method["encoder_dropout"],
        lora_rank=method["decoder_lora_rank"],
        lora_alpha=method["decoder_lora_alpha"],
        numeric_spec=spec,
    )
    return DiffLMVAE(
        models.encoder,
        models.decoder,
        config,
        encoder_name=method["encoder"],
        decoder_name=method["decoder"],
    )


def beta_schedule(method: dict[str, Any]) -> BetaSchedule:
    """The paper's decreasing schedule, or the cyclical one (ablation)."""
    if method["beta_schedule"] == "cyclical":
        return CyclicalBeta(max_beta=method["beta_start"], cycle_steps=method["beta_cycle_steps"])
    return DecreasingBeta(
        start=method["beta_start"],
        decay=method["beta_decay"],
        floor=method["beta_floor"],
        patience=method["beta_patience"],
    )


def _tokenized(
    texts: list[str], models: BaseModels, method: dict[str, Any], vae: DiffLMVAE
) -> dict:
    """Training tensors; `loss_tokens: values` adds the value-slot weights, a VAE with a
    numeric spec the records' numeric scores (`enc_features`)."""
    spans = (
        [value_spans(text, method["serialization"]) for text in texts]
        if method["loss_tokens"] == "values"
        else None
    )
    tokens = tokenize_records(
        texts,
        models.encoder_tokenizer,
        models.decoder_tokenizer,
        max_enc_len=ENCODER_MAX_TOKENS,
        max_dec_len=method["max_record_tokens"],
        value_spans=spans,
    )
    return tokens | record_features(vae, texts)


def record_features(vae: DiffLMVAE, texts: list[str]) -> dict[str, torch.Tensor]:
    """{"enc_features": (N, F) numeric scores} for a VAE with a numeric spec, else {}."""
    if not vae.config.numeric_spec:
        return {}
    return {"enc_features": torch.from_numpy(numeric_scores(texts, vae.config.numeric_spec))}


RECORD_TOKEN_MARGIN = 16  # `max_record_tokens: auto`: headroom over the longest record


def resolve_max_record_tokens(
    method: dict[str, Any], train_texts: list[str], models: BaseModels
) -> dict[str, Any]:
    """`method` with `max_record_tokens` as a number: kept when it is one; for "auto" the
    longest training record in decoder tokens (BOS and EOS included) plus 16, rounded up
    to a multiple of 16. Raises ConfigError when "auto" would not fit the decoder's
    context (the soft prompt and BOS come first)."""
    if method["max_record_tokens"] != "auto":
        return method
    body = models.decoder_tokenizer(list(train_texts), add_special_tokens=False)["input_ids"]
    longest = max((len(ids) + 2 for ids in body), default=2)
    limit = -(-(longest + RECORD_TOKEN_MARGIN) // 16) * 16
    context = getattr(models.decoder.config, "max_position_embeddings", None)
    if context is not None and limit + method["num_prompts"] + 1 > context:
        raise ConfigError(
            f"DiffLM: method.max_record_tokens: auto gives {limit} decoder tokens (the "
            f"longest training record has {longest}), but the decoder {method['decoder']} "
            f"holds {context} positions, {method['num_prompts'] + 1} of them for the soft "
            "prompt and BOS. Fix: use method.record_keys: aliases (short keys) or "
            "method.serialization: compact (no keys), drop wide text columns, or set "
            "max_record_tokens to a number that fits and raise method.max_truncated_share "
            "to train on cut records."
        )
    return method | {"max_record_tokens": limit}


def check_record_lengths(full_lengths: torch.Tensor, method: dict[str, Any]) -> int:
    """Raise ConfigError when more than `method.max_truncated_share` of the records do not fit in
    `method.max_record_tokens` decoder tokens (BOS + record + EOS); returns how many do not.

    A record cut short has no EOS, so a decoder trained on many of them never learns to end
    a record and generation writes no valid row; the records that do not fit cannot be
    generated either (decoding stops at the same limit). The message gives the longest
    record's length and a limit that fits every record."""
    limit = method["max_record_tokens"]
    max_share = method["max_truncated_share"]
    over = int((full_lengths > limit).sum())
    if over > max_share * max(len(full_lengths), 1):
        longest = int(full_lengths.max())
        suggested = -(-(longest + 8) // 16) * 16  # a little headroom, a multiple of 16
        raise ConfigError(
            f"DiffLM: {over} of {len(full_lengths)} serialized training records "
            f"({over / len(full_lengths):.0%}) are longer than method.max_record_tokens = "
            f"{limit} decoder tokens (the longest has {longest}, counting BOS and EOS); a cut "
            "record has no end, so the model would never learn to finish one and would write "
            f"no valid row. Fix: set max_record_tokens in the DiffLM method section of the "
            f"config to {suggested} or more (training and decoding cost grow with it)"
            + (
                ", or use method.record_keys: aliases (short keys) or method.serialization: "
                "compact, which drops the column names from every record (about half the tokens)"
                if method.get("serialization") == "json" and method.get("record_keys") != "aliases"
                else ""
            )
            + f"; or raise method.max_truncated_share (now {max_share}) to train on cut records."
        )
    return over


def fit_vae(
    models: BaseModels,
    train_texts: list[str],
    val_texts: list[str],
    method: dict[str, Any],
    *,
    device: torch.device,
    seed: int,
    log: Any = lambda record: None,
    checkpoint: Path | None = None,
) -> tuple[DiffLMVAE, dict[str, Any]]:
    """Train the VAE on the serialized records; returns it (best weights) and its history
    (with the record token limit used, `max_record_tokens`: "auto" resolved). `checkpoint`:
    a file the training state is saved to every `method.checkpoint_seconds` and resumed
    from (see `train_vae`)."""
    method = resolve_max_record_tokens(method, train_texts, models)
    vae = build_vae(method, models, train_texts)
    train = _tokenized(train_texts, models, method, vae)
    truncated = check_record_lengths(train["dec_full_length"], method)
    val_texts = val_texts or train_texts[: max(1, len(train_texts) // 10)]
    # a fixed sample: every evaluation scores the same records (no-grad, 4x larger batches)
    val_texts = val_texts[: method["val_records"]]
    val = _tokenized(val_texts, models, method, vae)
    size = method["vae_batch_size"]
    if method["latent_init"] == "pca":
        init_heads_from_records(vae, train, device, method["latent_init_logvar"])
    # the time budget also covers encoding every training record after training
    tail = encoding_seconds(vae, train, device) if method["vae_minutes"] is not None else 0.0
    history = train_vae(
        vae,
        lambda epoch: batches(train, size, shuffle=True, seed=seed + epoch),
        lambda: batches(val, 4 * size, shuffle=False),
        steps=method["vae_steps"],
        lr=method["vae_lr"],
        head_lr=method["vae_head_lr"],
        lr_schedule=method["vae_lr_schedule"],
        warmup_steps=method["vae_warmup_steps"],
        max_minutes=method["vae_minutes"],
        tail_seconds=tail,
        beta_schedule=beta_schedule(method),
        eval_every=method["eval_every"],
        early_stopping_patience=method["early_stopping_patience"],
        device=device,
        # bf16 autocast trains 1.7x SLOWER than fp32 on the 2-core CPU (measured); GPU only,
        # and only on GPUs with bf16 support (autocast_dtype: None elsewhere -> fp32).
        autocast_dtype=autocast_dtype(device) if method["bf16"] else None,
        log=log,
        seed=seed,
        checkpoint=checkpoint,
        checkpoint_seconds=method["checkpoint_seconds"],
    )
    history["truncated_records"] = truncated
    history["max_record_tokens"] = method["max_record_tokens"]
    return vae, history


LATENT_INIT_RECORDS = 512  # records whose pooled encoder states set the heads' init


@torch.no_grad()
def init_heads_from_records(
    vae: DiffLMVAE, tokens: dict[str, torch.Tensor], device: torch.device, logvar: float
) -> None:
    """`LatentHeads.init_from_data` on the pooled encoder states of the first
    LATENT_INIT_RECORDS tokenized records (`tokens` from `tokenize_records`), in eval mode."""
    was_training = vae.training
    vae.eval()
    keys, sample = _encoder_inputs(tokens, LATENT_INIT_RECORDS)
    pooled = [
        vae.pooled(*(batch[k].to(device) for k in keys))
        for batch in batches(sample, 64, shuffle=False)
    ]
    vae.heads.init_from_data(torch.cat(pooled), logvar)
    vae.train(was_training)


def _encoder_inputs(
    tokens: dict[str, torch.Tensor], count: int
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The encoder's input keys among `tokens` (ids, mask, numeric features where the VAE
    reads them), in `vae.encode` / `vae.pooled` order, and their first `count` records."""
    keys = [k for k in ("enc_ids", "enc_mask", "enc_features") if k in tokens]
    return keys, {k: tokens[k][:count] for k in keys}


@torch.no_grad()
def encoding_seconds(
    vae: DiffLMVAE,
    tokens: dict[str, torch.Tensor],
    device: torch.device,
    sample: int = 64,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Expected seconds of `encode_means` over all N tokenized records: one timed encoder
    pass over the first `sample` of them (batch 64, as `encode_means`) times N / sample."""
    n = len(tokens["enc_ids"])
    if n == 0:
        return 0.0
    was_training = vae.training
    vae.eval()
    keys, part = _encoder_inputs(tokens, sample)
    began = clock()
    for batch in batches(part, 64, shuffle=False):
        vae.encode(*(batch[k].to(device) for k in keys))
    seconds = clock() - began
    vae.train(was_training)
    return seconds * n / len(part["enc_ids"])


@torch.no_grad()
def encode_means(
    vae: DiffLMVAE,
    models: BaseModels,
    texts: list[str],
    method: dict[str, Any],
    *,
    device: torch.device,
    batch_size: int = 64,
) -> np.ndarray:
    """mu of every record (N, latent_dim): the data the latent diffusion learns (with the
    records' numeric scores for a VAE that reads them)."""
    vae.eval()
    tokens = tokenize_records(
        texts,
        models.encoder_tokenizer,
        models.decoder_tokenizer,
        max_enc_len=ENCODER_MAX_TOKENS,
        max_dec_len=method["max_record_tokens"],
    )
    tensors = {k: tokens[k] for k in ("enc_ids", "enc_mask")} | record_features(vae, texts)
    out = []
    for batch in batches(tensors, batch_size, shuffle=False):
        mu, _ = vae.encode(*(batch[k].to(device) for k in tensors))
        out.append(mu.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, method["latent_dim"]), np.float32)


def load_trained_vae(directory: Path, models: BaseModels) -> DiffLMVAE:
    vae = DiffLMVAE.load(directory, models.encoder, models.decoder)
    return vae.eval()
