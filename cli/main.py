"""`synthloom` command line: run, validate, resume and compare pipeline runs.

Exit codes: 0 success, 1 a stage failed (summary.json says which and why), 2 bad input
(config, data, arguments). User errors print one paragraph, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from cli.progress_bar import install_progress_bar
from flows.execute import execute_run
from synthloom.config import load_config, validate_config
from synthloom.errors import ConfigError, SynthloomError
from synthloom.runs import resolve_data_dir, run_id_for, stored_run, summary_stages


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set or [])
    return execute_run(
        config.model_dump(mode="json"),
        run_id_for(config, args.fresh, args.run_id),
        resolve_data_dir(args.data_dir, config),
        before_flow=install_progress_bar,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set or [])
    print(
        f"OK: {args.config} is a valid pipeline config (method {config.method.name}, "
        f"run id {run_id_for(config)})."
    )
    if args.show:
        import yaml

        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    run_dir, raw = stored_run(args.run_id, data_dir, "resume")
    raw.setdefault("run", {})["fail_at_stage"] = None  # an injected failure is not resumed
    config = validate_config(raw, str(run_dir / "config.json"))
    return execute_run(
        config.model_dump(mode="json"), args.run_id, data_dir, before_flow=install_progress_bar
    )


def cmd_rerun(args: argparse.Namespace) -> int:
    """Recompute STAGE and every later stage of a stored run; upstream stages are reused.

    The run keeps its id and directory; `--set` overrides are applied to the stored config,
    which is replaced by the new one (summary.json records the new config hash and which
    stages were rerun)."""
    from synthloom.config import apply_override
    from synthloom.methods.registry import stages_for

    data_dir = resolve_data_dir(args.data_dir)
    run_dir, raw = stored_run(args.run_id, data_dir, "rerun")
    origin = str(run_dir / "config.json")
    for assignment in args.set or []:
        apply_override(raw, assignment, origin)
    if not any(a.split("=", 1)[0].strip() == "run.fail_at_stage" for a in args.set or []):
        raw.setdefault("run", {})["fail_at_stage"] = None  # an injected failure is not rerun
    previous = summary_stages(run_dir) or stages_for(raw.get("method", {}).get("name", ""))
    if args.from_stage not in previous:
        raise ConfigError(
            f"Cannot rerun {args.run_id!r} from {args.from_stage!r}: it has no such stage. "
            f"Fix: --from one of {', '.join(previous)}."
        )
    raw.setdefault("run", {})["rerun_from"] = args.from_stage
    if args.set:
        origin += " (with --set " + " ".join(args.set) + ")"
    config = validate_config(raw, origin)
    return execute_run(
        config.model_dump(mode="json"), args.run_id, data_dir, before_flow=install_progress_bar
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Table of runs (best first with --sort), optionally a PNG bar chart logged to MLflow."""
    from flows.environment import configure_runtime
    from synthloom.metrics.headline import HEADLINE_METRICS
    from tracking.client import default_tracking_uri
    from tracking.compare import log_comparison, plot_comparison, runs_table, sort_runs

    data_dir = configure_runtime(resolve_data_dir(args.data_dir))
    uri = args.tracking_uri or default_tracking_uri(data_dir)
    wanted = list(args.metric or HEADLINE_METRICS)
    if args.sort and args.sort not in wanted:
        wanted.append(args.sort)
    table = runs_table(uri, args.experiment, wanted)
    if table.empty:
        where = f"experiment {args.experiment!r}" if args.experiment else "any experiment"
        print(f"No synthloom runs in {where} at {uri}. Run `synthloom run CONFIG` first.")
        return 0
    shown = [m for m in wanted if m in table.columns]
    if args.sort:
        if args.sort not in table.columns:
            raise ConfigError(
                f"compare --sort {args.sort}: no run here has that metric. Fix: sort by one "
                f"of {', '.join(shown) or 'the metrics that runs logged'} (any MLflow metric "
                "name of the runs works, e.g. --sort mle_auc_mean)."
            )
        table = sort_runs(table, args.sort)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False))
    if args.plot:
        metrics = [m for m in (args.metric or shown) if m in table.columns]
        if not metrics:
            raise ConfigError(
                "compare --plot: none of the chosen metrics was logged by these runs. Fix: "
                "pass --metric NAME for metrics shown in the table."
            )
        png = plot_comparison(table, metrics, args.plot)
        run_id = log_comparison(uri, args.experiment, png, table, data_dir)
        print(f"\nplot: {png} (logged to MLflow run {run_id}, artifact comparison/{png.name})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthloom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a pipeline config end to end",
        description="Run a pipeline. The same config continues the same run "
        "(finished stages are reused); --fresh starts a new one.",
    )
    run.add_argument("config", help="YAML pipeline config, e.g. pipeline_configs/quickstart.yaml")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set generate.num_rows=500 (repeatable)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run (the run id gets the time appended) instead of continuing",
    )
    run.add_argument("--run-id", help="use this run id instead of <name>-<config hash>")
    run.add_argument("--data-dir", help="where runs/, prefect/ and mlflow/ live (default: data)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a config without running it")
    val.add_argument("config")
    val.add_argument("--set", action="append", metavar="KEY=VALUE")
    val.add_argument("--show", action="store_true", help="print the config with defaults filled in")
    val.set_defaults(func=cmd_validate)

    res = sub.add_parser("resume", help="continue a run from its first unfinished stage")
    res.add_argument("run_id")
    res.add_argument("--data-dir")
    res.set_defaults(func=cmd_resume)

    rer = sub.add_parser(
        "rerun",
        help="recompute a run from a stage onward (reusing upstream stages)",
        description="Recompute STAGE and every later stage of RUN_ID, e.g. after changing "
        "filter settings with --set; upstream stages come from the cache. The run keeps its "
        "id and directory and records the new config.",
    )
    rer.add_argument("run_id")
    rer.add_argument("--from", dest="from_stage", required=True, metavar="STAGE")
    rer.add_argument("--set", action="append", metavar="KEY=VALUE")
    rer.add_argument("--data-dir")
    rer.set_defaults(func=cmd_rerun)

    cmp_ = sub.add_parser("compare", help="table of runs and key metrics from MLflow")
    cmp_.add_argument("--experiment", help="MLflow experiment (default: all)")
    cmp_.add_argument("--metric", action="append", help="metric column to show (repeatable)")
    cmp_.add_argument(
        "--sort",
        metavar="METRIC",
        help="best first: ascending for errors/costs, descending for scores, |x-0.5| for dcr_share",
    )
    cmp_.add_argument(
        "--plot",
        metavar="PNG",
        help="write a bar chart of the metrics per run and log it to MLflow",
    )
    cmp_.add_argument("--tracking-uri", help="MLflow URI (default: sqlite under the data dir)")
    cmp_.add_argument("--data-dir")
    cmp_.set_defaults(func=cmd_compare)

    from cli.bench import add_bench_parser
    from cli.scaling import add_scaling_parser
    from cli.serve import add_serve_command
    from cli.ui import add_ui_command

    add_bench_parser(sub)
    add_scaling_parser(sub)
    add_serve_command(sub)
    add_ui_command(sub)
    from cli.export import add_export_parser

    add_export_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SynthloomError as err:
        print(f"synthloom: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("synthloom: interrupted; rerun the same command to continue.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
