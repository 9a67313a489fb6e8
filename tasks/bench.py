"""Tasks and measurements of the bench flow: the real-data reference stage, the comparison
files, and each generator's peak memory.

Peak memory: every generator runs in the same process (Prefect subflows), so the process
lifetime peak (`ru_maxrss`) would only ever grow. Linux lets a process reset its own
high-water mark (`echo 5 > /proc/self/clear_refs` resets VmHWM), so the bench resets it
before a generator's pipeline and reads VmHWM after: the peak resident memory of the whole
process while THAT pipeline ran (its fit, generate, filter and evaluate stages, on top of
the ~1 GB the process holds with torch, Prefect and MLflow imported). Where the reset is not
available the peak is reported as missing, never as a wrong number. When the fitting and
generating stages were all reused from the cache, the peak measured when they ran is read
back from `bench/costs/<run_id>.json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from synthloom.artifacts import atomic_write_json, read_table, write_table
from synthloom.bench.reference import real_reference_metrics
from synthloom.bench.table import FIT_STAGES, to_markdown
from synthloom.splits import SPLIT_NAMES
from tasks.runtime import StageOutput, StageRun, stage

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) / 1024.0 if found else None


def reset_peak_rss() -> bool:
    """Reset this process's resident-memory high-water mark; False where Linux refuses."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_since_reset_mb() -> float | None:
    """The high-water mark of resident memory since the last reset (or process start), MiB."""
    return _status_mb("VmHWM")


def current_rss_mb() -> float | None:
    """This process's resident memory now, MiB (None where /proc cannot be read)."""
    return _status_mb("VmRSS")


def generator_peak_rss(
    costs_dir: Path, summary: dict[str, Any], measured: float | None
) -> float | None:
    """`measured` when this pipeline run computed its fitting or generating stages (and
    record it), else the figure recorded when they were computed (None if never)."""
    record = Path(costs_dir) / f"{summary['run_id']}.json"
    computed = [
        s["name"]
        for s in summary.get("stages", [])
        if s["name"] in (*FIT_STAGES, "generate") and s["status"] == "completed" and not s["cached"]
    ]
    if computed and measured is not None:
        atomic_write_json({"peak_rss_mb": measured, "stages": computed}, record)
        return measured
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))["peak_rss_mb"]
    return None


@stage("reference", config="evaluate")
def reference_metrics(
    run: StageRun,
    evaluate: dict[str, Any],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """The real-data reference row's metrics (synthloom.bench.reference) as a cached stage."""
    frames = {}
    schema = None
    for name in SPLIT_NAMES:
        frames[name], schema = read_table(seed_files[name]["path"])
    assert schema is not None
    run.log.info("real-data reference: MLE on real train rows, the rest on validation rows")
    metrics = real_reference_metrics(
        frames,
        schema,
        seeds=evaluate["mle_seeds"],
        grid=evaluate["mle_grid"],
        include=evaluate["metrics"],
        max_rows=evaluate["max_rows"],
    )
    atomic_write_json(metrics, run.out / "metrics.json")
    scalar = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return StageOutput(
        files={"metrics": ("metrics.json", None)},
        rows_in=len(frames["validation"]),
        metrics=scalar,
    )


def write_comparison(frame: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """comparison.md and comparison.parquet (atomic writes); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / "comparison.md"
    tmp = out_dir / ".comparison.md.tmp"
    tmp.write_text(to_markdown(frame), encoding="utf-8")
    tmp.replace(markdown)
    parquet = write_table(frame, out_dir / "comparison.parquet")
    return {"markdown": markdown, "parquet": parquet}
