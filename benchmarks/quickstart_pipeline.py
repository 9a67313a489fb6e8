"""Benchmark: the quickstart pipeline's cost per stage, against the 10-minute budget.

Runs `pipeline_configs/quickstart.yaml` (or CONFIG) as a fresh run in a temporary data
directory, in a new process as a user would, and prints per-stage wall/CPU seconds, peak
RSS, evaluation timings and the ratio of total wall time to the budget (issue: quickstart
end to end in under 10 minutes on the 2-core machine).

    .venv/bin/python benchmarks/quickstart_pipeline.py [CONFIG] [--set key=value ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 600.0


def main(argv: list[str]) -> int:
    config = (
        argv[0] if argv and not argv[0].startswith("--") else "pipeline_configs/quickstart.yaml"
    )
    extra = argv[1:] if argv and not argv[0].startswith("--") else argv
    with tempfile.TemporaryDirectory(prefix="synthloom-bench-") as tmp:
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.main",
                "run",
                config,
                "--fresh",
                "--data-dir",
                tmp,
                *extra,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        total = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:])
            return proc.returncode
        summary_path = next(Path(tmp, "runs").glob("*/summary.json"))
        summary = json.loads(summary_path.read_text())
    print(f"config: {config} {' '.join(extra)}")
    print(f"{'stage':<10}{'wall_s':>9}{'cpu_s':>9}{'peak_rss_mb':>13}{'rows_out':>10}")
    for s in summary["stages"]:
        print(
            f"{s['name']:<10}{s['compute_seconds']:>9.2f}{s['cpu_seconds']:>9.2f}"
            f"{s['peak_rss_mb']:>13.0f}{s['rows_out'] or '':>10}"
        )
    timings = {k: v for k, v in summary["metrics"].items() if k.startswith("time_")}
    print("evaluation pieces:", ", ".join(f"{k[5:-2]} {v:.2f}s" for k, v in timings.items()))
    print(f"pipeline (flow) wall: {summary['wall_seconds']:.1f} s")
    print(f"process wall incl. Prefect/MLflow start-up: {total:.1f} s")
    print(f"ratio to the {BUDGET_SECONDS:.0f} s budget: {total / BUDGET_SECONDS:.3f} (target < 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
