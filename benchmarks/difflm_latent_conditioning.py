"""DiffLM: how the latents are drawn, paired on ONE trained VAE (issue 17).

For a finished DiffLM run (its `train_vae` output, ingest splits and config), each variant
trains its own latent diffusion on the run's training latents and decodes `--rows` rows
from the SAME VAE, so the VAE's run-to-run noise (a time-budgeted VAE is not
bit-reproducible) drops out of the comparison:

- `uncond`: the paper's unconditional diffusion; the decoder writes every slot;
- `forced`: the unconditional diffusion, the target slot forced to a label drawn in the
  training balance (what `generate.conditions` did before the class-conditional diffusion);
- `cond`: a class-conditional diffusion without a null class, the target slot forced;
- a number w: a class-conditional diffusion with `label_dropout` 0.1 sampled at guidance
  scale w (1 = no guidance), the target slot forced (the default since 2026-12-07: w = 2).

`--diffusion-steps N` trains every variant's diffusion for N steps instead of the run's
`method.diffusion_steps` (the rows file and the variant name then carry `-sN`). A table
without a categorical or boolean target runs `uncond` alone.

`--diffusion-ema D` trains every variant's denoiser with weight averaging D
(`method.diffusion_ema`; name suffix `-emaD`) and `--diffusion-seed S` with seed S instead
of the run's (suffix `-dS`): one trained denoiser is one draw, and its quality varies
with the seed; `--diffusion-schedule cosine` decays its learning rate to 0
(`method.diffusion_lr_schedule`; suffix `-cosine`) (docs/methods.md, "The denoiser's last
snapshot").

`--conditioning target_and_binary` (or `target_and_related`) makes the class of `cond` and
the numbered variants the joint value of the target and the two-valued columns (those
related to the target), every class slot forced; the rows file then carries the suffix
`-joint`. The default here stays `target`, the classes these paired runs first measured.

Each variant's rows are scored by MLE (the run's `evaluate.mle_grid`, XGBoost seeds 0-2) on
the validation split (choose with it) and on the test split (report it), and by shape and
pair-trend error against the test split; rows are written to `--out`. Prints one JSON line
per variant, with `diffusion_s` (training its denoiser; variants of one family, `uncond` and
`forced` or the numbered ones, share one trained denoiser) and `decode_s` (its rows).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/difflm_latent_conditioning.py \\
        data/runs/bench_churn-difflm-<id> --rows 500 --variants uncond cond 1 1.5 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthloom.latent_classes import CONDITIONINGS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished DiffLM run (data/runs/<id>)")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--variants", nargs="+", default=["uncond", "cond", "2"])
    parser.add_argument("--model-cache", type=Path, default=REPO / "data" / "models")
    parser.add_argument("--out", type=Path, default=None, help="where the rows go")
    parser.add_argument("--conditioning", choices=CONDITIONINGS, default="target")
    parser.add_argument(
        "--diffusion-steps", type=int, default=None, help="default: the run's diffusion_steps"
    )
    parser.add_argument(
        "--diffusion-ema",
        type=float,
        default=None,
        help="weight averaging of every variant's denoiser (default: the run's diffusion_ema)",
    )
    parser.add_argument(
        "--diffusion-schedule",
        choices=("plateau", "cosine"),
        default=None,
        help="the denoisers' learning-rate schedule (default: the run's diffusion_lr_schedule)",
    )
    parser.add_argument(
        "--diffusion-seed",
        type=int,
        default=None,
        help="seed of every variant's denoiser training (default: the run's run.seed)",
    )
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from synthloom.artifacts import read_table
    from synthloom.latent_classes import LatentClasses
    from synthloom.methods.difflm.fit import load_base_models, load_trained_vae
    from synthloom.methods.difflm.generate import (
        class_groups,
        generate_grouped_rows,
        generate_valid_rows,
        record_constraint,
    )
    from synthloom.methods.difflm.latent_diffusion import (
        LatentDiffusionConfig,
        averaging_decay,
        train_latent_diffusion,
    )
    from synthloom.metrics.mle import mle_scores
    from synthloom.metrics.quality import column_quality
    from tasks.difflm import records_schema, table_rows

    run = args.run_dir
    config = json.loads((run / "config.json").read_text())
    method = config["method"] | json.loads((run / "train_vae" / "decoding.json").read_text())
    method.setdefault("guidance_scale", 1.0)
    seed = config["run"]["seed"]
    device = torch.device("cpu")
    dtype = torch.bfloat16 if method["bf16"] else torch.float32
    models = load_base_models(method, device, args.model_cache, decoder_dtype=dtype)
    vae = load_trained_vae(run / "train_vae" / "vae", models)
    train, schema = read_table(run / "ingest" / "train.parquet")
    test, _ = read_table(run / "ingest" / "test.parquet")
    validation, _ = read_table(run / "ingest" / "validation.parquet")
    written = records_schema(schema, method, train)
    fitted = LatentClasses.fit(train, schema, args.conditioning)
    if fitted is None and set(args.variants) != {"uncond"}:
        parser.error("the run's table has no categorical or boolean target: run --variants uncond")
    classes, labels = fitted if fitted is not None else (None, None)
    steps = args.diffusion_steps or method["diffusion_steps"]
    # runs made before the key existed trained the best epoch's weights (0)
    run_ema = averaging_decay(method["diffusion_ema"], steps) if "diffusion_ema" in method else 0.0
    ema = run_ema if args.diffusion_ema is None else args.diffusion_ema
    schedule = args.diffusion_schedule or method.get("diffusion_lr_schedule", "plateau")
    latents = pd.read_parquet(run / "train_vae" / "latents.parquet").to_numpy()
    out = args.out or run / "latent_conditioning"
    out.mkdir(parents=True, exist_ok=True)

    def diffusion(**extra: Any) -> Any:
        cfg = LatentDiffusionConfig(
            hidden=method["diffusion_hidden"],
            epochs=1_000_000,
            max_steps=steps,
            batch_size=method["diffusion_batch_size"],
            sampler_steps=method["sampler_steps"],
            ema_decay=ema,
            lr_schedule=schedule,
            seed=seed if args.diffusion_seed is None else args.diffusion_seed,
            **extra,
        )
        return train_latent_diffusion(latents, cfg, device=device, labels=labels if extra else None)

    trained: dict[str, tuple[Any, float]] = {}  # family -> (denoiser, seconds to train it)

    common = {"max_attempts": 5 * args.rows, "seed": seed, "device": device}
    for variant in args.variants:
        if variant in ("uncond", "forced"):
            family = "uncond"
        else:
            family = "cond" if variant == "cond" else "null"
        extra: dict[str, Any] = {}
        if family != "uncond":
            extra = {"n_classes": len(classes)} | (
                {"label_dropout": 0.1} if family == "null" else {}
            )
        if family not in trained:
            began = time.perf_counter()
            model = diffusion(**extra)
            trained[family] = (model, time.perf_counter() - began)
        model, diffusion_seconds = trained[family]
        start = time.perf_counter()
        if variant in ("uncond", "forced"):
            if variant == "uncond":
                constraint = record_constraint(written, method, models)
                rows, _, _ = generate_valid_rows(
                    vae, models, model, written, method, num_rows=args.rows,
                    constraint=constraint, **common,
                )  # fmt: skip
            else:
                groups = [  # the class slot forced, the latents unconditional
                    replace(g, label=None)
                    for g in class_groups(written, classes, classes.balanced(args.rows))
                ]
                rows, _, _ = generate_grouped_rows(
                    vae, models, model, written, method, groups=groups, **common
                )
        else:
            scale = 1.0 if variant == "cond" else float(variant)
            groups = class_groups(written, classes, classes.balanced(args.rows))
            rows, _, _ = generate_grouped_rows(
                vae, models, model, written, method | {"guidance_scale": scale},
                groups=groups, **common,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        frame = table_rows(rows, written, schema)
        frame = frame.astype({c: train[c].dtype for c in frame.columns}, errors="ignore")
        joint = args.conditioning != "target" and variant not in ("uncond", "forced")
        name = f"{variant}-joint" if joint else variant
        name += f"-s{steps}" if args.diffusion_steps else ""
        name += f"-ema{ema:g}" if args.diffusion_ema is not None else ""
        name += f"-{schedule}" if args.diffusion_schedule else ""
        name += f"-d{args.diffusion_seed}" if args.diffusion_seed is not None else ""
        frame.to_parquet(out / f"{name}.parquet")
        result: dict[str, Any] = {"run": run.name, "seed": seed, "variant": name}
        result |= {"rows": len(frame), "diffusion_s": round(diffusion_seconds)}
        result |= {"decode_s": round(seconds)}
        for split, real in (("validation", validation), ("test", test)):
            scores = mle_scores(
                frame, real, schema, seeds=(0, 1, 2), grid=config["evaluate"]["mle_grid"]
            )
            key = "mle_auc_mean" if "mle_auc_mean" in scores else "mle_rmse_mean"
            result[f"{split}_{key.removesuffix('_mean')}"] = round(scores[key], 4)
        quality = column_quality(test, frame, schema)
        result["shape_pct"] = round(quality["column_shape_error_pct"], 2)
        result["trend_pct"] = round(quality["pair_trend_error_pct"], 2)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
