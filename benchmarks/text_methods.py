"""Every registered labelled-text generator on the same seeds and sample budget, side by side.

    .venv/bin/python benchmarks/text_methods.py [--num-samples 60] [--methods fewgen corrsynth]
        [--config pipeline_configs/text_fewgen.yaml] [--threads 2] [--out results.json]
        [--samples-dir DIR [--reuse]] [--filter-set label_consistency=true ...]
        [--decoder-dtypes float32 bfloat16] [--method-configs text_trec_]

Data, seeds, filter rules and student come from `--config` (a text pipeline config); each
method runs with its own `pipeline_configs/<PREFIX><method>.yaml` method section (PREFIX:
`--method-configs`, default `text_`) when that file exists, else with its config class's
defaults (plus the base config's `task`). A method whose module does not exist yet is
skipped, and the table says so. For each method: generation wall time, samples/s, forward passes (model calls) and, for CorrSynth and CFG, sequence steps
(rows fed to those calls: the model evaluations), what generation dropped, what the filter
removed (prompt echoes and seed near-copies before filtering), then on the filtered set diversity
(distinct-2, self-BLEU, Vendi), fidelity (MMD^2 to real embeddings) and the fast student's
accuracy on the real test split, beside the seeds-only and real-train students. After the
filter it reports the share of kept samples that still echo the prompt or copy a seed by the
filter's own rules (0 unless those rules are switched off) and, as an independent check, the
share whose MiniLM cosine to the nearest seed is >= 0.9 (`near%`, stricter than the filter's default 0.95).

`--samples-dir` writes each method's generated samples and generation stats there;
with `--reuse` a method whose files exist is not generated again, so filter variants
(`--filter-set`, YAML values, applied over the config's `text_filter`) compare on the same
samples. Timings on a shared machine are pessimistic.

`--decoder-dtypes` runs every method once per weight dtype of its causal LM (a method's
`decoder_dtype` key; default: `auto`, what the machine measures fastest) on the same seeds,
and prints each method's samples/s in every dtype as a ratio to the first one's, so the
speedup is measured in one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from synthloom.config import load_config, load_raw_config  # noqa: E402
from synthloom.filters.text import (  # noqa: E402
    leaks_prompt,
    nearest_seed_cosine,
    word_ngrams,
    word_tokens,
)
from synthloom.ingest.sources import load_source  # noqa: E402
from synthloom.methods.registry import METHOD_CONFIGS, TEXT_METHODS  # noqa: E402
from synthloom.methods.text import text_generator_class  # noqa: E402
from synthloom.methods.text.runner import (  # noqa: E402
    filter_samples,
    generator_model,
    run_generator,
    text_model_box,
)
from synthloom.metrics.text_evaluation import evaluate_text_sets  # noqa: E402
from synthloom.models.encoder import encode_texts, load_encoder  # noqa: E402
from synthloom.text_splits import text_splits_for  # noqa: E402


def method_config(name: str, base: dict, prefix: str = "text_") -> dict:
    """The method section of pipeline_configs/<prefix><name>.yaml, else the defaults."""
    path = REPO / "pipeline_configs" / f"{prefix}{name}.yaml"
    if path.is_file():
        return dict(load_raw_config(path)["method"])
    fields = METHOD_CONFIGS[name].model_fields
    extra = {k: base["method"][k] for k in ("task", "model") if k in fields and k in base["method"]}
    return METHOD_CONFIGS[name](name=name, **extra).model_dump()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "pipeline_configs" / "text_fewgen.yaml"))
    parser.add_argument("--num-samples", type=int, default=60)
    parser.add_argument("--methods", nargs="*", default=list(TEXT_METHODS))
    parser.add_argument(
        "--method-configs",
        default="text_",
        metavar="PREFIX",
        help="each method's section from pipeline_configs/<PREFIX><method>.yaml (TREC: text_trec_)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-cache", default=str(REPO / "data" / "models"))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--samples-dir", default=None, help="save generated samples here")
    parser.add_argument("--reuse", action="store_true", help="reuse samples in --samples-dir")
    parser.add_argument("--filter-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--decoder-dtypes",
        nargs="+",
        default=["auto"],
        choices=["auto", "float32", "bfloat16"],
        help="run each method with its causal LM in each of these dtypes",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config)
    base = cfg.model_dump(mode="json")
    data = base["data"]
    raw = load_source(data["source"], data.get("format"))
    splits = text_splits_for(raw, data, seed=args.seed)
    real = {"seeds": splits.seeds, "test": splits.test, "real_train": splits.real_train}
    print(
        f"data {data['source']}: {splits.seeds['label'].nunique()} labels, seeds "
        f"{len(splits.seeds)}, test {len(splits.test)}, real train {len(splits.real_train)}; "
        f"budget {args.num_samples} samples per method; torch threads {args.threads}"
    )
    rules = dict(base["text_filter"])
    for assignment in args.filter_set:
        key, _, value = assignment.partition("=")
        rules[key] = yaml.safe_load(value)
    samples_dir = Path(args.samples_dir) if args.samples_dir else None
    encoder = load_encoder(base["evaluate"]["encoder"], device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return encode_texts(*encoder, texts)

    # one model box per dtype: each causal LM loads once and serves every method
    boxes = {
        d: text_model_box("cpu", args.model_cache, base["evaluate"]["encoder"], d)
        for d in args.decoder_dtypes
    }
    results: dict[str, dict] = {}
    for dtype, name in [(d, n) for d in args.decoder_dtypes for n in args.methods]:
        try:
            text_generator_class(name)
        except (ImportError, AttributeError) as exc:
            print(f"{name}: skipped, its generator is not importable yet ({exc})")
            continue
        method = {**method_config(name, base, args.method_configs), "decoder_dtype": dtype}
        models = boxes[dtype]
        key = name if len(args.decoder_dtypes) == 1 else f"{name}@{dtype}"
        frame, stats, wall = generated(
            key, method, splits.seeds, models, args, samples_dir, data["label_descriptions"]
        )
        task = method.get("task")
        start = time.perf_counter()
        filtered = filter_samples(  # with the config's label-margin rule, when it is on
            frame,
            splits.seeds,
            rules,
            models=models,
            scorer_model=generator_model(method),
            task=task,
            label_descriptions=data["label_descriptions"],
            embed=embed,
        )
        filter_s = time.perf_counter() - start
        metrics, emb = evaluate_text_sets(
            filtered.kept, real, encoder, base["evaluate"], seed=args.seed, task_description=task
        )
        after = after_filter_rates(filtered.kept, splits.seeds, rules, task, emb)
        n = max(len(frame), 1)
        results[key] = {
            "decoder_dtypes": stats.get("decoder_dtypes", {}),
            "tokens_per_s": stats["metrics"]["generated_tokens"] / wall,
            "generated": len(frame),
            "kept": len(filtered.kept),
            "wall_s": wall,
            "filter_s": filter_s,
            "samples_per_s": len(frame) / wall,
            "forward_passes": stats["metrics"]["forward_passes"],
            # rows fed to decoding calls (CorrSynth / CFG report it): the model evaluations
            "sequence_steps": stats["metrics"].get("sequence_steps", math.nan),
            "dropped": stats["counts"],
            "removed": filtered.counts,
            "echo_rate_before": filtered.counts["prompt_leakage"] / n,
            "seed_copy_rate_before": filtered.counts["seed_copy"] / n,
            **after,
            "metrics": metrics,
        }
        print(f"{key}: done in {wall:.1f} s; dropped {stats['counts']}; removed {filtered.counts}")
    print_table(results)
    if len(args.decoder_dtypes) > 1:
        print_dtype_speedups(results, args.methods, args.decoder_dtypes)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=float))


def generated(name, method, seeds, models, args, samples_dir, descriptions=None):
    """(samples frame, generation stats, wall seconds): from `samples_dir` with --reuse when
    saved there before, else generated now (and saved when `samples_dir` is given)."""
    frame_path = samples_dir / f"{name}.parquet" if samples_dir else None
    stats_path = samples_dir / f"{name}.json" if samples_dir else None
    if args.reuse and frame_path is not None and frame_path.is_file() and stats_path.is_file():
        saved = json.loads(stats_path.read_text())
        print(f"{name}: reusing {frame_path} (generated in {saved['wall_s']:.1f} s)")
        return pd.read_parquet(frame_path), saved["stats"], saved["wall_s"]
    start = time.perf_counter()
    frame, stats = run_generator(
        method, seeds, args.num_samples, models, args.seed, label_descriptions=descriptions
    )
    wall = time.perf_counter() - start
    if samples_dir is not None:
        samples_dir.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(frame_path)
        stats_path.write_text(json.dumps({"wall_s": wall, "stats": stats}, default=float))
    return frame, stats, wall


def after_filter_rates(kept, seeds, rules, task, emb) -> dict[str, float]:
    """Shares of the KEPT samples that echo the prompt, share a word `seed_ngram`-gram with a
    seed (the filter's rules), or have MiniLM cosine >= 0.9 to their nearest seed."""
    n = max(len(kept), 1)
    texts = kept["text"].astype(str).tolist()
    size = rules.get("seed_ngram") or 8
    grams = set().union(*(word_ngrams(word_tokens(t), size) for t in seeds["text"].astype(str)))
    copies = sum(bool(word_ngrams(word_tokens(t), size) & grams) for t in texts)
    near = int((nearest_seed_cosine(emb["synthetic"], emb["seeds"]) >= 0.9).sum()) if texts else 0
    return {
        "echo_rate_after": sum(leaks_prompt(t, task) for t in texts) / n,
        "seed_copy_rate_after": copies / n,
        "seed_cosine_09_after": near / n,
    }


def print_dtype_speedups(results: dict[str, dict], methods: list[str], dtypes: list[str]) -> None:
    """Per method: samples/s and generated tokens/s in each dtype, and the ratio of each
    dtype's samples/s to the first dtype's (same seeds, same run)."""
    print(f"\nspeed by decoder dtype (ratio = samples/s over {dtypes[0]}'s):")
    for name in methods:
        runs = [(d, results.get(f"{name}@{d}")) for d in dtypes]
        if any(r is None for _, r in runs):
            continue
        first = runs[0][1]["samples_per_s"]
        print(
            f"  {name:10s} "
            + "  ".join(
                f"{d} ({'/'.join(sorted(set(r['decoder_dtypes'].values())))}): "
                f"{r['samples_per_s']:.2f} samples/s, {r['tokens_per_s']:.0f} tok/s, "
                f"x{r['samples_per_s'] / first:.2f}"
                for d, r in runs
            )
        )


def print_table(results: dict[str, dict]) -> None:
    columns = [
        ("gen", lambda r: r["generated"], "{:d}"),
        ("kept", lambda r: r["kept"], "{:d}"),
        ("wall_s", lambda r: r["wall_s"], "{:.1f}"),
        ("samp/s", lambda r: r["samples_per_s"], "{:.2f}"),
        ("filter_s", lambda r: r["filter_s"], "{:.1f}"),
        ("fwd", lambda r: r["forward_passes"], "{:.0f}"),
        ("seq_steps", lambda r: r["sequence_steps"], "{:.0f}"),
        ("echo%", lambda r: 100 * r["echo_rate_before"], "{:.1f}"),
        ("copy%", lambda r: 100 * r["seed_copy_rate_before"], "{:.1f}"),
        ("echo%_after", lambda r: 100 * r["echo_rate_after"], "{:.1f}"),
        ("copy%_after", lambda r: 100 * r["seed_copy_rate_after"], "{:.1f}"),
        ("near%_after", lambda r: 100 * r["seed_cosine_09_after"], "{:.1f}"),
        ("dist2", lambda r: r["metrics"].get("distinct_2", math.nan), "{:.3f}"),
        ("sbleu", lambda r: r["metrics"].get("self_bleu", math.nan), "{:.3f}"),
        ("vendi", lambda r: r["metrics"].get("vendi_score", math.nan), "{:.1f}"),
        ("mmd2", lambda r: r["metrics"].get("mmd2_to_real", math.nan), "{:.4f}"),
        ("acc_syn", lambda r: r["metrics"]["student_synthetic_accuracy"], "{:.3f}"),
        ("acc_seed+syn", lambda r: r["metrics"]["student_seeds_plus_synthetic_accuracy"], "{:.3f}"),
        ("acc_seeds", lambda r: r["metrics"]["student_seeds_accuracy"], "{:.3f}"),
        ("acc_real", lambda r: r["metrics"]["student_real_train_accuracy"], "{:.3f}"),
    ]
    print()
    print(f"{'method':<10}" + "".join(f"{c:>13}" for c, _, _ in columns))
    for name, r in results.items():
        cells = []
        for _, get, fmt in columns:
            value = get(r)
            cells.append(fmt.format(value) if value == value else "nan")
        print(f"{name:<10}" + "".join(f"{c:>13}" for c in cells))
    if results:
        any_r = next(iter(results.values()))["metrics"]
        print(
            f"\nreal texts: distinct_2 {any_r.get('real_distinct_2', math.nan):.3f}, "
            f"self-BLEU {any_r.get('real_self_bleu', math.nan):.3f}"
        )


if __name__ == "__main__":
    main()
