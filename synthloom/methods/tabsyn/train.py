"""Train TabSyn's VAE: Adam, beta lowered on plateaus, early stopping, resumable checkpoints.

Schedule (TabSyn, arXiv 2310.09656, appendix; `tabsyn/vae/main.py` uses the same numbers):
beta starts at `beta_max` (1e-2); after `beta_patience` epochs without a new best validation
reconstruction loss (MSE + CE on the validation rows, never the test split) it is multiplied
by `beta_decay` (0.7), down to `beta_min` (1e-5). Training stops after `epochs` epochs,
after `early_stopping_patience` epochs without a new best, or when `max_minutes` have passed;
the weights of the best validation epoch are kept.

Checkpoints: with `checkpoint` set, the whole training state (weights, optimiser, RNG,
counters, best weights, history) is written there atomically every `checkpoint_seconds`
and read back on the next call, so a killed run continues from its last checkpoint and,
without `max_minutes`, ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from synthloom.methods.tabsyn.vae import TabularVAE, vae_loss_terms
from synthloom.models.checkpoint import load_training_state, save_training_state

CHECKPOINT_VERSION = 2  # 2: saved through synthloom.models.checkpoint


@dataclass(frozen=True)
class VAETraining:
    """The trainer's settings (defaults: TabSyn's, except epochs and early stopping)."""

    epochs: int = 4000
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta_max: float = 1e-2
    beta_min: float = 1e-5
    beta_decay: float = 0.7
    beta_patience: int = 10
    early_stopping_patience: int = 300
    max_minutes: float | None = None
    checkpoint_seconds: float = 120.0
    seed: int = 0


def train_tabular_vae(
    model: TabularVAE,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    settings: VAETraining,
    *,
    checkpoint: Path | None = None,
    log: Callable[[dict[str, Any]], None] = lambda record: None,
) -> dict[str, Any]:
    """Train `model` in place on (x_num, x_cat) tensors; returns the training summary.

    `log` gets one record per epoch: {"epoch", "step", "loss", "mse", "ce", "kl", "beta",
    "val_recon", "val_accuracy", "seconds"}. The summary holds "history" (those records),
    "best_epoch", "best_val_recon", "epochs", "steps", "stopped" and "resumed_from_epoch"."""
    x_num, x_cat = train
    n = len(x_num)
    batch = min(settings.batch_size, n)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    state = {
        "epoch": 0,
        "step": 0,
        "beta": settings.beta_max,
        "best": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "plateau": 0,
        "history": [],
        "seconds": 0.0,
    }
    best_weights = copy.deepcopy(model.state_dict())
    resumed_from = 0
    saved = load_training_state(
        checkpoint, version=CHECKPOINT_VERSION, settings=asdict(settings), map_location=x_num.device
    )
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        best_weights = saved["best_weights"]
        state = saved["counters"]
        resumed_from = state["epoch"]
    start = time.perf_counter() - state["seconds"]
    last_save = time.perf_counter()
    stopped = "epochs"
    while state["epoch"] < settings.epochs:
        model.train()
        perm = torch.randperm(n, generator=generator).to(x_num.device)
        sums = {"loss": 0.0, "mse": 0.0, "ce": 0.0, "kl": 0.0}
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x_hat, logits, mu, logvar = model(x_num[idx], x_cat[idx], generator=generator)
            terms = vae_loss_terms(x_num[idx], x_cat[idx], x_hat, logits, mu, logvar)
            loss = terms["mse"] + terms["ce"] + state["beta"] * terms["kl"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state["step"] += 1
            share = len(idx) / n
            sums["loss"] += float(loss.detach()) * share
            for key in ("mse", "ce", "kl"):
                sums[key] += float(terms[key].detach()) * share
        state["epoch"] += 1
        val = evaluate_reconstruction(model, *validation)
        record = {
            "epoch": state["epoch"],
            "step": state["step"],
            **sums,
            "beta": state["beta"],
            "val_recon": val["recon"],
            "val_accuracy": val["accuracy"],
            "seconds": time.perf_counter() - start,
        }
        state["history"].append(record)
        log(record)
        if val["recon"] < state["best"]:
            state.update(best=val["recon"], best_epoch=state["epoch"], bad_epochs=0, plateau=0)
            best_weights = copy.deepcopy(model.state_dict())
        else:
            state["bad_epochs"] += 1
            state["plateau"] += 1
            if state["plateau"] >= settings.beta_patience and state["beta"] > settings.beta_min:
                state["beta"] = max(state["beta"] * settings.beta_decay, settings.beta_min)
                state["plateau"] = 0
        if state["bad_epochs"] >= settings.early_stopping_patience:
            stopped = "early_stopping"
            break
        state["seconds"] = time.perf_counter() - start
        if settings.max_minutes is not None and state["seconds"] >= 60 * settings.max_minutes:
            stopped = "max_minutes"
            break
        if (
            checkpoint is not None
            and time.perf_counter() - last_save >= settings.checkpoint_seconds
        ):
            save_training_state(
                checkpoint,
                version=CHECKPOINT_VERSION,
                settings=asdict(settings),
                state={
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "best_weights": best_weights,
                    "counters": state,
                },
            )
            last_save = time.perf_counter()
    model.load_state_dict(best_weights)
    model.eval()
    return {
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_val_recon": state["best"],
        "epochs": state["epoch"],
        "steps": state["step"],
        "final_beta": state["beta"],
        "stopped": stopped,
        "resumed_from_epoch": resumed_from,
        "seconds": time.perf_counter() - start,
    }


@torch.no_grad()
def evaluate_reconstruction(
    model: TabularVAE, x_num: torch.Tensor, x_cat: torch.Tensor
) -> dict[str, float]:
    """Reconstruction from z = mu: {"recon": MSE + CE, "mse", "ce", "accuracy"}."""
    model.eval()
    mu, logvar = model.encode(x_num, x_cat)
    x_hat, logits = model.decode(mu)
    terms = vae_loss_terms(x_num, x_cat, x_hat, logits, mu, logvar)
    return {
        "recon": float(terms["mse"] + terms["ce"]),
        "mse": float(terms["mse"]),
        "ce": float(terms["ce"]),
        "accuracy": float(terms["accuracy"]),
    }
