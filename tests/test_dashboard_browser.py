"""Dashboard end to end: `synthloom ui`, a pipeline reporting into it, headless Chromium.

Runs scripts/dashboard_screenshots.py's `capture` (the code that makes the README
screenshots) on a small marginals-baseline run: the Prefect UI must show the flow run with one task
run per stage, the MLflow UI the run's metrics with the values in summary.json. Installs
Debian's chromium + chromium-driver with apt-get when missing. Every started process (the
UI, its two servers, the browser) is stopped before the test ends.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
SMALL_RUN = [
    "generate.num_rows=300",
    "evaluate.metrics=[quality,privacy]",
    "evaluate.plots=false",
]


def _load_script():  # noqa: ANN202 - a module
    path = REPO / "scripts" / "dashboard_screenshots.py"
    spec = importlib.util.spec_from_file_location("dashboard_screenshots", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.integration
def test_flow_run_and_metrics_are_found_in_both_dashboards(tmp_path: Path) -> None:
    script = _load_script()
    found = script.capture(tmp_path / "shots", tmp_path / "work", overrides=SMALL_RUN)

    summary = found["summary"]
    assert summary["status"] == "completed"
    stages = [s["name"] for s in summary["stages"]]
    assert stages == ["ingest", "fit", "generate", "filter", "evaluate"]
    assert set(found["task_runs"]) == set(stages)
    for stage, task_run in found["task_runs"].items():
        assert task_run.startswith(f"{stage}-")

    shown = found["mlflow_metrics"]
    for name in ("column_shape_error_pct", "dcr_share"):
        assert math.isclose(shown[name], summary["metrics"][name], rel_tol=1e-9), name

    for name in ("prefect_flow_run.png", "mlflow_run.png"):
        width, height = png_size(tmp_path / "shots" / name)
        assert width >= 1200 and height >= 800, (name, width, height)

    ui = found["ui"]
    assert ui.process.poll() is not None  # `synthloom ui` stopped ...
    alive = [pid for pid in ui.server_pids if psutil.pid_exists(pid)]
    assert not [p for p in alive if psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
