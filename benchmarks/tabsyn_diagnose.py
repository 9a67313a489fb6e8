"""Where does TabSyn lose quality: the VAE (reconstruction) or the diffusion (generation)?

    .venv/bin/python benchmarks/tabsyn_diagnose.py pipeline_configs/bench_churn.yaml \
        [--seed 0] [--set method.diffusion_steps=8000 ...] [--save DIR] \
        [--vary category_temperature=0,1] [--vary guidance_scale=1,2]  # sampling keys
        [--sample-seeds 100 101 102]  # several generated tables from each fit
        [--refit diffusion_ema=0,0.999]  # diffusion keys: one diffusion per value, same VAE

Fits TabSyn once on the bench config's train split (validation split for early stopping),
then scores three tables against the VALIDATION split (never the test split: this script
is for choosing settings):

- `reconstructed`: the training rows decoded from their own latent means z = mu(x). Its
  errors are the VAE's (plus the decoder's calibration); a high MLE here and a low one
  for `generated` blames the diffusion.
- `generated`: as many rows as the train split from the diffusion (the shipped sampler);
  with `--vary KEY=V1,V2` (sampling-time keys: category_temperature, guidance_scale, the
  latter after `--set method.label_dropout=0.1`), one such table per combination of values,
  all from the same fit and the same diffusion noise. With `--refit KEY=V1,V2` (a key
  the diffusion stage reads: diffusion_ema, diffusion_hidden, diffusion_steps, ...), the
  VAE is fitted once and a diffusion model trained per value on its latents, so the
  values are compared on the same VAE; each gets its own `generated` table(s) and latent
  statistics.
- `train`: the real train rows themselves (the ceiling of every score).

For each: MLE (the bench's XGBoost grid), column-shape and pair-trend error %, and the
five worst columns by shape score. For the latents: MMD^2 (Gaussian kernel, median
bandwidth) between diffusion samples and the training means, and the largest per-dimension
gaps in mean and standard deviation (in units of the training std).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthloom.bench.config import load_bench_config  # noqa: E402
from synthloom.methods import build_generator  # noqa: E402
from synthloom.methods.text.distribution_matching import (  # noqa: E402
    median_heuristic_bandwidth,
    mmd2,
)
from synthloom.metrics.tabular import evaluate_tabular  # noqa: E402
from synthloom.seed_splits import seed_splits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="tabsyn method key=value")
    parser.add_argument("--save", type=Path, help="write the tables here as Parquet")
    parser.add_argument(
        "--sample-seeds",
        type=int,
        nargs="+",
        help="one generated table per sampling seed, all from the same fit (default: --seed)",
    )
    parser.add_argument(
        "--refit",
        help="diffusion-stage key=v1,v2,...: one diffusion model per value on the same VAE",
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        help="sampling key=v1,v2,...: one generated table per value (repeat: every combination)",
    )
    args = parser.parse_args()
    bench = load_bench_config(args.config)
    spec = bench.generators["tabsyn"].method.model_dump()
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        spec[key.removeprefix("method.")] = _parse(value)
    seeded = seed_splits(bench.data.model_dump(), bench.run.seed)
    splits, schema = seeded.splits, seeded.schema
    generator = build_generator(spec)
    fit = {"seed": args.seed, "validation": splits.validation}
    t0 = time.perf_counter()
    generator.fit_vae(splits.train, schema, **fit)
    print(f"VAE fit {time.perf_counter() - t0:.0f} s", flush=True)
    train_latents = generator.encode_rows(splits.train, seed=args.seed)
    tables = {
        "train": splits.train.reset_index(drop=True),
        "reconstructed": generator.decode_latents(train_latents, seed=args.seed),
    }
    for name, frame in tables.items():
        _report(name, frame, splits, schema, args.save)
    refits = _assignments("--refit", args.refit, _parse) if args.refit else [None]
    sweeps = [_assignments("--vary", text, float) for text in args.vary]
    for refit in refits:
        tag = [] if refit is None else [f"{refit[0]}={refit[1]}"]
        if refit is not None:
            generator.config = generator.config.model_copy(update=dict([refit]))
        t1 = time.perf_counter()
        generator.fit_diffusion(splits.train, **fit)
        steps = generator.training["diffusion"]["steps"]
        print(
            f"{' '.join(tag) or 'diffusion'}: fit {time.perf_counter() - t1:.0f} s, {steps} steps",
            flush=True,
        )
        for combination in itertools.product(*sweeps):
            generator.config = generator.config.model_copy(update=dict(combination))
            name = " ".join(["generated", *tag, *(f"{k}={v:g}" for k, v in combination)])
            for sample_seed in args.sample_seeds or [args.seed]:
                frame = generator.sample(len(splits.train), seed=sample_seed)
                label = name if args.sample_seeds is None else f"{name} s={sample_seed}"
                _report(label, frame, splits, schema, args.save)
        _latent_report(generator, train_latents, args.seed)


def _report(name: str, frame, splits, schema, save: Path | None) -> None:
    """MLE, shape and trend error of `frame` against the validation split, worst columns."""
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(save / f"{name.replace(' ', '_')}.parquet")
    m = evaluate_tabular(
        frame,
        train=splits.train,
        test=splits.validation,
        dcr_train=splits.dcr_train,
        dcr_holdout=splits.dcr_holdout,
        schema=schema,
        include=("quality", "mle"),
    )
    metric = m.get("mle_metric", "auc")
    shapes = {
        k.removeprefix("column_shape_score."): v
        for k, v in m.items()
        if k.startswith("column_shape_score.")
    }
    worst = sorted(shapes.items(), key=lambda kv: kv[1])[:5]
    print(
        f"{name:24s} mle {metric} {m.get(f'mle_{metric}_mean', float('nan')):.4f}"
        f"  shape {m['column_shape_error_pct']:.2f}%  trend {m['pair_trend_error_pct']:.2f}%"
        f"  worst columns: " + ", ".join(f"{k} {v:.3f}" for k, v in worst),
        flush=True,
    )


def _latent_report(generator, train_latents: np.ndarray, seed: int) -> None:
    """MMD^2 between diffusion samples and training latents (beside two halves of the
    training latents), and the per-dimension gaps in mean and std."""
    sampled = np.asarray(generator.sample_latents(len(train_latents), seed=seed + 1))
    order = np.random.default_rng(seed).permutation(len(train_latents))
    half = min(1000, len(order) // 2)
    real_a, real_b = train_latents[order[:half]], train_latents[order[half : 2 * half]]
    syn_z = sampled[:half]
    bandwidth = median_heuristic_bandwidth(syn_z, real_a)
    print(
        f"latent MMD^2 diffusion vs train {mmd2(syn_z, real_a, bandwidth=bandwidth):.5f}"
        f"  (one half of train vs the other: {mmd2(real_b, real_a, bandwidth=bandwidth):.5f})"
    )
    std = train_latents.std(0) + 1e-8
    mean_gap = np.abs(sampled.mean(0) - train_latents.mean(0)) / std
    std_ratio = sampled.std(0) / std
    print(
        f"per-dimension |mean gap|/std max {mean_gap.max():.3f} mean {mean_gap.mean():.3f};"
        f" std ratio min {std_ratio.min():.3f} max {std_ratio.max():.3f}"
        f" mean {std_ratio.mean():.3f}",
        flush=True,
    )


def _assignments(flag: str, text: str, parse) -> list[tuple[str, object]]:
    """ "key=v1,v2" -> [(key, parse(v1)), (key, parse(v2))] (method. prefix optional)."""
    key, _, values = text.partition("=")
    if not values:
        raise SystemExit(f"{flag} {text!r}: expected KEY=V1,V2,...")
    return [(key.removeprefix("method."), parse(v)) for v in values.split(",")]


def _parse(text: str):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
