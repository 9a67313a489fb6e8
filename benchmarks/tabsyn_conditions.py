"""How close are TabSyn's conditioned rows to the real rows holding the value: rejection vs
latent inpainting (`method.condition_sampling`), on a bench table.

    .venv/bin/python benchmarks/tabsyn_conditions.py pipeline_configs/bench_credit.yaml \
        --column Job --values partime freelance [--rows 1000] [--seed 0]

Fits the bench config's TabSyn once on the train split (validation split for early
stopping), then for each value asks for `--rows` rows with `generate.conditions`
{column: {value: rows}}, once by rejection and once by inpainting, and prints, beside the
training rows holding the value and the unconditional rows: the target's class shares (or
mean), the means of the first numeric columns, and the column-shape and pair-trend error
of each conditioned table against those real rows; plus seconds, rows drawn (rejection) and
the share of inpainted rows that decoded to the value before it was written in. Never reads
the test split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthloom.bench.config import load_bench_config  # noqa: E402
from synthloom.methods import build_generator  # noqa: E402
from synthloom.metrics.quality import column_quality  # noqa: E402
from synthloom.schema import ColumnKind  # noqa: E402
from synthloom.seed_splits import seed_splits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--column", required=True, help="a categorical column (not a class)")
    parser.add_argument("--values", nargs="+", required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench = load_bench_config(args.config)
    seeded = seed_splits(bench.data.model_dump(), bench.run.seed)
    splits, schema = seeded.splits, seeded.schema
    generator = build_generator(bench.generators["tabsyn"].method.model_dump())
    t0 = time.perf_counter()
    generator.fit(splits.train, schema, seed=args.seed, validation=splits.validation)
    print(f"fit {time.perf_counter() - t0:.0f} s", flush=True)
    numeric = [c.name for c in schema.columns if c.kind is ColumnKind.NUMERIC][:4]
    unconditional = generator.sample(3 * args.rows, seed=args.seed + 2)
    for value in args.values:
        real = splits.train[splits.train[args.column].astype(str) == value]
        share = len(real) / len(splits.train)
        print(f"\n{args.column} = {value}: {len(real)} training rows ({share:.1%})")
        tables = {"real": real}
        for mode in ("rejection", "inpaint"):
            generator.config = generator.config.model_copy(update={"condition_sampling": mode})
            t0 = time.perf_counter()
            rows = generator.sample(
                args.rows, seed=args.seed + 1, conditions={args.column: {value: args.rows}}
            )
            agreement = generator.last_condition_agreement
            print(
                f"  {mode}: {time.perf_counter() - t0:.1f} s, rows drawn "
                f"{generator.last_attempts}, inpainted {generator.last_inpainted}, decoded "
                f"to the value before writing {'-' if agreement is None else f'{agreement:.3f}'}"
            )
            tables[mode] = rows
        tables["unconditional"] = unconditional
        for name, frame in tables.items():
            print(f"  {name:14s} {_summary(frame, schema.target, numeric)}", end="")
            if name in ("rejection", "inpaint"):
                q = column_quality(
                    real.reset_index(drop=True), frame.reset_index(drop=True), schema
                )
                print(
                    f"  vs the real rows: shape {q['column_shape_error_pct']:.2f} %"
                    f" trend {q['pair_trend_error_pct']:.2f} %",
                    end="",
                )
            print(flush=True)


def _summary(frame: pd.DataFrame, target: str | None, numeric: list[str]) -> str:
    parts = []
    if target is not None:
        values = frame[target]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            parts.append(f"{target} mean {values.mean():.4g}")
        else:
            shares = values.astype(str).value_counts(normalize=True).sort_index()
            parts.append(" ".join(f"{target}={k} {v:.3f}" for k, v in shares.items()))
    parts += [f"{c} {frame[c].mean():.4g}" for c in numeric if c != target]
    return "  ".join(parts)


if __name__ == "__main__":
    main()
