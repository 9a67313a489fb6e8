"""The tabular pipeline: ingest -> fit -> generate -> filter -> evaluate, then track.

TabSyn fits in two stages (train_vae -> train_diffusion). DiffLM fits in three (serialize
-> train_vae -> train_diffusion), generates by decoding and then diagnoses where it loses
(reconstruction). Composition only: every
stage is a cached task in `tasks/`; rerunning the same run id reuses completed stages and
continues from the first unfinished one.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.frame import PipelineRun, pipeline_run
from tasks.evaluate import evaluate_synthetic
from tasks.filter import filter_rows
from tasks.fit import fit_generator
from tasks.generate import generate_rows
from tasks.ingest import ingest_seed, source_fingerprint
from tasks.runtime import file_refs


@flow(name="tabular-pipeline", flow_run_name="{run_id}", validate_parameters=False)
def tabular_pipeline(config: dict[str, Any], run_id: str, data_dir: str) -> dict[str, Any]:
    with pipeline_run(config, run_id, data_dir) as run:
        cfg, config, recorder = run.cfg, run.config, run.recorder
        seed = recorder.run(
            "ingest",
            ingest_seed,
            data=config["data"],
            seed=cfg.run.seed,
            source_id=source_fingerprint(cfg.data.source),
        )
        recorder.check_output_fits("generate", seed, cfg.generate.num_rows)
        if cfg.method.name == "difflm":
            generated = _difflm_stages(run, seed)
        else:
            if cfg.method.name == "tabsyn":
                model = _tabsyn_stages(run, seed)
            else:
                model = recorder.run(
                    "fit",
                    fit_generator,
                    method=config["method"],
                    seed=cfg.run.seed,
                    device=cfg.run.device,
                    seed_files=file_refs(seed),
                )
            generated = recorder.run(
                "generate",
                generate_rows,
                generate=config["generate"],
                method_name=cfg.method.name,
                seed=cfg.run.seed,
                model_files=file_refs(model),
                seed_files=file_refs(seed),
            )
        kept = recorder.run(
            "filter",
            filter_rows,
            rules=config["filter"],
            generated_files=file_refs(generated),
            seed_files=file_refs(seed),
        )
        if cfg.evaluate.enabled:
            recorder.run(
                "evaluate",
                evaluate_synthetic,
                evaluate=config["evaluate"],
                filtered_files=file_refs(kept),
                seed_files=file_refs(seed),
            )
        else:
            recorder.skip("evaluate", "evaluate.enabled is false")
    return run.summary


def _tabsyn_stages(run: PipelineRun, seed: dict[str, Any]) -> dict[str, Any]:
    """train_vae -> train_diffusion (TabSyn, arXiv 2310.09656); returns the diffusion stage's
    outputs, whose `model` the generate stage samples."""
    from tasks.tabsyn import train_tabsyn_diffusion, train_tabsyn_vae

    method, ops = run.config["method"], run.cfg.run
    common = {"method": method, "seed": ops.seed, "device": ops.device}
    vae = run.recorder.run("train_vae", train_tabsyn_vae, **common, seed_files=file_refs(seed))
    return run.recorder.run(
        "train_diffusion",
        train_tabsyn_diffusion,
        **common,
        seed_files=file_refs(seed),
        vae_files=file_refs(vae),
    )


def _difflm_stages(run: PipelineRun, seed: dict[str, Any]) -> dict[str, Any]:
    """serialize -> train_vae -> train_diffusion -> generate (DiffLM, arXiv 2411.03250), then
    the reconstruction diagnostic; returns the generate stage's outputs."""
    # imported here: DiffLM's stages load transformers, which no other tabular method needs
    from tasks.difflm import (
        generate_records,
        reconstruction_stage,
        serialize_records,
        train_diffusion_stage,
        train_vae_stage,
    )

    cfg, recorder, method = run.cfg, run.recorder, run.config["method"]
    model_cache = run.model_cache
    generate, ops = run.config["generate"], cfg.run
    records = recorder.run(
        "serialize", serialize_records, method=method, seed_files=file_refs(seed)
    )
    vae = recorder.run(
        "train_vae",
        train_vae_stage,
        method=method,
        seed=ops.seed,
        device=ops.device,
        record_files=file_refs(records),
        model_cache=model_cache,
    )
    diffusion = recorder.run(
        "train_diffusion",
        train_diffusion_stage,
        method=method,
        seed=ops.seed,
        device=ops.device,
        vae_files=file_refs(vae),
        seed_files=file_refs(seed),
    )
    generated = recorder.run(
        "generate",
        generate_records,
        generate=generate,
        method=method,
        seed=ops.seed,
        device=ops.device,
        vae_files=file_refs(vae),
        diffusion_files=file_refs(diffusion),
        seed_files=file_refs(seed),
        model_cache=model_cache,
    )
    if cfg.method.reconstruction_records:
        recorder.run(
            "reconstruction",
            reconstruction_stage,
            method=method,
            mle={"grid": cfg.evaluate.mle_grid, "seeds": cfg.evaluate.mle_seeds},
            seed=ops.seed,
            device=ops.device,
            record_files=file_refs(records),
            vae_files=file_refs(vae),
            diffusion_files=file_refs(diffusion),
            generated_files=file_refs(generated),
            seed_files=file_refs(seed),
            model_cache=model_cache,
        )
    else:
        recorder.skip("reconstruction", "method.reconstruction_records is 0")
    return generated
