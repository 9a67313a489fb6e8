"""`synthloom scaling CONFIG`: run a scaling study (see synthloom/scaling/config.py).

Curves given as `config:` are pipeline configs: each is run (or continued: same config, same
run id, finished stages reused) first, with generate.num_rows raised to the largest size when
it is smaller. Then the study flow measures every curve, fits the rectified law and logs
to MLflow. The study id is `<name>-<config hash>`: rerunning continues it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from cli.progress_bar import install_progress_bar
from synthloom.errors import StageError


def add_scaling_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scaling",
        help="scaling-law curves (error vs synthetic-set size) of one or more runs",
        description="Train the downstream student on nested log-spaced subsets of each run's "
        "synthetic set (and of the real train split), fit L(D) = B/(D_l + D^beta) + E, plot "
        "and log the curves.",
    )
    parser.add_argument(
        "config", help="YAML study config, e.g. pipeline_configs/scaling_credit.yaml"
    )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study key")
    parser.add_argument("--fresh", action="store_true", help="start a new study id")
    parser.add_argument("--data-dir", help="where runs/, scaling/ and mlflow/ live (default: data)")
    parser.set_defaults(func=cmd_scaling)


def cmd_scaling(args: argparse.Namespace) -> int:
    from flows.environment import configure_runtime
    from flows.execute import execute_run
    from synthloom.config import load_config
    from synthloom.runs import resolve_data_dir, run_id_for
    from synthloom.scaling.config import load_scaling_config, study_hash

    study = load_scaling_config(args.config, args.set or [])
    data_dir = configure_runtime(
        Path(args.data_dir) if args.data_dir else resolve_data_dir(study.run.data_dir)
    )
    runs: dict[str, str] = {}
    largest = max(study.size_list())
    for curve in study.curves:
        if curve.run is not None:
            runs[curve.label] = curve.run
            continue
        overrides = [*curve.set, f"run.data_dir={data_dir}"]
        pipeline = load_config(curve.config, overrides)
        if pipeline.generate.num_rows < largest:
            pipeline = load_config(curve.config, [*overrides, f"generate.num_rows={largest}"])
        run_id = run_id_for(pipeline)
        print(f"synthloom scaling: curve {curve.label!r} needs run {run_id}", flush=True)
        code = execute_run(
            pipeline.model_dump(mode="json"), run_id, data_dir, before_flow=install_progress_bar
        )
        if code != 0:
            raise StageError(
                f"Scaling study: the pipeline run {run_id} of curve {curve.label!r} failed "
                f"(exit {code}). Fix: see {data_dir / 'runs' / run_id / 'summary.json'}, then "
                "run the study again (finished stages are reused)."
            )
        runs[curve.label] = run_id

    from tasks.scaling import run_inputs, same_test_split  # imports Prefect: after the runtime

    same_test_split({label: run_inputs(data_dir, rid, label) for label, rid in runs.items()})
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", study.run.name or "study").strip("-") or "study"
    study_id = f"{name}-{study_hash(study)[:10]}"
    if args.fresh:
        study_id += time.strftime("-%Y%m%dT%H%M%S")
    from flows.environment import quiet_user_error_tracebacks
    from flows.scaling import scaling_study  # imports Prefect: after configure_runtime

    quiet_user_error_tracebacks()
    study_dir = data_dir / "scaling" / study_id
    print(f"synthloom scaling: study {study_id}\n  artifacts: {study_dir}", flush=True)
    summary = scaling_study(
        config=study.model_dump(mode="json"), study_id=study_id, data_dir=str(data_dir), runs=runs
    )
    print_fits(Path(summary["fit_dir"]) / "fits.json")
    print(
        f"\nsynthloom scaling: study {study_id} {summary['status']}. Overlay: "
        f"{Path(summary['fit_dir']) / 'overlay.png'}"
    )
    return 0


def print_fits(path: Path) -> None:
    """One line per curve: the fitted parameters, R^2 and the plateau size."""
    fits = json.loads(path.read_text(encoding="utf-8"))
    print(
        f"\n{'curve':<14}{'metric':<12}{'B':>10}{'D_l':>10}{'beta':>8}{'E':>9}"
        f"{'R2(log)':>9}{'plateau D':>12}  error by size (mean over seeds)"
    )
    for label, fit in fits.items():
        if not fit["fitted"]:
            print(f"{label:<14}{fit['metric']:<12}  no fit: {fit['reason']}")
            continue
        points = " ".join(f"{int(p['size'])}:{p['mean']:.3f}" for p in fit["points"])
        plateau = fit["plateau_size"]
        shown = "inf" if plateau is None or plateau == float("inf") else f"{plateau:.3g}"
        print(
            f"{label:<14}{fit['metric']:<12}{fit['B']:>10.4g}{fit['D_l']:>10.4g}"
            f"{fit['beta']:>8.3f}{fit['E']:>9.4f}{fit['r2_log']:>9.3f}{shown:>12}  {points}"
        )
