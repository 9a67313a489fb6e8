"""Train the DiffLM VAE (arXiv 2411.03250, section 3.2): recon + beta * KL, frozen decoder.

A plain loop: AdamW on the trainable parameters only, beta from a schedule
(`synthloom.methods.difflm.beta`), evaluation on held-out records every `eval_every`
steps, beta updated from the validation reconstruction loss, early stopping, and the best
trainable weights restored at the end. Plus the two data helpers it needs:
`tokenize_records` (texts -> padded tensors) and `batches` (tensors -> batch dicts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from synthloom.methods.difflm.beta import BetaSchedule
from synthloom.models.device import set_seed
from synthloom.models.vae import DiffLMVAE

Batch = dict[str, torch.Tensor]


# ---------------------------------------------------------------- data


def tokenize_records(
    texts: Sequence[str],
    enc_tokenizer: PreTrainedTokenizerBase,
    dec_tokenizer: PreTrainedTokenizerBase,
    max_enc_len: int,
    max_dec_len: int,
) -> dict[str, torch.Tensor]:
    """Tokenize records for the encoder and the decoder; all tensors right-padded, (N, T).

    enc_ids / enc_mask: the encoder tokenizer's own format ([CLS] text [SEP] for BERT),
    truncated to max_enc_len. dec_ids / dec_mask: BOS, the record tokens, EOS, at most
    max_dec_len tokens; a record that does not fit is cut and gets no EOS (it does not end
    there). `dec_full_length` (N,) is every record's length with BOS and EOS before any cut,
    so a record was cut exactly when it exceeds max_dec_len. BOS is the decoder tokenizer's bos
    token (SmolLM2: <|im_start|>), EOS its eos token: decoding starts at BOS, stops at EOS.
    """
    bos, eos = dec_tokenizer.bos_token_id, dec_tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError("the decoder tokenizer needs both a BOS and an EOS token")
    enc = enc_tokenizer(list(texts), truncation=True, max_length=max_enc_len)["input_ids"]
    body = dec_tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    dec = [
        [bos, *ids, eos] if len(ids) + 2 <= max_dec_len else [bos, *ids[: max_dec_len - 1]]
        for ids in body
    ]
    enc_ids, enc_mask = _pad_right(enc, enc_tokenizer.pad_token_id or 0)
    dec_ids, dec_mask = _pad_right(dec, dec_tokenizer.pad_token_id or eos)
    return {
        "enc_ids": enc_ids,
        "enc_mask": enc_mask,
        "dec_ids": dec_ids,
        "dec_mask": dec_mask,
        "dec_full_length": torch.tensor([len(ids) + 2 for ids in body], dtype=torch.long),
    }


def _pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> ids (N, T) padded on the right with pad_id, mask (N, T) of 0/1."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def batches(
    tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool, seed: int = 0
) -> Iterator[Batch]:
    """One pass over the rows of `tensors` (all (N, ...)) in batches of `batch_size`.

    Row order is a permutation from `seed` when `shuffle` (pass seed + epoch for a new
    order each epoch), else 0..N-1; the last batch may be smaller. Right padding columns
    that no row of a batch uses are trimmed from every `*_ids` / `*_mask` pair.
    """
    n = len(next(iter(tensors.values())))
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v[idx] for k, v in tensors.items()}
        for prefix in ("enc", "dec"):
            if f"{prefix}_mask" in batch:
                width = int(batch[f"{prefix}_mask"].sum(dim=1).max())
                batch[f"{prefix}_ids"] = batch[f"{prefix}_ids"][:, :width]
                batch[f"{prefix}_mask"] = batch[f"{prefix}_mask"][:, :width]
        yield batch


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_vae(
    vae: DiffLMVAE,
    val_batches: Iterable[Batch],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Record-weighted mean recon NLL and KL over `val_batches`, in eval mode, at z = mu.

    z = mu (no sampling) makes the number deterministic, and mu is what the latent
    diffusion learns and what generation decodes. Restores the VAE's train/eval mode.
    """
    was_training = vae.training
    vae.eval()
    recon_sum, kl_sum, count = 0.0, 0.0, 0
    for batch in val_batches:
        batch = _to(batch, device)
        with _autocast(device, autocast_dtype):
            out = vae(**_model_inputs(batch), sample=False)
        b = batch["dec_ids"].shape[0]
        recon_sum += out["recon"].float().sum().item()
        kl_sum += out["kl"].item() * b
        count += b
    vae.train(was_training)
    return {"val_recon": recon_sum / max(count, 1), "val_kl": kl_sum / max(count, 1)}


# ---------------------------------------------------------------- training


def train_vae(
    vae: DiffLMVAE,
    train_batches_fn: Callable[[int], Iterable[Batch]],
    val_batches_fn: Callable[[], Iterable[Batch]],
    *,
    steps: int,
    lr: float,
    beta_schedule: BetaSchedule,
    eval_every: int,
    early_stopping_patience: int,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
    grad_clip: float | None = 1.0,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    log: Callable[[dict[str, Any]], None] = lambda record: None,
    seed: int = 0,
) -> dict[str, Any]:
    """Minimise mean_b[recon_b] + beta * mean_b[KL_b] for at most `steps` optimizer steps.

    `train_batches_fn(epoch)` yields one epoch of batches (it is called again with epoch+1
    when exhausted); `val_batches_fn()` yields the validation batches. Batches are dicts
    with enc_ids, enc_mask, dec_ids, dec_mask (see `tokenize_records`).
    Every step: beta_schedule.update(step, None), AdamW step on `vae.trainable_parameters()`
    (lr linearly warmed up over `warmup_steps`, then constant; grads clipped to norm
    `grad_clip`), log({step, loss, recon, kl, beta, lr, records_per_s}). Every `eval_every`
    steps and at the end: validation (`evaluate_vae`), log({step, val_recon, val_kl}),
    beta_schedule.update(step, val_recon); training stops once val_recon has not improved
    for `early_stopping_patience` evaluations in a row (make it exceed the beta schedule's
    patience, so beta gets to decay first). The best trainable weights (lowest val_recon)
    are loaded back before returning. `autocast_dtype` (e.g. torch.bfloat16) runs the
    forward pass under torch.autocast on the device's type; the loss stays float32.

    Returns {metric: [[step, value], ...]} for loss, recon, kl, beta, lr, records_per_s,
    val_recon, val_kl, plus best_step, best_val_recon, stop_reason ("steps" or
    "early_stopping") and steps_run. Steps count from 1.
    """
    set_seed(seed)
    device = torch.device(device)
    vae.to(device)
    vae.decoder.to(device)
    vae.train()
    params = vae.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    names = ("loss", "recon", "kl", "beta", "lr", "records_per_s", "val_recon", "val_kl")
    history: dict[str, Any] = {k: [] for k in names}
    best, best_step, best_state, bad_evals = math.inf, 0, None, 0
    stop_reason, step, epoch = "steps", 0, 0
    data = iter(train_batches_fn(epoch))
    while step < steps:
        try:
            batch = next(data)
        except StopIteration:
            epoch += 1
            data = iter(train_batches_fn(epoch))
            continue
        start = time.perf_counter()
        batch = _to(batch, device)
        beta = beta_schedule.update(step, None)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr
        with _autocast(device, autocast_dtype):
            out = vae(**_model_inputs(batch))
        loss = out["loss_recon"].float() + beta * out["kl"].float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        step += 1
        rate = batch["dec_ids"].shape[0] / (time.perf_counter() - start)
        record = {
            "step": step,
            "loss": loss.item(),
            "recon": out["loss_recon"].item(),
            "kl": out["kl"].item(),
            "beta": beta,
            "lr": opt.param_groups[0]["lr"],
            "records_per_s": rate,
        }
        for key in names[:6]:
            history[key].append([step, record[key]])
        log(record)
        if step % eval_every == 0 or step == steps:
            val = evaluate_vae(vae, val_batches_fn(), device, autocast_dtype)
            history["val_recon"].append([step, val["val_recon"]])
            history["val_kl"].append([step, val["val_kl"]])
            log({"step": step, **val})
            beta_schedule.update(step, val["val_recon"])
            if val["val_recon"] < best:
                best, best_step, bad_evals = val["val_recon"], step, 0
                best_state = {k: v.detach().clone() for k, v in vae.trainable_state_dict().items()}
            else:
                bad_evals += 1
                if bad_evals >= early_stopping_patience:
                    stop_reason = "early_stopping"
                    break
    if best_state is not None:
        vae.load_trainable_state_dict(best_state)
    history |= {
        "best_step": best_step,
        "best_val_recon": best,
        "stop_reason": stop_reason,
        "steps_run": step,
    }
    return history


def _model_inputs(batch: Batch) -> Batch:
    return {k: batch[k] for k in ("enc_ids", "enc_mask", "dec_ids", "dec_mask")}


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast(device.type, dtype) when a dtype is given, else a no-op context."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
