"""`synthloom export RUN_ID --out PATH`: a finished run's kept rows as CSV, Parquet, JSONL or
a `datasets` folder (synthloom.export does the work; this module only parses and prints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthloom.errors import ConfigError
from synthloom.export import FORMATS, export_run, push_run_to_hub


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="write a finished run's kept rows as csv, parquet, jsonl or a datasets folder",
        description="Write the kept rows (the filter stage's output) of a finished run. The "
        "format comes from --format or the suffix of --out (.csv, .parquet, .jsonl; a path "
        "without a suffix is a datasets save_to_disk folder). The run id, config hash and "
        "metrics go into the Parquet metadata, the dataset info (hf) or a sidecar "
        "<out>.metadata.json (csv, jsonl). Text runs export text and label.",
    )
    parser.add_argument("run_id", help="a run id, as `synthloom run` printed it")
    parser.add_argument("--out", metavar="PATH", help="file or folder to write")
    parser.add_argument(
        "--hub",
        metavar="NAME",
        help="also push the rows to the Hugging Face Hub as dataset NAME (user/name, private; "
        "needs a reachable Hub and a login); with --out, the file is written first",
    )
    parser.add_argument("--format", choices=FORMATS, help="default: from the suffix of --out")
    parser.add_argument("--data-dir", help="where runs/ lives (default: data)")
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from synthloom.runs import default_data_dir

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.out is None and args.hub is None:
        raise ConfigError("export needs --out PATH, --hub NAME or both. Fix: add one.")
    if args.out is not None:
        result = export_run(args.run_id, args.out, args.format, data_dir)
        print(
            f"synthloom: exported {result.rows} rows ({', '.join(result.columns)}) of run "
            f"{args.run_id} as {result.format} to {result.path}"
        )
        if result.metadata_path is not None:
            print(f"  run metadata (config hash, metrics): {result.metadata_path}")
    if args.hub is not None:
        url = push_run_to_hub(args.run_id, args.hub, data_dir)
        print(f"synthloom: pushed the kept rows of run {args.run_id} to {url}")
    return 0
