"""DiffLM step 5: a latent diffusion model over the VAE means mu of the training records.

Following DiffLM (arXiv 2411.03250, section 3.3) and TabSyn (arXiv 2310.09656, `tabsyn/main.py`):
normalise the latents, train an MLP denoiser with EDM preconditioning on the EDM loss
(sigma_data 0.5, ln sigma ~ N(-1.2, 1.2^2)) with Adam, ReduceLROnPlateau (factor 0.9,
patience 20) and early stopping on the epoch training loss (patience 500), keep the best
epoch's weights; sample with the EDM Heun sampler (sigma 0.002..80, rho 7, 50 steps) and map
back to the latent space.

Cosine decay (`lr_schedule: "cosine"`, this project's option): the learning rate after
optimiser step t is lr (1 + cos(pi t / T)) / 2, T = max_steps, instead of the plateau rule,
so the last steps barely move the weights. At lr 1e-3 and batch 256 the weights the plateau
rule ends with still wander from step to step, and one such snapshot can carry a bias of
about a fifth of the data's std in every dimension at sigma >= 1, which the sampler turns
into a shifted latent distribution (docs/methods.md, "The denoiser's last snapshot").

Weight averaging (`ema_decay` d > 0, this project's option; EDM and most image diffusion
models sample from it): the shadow weights start at 0 and after every optimiser step
become theta_ema <- d * theta_ema + (1 - d) * theta; the returned model carries
theta_ema / (1 - d^T) after the last step T (Adam's bias correction, so the random initial
weights carry no weight even when T is not much larger than 1 / (1 - d)) instead of the
best epoch's weights. The best epoch is picked on a loss
whose sigma draws are random, so it is partly the luckiest epoch; the average smooths the
step-to-step noise of the last ~1 / (1 - d) steps instead.

    model = train_latent_diffusion(mu, LatentDiffusionConfig(), device="cuda")
    z = model.sample(1000, seed=0)          # (1000, latent_dim) float32, in mu's space
    model.save(path); model = LatentDiffusionModel.load(path)

Class-conditional (`n_classes` > 0, TabDDPM-style, used by TabSyn for the target): train
with `labels` (N,) in [0, n_classes), sample with `labels` (n,); the denoiser learns
D(x; sigma, y) and the sampler draws from p(z | y).

Classifier-free guidance (Ho & Salimans 2022, arXiv 2207.12598): with `label_dropout` p > 0
each training label is replaced by a null class (index n_classes) with probability p, so
the same network also learns the unconditional D(x; sigma, null). Sampling with
`guidance_scale` w then follows

    D_w(x; sigma, y) = D(x; sigma, null) + w (D(x; sigma, y) - D(x; sigma, null))

(w = 1: the conditional model; w > 1 weights p(y | x) by an extra power w - 1, pushing
samples toward where their class is likely), at two denoiser calls per evaluation.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from synthloom.models.checkpoint import load_training_state, save_training_state
from synthloom.models.denoiser import EDMPrecond, MLPDenoiser
from synthloom.models.lr_schedule import lr_factor
from synthloom.samplers.edm import EDMHeunSampler, edm_loss

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

WEIGHTS_FILE = "denoiser.safetensors"
CONFIG_FILE = "latent_diffusion.json"
FORMAT_VERSION = 1
# of the mid-training state (`train_latent_diffusion(checkpoint=...)`); 2: the average starts at 0
CHECKPOINT_VERSION = 2


@dataclass
class LatentDiffusionConfig:
    """Hyper-parameters; defaults are TabSyn's (DiffLM's script: batch 512, lr 1e-4)."""

    hidden: int = 1024  # MLPDenoiser width (TabSyn dim_t = 1024)
    epochs: int = 10_000  # passes over the latents (TabSyn: 10001)
    max_steps: int | None = None  # optional cap on optimiser steps
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.9  # ReduceLROnPlateau on the epoch loss
    lr_patience: int = 20
    # "plateau": ReduceLROnPlateau (TabSyn); "cosine": lr_t = lr (1 + cos(pi t / max_steps)) / 2
    # per optimiser step, so the last steps barely move the weights (needs max_steps)
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    patience: int = 500  # early stopping: epochs without a new best epoch loss
    sampler_steps: int = 50
    sampler_churn: float = 0.0  # 0: deterministic Heun (Karras alg. 1); TabSyn uses 1
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    # "standard": per-dim (z - mean) / std * sigma_data, so the data has the std that EDM's
    # preconditioning assumes; "tabsyn": (z - mean) / 2 as TabSyn and DiffLM do.
    normalization: Literal["standard", "tabsyn"] = "standard"
    n_classes: int = 0  # > 0: class-conditional denoiser D(x; sigma, y)
    label_dropout: float = 0.0  # > 0: train a null class too, for classifier-free guidance
    ema_decay: float = 0.0  # > 0: return the exponential moving average of the weights
    seed: int = 0

    def __post_init__(self) -> None:
        if self.normalization not in ("standard", "tabsyn"):
            raise ValueError(
                f"normalization must be 'standard' or 'tabsyn', got {self.normalization!r}"
            )
        for name in ("hidden", "epochs", "batch_size", "sampler_steps", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.n_classes < 0:
            raise ValueError(f"n_classes must be >= 0, got {self.n_classes}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.label_dropout > 0 and self.n_classes == 0:
            raise ValueError("label_dropout needs a class-conditional model (n_classes > 0)")
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(f"lr_schedule must be 'plateau' or 'cosine', got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and self.max_steps is None:
            raise ValueError("lr_schedule 'cosine' decays over max_steps: set max_steps")


def averaging_decay(decay: float | None, steps: int) -> float:
    """The weight-averaging decay d for a training of `steps` optimiser steps: `decay` as
    given (0: no average, the best epoch's weights), or where it is None
    d = max(0, 1 - 4 / steps), an average over about the last quarter of the steps."""
    if decay is not None:
        return float(decay)
    return max(0.0, 1.0 - 4.0 / steps)


@dataclass
class LatentNormalizer:
    """Affine per-dimension map: transform(z) = (z - mean) / std * target_std; inverse undoes it."""

    mean: np.ndarray
    std: np.ndarray
    target_std: float = 1.0

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        *,
        target_std: float = 1.0,
        mode: Literal["standard", "tabsyn"] = "standard",
    ) -> LatentNormalizer:
        """Fit on (N, D) latents. "standard": per-dim std (constant dims get std 1);
        "tabsyn": std = 2 * target_std everywhere, i.e. transform(z) = (z - mean) / 2."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] < 2:
            raise ValueError(f"need (N >= 2, D) latents, got shape {z.shape}")
        mean = z.mean(axis=0)
        if mode == "standard":
            std = z.std(axis=0, ddof=1)
            std = np.where(std > 1e-8, std, 1.0)
        elif mode == "tabsyn":
            std = np.full_like(mean, 2.0 * target_std)
        else:
            raise ValueError(f"unknown normalization mode {mode!r}")
        return cls(mean=mean, std=std, target_std=float(target_std))

    def _params(self, like: ArrayT) -> tuple[Any, Any]:
        if isinstance(like, torch.Tensor):
            kw = {"dtype": like.dtype, "device": like.device}
            return torch.as_tensor(self.mean, **kw), torch.as_tensor(self.std, **kw)
        return self.mean.astype(like.dtype), self.std.astype(like.dtype)

    def transform(self, z: ArrayT) -> ArrayT:
        """Latent space -> diffusion space (same type and dtype as z)."""
        mean, std = self._params(z)
        return (z - mean) / std * self.target_std

    def inverse(self, x: ArrayT) -> ArrayT:
        """Diffusion space -> latent space (same type and dtype as x)."""
        mean, std = self._params(x)
        return x / self.target_std * std + mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentNormalizer:
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64),
            std=np.asarray(d["std"], dtype=np.float64),
            target_std=float(d["target_std"]),
        )


@dataclass
class LatentDiffusionModel:
    """A trained denoiser D(x; sigma) plus the normaliser: samples latents, saves, loads."""

    denoiser: EDMPrecond
    normalizer: LatentNormalizer
    config: LatentDiffusionConfig
    training: dict[str, Any] = field(default_factory=dict)  # summary of the training run

    @property
    def dim(self) -> int:
        return int(self.normalizer.mean.shape[0])

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def to(self, device: torch.device | str) -> LatentDiffusionModel:
        self.denoiser.to(device)
        return self

    def sampler(self, steps: int | None = None) -> EDMHeunSampler:
        c = self.config
        return EDMHeunSampler(
            steps=c.sampler_steps if steps is None else steps,
            sigma_min=c.sigma_min,
            sigma_max=c.sigma_max,
            rho=c.rho,
            s_churn=c.sampler_churn,
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        seed: int,
        steps: int | None = None,
        batch_size: int = 16_384,
        labels: np.ndarray | None = None,
        guidance_scale: float = 1.0,
    ) -> np.ndarray:
        """n latents (n, dim) float32 in the original space; deterministic for
        (seed, n, steps, batch_size, labels, guidance_scale) on a given device (noise comes
        from a CPU generator). A class-conditional model needs `labels` (n,), one class per
        latent; `guidance_scale` w != 1 needs a model trained with `label_dropout` > 0."""
        y = _check_labels(labels, n, self.config.n_classes)
        if guidance_scale != 1.0 and (y is None or self.config.label_dropout <= 0):
            raise ValueError(
                f"guidance_scale {guidance_scale} needs a class-conditional model trained "
                "with label_dropout > 0 (it learns the null class guidance contrasts with)"
            )
        sampler = self.sampler(steps)
        generator = torch.Generator().manual_seed(seed)
        self.denoiser.eval()
        chunks = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            denoiser = self._conditioned(y, start, b, guidance_scale)
            x = sampler.sample(denoiser, (b, self.dim), generator=generator, device=self.device)
            chunks.append(self.normalizer.inverse(x).cpu())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(chunks).numpy().astype(np.float32)

    @torch.no_grad()
    def inpaint(
        self,
        known: np.ndarray,
        mask: np.ndarray,
        *,
        seed: int,
        resample: int = 1,
        steps: int | None = None,
        batch_size: int = 16_384,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """Latents (n, dim) with the dimensions where `mask` (dim,) holds fixed to `known`
        (n, dim), the others drawn from p(z_rest | z_known) by RePaint-style replacement
        (`EDMHeunSampler.inpaint`, `resample` passes per step), in the original space.

        The sampler runs at the largest churn (gamma = sqrt(2) - 1), whatever the model's
        `sampler_churn`: replacement only approaches the conditional when the unknown
        dimensions are re-noised enough to mix. On a 2-D Gaussian with correlation 0.8 and
        the exact denoiser, the conditional mean came out at 41 % of the true shift with plain
        replacement on the ODE, 62 % at this churn, 95 % at this churn and resample 10
        (tests/test_latent_diffusion.py).
        Deterministic for (seed, inputs, steps, batch_size); labels as in `sample`."""
        known = np.asarray(known, dtype=np.float64)
        keep = torch.as_tensor(np.asarray(mask, dtype=bool).reshape(-1))
        n = len(known)
        if known.ndim != 2 or known.shape[1] != self.dim or len(keep) != self.dim:
            raise ValueError(
                f"inpaint needs known (n, {self.dim}) and mask ({self.dim},), got "
                f"{known.shape} and {tuple(keep.shape)}"
            )
        y = _check_labels(labels, n, self.config.n_classes)
        sampler = self.sampler(steps)
        sampler.s_churn = float(sampler.steps)  # gamma capped at sqrt(2) - 1
        generator = torch.Generator().manual_seed(seed)
        self.denoiser.eval()
        target = self.normalizer.transform(torch.as_tensor(known, dtype=torch.float32))
        chunks = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            denoiser = self._conditioned(y, start, b, 1.0)
            x = sampler.inpaint(
                denoiser,
                target[start : start + b].to(self.device),
                keep,
                generator=generator,
                resample=resample,
            )
            chunks.append(self.normalizer.inverse(x).cpu())
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = torch.cat(chunks).numpy().astype(np.float32)
        out[:, keep.numpy()] = known[:, keep.numpy()]  # exact, not through the normaliser
        return out

    def _conditioned(self, y: torch.Tensor | None, start: int, b: int, guidance_scale: float):
        """The denoiser for rows start..start+b: as it is (unconditional), given their
        classes, or guided (D_null + w (D_y - D_null))."""
        if y is None:
            return self.denoiser
        y_chunk = y[start : start + b].to(self.device)
        if guidance_scale == 1.0:
            return partial(self.denoiser, class_labels=y_chunk)
        return partial(
            _guided,
            self.denoiser,
            labels=y_chunk,
            null=self.config.n_classes,
            scale=guidance_scale,
        )

    def save(self, directory: str | Path) -> Path:
        """Write `denoiser.safetensors` and `latent_diffusion.json` (config, normaliser, summary)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.denoiser.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "dim": self.dim,
            "config": asdict(self.config),
            "normalizer": self.normalizer.to_dict(),
            "training": self.training,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, device: torch.device | str = "cpu"
    ) -> LatentDiffusionModel:
        directory = Path(directory)
        meta = json.loads((directory / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory}: unsupported format_version {meta.get('format_version')}"
            )
        config = LatentDiffusionConfig(**meta["config"])
        denoiser = _build_denoiser(int(meta["dim"]), config)
        denoiser.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        denoiser.to(device).eval()
        normalizer = LatentNormalizer.from_dict(meta["normalizer"])
        return cls(denoiser, normalizer, config, training=meta.get("training", {}))


def _build_denoiser(dim: int, config: LatentDiffusionConfig) -> EDMPrecond:
    """The preconditioned MLP; with label_dropout its class table has one more row (the null
    class, index n_classes)."""
    n_embeddings = config.n_classes + (1 if config.label_dropout > 0 else 0)
    net = MLPDenoiser(dim, hidden=config.hidden, n_classes=n_embeddings)
    return EDMPrecond(net, sigma_data=config.sigma_data)


def _guided(
    denoiser: EDMPrecond, x: torch.Tensor, sigma: torch.Tensor, *, labels, null: int, scale: float
) -> torch.Tensor:
    """D(x; sigma, null) + scale (D(x; sigma, y) - D(x; sigma, null)), both in one batch."""
    both = denoiser(
        torch.cat([x, x]),
        torch.cat([sigma, sigma]) if sigma.dim() else sigma,
        class_labels=torch.cat([labels, torch.full_like(labels, null)]),
    )
    conditional, unconditional = both.chunk(2)
    return unconditional + scale * (conditional - unconditional)


def _check_labels(labels: Any, n: int, n_classes: int) -> torch.Tensor | None:
    """`labels` as an (n,) int64 tensor in [0, n_classes), None for an unconditional model."""
    if n_classes == 0:
        if labels is not None:
            raise ValueError("labels given to an unconditional latent diffusion model")
        return None
    if labels is None:
        raise ValueError(
            f"this latent diffusion model is conditioned on {n_classes} classes: pass labels"
        )
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1).cpu()
    if len(y) != n:
        raise ValueError(f"need {n} labels, got {len(y)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {int(y.min())}..{int(y.max())}")
    return y


def train_latent_diffusion(
    latents: np.ndarray | torch.Tensor,
    config: LatentDiffusionConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[dict[str, Any]], None] = lambda record: None,
    labels: np.ndarray | None = None,
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 120.0,
) -> LatentDiffusionModel:
    """Train the latent denoiser on (N, D) latents with the EDM loss; returns the best epoch's model.

    A class-conditional config (`n_classes` > 0) needs `labels` (N,): latent i's class.
    With `checkpoint`, the whole training state (weights, optimiser, LR scheduler, RNG,
    counters, best weights, the log records) is saved there atomically at the end of an
    epoch once `checkpoint_seconds` have passed since the last save, and a call with the
    same config and data shape continues from it (replaying the saved records through
    `log`), ending with the weights an uninterrupted call gives. With `config.ema_decay` > 0
    the returned weights are the moving average (module docstring), not the best epoch's.

    Calls `log({"step", "epoch", "loss", "lr"})` once per epoch (loss: mean EDM loss over the
    epoch). Stops after `config.epochs`, `config.max_steps` optimiser steps or `config.patience`
    epochs without a new best loss. Seeded by `config.seed`, without touching global RNGs.
    """
    config = config or LatentDiffusionConfig()
    device = torch.device(device)
    if isinstance(latents, torch.Tensor):
        latents = latents.detach().cpu().numpy()
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"latents must be (N >= 2, D), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("latents contain NaN or inf")

    normalizer = LatentNormalizer.fit(z, target_std=config.sigma_data, mode=config.normalization)
    data = torch.as_tensor(normalizer.transform(z), dtype=torch.float32, device=device)
    n, dim = data.shape
    y = _check_labels(labels, n, config.n_classes)
    y = None if y is None else y.to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        denoiser = _build_denoiser(dim, config).to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    optimizer = torch.optim.Adam(
        denoiser.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )

    batch_size = min(config.batch_size, n)
    max_steps = config.max_steps or math.inf
    best_loss, best_epoch, best_state, bad_epochs = math.inf, 0, None, 0
    ema = [torch.zeros_like(p) for p in denoiser.parameters()] if config.ema_decay > 0 else None
    step, epoch, stopped_early = 0, 0, False
    records: list[dict[str, Any]] = []
    settings = {"config": asdict(config), "shape": [n, dim]}
    saved = load_training_state(
        checkpoint, version=CHECKPOINT_VERSION, settings=settings, map_location=device
    )
    elapsed = 0.0
    if saved is not None:
        denoiser.load_state_dict(saved["denoiser"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"].to("cpu"))
        best_loss, best_epoch = saved["best_loss"], saved["best_epoch"]
        best_state, bad_epochs = saved["best_state"], saved["bad_epochs"]
        step, epoch, elapsed = saved["step"], saved["epoch"], saved["elapsed"]
        records = saved["records"]
        if ema is not None:
            ema = [t.to(device) for t in saved["ema"]]
        for record in records:
            log(record)
    resumed_from_epoch = epoch
    start = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    denoiser.train()
    while epoch < config.epochs and step < max_steps:
        epoch += 1
        perm = torch.randperm(n, generator=generator, device=device)
        total, seen = torch.zeros((), device=device), 0
        for i in range(0, n, batch_size):
            rows = perm[i : i + batch_size]
            batch = data[rows]
            y_batch = None if y is None else y[rows]
            if y_batch is not None and config.label_dropout > 0:
                drop = torch.rand(len(rows), generator=generator, device=device)
                y_batch = y_batch.masked_fill(drop < config.label_dropout, config.n_classes)
            loss = edm_loss(
                denoiser if y_batch is None else partial(denoiser, class_labels=y_batch),
                batch,
                P_mean=config.p_mean,
                P_std=config.p_std,
                sigma_data=config.sigma_data,
                generator=generator,
            ).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if config.lr_schedule == "cosine":
                factor = lr_factor(step, 0, (step + 1) / max_steps, "cosine")
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * factor
            if ema is not None:
                with torch.no_grad():
                    for average, param in zip(ema, denoiser.parameters(), strict=True):
                        average.lerp_(param, 1.0 - config.ema_decay)
            total += loss.detach() * len(batch)
            seen += len(batch)
            step += 1
            if step >= max_steps:
                break
        epoch_loss = float(total / seen)
        if config.lr_schedule == "plateau":
            scheduler.step(epoch_loss)
        record = {"step": step, "epoch": epoch, "loss": epoch_loss}
        record["lr"] = optimizer.param_groups[0]["lr"]
        records.append(record)
        log(record)
        if epoch_loss < best_loss:
            best_loss, best_epoch, bad_epochs = epoch_loss, epoch, 0
            best_state = copy.deepcopy(denoiser.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                stopped_early = True
                break
        if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_seconds:
            state = {
                "denoiser": denoiser.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "bad_epochs": bad_epochs,
                "step": step,
                "epoch": epoch,
                "elapsed": time.perf_counter() - start,
                "records": records,
                "ema": ema,
            }
            save_training_state(
                checkpoint, version=CHECKPOINT_VERSION, settings=settings, state=state
            )
            last_save = time.perf_counter()

    if ema is not None and step > 0:
        with torch.no_grad():
            correction = 1.0 - config.ema_decay**step
            for param, average in zip(denoiser.parameters(), ema, strict=True):
                param.copy_(average / correction)
    elif best_state is not None:
        denoiser.load_state_dict(best_state)
    denoiser.eval()
    training = {
        "n_latents": n,
        "dim": dim,
        "epochs": epoch,
        "steps": step,
        "best_epoch": best_epoch,
        "best_loss": best_loss,
        "stopped_early": stopped_early,
        "resumed_from_epoch": resumed_from_epoch,
        "seconds": time.perf_counter() - start,
        "n_parameters": sum(p.numel() for p in denoiser.parameters()),
    }
    return LatentDiffusionModel(denoiser, normalizer, config, training=training)
