"""TabSyn beside SMOTE and TVAE on one bench table, in ONE process: fit time, rows/s, quality.

    .venv/bin/python benchmarks/tabsyn_vs_peers.py pipeline_configs/bench_credit.yaml \
        [--seeds 0 1 2] [--rows 1000 train] [--set method.vae_epochs=50 ...] [--validation]

For every generator seed: ingest and split the bench config's data exactly as the pipeline
does (split seed = run.seed), fit each generator on the train split, sample each `--rows`
count (`train`: as many rows as the train split, the TabSyn paper's protocol) from the
same fit and evaluate them with the pipeline's metrics (column shapes, pair trends, MLE with the
XGBoost grid over mle seeds 0-2, DCR share, exact copies). Scores are on the TEST split
unless `--validation` (use that while choosing settings: never tune on the test split).
Prints one line per generator and seed, then mean +- std over seeds and TabSyn's ratio to
each peer (fit seconds, rows/s, MLE). Timings taken beside another job are not
measurements: run it alone, or read only the ratios, which share the contention.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthloom.bench.config import load_bench_config  # noqa: E402
from synthloom.methods import build_generator  # noqa: E402
from synthloom.metrics.tabular import evaluate_tabular  # noqa: E402
from synthloom.seed_splits import seed_splits  # noqa: E402

PEERS = ("smote", "tvae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help="row counts, or 'train' (default: generate.num_rows)",
    )
    parser.add_argument("--set", action="append", default=[], help="tabsyn method key=value")
    parser.add_argument("--validation", action="store_true", help="score on validation")
    parser.add_argument("--only", nargs="+", default=["tabsyn", *PEERS])
    args = parser.parse_args()
    bench = load_bench_config(args.config)
    data = bench.data.model_dump()
    row_counts = args.rows or [str(bench.generate.num_rows)]
    methods = {}
    for label in args.only:
        spec = bench.generators[label].method.model_dump()
        if label == "tabsyn":
            for assignment in args.set:
                key, _, value = assignment.partition("=")
                spec[key.removeprefix("method.")] = _parse(value)
        methods[label] = spec
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        seeded = seed_splits(data, bench.run.seed)
        splits, schema = seeded.splits, seeded.schema
        reference = splits.validation if args.validation else splits.test
        for label, spec in methods.items():
            generator = build_generator(spec)
            t0 = time.perf_counter()
            if label == "tabsyn":
                generator.fit(splits.train, schema, seed=seed, validation=splits.validation)
            else:
                generator.fit(splits.train, schema, seed=seed)
            fit_s = time.perf_counter() - t0
            for count in row_counts:
                rows = len(splits.train) if count == "train" else int(count)
                key = label if len(row_counts) == 1 else f"{label}@{count}"
                t0 = time.perf_counter()
                synthetic = generator.sample(rows, seed=seed)
                sample_s = time.perf_counter() - t0
                row = _score(
                    synthetic, splits, reference, schema, fit_s, rows / max(sample_s, 1e-9)
                )
                if getattr(generator, "last_label_agreement", None) is not None:
                    row["label_agreement"] = generator.last_label_agreement  # class-conditional
                results.setdefault(key, []).append(row)
                shown = " ".join(f"{k} {_fmt(v)}" for k, v in row.items())
                print(f"{key:8s} seed {seed} rows {rows}: {shown}", flush=True)
    split = "validation" if args.validation else "test"
    print(f"\nmean +- std over generator seeds {args.seeds} ({split} split, rows {row_counts})")
    means = {}
    for label, runs in results.items():
        stats = {}
        for key in runs[0]:
            values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]  # no NaN
            mean = statistics.fmean(values) if values else float("nan")
            std = statistics.pstdev(values) if len(values) > 1 else 0.0
            stats[key] = (mean, std)
        means[label] = stats
        print(f"{label:8s} " + "  ".join(f"{k} {m:.4g}+-{s:.2g}" for k, (m, s) in stats.items()))
    for label in (k for k in means if k.split("@")[0] == "tabsyn"):
        suffix = label[len("tabsyn") :]
        for peer in (p for p in means if p.split("@")[0] != "tabsyn" and p.endswith(suffix)):
            ratios = {
                k: means[label][k][0] / means[peer][k][0]
                for k in ("fit_s", "rows_per_s", "mle")
                if means[peer][k][0]
            }
            print(f"{label} / {peer}: " + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))


def _score(synthetic, splits, reference, schema, fit_s: float, rows_per_s: float) -> dict:
    """The figures of one sample: fit seconds, rows/s, MLE (and the real rows' MLE), shape
    and trend errors, DCR share, exact copies."""
    m = evaluate_tabular(
        synthetic,
        train=splits.train,
        test=reference,
        dcr_train=splits.dcr_train,
        dcr_holdout=splits.dcr_holdout,
        schema=schema,
        include=("quality", "mle", "privacy"),
    )
    metric = m.get("mle_metric", "auc")
    return {
        "fit_s": fit_s,
        "rows_per_s": rows_per_s,
        "mle": m.get(f"mle_{metric}_mean"),
        "real_mle": m.get(f"real_mle_{metric}_mean"),
        "shape": m["column_shape_error_pct"],
        "trend": m["pair_trend_error_pct"],
        "dcr": m.get("dcr_share"),
        "copies": m.get("exact_copy_rate"),
    }


def _parse(text: str):
    import yaml

    return yaml.safe_load(text)


def _fmt(value) -> str:
    return "nan" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
