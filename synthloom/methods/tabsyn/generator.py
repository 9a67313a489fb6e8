"""TabSyn as a `TabularGenerator`: column codec -> per-column-token VAE -> latent diffusion.

Our implementation of TabSyn (Zhang et al. 2024, arXiv 2310.09656), not the authors' code:

    fit:    codec = ColumnCodec.fit(train)                 (quantile-normal numbers, codes;
                                                            exact linear dependents set aside)
            VAE on (x_num, x_cat), beta 1e-2 -> 1e-5 on plateaus, best validation epoch
            z_i = mu(x_i) flattened to (n_columns * d_token,)
            EDM latent diffusion on {z_i} (shared with DiffLM: `train_latent_diffusion`)
    sample: z ~ Heun sampler; x_hat_num, logits = VAE.decode(z); categories drawn from
            softmax(logits / category_temperature) (0: argmax, the paper);
            calibrated scores (below); inverse quantile transform, rounding, gaps from
            the missingness indicators, dependents written from their sources
            (`derive_linear`, ours, on by default; false = the paper)

Decoder calibration (ours; `calibrate_decoder`, on by default, false = the paper): an
MSE-trained decoder shrinks uncertain numbers toward the mean, so even the training rows
decode with thinner tails than they have (credit_data: Price decodes to >= 400 where the
data starts at 105), and the denoiser's small bias in a latent dimension shifts a whole
column (ISLR/Default: generated balances 30 above the data's at every quartile). After
training, each numeric column's decoded scores s_j define a monotone map
s -> Phi^-1(F_{s_j}(s)) (a QuantileNormal fitted on them), applied to every decoded score
before the inverse quantile transform, so the scores it was fitted on decode with the
data's own marginals, and ranks (so correlations) are kept. `decoder_calibration` says
which scores: "generated" (default), those of CALIBRATION_ROWS[0]-CALIBRATION_ROWS[1]
latents (as many as the training rows, within those bounds) drawn from the diffusion in
the training balance of its classes with the fit's seed, so generated rows get the data's
marginals; "training", those of the training rows' own latent means (the VAE's shrinkage
only).

Class-conditional denoiser (ours, TabDDPM-style; `class_conditional`, false = the paper):
the diffusion model learns p(z | y) for the row's class y (`synthloom.latent_classes`, the
model DiffLM's diffusion shares: "target", the categorical target's value; the default
"target_and_binary", its joint value with the two-valued categorical columns, while at most
CLASS_LIMIT (64) joint values occur; "target_and_related", with those related to the
target), and sampling first lays out the classes in the training balance (largest-remainder
counts, shuffled with the seed), then draws z ~ p(z | y) and writes y's values into their
columns (`last_label_agreement`: the share whose decoded target already held y's), so those
columns' shares and cross-counts come out as in training.

Conditions (`sample(..., conditions={column: {value: count}})`): exact counts for one
categorical or boolean column. On a class column of a class-conditional model the counts
ARE the classes (each value's count split over the joint classes holding it in their
training proportions): no row is drawn in vain. Otherwise (`condition_sampling`):

- rejection: rows are drawn in rounds and a row is kept while its value's quota is open.
  A kept row is an exact draw from p(x | column = value) of the model; a quota still open
  after `max_condition_factor` times the requested rows raises `DataError` naming the value.
- inpaint (the paper's imputation, in latent space): the column's latent token is fixed to
  z_c = mu_c(x_i) of a training row i with the value (drawn from a bank of up to
  `CONDITION_BANK` such rows per value, kept at fit; with a class-conditional denoiser the
  row's class y_i comes with it, a draw of p(y | value)), and the other tokens are drawn
  from p(z_rest | z_c) by RePaint replacement (`LatentDiffusionModel.inpaint`); the value
  is written into the column (`last_condition_agreement`: the share that decoded to it).
- auto (default): rejection, then inpainting for the quotas still open at its limit.

Training state lives in the directory given as `checkpoint_dir` (the pipeline passes one
outside the stage's staged output), so a killed fit resumes from its last checkpoint: the
VAE from its training state, a finished VAE is not trained again, and the diffusion model
from its own training state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from synthloom.conditions import check_conditions
from synthloom.errors import DataError
from synthloom.latent_classes import LatentClasses, balanced_labels, shuffled_labels
from synthloom.linear_dependents import rule_text
from synthloom.methods.difflm.latent_diffusion import (
    LatentDiffusionConfig,
    LatentDiffusionModel,
    train_latent_diffusion,
)
from synthloom.methods.tabsyn.columns import ColumnCodec, QuantileNormal
from synthloom.methods.tabsyn.train import (
    VAETraining,
    evaluate_reconstruction,
    train_tabular_vae,
)
from synthloom.methods.tabsyn.vae import TabularVAE
from synthloom.schema import TableSchema

STATE_FILE = "tabsyn.json"
VAE_FILE = "vae.safetensors"
DIFFUSION_DIR = "diffusion"
VAE_CHECKPOINT = "vae_training.pt"
VAE_DONE = "vae_trained.safetensors"
DIFFUSION_CHECKPOINT = "diffusion_training.pt"
CONDITION_BANK_FILE = "condition_latents.safetensors"
CONDITION_BANK = 64  # training rows' latent tokens kept per category value, for inpainting
CALIBRATION_ROWS = (4096, 16_384)  # decoder_calibration "generated": latents drawn, bounds
CALIBRATION_SEED_OFFSET = 7919  # their noise differs from a sample(seed=fit seed)'s


class TabSynGenerator:
    """See the module docstring; keyword arguments are the keys of `method:` (TabSynConfig)."""

    name: ClassVar[str] = "tabsyn"

    def __init__(self, **params: Any) -> None:
        from synthloom.config import TabSynConfig

        self.config = TabSynConfig.model_validate({"name": "tabsyn", **params})
        self.schema: TableSchema | None = None
        self.codec: ColumnCodec | None = None
        self.vae: TabularVAE | None = None
        self.diffusion: LatentDiffusionModel | None = None
        self.training: dict[str, Any] = {}
        self.calibration: list[QuantileNormal] | None = None
        # class-conditional: the denoiser's classes (None: unconditional)
        self.classes: LatentClasses | None = None
        self.last_attempts = 0
        self.last_label_agreement: float | None = None
        # inpainting: per categorical column (codec index) the bank's codes, latent tokens
        # (M, d_token) and, for a class-conditional model, the rows' class codes
        self.condition_bank: dict[int, dict[str, np.ndarray]] | None = None
        self.last_inpainted = 0
        self.last_condition_agreement: float | None = None

    # ----------------------------------------------------------------------------- fit
    def fit(
        self,
        train: pd.DataFrame,
        schema: TableSchema,
        *,
        seed: int = 0,
        validation: pd.DataFrame | None = None,
        checkpoint_dir: Path | None = None,
        log: Any = None,
        device: str = "cpu",
    ) -> TabSynGenerator:
        """Fit codec, VAE and diffusion on `train` (`fit_vae`, then `fit_diffusion`: the
        pipeline runs them as two stages); `validation` rows (default: a seeded 10% of
        `train`, then not trained on) pick the VAE's best epoch and drive its beta.
        Training runs on `device` ("auto": CUDA where available); the fitted model is kept
        on the CPU, where the generate stage samples."""
        common = {"seed": seed, "validation": validation, "checkpoint_dir": checkpoint_dir}
        common.update(log=log, device=device)
        return self.fit_vae(train, schema, **common).fit_diffusion(train, **common)

    def fit_vae(
        self,
        train: pd.DataFrame,
        schema: TableSchema,
        *,
        seed: int = 0,
        validation: pd.DataFrame | None = None,
        checkpoint_dir: Path | None = None,
        log: Any = None,
        device: str = "cpu",
    ) -> TabSynGenerator:
        """Stage 1: the column codec and the VAE (resumable from `checkpoint_dir`); then
        `save_vae` / `load_vae` carry it to `fit_diffusion`, which takes the same rows."""
        from synthloom.models.device import resolve_device

        c = self.config
        where = resolve_device(device)
        log = log or (lambda record: None)
        train, validation = _split_validation(train, validation, seed)
        self.schema = schema
        self.codec = ColumnCodec.fit(
            train,
            schema,
            max_decimals=c.max_decimals,
            max_grid_values=c.max_grid_values,
            dequantize=c.dequantize,
            derive_linear=c.derive_linear,
        )
        if self.codec.n_modelled == 0:
            raise DataError(
                "tabsyn found no column to model: every column is constant or empty. "
                "Fix: check data.source and data.drop_columns."
            )
        x_train = _tensors(*self.codec.encode(train, seed=seed), device=where)
        x_val = _tensors(*self.codec.encode(validation, seed=seed + 1), device=where)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.vae = self._build_vae().to(where)
        done = checkpoint_dir / VAE_DONE if checkpoint_dir is not None else None
        t0 = time.perf_counter()
        if done is not None and done.is_file():
            self.vae.load_state_dict(load_file(str(done), device=str(where)))
            vae_summary = json.loads(done.with_suffix(".json").read_text(encoding="utf-8"))
        else:
            vae_summary = train_tabular_vae(
                self.vae,
                x_train,
                x_val,
                self.vae_training(seed),
                checkpoint=None if checkpoint_dir is None else checkpoint_dir / VAE_CHECKPOINT,
                log=lambda r: log({"phase": "vae", **r}),
            )
            if done is not None:
                _atomic_save(self.vae, done)
                done.with_suffix(".json").write_text(json.dumps(vae_summary), encoding="utf-8")
        self.vae.eval().to("cpu")
        self.training = {
            "vae": {k: v for k, v in vae_summary.items() if k != "history"},
            "vae_history": vae_summary.get("history", []),
            "vae_seconds": time.perf_counter() - t0,
            "n_train": len(train),
            "n_validation": len(validation),
        }
        return self

    def fit_diffusion(
        self,
        train: pd.DataFrame,
        *,
        seed: int = 0,
        validation: pd.DataFrame | None = None,
        checkpoint_dir: Path | None = None,
        log: Any = None,
        device: str = "cpu",
    ) -> TabSynGenerator:
        """Stage 2, after `fit_vae` on the same rows: the latent diffusion model on the
        training rows' latent means (resumable from `checkpoint_dir`), the decoder
        calibration and the reconstruction summaries."""
        from synthloom.models.device import resolve_device

        assert self.codec is not None and self.vae is not None, "fit_vae first"
        c = self.config
        where = resolve_device(device)
        log = log or (lambda record: None)
        train, validation = _split_validation(train, validation, seed)
        x_train = _tensors(*self.codec.encode(train, seed=seed), device=where)
        x_val = _tensors(*self.codec.encode(validation, seed=seed + 1), device=where)
        self.vae.to(where).eval()
        self.classes, labels = self._fit_classes(x_train[1].cpu().numpy())
        with torch.no_grad():
            mu, _ = self.vae.encode(*x_train)
        latents = mu.reshape(len(mu), -1).cpu().numpy()
        diffusion_config = LatentDiffusionConfig(
            hidden=c.diffusion_hidden,
            epochs=c.diffusion_epochs,
            max_steps=c.diffusion_steps,
            batch_size=c.diffusion_batch_size,
            lr=c.diffusion_lr,
            patience=c.diffusion_patience,
            sampler_steps=c.sampler_steps,
            sampler_churn=c.sampler_churn,
            normalization=c.latent_normalization,
            n_classes=len(self.classes) if self.classes is not None else 0,
            label_dropout=c.label_dropout if labels is not None else 0.0,
            ema_decay=c.diffusion_ema,
            seed=seed,
        )
        t1 = time.perf_counter()
        diffusion_history: list[list[float]] = []

        def log_diffusion(record: dict[str, Any]) -> None:
            diffusion_history.append([record["epoch"], record["loss"]])
            log({"phase": "diffusion", **record})

        self.diffusion = train_latent_diffusion(
            latents,
            diffusion_config,
            device=where,
            log=log_diffusion,
            labels=labels,
            checkpoint=None if checkpoint_dir is None else checkpoint_dir / DIFFUSION_CHECKPOINT,
            checkpoint_seconds=c.checkpoint_seconds,
        ).to("cpu")
        self.condition_bank = self._condition_bank(mu, x_train[1], labels, seed)
        self.calibration = None
        if c.calibrate_decoder and self.codec.n_num:
            scores = self._calibration_scores(mu, seed)
            self.calibration = [QuantileNormal.fit(scores[:, j]) for j in range(scores.shape[1])]
        recon_train = evaluate_reconstruction(self.vae, *x_train)
        recon_val = evaluate_reconstruction(self.vae, *x_val)
        self.vae.to("cpu")
        self.training.update(
            {
                "diffusion": self.diffusion.training,
                "diffusion_seconds": time.perf_counter() - t1,
                "diffusion_history": diffusion_history,
                "reconstruction_train": recon_train,
                "reconstruction_validation": recon_val,
                "device": str(where),
            }
        )
        return self

    @torch.no_grad()
    def _calibration_scores(self, mu: torch.Tensor, seed: int) -> np.ndarray:
        """The decoded numeric scores (N, n_num) the calibration is fitted on (module
        docstring): of the training latents `mu`, or of diffusion samples."""
        assert self.vae is not None
        if self.config.decoder_calibration == "training":
            z = mu
        else:
            n = int(np.clip(len(mu), *CALIBRATION_ROWS))
            drawn = self.sample_latents(n, seed=seed + CALIBRATION_SEED_OFFSET)
            z = torch.as_tensor(drawn, dtype=mu.dtype, device=mu.device)
            z = z.reshape(n, self.vae.n_columns, self.vae.d_token)
        decoded, _ = self.vae.decode(z)
        return decoded.cpu().numpy().astype(np.float64)

    def _condition_bank(
        self, mu: torch.Tensor, x_cat: torch.Tensor, labels: np.ndarray | None, seed: int
    ) -> dict[int, dict[str, np.ndarray]]:
        """For each categorical column (not a missingness indicator): up to CONDITION_BANK
        training rows per value, seeded, with their latent token mu_c and class code."""
        assert self.codec is not None and self.schema is not None
        rng = np.random.default_rng([seed, 7368787])
        names = set(self.schema.names)
        bank: dict[int, dict[str, np.ndarray]] = {}
        codes_all = x_cat.cpu().numpy()
        tokens_all = mu.detach().cpu().numpy()
        for j, name in enumerate(self.codec.categorical):
            if name not in names:
                continue
            codes = codes_all[:, j]
            rows = np.concatenate(
                [
                    rng.permutation(np.flatnonzero(codes == value))[:CONDITION_BANK]
                    for value in np.unique(codes)
                ]
            )
            entry = {
                "codes": codes[rows].astype(np.int64),
                "tokens": tokens_all[rows, self.codec.n_num + j, :].astype(np.float32),
            }
            if labels is not None:
                entry["labels"] = np.asarray(labels)[rows].astype(np.int64)
            bank[j] = entry
        return bank

    def _fit_classes(self, x_cat: np.ndarray) -> tuple[LatentClasses | None, np.ndarray | None]:
        """The denoiser's classes and each training row's class (`LatentClasses.fit` with
        the configured conditioning), on the rows' categories as the codec holds them (a
        gap is the codec's missing category, decoded back to a gap, so a column with gaps
        can be a class column here); (None, None): unconditional."""
        assert self.codec is not None and self.schema is not None
        if not self.config.class_conditional:
            return None, None
        names = set(self.schema.names)  # not the missingness indicators
        text = pd.DataFrame(
            {
                name: np.asarray(self.codec.categories[name], dtype=object)[x_cat[:, j]]
                for j, name in enumerate(self.codec.categorical)
                if name in names
            }
        )
        fitted = LatentClasses.fit(text, self.schema, self.config.conditioning)
        return (None, None) if fitted is None else fitted

    def _class_codes(self) -> np.ndarray:
        """(n_classes, n_class_columns): each class's values as codec codes."""
        assert self.codec is not None and self.classes is not None
        cats = self.codec.categories
        columns = self.classes.columns
        codes = [
            [cats[c].index(v) for c, v in zip(columns, values, strict=True)]
            for values in self.classes.values
        ]
        return np.asarray(codes, dtype=np.int64).reshape(len(self.classes), -1)

    def _build_vae(self) -> TabularVAE:
        """A fresh VAE for the fitted codec's columns (weights from torch's current RNG)."""
        assert self.codec is not None
        c = self.config
        return TabularVAE(
            self.codec.n_num,
            self.codec.cardinalities,
            d_token=c.d_token,
            layers=c.layers,
            ffn_factor=c.ffn_factor,
            norm=c.vae_norm,
        )

    def vae_training(self, seed: int) -> VAETraining:
        c = self.config
        return VAETraining(
            epochs=c.vae_epochs,
            batch_size=c.vae_batch_size,
            lr=c.vae_lr,
            weight_decay=c.vae_weight_decay,
            beta_max=c.beta_max,
            beta_min=c.beta_min,
            beta_decay=c.beta_decay,
            beta_patience=c.beta_patience,
            early_stopping_patience=c.early_stopping_patience,
            max_minutes=c.vae_minutes,
            checkpoint_seconds=c.checkpoint_seconds,
            seed=seed,
        )

    # -------------------------------------------------------------------------- sample
    @torch.no_grad()
    def sample(
        self,
        num_rows: int,
        *,
        seed: int = 0,
        conditions: dict[str, dict[Any, int]] | None = None,
    ) -> pd.DataFrame:
        """`num_rows` rows in the schema's columns (see the module docstring for conditions)."""
        assert self.codec is not None and self.vae is not None and self.diffusion is not None
        self.last_inpainted, self.last_condition_agreement = 0, None  # no stale count
        if conditions:
            return self._sample_conditioned(num_rows, seed, conditions)
        self.last_attempts = num_rows
        return self._draw(num_rows, seed, self._balanced_labels(num_rows, seed))

    def _balanced_labels(self, n: int, seed: int) -> np.ndarray | None:
        """n class indices in the training balance (largest remainders), shuffled by
        `seed`; None for an unconditional model."""
        if self.classes is None:
            return None
        return balanced_labels(np.asarray(self.classes.counts), n, seed)

    def _draw(self, n: int, seed: int, labels: np.ndarray | None) -> pd.DataFrame:
        """n rows from latents z ~ p(z | labels) (or p(z) without labels); the classes'
        values are written into their columns."""
        return self._decode(self._latents(n, seed, labels), labels, seed=seed)

    def _latents(self, n: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
        """n latents z ~ p(z | labels), guided by `guidance_scale` (p(z) without labels)."""
        assert self.diffusion is not None
        guidance = self.config.guidance_scale if labels is not None else 1.0
        return self.diffusion.sample(n, seed=seed, labels=labels, guidance_scale=guidance)

    def _inpaint(self, column: str, counts: dict[str, int], seed: int) -> pd.DataFrame:
        """sum(counts) rows with `column` = value by latent inpainting (module docstring)."""
        assert self.codec is not None and self.diffusion is not None
        if column not in self.codec.categorical:
            raise DataError(
                f"generate.conditions.{column}: the column is constant in the training rows, "
                "so every row holds its one value. Fix: ask only for that value, or drop "
                "the condition."
            )
        j = self.codec.categorical.index(column)
        entry = (self.condition_bank or {}).get(j)
        if entry is None:
            raise DataError(
                f"this tabsyn model has no latent bank for generate.conditions.{column} (it "
                "was fitted before inpainting existed). Fix: refit it (synthloom run --fresh) "
                "or set method.condition_sampling: rejection."
            )
        categories = self.codec.categories[column]
        rng = np.random.default_rng([seed, 2750159])
        picks = []
        for value, count in counts.items():
            if count <= 0:
                continue
            pool = np.flatnonzero(entry["codes"] == categories.index(value))
            if len(pool) == 0:
                raise DataError(
                    f"generate.conditions.{column}: value {value!r} never occurs in the "
                    "training rows, so tabsyn has no latent for it. Fix: ask for values the "
                    "training split holds."
                )
            picks.append(rng.choice(pool, size=count, replace=True))
        rows = np.concatenate(picks)
        d = entry["tokens"].shape[1]  # d_token
        start = (self.codec.n_num + j) * d
        known = np.zeros((len(rows), self.diffusion.dim), dtype=np.float32)
        known[:, start : start + d] = entry["tokens"][rows]
        mask = np.zeros(self.diffusion.dim, dtype=bool)
        mask[start : start + d] = True
        labels = entry["labels"][rows] if "labels" in entry and self.classes else None
        latents = self.diffusion.inpaint(
            known, mask, seed=seed, resample=self.config.inpaint_resample, labels=labels
        )
        fixed = {j: entry["codes"][rows]}
        return self._decode(latents, labels, seed=seed, fixed=fixed)

    def sample_latents(self, n: int, *, seed: int = 0) -> np.ndarray:
        """n flattened latents (n, n_columns * d_token) from the diffusion, the classes in
        the training balance (what `sample` decodes, before decoding)."""
        return self._latents(n, seed, self._balanced_labels(n, seed))

    def decode_latents(self, latents: np.ndarray, *, seed: int = 0) -> pd.DataFrame:
        """Flattened latents (N, n_columns * d_token) -> rows (categories as configured by
        `category_temperature`; `seed` drives their draws)."""
        return self._decode(latents, seed=seed)

    def encode_rows(self, frame: pd.DataFrame, *, seed: int = 0) -> np.ndarray:
        """Rows -> their flattened latent means (N, n_columns * d_token)."""
        assert self.codec is not None and self.vae is not None
        with torch.no_grad():
            mu, _ = self.vae.encode(*_tensors(*self.codec.encode(frame, seed=seed)))
        return mu.reshape(len(mu), -1).numpy()

    @torch.no_grad()
    def _decode(
        self,
        latents: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        seed: int = 0,
        fixed: dict[int, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Latents -> rows; the values of `labels` (the denoiser's classes) and `fixed`
        (categorical index -> codes, an inpainted condition) are written
        over the decoded categories; the share whose decoded target (resp. fixed column)
        already held them is kept in `last_label_agreement` / `last_condition_agreement`."""
        assert self.codec is not None and self.vae is not None
        z = torch.as_tensor(latents, dtype=torch.float32)
        z = z.reshape(len(z), self.vae.n_columns, self.vae.d_token)
        x_num, logits = self.vae.decode(z)
        rng = np.random.default_rng([seed, 15485863])
        temperature = self.config.category_temperature
        codes = (
            torch.stack([_category_codes(lg, temperature, rng) for lg in logits], dim=1)
            if logits
            else torch.zeros((len(z), 0), dtype=torch.long)
        )
        if labels is not None and self.classes is not None:
            written = self._class_codes()[np.asarray(labels)]
            positions = [self.codec.categorical.index(c) for c in self.classes.columns]
            if self.classes.columns[0] == self.schema.target:
                decoded = codes[:, positions[0]].numpy()
                self.last_label_agreement = (
                    float(np.mean(decoded == written[:, 0])) if len(labels) else None
                )
            for p, j in enumerate(positions):
                codes[:, j] = torch.as_tensor(written[:, p], dtype=torch.long)
        for j, values in (fixed or {}).items():
            self.last_condition_agreement = (
                float(np.mean(codes[:, j].numpy() == values)) if len(values) else None
            )
            codes[:, j] = torch.as_tensor(values, dtype=torch.long)
        scores = x_num.numpy().astype(np.float64)
        if self.calibration is not None:
            scores = np.stack(
                [q.transform(scores[:, j]) for j, q in enumerate(self.calibration)], axis=1
            ).reshape(scores.shape)
        return self.codec.decode(scores, codes.numpy())

    def _sample_conditioned(
        self, num_rows: int, seed: int, conditions: dict[str, dict[Any, int]]
    ) -> pd.DataFrame:
        assert self.schema is not None
        column, quotas = check_conditions(conditions, self.schema, num_rows)
        wanted = {str(k): int(v) for k, v in quotas.items()}
        assert self.codec is not None
        if self.classes is not None and column in self.classes.columns:
            # a class column: the counts are the classes, exactly
            quota = self.classes.quotas_for(column, wanted)
            labels = shuffled_labels(np.repeat(np.arange(len(quota)), quota), seed)
            self.last_attempts = num_rows
            return self._draw(num_rows, seed, labels)
        mode = self.config.condition_sampling
        kept: list[pd.DataFrame] = []
        attempts, round_index = 0, 0
        limit = int(self.config.max_condition_factor * max(num_rows, 1))
        while mode != "inpaint" and any(v > 0 for v in wanted.values()):
            if attempts >= limit:
                if mode == "auto" and self.condition_bank:
                    break
                open_ = {k: v for k, v in wanted.items() if v > 0}
                raise DataError(
                    f"tabsyn could not fill the quota {open_} of generate.conditions."
                    f"{column} after {attempts} rows ({self.config.max_condition_factor}x "
                    "the request): the value is too rare in the fitted model. Fix: set "
                    "method.condition_sampling: inpaint (or auto), lower its count, or raise "
                    "method.max_condition_factor."
                )
            batch = max(2 * sum(wanted.values()), 64)
            round_seed = seed * 7919 + round_index
            rows = self._draw(batch, round_seed, self._balanced_labels(batch, round_seed))
            attempts += batch
            round_index += 1
            values = rows[column].map(lambda v: None if pd.isna(v) else str(v))
            take = np.zeros(len(rows), dtype=bool)
            for i, value in enumerate(values):
                if value in wanted and wanted[value] > 0:
                    wanted[value] -= 1
                    take[i] = True
            kept.append(rows[take])
        self.last_attempts = attempts
        if any(v > 0 for v in wanted.values()):
            inpainted = self._inpaint(column, wanted, seed * 7919 + round_index)
            self.last_inpainted = len(inpainted)
            kept.append(inpainted)
        out = pd.concat(kept, ignore_index=True)
        order = np.random.default_rng(seed).permutation(len(out))
        return out.iloc[order].reset_index(drop=True)

    # ------------------------------------------------------------------------ save/load
    def save(self, directory: Path) -> None:
        assert self.codec is not None and self.vae is not None and self.diffusion is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(_cpu_state(self.vae), str(directory / VAE_FILE))
        self.diffusion.save(directory / DIFFUSION_DIR)
        if self.condition_bank is not None:
            save_file(
                {
                    f"{j}.{part}": torch.as_tensor(array).contiguous()
                    for j, entry in self.condition_bank.items()
                    for part, array in entry.items()
                },
                str(directory / CONDITION_BANK_FILE),
            )
        state = {
            "config": self.config.model_dump(),
            "codec": self.codec.to_dict(),
            "calibration": None
            if self.calibration is None
            else [q.to_dict() for q in self.calibration],
            "training": self.training,
            "classes": None if self.classes is None else self.classes.to_dict(),
        }
        (directory / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def save_vae(self, directory: Path) -> None:
        """After `fit_vae`: the codec, the VAE and its training summary (`load_vae` reads them)."""
        assert self.codec is not None and self.vae is not None
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(_cpu_state(self.vae), str(directory / VAE_FILE))
        state = {
            "config": self.config.model_dump(),
            "codec": self.codec.to_dict(),
            "training": self.training,
        }
        (directory / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    @classmethod
    def load_vae(cls, directory: Path) -> TabSynGenerator:
        """A generator with the codec and VAE `save_vae` wrote, ready for `fit_diffusion`."""
        directory = Path(directory)
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        model = cls(**_saved_params(state["config"]))
        model.codec = ColumnCodec.from_dict(state["codec"])
        model.schema = model.codec.schema
        model.vae = model._build_vae()
        model.vae.load_state_dict(load_file(str(directory / VAE_FILE)))
        model.vae.eval()
        model.training = state["training"]
        return model

    @classmethod
    def load(cls, directory: Path) -> TabSynGenerator:
        directory = Path(directory)
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        model = cls(**_saved_params(state["config"]))
        model.codec = ColumnCodec.from_dict(state["codec"])
        model.schema = model.codec.schema
        model.vae = model._build_vae()
        model.vae.load_state_dict(load_file(str(directory / VAE_FILE)))
        model.vae.eval()
        model.diffusion = LatentDiffusionModel.load(directory / DIFFUSION_DIR)
        model.training = state["training"]
        model.classes = _saved_classes(state, model.codec)
        if (directory / CONDITION_BANK_FILE).is_file():  # absent: fitted before inpainting
            bank: dict[int, dict[str, np.ndarray]] = {}
            for key, tensor in load_file(str(directory / CONDITION_BANK_FILE)).items():
                j, _, part = key.partition(".")
                bank.setdefault(int(j), {})[part] = tensor.numpy()
            model.condition_bank = bank
        if state.get("calibration") is not None:
            model.calibration = [QuantileNormal.from_dict(q) for q in state["calibration"]]
        return model

    def training_history(self) -> dict[str, list[list[float]]]:
        """Curves by epoch for tracking: {"recon", "val_recon", "kl", "beta", "diffusion_loss"}
        as [[epoch, value], ...] (recon = MSE + CE on the training batches)."""
        vae = self.training.get("vae_history", [])
        curves = {
            "recon": [[r["epoch"], r["mse"] + r["ce"]] for r in vae],
            "val_recon": [[r["epoch"], r["val_recon"]] for r in vae],
            "kl": [[r["epoch"], r["kl"]] for r in vae],
            "beta": [[r["epoch"], r["beta"]] for r in vae],
        }
        curves["diffusion_loss"] = self.training.get("diffusion_history", [])
        return curves

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"config": self.config.model_dump()}
        if self.vae is not None:
            info["vae_parameters"] = sum(p.numel() for p in self.vae.parameters())
            info["latent_dim"] = self.vae.n_columns * self.vae.d_token
        if self.codec is not None and self.codec.derived:
            info["derived_columns"] = {  # written back from their source, not modelled
                name: rule_text(rule) for name, rule in self.codec.derived.items()
            }
        if self.training:
            curves = ("vae_history", "diffusion_history")
            info["training"] = {k: v for k, v in self.training.items() if k not in curves}
        return info


def _saved_classes(state: dict[str, Any], codec: ColumnCodec) -> LatentClasses | None:
    """The classes a saved model's denoiser learnt. Models saved before the shared class
    model hold codec codes ("label_columns", "label_combos", "label_counts"; before joint
    classes only "label_index" and "label_counts": the target's codes in order)."""
    if "classes" in state:
        return None if state["classes"] is None else LatentClasses.from_dict(state["classes"])
    counts = list(state.get("label_counts") or [])
    if not counts:
        return None
    if "label_columns" in state:
        positions, combos = state["label_columns"], state["label_combos"]
    else:
        positions, combos = [state["label_index"]], [[k] for k in range(len(counts))]
    columns = [codec.categorical[j] for j in positions]
    values = [
        tuple(codec.categories[c][code] for c, code in zip(columns, combo, strict=True))
        for combo in combos
    ]
    return LatentClasses(tuple(columns), tuple(values), tuple(int(n) for n in counts))


def _category_codes(
    logits: torch.Tensor, temperature: float, rng: np.random.Generator
) -> torch.Tensor:
    """(N, K) decoder logits -> (N,) codes: argmax at temperature 0, else one draw per row
    from softmax(logits / temperature) (inverse CDF of a uniform from `rng`)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1).numpy()
    u = rng.random((len(probs), 1))
    codes = (probs.cumsum(axis=1) < u).sum(axis=1)
    return torch.as_tensor(np.minimum(codes, probs.shape[1] - 1), dtype=torch.long)


def _saved_params(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config's method keys; a model saved before `vae_norm` existed is post-norm,
    one saved before `category_temperature` existed decodes categories by the argmax, one
    saved before `decoder_calibration` existed holds a calibration on the training rows."""
    params = {k: v for k, v in config.items() if k != "name"}
    params.setdefault("vae_norm", "post")
    params.setdefault("category_temperature", 0.0)
    params.setdefault("decoder_calibration", "training")
    return params


def _split_validation(
    train: pd.DataFrame, validation: pd.DataFrame | None, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): as given, or without validation rows a seeded 10% of `train`
    held out (the same split on every call with the same seed)."""
    if len(train) < 10:
        raise DataError(
            f"tabsyn needs at least 10 training rows, got {len(train)}. Fix: bring more "
            "seed rows or lower data.validation_fraction / data.test_fraction."
        )
    if validation is not None and len(validation) > 0:
        return train, validation
    order = np.random.default_rng(seed).permutation(len(train))
    cut = max(1, len(train) // 10)
    return train.iloc[order[cut:]], train.iloc[order[:cut]]


def _tensors(
    x_num: np.ndarray, x_cat: np.ndarray, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(x_num, dtype=torch.float32, device=device),
        torch.as_tensor(x_cat, dtype=torch.long, device=device),
    )


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _atomic_save(module: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(_cpu_state(module), str(tmp))
    tmp.replace(path)


__all__ = ["TabSynGenerator"]
