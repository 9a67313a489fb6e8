"""`synthloom bench CONFIG`: every generator of a bench config on identical splits, one table.

The bench id is `<name>-<bench config hash>`; each generator runs as an ordinary pipeline
run (`<name>-<label>-<its config hash>`), so rerunning a bench, or a bench that shares a
generator config with an earlier one, reuses finished stages. `--only LABEL` runs a subset
(disabled generators included); `--fresh` gives the bench and every generator new run ids.
Exit codes: 0 the table was written (skipped peers included), 1 a generator failed (its row
says why), 2 bad input.
"""

from __future__ import annotations

import argparse
import re
import time

from synthloom.errors import ConfigError


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="run several generators on identical splits and write one comparison table",
        description="Run every enabled generator of a bench config (same data, split, seed "
        "and row budget) plus the real-data reference; write comparison.md / .parquet and "
        "log everything to one MLflow parent run.",
    )
    parser.add_argument("config", help="YAML bench config, e.g. pipeline_configs/bench_credit.yaml")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a key, e.g. --set generate.num_rows=500 or "
        "--set generators.ctgan.method.epochs=5 (repeatable)",
    )
    parser.add_argument(
        "--only", action="append", metavar="LABEL", help="run only these generators (repeatable)"
    )
    parser.add_argument("--fresh", action="store_true", help="new run ids instead of continuing")
    parser.add_argument("--data-dir", help="where runs/, bench/ and mlflow/ live (default: data)")
    parser.set_defaults(func=cmd_bench)


def bench_id_for(name: str, digest: str, suffix: str = "") -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "bench"
    return f"{safe}-{digest[:10]}{suffix}"


def cmd_bench(args: argparse.Namespace) -> int:
    from flows.environment import configure_runtime, quiet_user_error_tracebacks
    from synthloom.bench.config import bench_hash, load_bench_config
    from synthloom.runs import resolve_data_dir

    config = load_bench_config(args.config, args.set or [])
    if args.only:
        unknown = sorted(set(args.only) - set(config.generators))
        if unknown:
            raise ConfigError(
                f"--only {', '.join(unknown)}: no such generator in {args.config}. "
                f"Fix: use one of {', '.join(config.generators)}."
            )
        for label, entry in config.generators.items():
            entry.enabled = label in args.only
    data_dir = configure_runtime(resolve_data_dir(args.data_dir or config.run.data_dir))
    suffix = time.strftime("-%Y%m%dT%H%M%S") if args.fresh else ""
    bench_id = bench_id_for(config.name or "bench", bench_hash(config), suffix)
    print(f"synthloom: bench {bench_id}\n  output: {data_dir / 'bench' / bench_id}", flush=True)

    from flows.bench import bench_flow  # imports Prefect: after configure_runtime

    quiet_user_error_tracebacks()
    from flows.signals import exit_after_signal, stop_on_signals

    out_dir = data_dir / "bench" / bench_id
    with stop_on_signals(bench_id, out_dir):  # SIGTERM: each run records `cancelled`, exit now
        try:
            result = bench_flow(
                bench=config.model_dump(mode="json"),
                bench_id=bench_id,
                data_dir=str(data_dir),
                run_suffix=suffix,
            )
        except BaseException as exc:
            exit_after_signal(exc, bench_id, out_dir)
            raise
        exit_after_signal(None, bench_id, out_dir)
    failed = [r["generator"] for r in result["rows"] if r["status"] == "failed"]
    print(f"synthloom: table in {result['comparison']} and {result['parquet']}")
    if result["mlflow_run_id"]:
        print(f"MLflow bench run: {result['mlflow_run_id']}")
    if failed:
        print(f"synthloom: bench {bench_id}: generators failed: {', '.join(failed)}")
        return 1
    return 0
