"""Train the DiffLM VAE (arXiv 2411.03250, section 3.2): recon + beta * KL, frozen decoder.

A plain loop: AdamW on the trainable parameters only, beta from a schedule
(`synthloom.methods.difflm.beta`), evaluation on held-out records every `eval_every`
steps, beta updated from the validation reconstruction loss, early stopping, and the best
trainable weights restored at the end. Plus the two data helpers it needs:
`tokenize_records` (texts -> padded tensors) and `batches` (tensors -> batch dicts).

Checkpoints: with `checkpoint` set, the whole training state (trainable weights, optimiser,
beta schedule, RNG, step and position in the epoch, best weights, history, elapsed time) is
written there atomically every `checkpoint_seconds` and read back on the next call, so a
killed run continues from its last checkpoint; without `max_minutes` it then ends with the
weights of an uninterrupted run (batch order depends on seed and epoch only).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from synthloom.methods.difflm.beta import BetaSchedule
from synthloom.models.checkpoint import load_training_state, save_training_state
from synthloom.models.device import set_seed
from synthloom.models.lr_schedule import lr_factor
from synthloom.models.vae import DiffLMVAE

Batch = dict[str, torch.Tensor]
CHECKPOINT_VERSION = 1


# ---------------------------------------------------------------- data


def tokenize_records(
    texts: Sequence[str],
    enc_tokenizer: PreTrainedTokenizerBase,
    dec_tokenizer: PreTrainedTokenizerBase,
    max_enc_len: int,
    max_dec_len: int,
    value_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenize records for the encoder and the decoder; all tensors right-padded, (N, T).

    enc_ids / enc_mask: the encoder tokenizer's own format ([CLS] text [SEP] for BERT),
    truncated to max_enc_len. dec_ids / dec_mask: BOS, the record tokens, EOS, at most
    max_dec_len tokens; a record that does not fit is cut and gets no EOS (it does not end
    there). `dec_full_length` (N,) is every record's length with BOS and EOS before any cut,
    so a record was cut exactly when it exceeds max_dec_len. BOS is the decoder tokenizer's bos
    token (SmolLM2: <|im_start|>), EOS its eos token: decoding starts at BOS, stops at EOS.
    With `value_spans` (one list of character spans per text, see
    `synthloom.serialize.value_spans`), also dec_weight (N, T) float: 1 at the record tokens
    whose characters overlap a span and at EOS, 0 at BOS, the other tokens and padding (the
    tokenizer must be a fast one, with offsets); the loss then counts those tokens only.
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
    out = {
        "enc_ids": enc_ids,
        "enc_mask": enc_mask,
        "dec_ids": dec_ids,
        "dec_mask": dec_mask,
        "dec_full_length": torch.tensor([len(ids) + 2 for ids in body], dtype=torch.long),
    }
    if value_spans is not None:
        out["dec_weight"] = _value_weights(texts, value_spans, dec_tokenizer, dec, eos)
    return out


def _value_weights(
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    tokenizer: PreTrainedTokenizerBase,
    dec: list[list[int]],
    eos: int,
) -> torch.Tensor:
    """(N, T) weights aligned with the decoder ids `dec` (BOS, record tokens, [EOS])."""
    offsets = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    weight = torch.zeros((len(dec), max(len(ids) for ids in dec)))
    for i, (ids, marks, record_spans) in enumerate(zip(dec, offsets, spans, strict=True)):
        for j, (start, end) in enumerate(marks[: len(ids) - 1]):  # record tokens after BOS
            if any(start < b and a < end for a, b in record_spans):
                weight[i, j + 1] = 1.0
        if ids[-1] == eos and len(ids) == len(marks) + 2:
            weight[i, len(ids) - 1] = 1.0
    return weight


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
    that no row of a batch uses are trimmed from every `*_ids` / `*_mask` (/ `*_weight`).
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
                for key in (f"{prefix}_ids", f"{prefix}_mask", f"{prefix}_weight"):
                    if key in batch:
                        batch[key] = batch[key][:, :width]
        yield batch


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_vae(
    vae: DiffLMVAE,
    val_batches: Iterable[Batch],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Record-weighted mean recon NLL and KL over `val_batches`, in eval mode, at z = mu,
    and val_mu_std = mean_j std_i(mu_ij): how far apart the records' latents are (near 0,
    every record has the same latent and the decoder cannot tell them apart).

    z = mu (no sampling) makes the number deterministic, and mu is what the latent
    diffusion learns and what generation decodes. Restores the VAE's train/eval mode.
    """
    was_training = vae.training
    vae.eval()
    recon_sum, kl_sum, count, mus = 0.0, 0.0, 0, []
    for batch in val_batches:
        batch = _to(batch, device)
        with _autocast(device, autocast_dtype):
            out = vae(**_model_inputs(batch), sample=False)
        b = batch["dec_ids"].shape[0]
        recon_sum += out["recon"].float().sum().item()
        kl_sum += out["kl"].item() * b
        count += b
        mus.append(out["mu"].float())
    vae.train(was_training)
    mu = torch.cat(mus) if mus else torch.zeros(0, 1)
    mu_std = mu.std(dim=0).mean().item() if len(mu) > 1 else 0.0
    return {
        "val_recon": recon_sum / max(count, 1),
        "val_kl": kl_sum / max(count, 1),
        "val_mu_std": mu_std,
    }


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
    head_lr: float | None = None,
    lr_schedule: str = "constant",
    max_minutes: float | None = None,
    tail_seconds: float = 0.0,
    log: Callable[[dict[str, Any]], None] = lambda record: None,
    seed: int = 0,
    clock: Callable[[], float] = time.monotonic,
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 120.0,
) -> dict[str, Any]:
    """Minimise mean_b[recon_b] + beta * mean_b[KL_b] for at most `steps` optimizer steps.

    `train_batches_fn(epoch)` yields one epoch of batches (it is called again with epoch+1
    when exhausted); `val_batches_fn()` yields the validation batches. Batches are dicts
    with enc_ids, enc_mask, dec_ids, dec_mask (see `tokenize_records`).
    Every step: beta_schedule.update(step, None), AdamW step on two parameter groups, the
    encoder at `lr` and the latent heads + injector at `head_lr` (default `lr`), each
    scaled by `lr_factor` (linear warmup over `warmup_steps`, then constant or cosine
    decay over the budget); grads clipped to norm `grad_clip`; log({step, loss, recon, kl,
    beta, lr, records_per_s}) with lr the head group's. The budget is `steps`, and also
    `max_minutes` of `clock` when given. The minutes cover the whole of what follows too:
    the final validation (as long as the last one measured; nothing before the first) and
    `tail_seconds` of the caller's work after training (encoding the training records), so
    training ends at the first step where elapsed + that reserve >= 60 * max_minutes
    (stop_reason "minutes"), and the cosine's progress is the larger of the two fractions
    used (the clock's over the minutes less the reserve), so it reaches 0 at whichever
    budget ends first. Every `eval_every` steps and at the end: validation
    (`evaluate_vae`), log({step, val_recon, val_kl, val_mu_std}),
    beta_schedule.update(step, val_recon); training stops once val_recon has not improved
    for `early_stopping_patience` evaluations in a row (make it exceed the beta schedule's
    patience, so beta gets to decay first). The best trainable weights (lowest val_recon)
    are loaded back before returning. `autocast_dtype` (e.g. torch.bfloat16) runs the
    forward pass under torch.autocast on the device's type; the loss stays float32.

    `checkpoint` (a file path): resume from it when it holds a state saved with the same
    settings, and save the state there every `checkpoint_seconds` (see the module doc).

    Returns {metric: [[step, value], ...]} for loss, recon, kl, beta, lr, records_per_s,
    val_recon, val_kl, val_mu_std, plus best_step, best_val_recon, stop_reason ("steps",
    "early_stopping" or "minutes"), steps_run and resumed_from_step (0 for a fresh start).
    Steps count from 1.
    """
    set_seed(seed)
    device = torch.device(device)
    vae.to(device)
    vae.decoder.to(device)
    vae.train()
    params = vae.trainable_parameters()
    encoder_ids = {id(p) for p in vae.encoder.parameters()}
    groups = [
        {"params": [p for p in params if id(p) in encoder_ids], "base_lr": lr},
        {"params": [p for p in params if id(p) not in encoder_ids], "base_lr": head_lr or lr},
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)
    names = ("loss", "recon", "kl", "beta", "lr", "records_per_s")
    names += ("val_recon", "val_kl", "val_mu_std")
    history: dict[str, Any] = {k: [] for k in names}
    best, best_step, best_state, bad_evals = math.inf, 0, None, 0
    stop_reason, step, epoch, used = "steps", 0, 0, 0  # used: batches of this epoch done
    settings = {"steps": steps, "lr": lr, "head_lr": head_lr, "warmup_steps": warmup_steps,
                "lr_schedule": lr_schedule, "seed": seed, "eval_every": eval_every}  # fmt: skip
    elapsed, resumed_from = 0.0, 0
    saved = load_training_state(checkpoint, version=CHECKPOINT_VERSION, settings=settings)
    if saved is not None:
        vae.load_trainable_state_dict(saved["weights"])
        opt.load_state_dict(saved["optimizer"])
        beta_schedule.__dict__.update(saved["beta_schedule"])
        torch.set_rng_state(saved["rng"])
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        history, best_state = saved["history"], saved["best_state"]
        best, best_step, bad_evals = saved["best"], saved["best_step"], saved["bad_evals"]
        step, epoch, used, elapsed = saved["step"], saved["epoch"], saved["used"], saved["elapsed"]
        resumed_from = step
    started = clock() - elapsed
    last_save = clock()
    # the last validation's duration: the final one is reserved in the time budget
    val_seconds = saved.get("val_seconds", 0.0) if saved is not None else 0.0

    def validate() -> dict[str, float]:
        nonlocal val_seconds
        began = clock()
        val = evaluate_vae(vae, val_batches_fn(), device, autocast_dtype)
        val_seconds = clock() - began
        history["val_recon"].append([step, val["val_recon"]])
        history["val_kl"].append([step, val["val_kl"]])
        history["val_mu_std"].append([step, val["val_mu_std"]])
        log({"step": step, **val})
        return val

    def training_seconds() -> float:
        """The minutes' share left to training: less the final validation and the tail."""
        return 60 * max_minutes - val_seconds - tail_seconds

    def out_of_minutes() -> bool:
        return max_minutes is not None and clock() - started >= training_seconds()

    data = iter(train_batches_fn(epoch))
    for _ in range(used):  # the batches this epoch had used before the checkpoint
        next(data)
    while step < steps:
        try:
            batch = next(data)
        except StopIteration:
            epoch, used = epoch + 1, 0
            data = iter(train_batches_fn(epoch))
            continue
        used += 1
        start = time.perf_counter()
        batch = _to(batch, device)
        beta = beta_schedule.update(step, None)
        progress = (step - warmup_steps) / max(1, steps - warmup_steps)
        if max_minutes is not None:
            progress = max(progress, (clock() - started) / max(1e-9, training_seconds()))
        factor = lr_factor(step, warmup_steps, progress, lr_schedule)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
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
            "lr": opt.param_groups[-1]["lr"],
            "records_per_s": rate,
        }
        for key in names[:6]:
            history[key].append([step, record[key]])
        log(record)
        validated = step % eval_every == 0 or step == steps
        if validated:
            val = validate()
            beta_schedule.update(step, val["val_recon"])
            if val["val_recon"] < best:
                best, best_step, bad_evals = val["val_recon"], step, 0
                best_state = {k: v.detach().clone() for k, v in vae.trainable_state_dict().items()}
            else:
                bad_evals += 1
                if bad_evals >= early_stopping_patience:
                    stop_reason = "early_stopping"
                    break
        if step < steps and out_of_minutes():
            if not validated:  # a step just validated is not scored twice
                val = validate()
            if val["val_recon"] < best:
                best, best_step = val["val_recon"], step
                best_state = {k: v.detach().clone() for k, v in vae.trainable_state_dict().items()}
            stop_reason = "minutes"
            break
        if checkpoint is not None and clock() - last_save >= checkpoint_seconds and step < steps:
            state = {"weights": vae.trainable_state_dict(), "optimizer": opt.state_dict(),
                     "beta_schedule": dict(beta_schedule.__dict__), "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all()
                     if torch.cuda.is_available() else None,
                     "history": history, "best_state": best_state, "best": best,
                     "best_step": best_step, "bad_evals": bad_evals, "step": step,
                     "epoch": epoch, "used": used, "elapsed": clock() - started,
                     "val_seconds": val_seconds}  # fmt: skip
            save_training_state(
                checkpoint, version=CHECKPOINT_VERSION, settings=settings, state=state
            )
            last_save = clock()
    if best_state is not None:
        vae.load_trainable_state_dict(best_state)
    history |= {
        "best_step": best_step,
        "best_val_recon": best,
        "stop_reason": stop_reason,
        "steps_run": step,
        "resumed_from_step": resumed_from,
    }
    return history


def _model_inputs(batch: Batch) -> Batch:
    keys = ("enc_ids", "enc_mask", "dec_ids", "dec_mask", "dec_weight", "enc_features")
    return {k: batch[k] for k in keys if k in batch}


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast(device.type, dtype) when a dtype is given, else a no-op context."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
