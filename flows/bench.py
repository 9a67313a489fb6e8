"""The bench flow: every enabled generator of a bench config on the same data, split, seed
and row budget, the real-data reference beside them, and one comparison table.

Composition only:
1. `ingest` once into `bench/<bench_id>/ingest` (the splits the reference is measured on);
2. `reference` (cached stage): the real-data row (synthloom/bench/reference.py);
3. per generator, `tabular_pipeline` as a subflow with its own run id
   (`<bench name>-<label>-<config hash>`, so a rerun reuses its finished stages); its
   ingest must produce byte-identical splits (checked by hash: same data config and seed)
   or the row says so; a generator whose package is absent is a "skipped" row naming
   `pip install ".[peers]"`, a failing one a "failed" row with the reason; the bench goes on;
4. the table (synthloom/bench/table.py) as `bench/<bench_id>/comparison.md` and
   `comparison.parquet`, also logged to the bench's MLflow parent run, under which every
   generator's pipeline run and the reference run are nested (tracking/bench.py).
Peak memory per generator: see tasks/bench.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.tabular import tabular_pipeline
from synthloom.artifacts import read_manifest
from synthloom.bench.config import BenchConfig, GeneratorEntry, pipeline_config_for
from synthloom.bench.table import (
    comparison_frame,
    generator_row,
    reference_row,
    unavailable_row,
)
from synthloom.methods.peers import missing_peer
from synthloom.runs import run_id_for
from synthloom.splits import SPLIT_NAMES
from tasks.bench import (
    generator_peak_rss,
    peak_rss_since_reset_mb,
    reference_metrics,
    reset_peak_rss,
    write_comparison,
)
from tasks.ingest import ingest_seed, source_fingerprint
from tasks.recorder import load_summary
from tasks.runtime import file_refs
from tracking.bench import adopt_run, finish_bench_run, log_reference_run, start_bench_run
from tracking.client import default_tracking_uri

TRACKED_METRICS = (
    "column_shape_error_pct",
    "pair_trend_error_pct",
    "mle_mean",
    "mle_std",
    "mle_best",
    "dcr_share",
    "exact_copy_rate",
    "c2st",
    "valid_row_rate",
    "fit_s",
    "sample_s",
    "rows_per_s",
    "peak_rss_mb",
)


@flow(name="bench", flow_run_name="{bench_id}", validate_parameters=False)
def bench_flow(
    bench: dict[str, Any], bench_id: str, data_dir: str, run_suffix: str = ""
) -> dict[str, Any]:
    """Run the bench; returns {bench_id, comparison (Markdown path), parquet, mlflow_run_id,
    rows (the table as records)}. `run_suffix` is appended to every generator's run id."""
    cfg = BenchConfig.model_validate(bench)
    bench_dir = Path(data_dir) / "bench" / bench_id
    results = bench_dir / ".prefect-results"
    tracking = _Tracking(cfg, bench, bench_id, data_dir)

    seed = ingest_seed.with_options(result_storage=results)(
        data=bench["data"],
        seed=cfg.run.seed,
        source_id=source_fingerprint(cfg.data.source),
        stage_dir=str(bench_dir / "ingest"),
    )
    rows: list[dict[str, Any]] = []
    if cfg.reference:
        manifest = reference_metrics.with_options(result_storage=results)(
            evaluate=bench["evaluate"],
            seed_files=file_refs(seed),
            stage_dir=str(bench_dir / "reference"),
        )
        metrics_path = Path(manifest["files"]["metrics"]["path"])
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        rows.append(reference_row(metrics, tracking.reference(metrics, [metrics_path])))
    for label, entry in cfg.enabled().items():
        rows.append(_run_generator(cfg, label, entry, seed, data_dir, run_suffix, tracking))

    frame = comparison_frame(rows)
    files = write_comparison(frame, bench_dir)
    print(f"\nbench {bench_id}:\n\n" + files["markdown"].read_text(encoding="utf-8"), flush=True)
    failed = [r["generator"] for r in rows if r["status"] == "failed"]
    tracking.finish(frame, [files["markdown"], files["parquet"]], failed)
    return {
        "bench_id": bench_id,
        "comparison": str(files["markdown"]),
        "parquet": str(files["parquet"]),
        "mlflow_run_id": tracking.parent,
        "rows": frame.to_dict("records"),
    }


def _run_generator(
    cfg: BenchConfig,
    label: str,
    entry: GeneratorEntry,
    seed: dict[str, Any],
    data_dir: str,
    run_suffix: str,
    tracking: _Tracking,
) -> dict[str, Any]:
    """One generator's pipeline as a subflow; never raises (a failure becomes its row)."""
    logger = get_run_logger()
    method = entry.method.name
    reason = missing_peer(method)
    if reason is not None:
        logger.warning("bench: skipping %s: %s", label, reason)
        return unavailable_row(label, method, "skipped", reason)
    pipeline = pipeline_config_for(cfg, label)
    run_id = run_id_for(pipeline) + run_suffix
    run_dir = Path(data_dir) / "runs" / run_id
    logger.info("bench: generator %s (method %s) as run %s", label, method, run_id)
    can_measure = reset_peak_rss()
    note = None
    try:
        summary = tabular_pipeline(
            config=pipeline.model_dump(mode="json"), run_id=run_id, data_dir=data_dir
        )
    except Exception as err:  # noqa: BLE001 - one failing generator must not stop the bench
        summary = load_summary(run_dir) or {"run_id": run_id, "status": "failed", "stages": []}
        summary["status"] = "failed"
        note = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        logger.warning("bench: generator %s failed: %s", label, note)
    peak = generator_peak_rss(
        Path(data_dir) / "bench" / "costs",
        summary,
        peak_rss_since_reset_mb() if can_measure else None,
    )
    ingest = read_manifest(run_dir / "ingest")
    if ingest is not None and any(
        ingest["files"][name]["sha256"] != seed["files"][name]["sha256"] for name in SPLIT_NAMES
    ):
        note = "splits differ from the bench's ingest: compare with care. " + (note or "")
    tracking.adopt(summary.get("mlflow_run_id"), label)
    return generator_row(label, method, summary, peak, note)


class _Tracking:
    """The bench's MLflow parent run; every call is a no-op when tracking is off, and a
    tracking failure is logged as a warning, never fails the bench."""

    def __init__(self, cfg: BenchConfig, bench: dict[str, Any], bench_id: str, data_dir: str):
        self.enabled = cfg.tracking.enabled
        self.uri = cfg.tracking.uri or default_tracking_uri(data_dir)
        self.bench_id = bench_id
        self.parent: str | None = None
        if self.enabled:
            self.parent = self._safely(
                start_bench_run, self.uri, cfg.tracking.experiment, data_dir, bench_id, bench
            )

    def _safely(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - tracking must not fail the bench
            get_run_logger().warning(
                "bench: MLflow %s failed (%s: %s)", fn.__name__, type(exc).__name__, exc
            )
            return None

    def reference(self, metrics: dict[str, Any], files: list[Path]) -> str | None:
        if self.parent is None:
            return None
        return self._safely(log_reference_run, self.uri, self.parent, self.bench_id, metrics, files)

    def adopt(self, child: str | None, label: str) -> None:
        if self.parent is not None and child:
            self._safely(adopt_run, self.uri, self.parent, child, self.bench_id, label)

    def finish(self, frame: Any, files: list[Path], failed: list[str]) -> None:
        if self.parent is None:
            return
        by_generator = {
            row["generator"].split(" ")[0]: {k: row[k] for k in TRACKED_METRICS if k in row}
            for row in frame.to_dict("records")
            if row["status"] == "completed"
        }
        status = "failed" if failed else "completed"
        self._safely(finish_bench_run, self.uri, self.parent, by_generator, files, status)
