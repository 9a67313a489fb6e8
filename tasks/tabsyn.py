"""TabSyn's fit as two stages, like DiffLM's: train_vae (codec + VAE, saved under
train_vae/vae/) -> train_diffusion (latent diffusion + decoder calibration, the whole
generator saved under train_diffusion/model/, which the generate stage samples).

Each stage checkpoints its training under `<run>/.checkpoints/<stage>/`, so a run killed in
either resumes there; a failed diffusion stage reruns without training the VAE again."""

from __future__ import annotations

from typing import Any

from synthloom.artifacts import read_table
from synthloom.methods.tabsyn.generator import TabSynGenerator
from synthloom.models.device import set_seed
from tasks.fit import fit_extras, save_fitted
from tasks.runtime import StageOutput, StageRun, stage


@stage("train_vae", config="method")
def train_tabsyn_vae(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Fit the column codec and the VAE on the train split (validation: best epoch, beta)."""
    set_seed(seed)
    train, schema = read_table(seed_files["train"]["path"])
    assert schema is not None, "the ingest stage stores the schema with every split"
    generator = TabSynGenerator(**{k: v for k, v in method.items() if k != "name"})
    run.log.info("training the tabsyn VAE on %d rows", len(train))
    extras = fit_extras(generator.fit_vae, run, seed_files, device)
    generator.fit_vae(train, schema, seed=seed, **extras)
    generator.save_vae(run.out / "vae")
    vae = generator.training["vae"]
    info = {"method": "tabsyn", "device": device, **generator.describe()}
    for name, rule in info.get("derived_columns", {}).items():
        run.log.info(
            "tabsyn: %s = %s in every training row: written back, not modelled", name, rule
        )
    return StageOutput(
        files={"vae": ("vae", None)},
        rows_in=len(train),
        metrics={"best_val_recon": vae["best_val_recon"], "epochs": vae["epochs"]},
        info=info,
    )


@stage("train_diffusion", config="method")
def train_tabsyn_diffusion(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
    vae_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Train the latent diffusion model on the training rows' latent means; save the whole
    generator under model/ with its loss curves and latent plot."""
    set_seed(seed)
    train, schema = read_table(seed_files["train"]["path"])
    assert schema is not None, "the ingest stage stores the schema with every split"
    generator = TabSynGenerator.load_vae(vae_files["vae"]["path"])
    run.log.info("training the tabsyn latent diffusion on %d rows", len(train))
    extras = fit_extras(generator.fit_diffusion, run, seed_files, device)
    generator.fit_diffusion(train, seed=seed, **extras)
    return StageOutput(
        files=save_fitted(generator, train, schema, seed, run.out),
        rows_in=len(train),
        metrics={"best_loss": generator.diffusion.training["best_loss"]},
        info={"method": "tabsyn", "device": device, **generator.describe()},
    )
