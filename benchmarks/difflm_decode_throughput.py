"""Benchmark: DiffLM record decoding on SmolLM2-135M as a share of the CPU's matmul peak.

For each dtype (float32, bfloat16: the model itself is cast) and batch size, decodes random
soft-prompt injections (k=16 vectors scaled like token embeddings) with
`synthloom.methods.difflm.decode.decode_records` and, as the reference, with
`model.generate(inputs_embeds=[prefix, BOS])` under the same sampling settings
(temperature 0.5, top-p 1, no top-k, stop at eos). Prints tokens/s, forward passes, the
achieved FLOP/s = 2 * params * generated tokens / seconds, the peak FLOP/s of a large matmul
(best of a few 2048x2048 @ 2048x2048 products in the same dtype, measured in this run) and
their ratio (project target: >= 0.25). Prefill FLOPs are not counted, so the ratio is a
lower bound. Random injections rarely produce eos early, so most rows run the full budget.

A last section measures dropping finished rows ("compaction") on a workload where rows do
end early: the same injections, stopping at the first newline (a proxy for variable-length
records), with compaction on and off.

    .venv/bin/python benchmarks/difflm_decode_throughput.py [--batch-sizes 16 64]
        [--max-new-tokens 96] [--dtypes float32 bfloat16] [--threads 2] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthloom.methods.difflm.decode import DecodeResult, decode_records  # noqa: E402
from synthloom.models.causal_lm import load_causal_lm  # noqa: E402
from synthloom.models.injection import Injection  # noqa: E402

PREFIX_LENGTH = 16
TEMPERATURE = 0.5
TARGET_RATIO = 0.25


def matmul_peak_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n @ n x n product in `dtype` over `repeats` runs (after warm-up)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def random_soft_prompt(model: torch.nn.Module, batch: int, seed: int) -> Injection:
    """(batch, 16, H) Gaussian vectors with the token embeddings' standard deviation."""
    weight = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, PREFIX_LENGTH, weight.shape[1], generator=g)
    return Injection(prefix_embeds=(noise * weight.float().std()).to(weight.dtype))


def run_decode(model, tokenizer, injection: Injection, max_new_tokens: int, **kw) -> DecodeResult:
    g = torch.Generator().manual_seed(0)
    return decode_records(
        model,
        tokenizer,
        injection,
        max_new_tokens=max_new_tokens,
        temperature=TEMPERATURE,
        generator=g,
        **kw,
    )


def run_generate(
    model, tokenizer, injection: Injection, max_new_tokens: int
) -> tuple[int, int, float]:
    """`model.generate` on [prefix, BOS] embeddings: (generated tokens, forward passes, seconds).

    Generated tokens count each row up to and including its first eos, as decode_records does.
    """
    torch.manual_seed(0)
    embed = model.get_input_embeddings()
    batch = injection.batch_size
    start = time.perf_counter()
    bos = embed(torch.full((batch, 1), tokenizer.bos_token_id))
    inputs = torch.cat([injection.prefix_embeds, bos], dim=1)  # (B, k+1, H)
    with torch.inference_mode():
        out = model.generate(
            inputs_embeds=inputs,
            attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=TEMPERATURE,
            top_p=1.0,
            top_k=0,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )  # (B, T): new tokens only (inputs_embeds without input_ids)
    seconds = time.perf_counter() - start
    is_eos = out == tokenizer.eos_token_id
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, out.shape[1])
    return int(first_eos.sum()), out.shape[1], seconds


def report(label: str, tokens: int, passes: int, seconds: float, params: int, peak: float) -> float:
    flops = 2 * params * tokens / seconds
    ratio = flops / peak
    print(
        f"  {label:<28} {tokens:>6} tok  {passes:>4} passes  {seconds:7.2f} s  "
        f"{tokens / seconds:7.1f} tok/s  {flops / 1e9:6.1f} GFLOP/s  {ratio:5.3f} of peak"
    )
    return ratio


def compaction_section(model, tokenizer, batch: int, args, params: int, peak: float) -> None:
    """Same injections, rows ending at their first newline: compaction on vs off.

    Sampling draws its uniforms per (row, step), so both runs write the same texts and the
    time difference is what dropping finished rows saves.
    """
    inj = random_soft_prompt(model, batch, seed=batch)
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("Ċ")]  # "Ċ" = "\n"
    print(f" batch {batch}, rows stop at their first newline (variable lengths)")
    texts = []
    for label, compact in (("compaction on (>= 4 done)", 4), ("compaction off", batch + 1)):
        res = run_decode(
            model,
            tokenizer,
            inj,
            args.max_new_tokens,
            stop_token_ids=stops,
            min_batch_to_compact=compact,
        )
        report(label, res.generated_tokens, res.forward_passes, res.seconds, params, peak)
        print(f"    row-forwards {res.row_forwards}, rows finished {int(res.finished.sum())}")
        texts.append(res.texts)
    print(f"  same texts with and without compaction: {texts[0] == texts[1]}")


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. "0.12 0.30 0.41" ("n/a" where unsupported)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--skip-compaction", action="store_true")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(
            os.environ.get("SYNTHLOOM_MODEL_CACHE")
            or Path(os.environ.get("SYNTHLOOM_DATA_DIR", REPO / "data")) / "models"
        ),
        help="converted model cache (default: $SYNTHLOOM_MODEL_CACHE or data/models)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base, tokenizer = load_causal_lm(device="cpu", dtype=torch.float32, cache_dir=args.cache_dir)
    params = sum(p.numel() for p in base.parameters())
    print(
        f"SmolLM2-135M ({params / 1e6:.1f} M params), {torch.get_num_threads()} threads, "
        f"k={PREFIX_LENGTH}, max_new_tokens={args.max_new_tokens}, temperature={TEMPERATURE}"
    )
    print(f"load average at the start: {load_average()} (other processes distort every figure)")
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
        peak = matmul_peak_flops(dtype)
        print(f"\n{dtype_name}: matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3, best of 5)")
        warm_up = random_soft_prompt(model, 4, seed=99)
        run_decode(model, tokenizer, warm_up, 4)
        if not args.skip_generate:
            run_generate(model, tokenizer, warm_up, 4)
        for batch in args.batch_sizes:
            inj = random_soft_prompt(model, batch, seed=batch)
            print(f" batch {batch}")
            res = run_decode(model, tokenizer, inj, args.max_new_tokens)
            ours = report(
                "decode_records",
                res.generated_tokens,
                res.forward_passes,
                res.seconds,
                params,
                peak,
            )
            if not args.skip_generate:
                tokens, passes, seconds = run_generate(model, tokenizer, inj, args.max_new_tokens)
                ref = report("model.generate", tokens, passes, seconds, params, peak)
                print(f"  decode_records / generate: {ours / ref:.2f}x")
            target = "meets" if ours >= TARGET_RATIO else "misses"
            print(f"  {target} the {TARGET_RATIO:.2f} target")
        if not args.skip_compaction:
            compaction_section(model, tokenizer, max(args.batch_sizes), args, params, peak)
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
