"""DiffLM stage tasks: serialize -> train_vae -> train_diffusion -> generate.

Each wraps core functions from `synthloom.methods.difflm`; weights are safetensors, the
per-step training curves go to `history.json` ({metric: [[step, value], ...]}), which the
tracking step logs to MLflow as step metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import get_run_logger, task

from synthloom.artifacts import atomic_write_json, read_table, write_table
from synthloom.methods.difflm.fit import (
    encode_means,
    fit_vae,
    load_base_models,
    load_trained_vae,
    plot_latents,
    plot_loss_curves,
)
from synthloom.methods.difflm.generate import generate_valid_rows
from synthloom.methods.difflm.latent_diffusion import (
    LatentDiffusionConfig,
    LatentDiffusionModel,
    train_latent_diffusion,
)
from synthloom.models.device import resolve_device, set_seed
from synthloom.serialize import serialize_table
from tasks.runtime import STAGE_TASK_OPTIONS, StageOutput, execute_stage


@task(name="serialize", **STAGE_TASK_OPTIONS)
def serialize_records(
    method: dict[str, Any],
    seed_files: dict[str, dict[str, Any]],
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Train and validation rows as text records (one per row) in records.parquet."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        frames = []
        for split in ("train", "validation"):
            table, schema = read_table(seed_files[split]["path"])
            texts = serialize_table(table, schema, method["serialization"], method["float_digits"])
            target = table[schema.target].astype(str) if schema.target else None
            frames.append(pd.DataFrame({"split": split, "text": texts, "label": target}))
        records = pd.concat(frames, ignore_index=True)
        write_table(records, out / "records.parquet", schema)
        chars = records["text"].str.len()
        logger.info(
            "serialized %d records (%s), %.0f characters on average; e.g. %s",
            len(records),
            method["serialization"],
            chars.mean(),
            records["text"].iloc[0][:200],
        )
        return StageOutput(
            files={"records": ("records.parquet", len(records))},
            rows_in=len(records),
            rows_out=len(records),
            metrics={"mean_record_chars": float(chars.mean())},
        )

    return execute_stage(
        "serialize",
        stage_dir,
        body,
        config=method,
        inputs={k: seed_files[k]["sha256"] for k in ("train", "validation")},
        inject_failure=inject_failure,
    )


@task(name="train_vae", **STAGE_TASK_OPTIONS)
def train_vae_stage(
    method: dict[str, Any],
    seed: int,
    device: str,
    record_files: dict[str, dict[str, Any]],
    model_cache: str,
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Train encoder + heads + injector against the frozen decoder; save weights and the
    latent means of every training record (the diffusion stage's data)."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        set_seed(seed)
        torch_device = resolve_device(device)
        records, schema = read_table(record_files["records"]["path"])
        train = records[records["split"] == "train"]
        val = records[records["split"] == "validation"]
        models = load_base_models(method, torch_device, Path(model_cache))
        start = time.perf_counter()
        vae, history = fit_vae(
            models,
            train["text"].tolist(),
            val["text"].tolist(),
            method,
            device=torch_device,
            seed=seed,
            log=_progress_logger(logger, method["vae_steps"]),
        )
        seconds = time.perf_counter() - start
        vae.save(out / "vae")
        means = encode_means(vae, models, train["text"].tolist(), method, device=torch_device)
        means_frame = pd.DataFrame(means, columns=[f"z{i}" for i in range(means.shape[1])])
        means_frame.to_parquet(out / "latents.parquet")
        atomic_write_json(history, out / "history.json")
        plot_loss_curves(history, out / "loss_curves.png")
        plot_latents(means, train["label"].tolist(), out / "latents.png", target=schema.target)
        steps = len(history.get("recon", []))
        return StageOutput(
            files={
                "vae": ("vae", None),
                "latents": ("latents.parquet", len(means)),
                "history": ("history.json", None),
            },
            rows_in=len(train),
            rows_out=len(means),
            metrics={
                "final_val_recon": history["val_recon"][-1][1]
                if history["val_recon"]
                else float("nan"),
                "best_step": float(history["best_step"]),
                "records_per_second": steps * method["vae_batch_size"] / max(seconds, 1e-9),
            },
            info={"stop_reason": history["stop_reason"], "device": str(torch_device)},
        )

    return execute_stage(
        "train_vae",
        stage_dir,
        body,
        config=method,
        inputs={"records": record_files["records"]["sha256"], "seed": seed},
        inject_failure=inject_failure,
    )


@task(name="train_diffusion", **STAGE_TASK_OPTIONS)
def train_diffusion_stage(
    method: dict[str, Any],
    seed: int,
    device: str,
    vae_files: dict[str, dict[str, Any]],
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """EDM denoiser on the normalised latent means (skipped in the no-diffusion ablation)."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        means = pd.read_parquet(vae_files["latents"]["path"]).to_numpy()
        if not method["diffusion"]:
            atomic_write_json({"diffusion": False}, out / "disabled.json")
            logger.info("method.diffusion is false: latents will be drawn from N(0, I)")
            return StageOutput(files={"diffusion": ("disabled.json", None)}, rows_in=len(means))
        config = LatentDiffusionConfig(
            hidden=method["diffusion_hidden"],
            epochs=1_000_000,  # bounded by max_steps and early stopping
            max_steps=method["diffusion_steps"],
            batch_size=method["diffusion_batch_size"],
            sampler_steps=method["sampler_steps"],
            seed=seed,
        )
        history: dict[str, list] = {"diffusion_loss": []}

        def log(record: dict[str, Any]) -> None:
            history["diffusion_loss"].append([record["step"], record["loss"]])
            if record["epoch"] % 100 == 0:
                logger.info("diffusion step %d loss %.4f", record["step"], record["loss"])

        model = train_latent_diffusion(means, config, device=resolve_device(device), log=log)
        model.save(out / "diffusion")
        atomic_write_json(history, out / "history.json")
        last = history["diffusion_loss"][-1][1] if history["diffusion_loss"] else float("nan")
        return StageOutput(
            files={"diffusion": ("diffusion", None), "history": ("history.json", None)},
            rows_in=len(means),
            metrics={"final_loss": last},
        )

    return execute_stage(
        "train_diffusion",
        stage_dir,
        body,
        config=method,
        inputs={"latents": vae_files["latents"]["sha256"], "seed": seed},
        inject_failure=inject_failure,
    )


@task(name="generate", **STAGE_TASK_OPTIONS)
def generate_records(
    generate: dict[str, Any],
    method: dict[str, Any],
    seed: int,
    device: str,
    vae_files: dict[str, dict[str, Any]],
    diffusion_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    model_cache: str,
    stage_dir: str,
    code: str,
    inject_failure: bool = False,
) -> dict[str, Any]:
    """Sample latents -> inject -> decode -> parse, until num_rows valid rows or the budget."""
    logger = get_run_logger()

    def body(out: Path) -> StageOutput:
        torch_device = resolve_device(device)
        _, schema = read_table(seed_files["test"]["path"])
        # CPU decoding is fastest with bf16 weights (not autocast); the VAE's injections
        # are cast to the decoder's dtype by the decoding loop.
        dtype = torch.bfloat16 if method["bf16"] else torch.float32
        models = load_base_models(method, torch_device, Path(model_cache), decoder_dtype=dtype)
        vae = load_trained_vae(Path(vae_files["vae"]["path"]), models)
        diffusion_dir = Path(diffusion_files["diffusion"]["path"])
        diffusion = LatentDiffusionModel.load(diffusion_dir) if diffusion_dir.is_dir() else None
        frame, texts, stats = generate_valid_rows(
            vae,
            models,
            diffusion,
            schema,
            method,
            num_rows=generate["num_rows"],
            max_attempts=generate["max_attempts"] or 5 * generate["num_rows"],
            seed=seed,
            device=torch_device,
            progress=lambda done, tried, rate: logger.info(
                "generated %d/%d valid rows from %d attempts (%.2f valid rows/s)",
                done,
                generate["num_rows"],
                tried,
                rate,
            ),
        )
        write_table(frame, out / "synthetic.parquet", schema)
        texts.to_parquet(out / "generations.parquet")
        return StageOutput(
            files={
                "synthetic": ("synthetic.parquet", len(frame)),
                "generations": ("generations.parquet", len(texts)),
            },
            rows_out=len(frame),
            metrics={k: v for k, v in stats.items() if isinstance(v, int | float)},
            counts={f"invalid_{k.replace(' ', '_')}": v for k, v in stats["invalid"].items()},
        )

    return execute_stage(
        "generate",
        stage_dir,
        body,
        config=generate | {"method": method},
        inputs={
            "vae": vae_files["vae"]["sha256"],
            "diffusion": diffusion_files["diffusion"]["sha256"],
            "seed": seed,
        },
        inject_failure=inject_failure,
    )


def _progress_logger(logger: Any, total_steps: int):  # noqa: ANN202
    """Log VAE progress every ~5% of the steps and every evaluation."""
    every = max(1, total_steps // 20)

    def log(record: dict[str, Any]) -> None:
        if "val_recon" in record:
            logger.info(
                "step %d: val recon %.4f, val kl %.3f",
                record["step"],
                record["val_recon"],
                record["val_kl"],
            )
        elif record["step"] % every == 0:
            logger.info(
                "step %d/%d: recon %.4f kl %.3f beta %.4g (%.1f records/s)",
                record["step"],
                total_steps,
                record["recon"],
                record["kl"],
                record["beta"],
                record.get("records_per_s", float("nan")),
            )

    return log
