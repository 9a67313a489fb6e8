"""DiffLM through the real Prefect flow with tiny random models saved as local checkpoints
(which also exercises loading any model from a local path)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from cli.main import main
from synthloom.config import PipelineConfig, load_config
from synthloom.methods.registry import DIFFLM_STAGES
from synthloom.models.tiny import tiny_causal_lm, tiny_encoder
from synthloom.runs import run_id_for


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("tiny-models")
    lm, lm_tok = tiny_causal_lm()
    lm.save_pretrained(root / "lm")
    lm_tok.save_pretrained(root / "lm")
    enc, enc_tok = tiny_encoder()
    enc.save_pretrained(root / "enc")
    enc_tok.save_pretrained(root / "enc")
    return str(root / "enc"), str(root / "lm")


def difflm_config(tmp_path: Path, table: pd.DataFrame, checkpoints, **method) -> Path:
    csv = tmp_path / "seed.csv"
    table.to_csv(csv, index=False)
    encoder, decoder = checkpoints
    config = {
        "data": {"source": str(csv), "target": "status", "max_rows": 120},
        "method": {
            "name": "difflm",
            "encoder": encoder,
            "decoder": decoder,
            "serialization": "compact",
            "vae_steps": 6,
            "eval_every": 3,
            "latent_dim": 8,
            "num_prompts": 2,
            "injector_hidden": 32,
            "diffusion_steps": 10,
            "diffusion_hidden": 32,
            "sampler_steps": 4,
            "max_record_tokens": 48,
            "decode_batch_size": 16,
            "bf16": False,
            "reconstruction_records": 12,
            **method,
        },
        "generate": {"num_rows": 8, "max_attempts": 32},
        "evaluate": {"mle_grid": "small", "mle_seeds": [0]},
        "tracking": {"experiment": "difflm-tests"},
        "run": {"data_dir": str(tmp_path / "data")},
    }
    path = tmp_path / "difflm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_summary(path: Path) -> dict:
    cfg = load_config(path)
    run_dir = Path(cfg.run.data_dir) / "runs" / run_id_for(cfg)
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.integration
def test_difflm_stages_run_and_account_for_every_attempt(tmp_path, mixed_table, tiny_checkpoints):
    # every two-valued column joins the classes (the default joins only those related to
    # the target, and `married` is drawn independently of it: tests/test_latent_classes.py)
    path = difflm_config(
        tmp_path, mixed_table, tiny_checkpoints, conditioning="target_and_binary", diffusion_ema=0.9
    )
    assert main(["run", str(path)]) == 0
    summary = run_summary(path)
    assert [s["name"] for s in summary["stages"]] == list(DIFFLM_STAGES)
    assert all(s["status"] == "completed" for s in summary["stages"])
    run_dir = Path(summary["artifact_dir"])

    history = json.loads((run_dir / "train_vae" / "history.json").read_text())
    assert [step for step, _ in history["recon"]] == list(range(1, 7))
    assert [step for step, _ in history["val_recon"]][:2] == [3, 6]
    for name in ("loss_curves.png", "latents.png", "vae/vae.safetensors"):
        assert (run_dir / "train_vae" / name).is_file(), name
    latents = pd.read_parquet(run_dir / "train_vae" / "latents.parquet")
    train_rows = next(s for s in summary["stages"] if s["name"] == "train_vae")["rows_in"]
    assert latents.shape == (train_rows, 8)
    diffusion = json.loads(
        (run_dir / "train_diffusion" / "diffusion" / "latent_diffusion.json").read_text()
    )
    assert diffusion["config"]["ema_decay"] == 0.9  # method.diffusion_ema reaches the denoiser

    m, counts = summary["metrics"], summary["counts"]
    generations = pd.read_parquet(run_dir / "generate" / "generations.parquet")
    assert len(generations) == m["generate_attempts"]
    valid = int(generations["valid"].sum())
    invalid = sum(v for k, v in counts.items() if k.startswith("invalid_"))
    assert valid + invalid == m["generate_attempts"]
    assert m["generate_valid_rate"] == pytest.approx(valid / m["generate_attempts"])
    assert m["generate_attempts"] == 32 or valid >= 8  # budget spent, or enough valid rows
    assert summary["stages"][list(DIFFLM_STAGES).index("generate")]["shards"] == 1  # 16 rows
    # class_conditional (the default), conditioning target_and_binary: the diffusion learnt
    # the joint classes of the target and the two-valued `married`, and every record was
    # decoded with both slots forced to its latent's class (compact records, target first)
    classes = json.loads((run_dir / "train_diffusion" / "diffusion" / "classes.json").read_text())
    assert classes["columns"] == ["status", "married"]
    assert classes["values"] == [[s, m] for s in ("bad", "good") for m in ("False", "True")]
    assert sum(classes["counts"]) == train_rows
    done = generations[generations["valid"]]
    married = 1 + [c for c in mixed_table if c != "status"].index("married")
    assert len(done) and all(
        "|".join(str(v) for v in (record[0], record[married])) == tag
        for record, tag in zip(map(json.loads, done["text"]), done["condition"], strict=True)
    )

    # the reconstruction diagnostic: 12 train + 12 validation records, greedy and sampled
    for split in ("train", "validation"):
        for mode in ("greedy", "sampled"):
            prefix = f"reconstruction_{split}_{mode}_"
            for key in ("valid_rate", "match", *(f"match_{c}" for c in mixed_table)):
                assert 0.0 <= m[prefix + key] <= 1.0, prefix + key
            assert m[prefix + "rel_error"] >= 0 or math.isnan(m[prefix + "rel_error"])
    assert 0.5 < m["reconstruction_real_mle_auc"] <= 1.0  # 12 real records, learnable target
    for key in ("train_greedy", "train_sampled", "generated"):  # NaN (null) under 9 rows
        auc = m[f"reconstruction_{key}_mle_auc"]
        assert auc is None or 0.0 <= auc <= 1.0, key
    assert m["reconstruction_latent_mmd2_prior"] > 0 and m["reconstruction_latent_bandwidth"] > 0
    assert m["reconstruction_latent_mean_gap"] >= 0 and m["reconstruction_latent_std_gap"] >= 0
    decoded = pd.read_parquet(run_dir / "reconstruction" / "reconstructions.parquet")
    assert len(decoded) == 48 and set(decoded["mode"]) == {"greedy", "sampled"}

    assert main(["run", str(path)]) == 0
    assert all(s["cached"] for s in run_summary(path)["stages"])


@pytest.mark.integration
def test_records_longer_than_max_record_tokens_stop_the_run_with_the_fix(
    tmp_path, mixed_table, tiny_checkpoints, capsys
):
    path = difflm_config(tmp_path, mixed_table, tiny_checkpoints, max_record_tokens=9)
    assert main(["run", str(path)]) == 2  # a config error: not retried, no traceback
    err = capsys.readouterr().err
    assert "max_record_tokens" in err and "Traceback" not in err
    summary = run_summary(path)
    status = {s["name"]: s["status"] for s in summary["stages"]}
    assert status["serialize"] == "completed" and status["train_vae"] == "failed"
    records = Path(summary["artifact_dir"]) / "serialize" / "records.parquet"
    assert records.is_file()  # what was produced before the error is kept


@pytest.mark.integration
def test_difflm_ablation_switches(tmp_path, mixed_table, tiny_checkpoints):
    path = difflm_config(
        tmp_path,
        mixed_table,
        tiny_checkpoints,
        injection="kv_memory",
        beta_schedule="cyclical",
        diffusion=False,
        max_record_tokens="auto",
        reconstruction_records=0,
        decode_batch_size=4,  # 8 rows: two shards of one decoding batch each
    )
    assert main(["run", str(path)]) == 0
    summary = run_summary(path)
    assert all(s["status"] in ("completed", "skipped") for s in summary["stages"])
    run_dir = Path(summary["artifact_dir"])
    assert json.loads((run_dir / "train_diffusion" / "disabled.json").read_text()) == {
        "diffusion": False
    }
    status = {s["name"]: s["status"] for s in summary["stages"]}
    assert status["reconstruction"] == "skipped"
    assert next(s for s in summary["stages"] if s["name"] == "generate")["shards"] == 2
    # auto: the longest compact record of the tiny tokenizer plus 16, a multiple of 16
    limit = json.loads((run_dir / "train_vae" / "decoding.json").read_text())["max_record_tokens"]
    assert limit % 16 == 0 and limit >= 32
    vae_config = json.loads((run_dir / "train_vae" / "vae" / "vae_config.json").read_text())
    assert vae_config["vae"]["mode"] == "kv_memory"
    betas = [b for _, b in json.loads((run_dir / "train_vae" / "history.json").read_text())["beta"]]
    assert betas[0] < betas[-1] or betas[0] == 0.0  # the cyclical schedule ramps up from 0


@pytest.mark.integration
def test_difflm_writes_a_linear_dependent_back_from_its_source(
    tmp_path, mixed_table, tiny_checkpoints
):
    """derive_linear true: `fee` = 0.25 x age, rounded half up to the cent, in every training
    row, is left out of the records and written back from the decoded age, so the identity
    holds in every generated row; false (the default) keeps it in the records (the paper)."""
    from synthloom.artifacts import read_table
    from tasks.difflm import records_schema

    table = mixed_table.assign(fee=(mixed_table["age"] * 0.25 + 1e-9).round(2))
    path = difflm_config(
        tmp_path,
        table,
        tiny_checkpoints,
        diffusion=False,
        reconstruction_records=0,
        derive_linear=True,
    )
    assert main(["run", str(path)]) == 0
    run_dir = Path(run_summary(path)["artifact_dir"])
    records = pd.read_parquet(run_dir / "serialize" / "records.parquet")
    assert {len(json.loads(text)) for text in records["text"]} == {len(table.columns) - 1}
    rows, _ = read_table(run_dir / "generate" / "synthetic.parquet")
    assert list(rows.columns) == list(table.columns) and len(rows)
    assert (rows["fee"] - (rows["age"] * 0.25 + 1e-9).round(2)).abs().max() < 1e-9

    train, schema = read_table(run_dir / "ingest" / "train.parquet")
    method = load_config(path).method.model_dump()
    written = records_schema(schema, method, train)
    assert "fee" not in written.names
    assert written.extra["derived_columns"]["fee"]["source"] == "age"
    assert "fee" in records_schema(schema, method | {"derive_linear": False}, train).names


@pytest.mark.integration
def test_difflm_training_recipe_through_the_flow(tmp_path, mixed_table, tiny_checkpoints):
    """The issue-17 recipe keys reach the VAE: anchored injector, PCA latent init, value
    slots, two learning rates with warmup and cosine; the run completes and records them."""
    path = difflm_config(
        tmp_path,
        mixed_table,
        tiny_checkpoints,
        serialization="json",
        max_record_tokens="auto",
        injector_init="text",
        latent_init="pca",
        encoder_dropout=False,
        loss_tokens="values",
        vae_head_lr=1e-3,
        vae_lr_schedule="cosine",
        vae_warmup_steps=2,
        reconstruction_records=4,
        number_digits=1,
        decoder_lora_rank=2,
        encoder_numeric_features=True,
        class_conditional=False,
    )
    assert main(["run", str(path)]) == 0
    summary = run_summary(path)
    assert all(s["status"] in ("completed", "skipped") for s in summary["stages"])
    run_dir = Path(summary["artifact_dir"])
    # class_conditional false: the paper's unconditional diffusion, no forced slot
    assert not (run_dir / "train_diffusion" / "diffusion" / "classes.json").exists()
    assert "condition" not in pd.read_parquet(run_dir / "generate" / "generations.parquet")
    vae_config = json.loads((run_dir / "train_vae" / "vae" / "vae_config.json").read_text())
    assert len(vae_config["vae"]["anchor_ids"]) == 2  # num_prompts
    assert vae_config["vae"]["residual_scale"] == 0.1
    assert vae_config["vae"]["encoder_dropout"] is False
    assert vae_config["vae"]["lora_rank"] == 2  # adapters trained, saved, used to decode
    assert vae_config["vae"]["numeric_spec"]["fields"] == ["income", "age"]  # json keys
    assert summary["metrics"]["reconstruction_validation_greedy_valid_rate"] >= 0
    history = json.loads((run_dir / "train_vae" / "history.json").read_text())
    lrs = [lr for _, lr in history["lr"]]
    assert lrs[0] == pytest.approx(0.5e-3) and lrs[1] == pytest.approx(1e-3)  # warmup
    assert lrs[-1] < lrs[1]  # cosine decay
    assert all(spread > 0 for _, spread in history["val_mu_std"])  # records apart from step 0
    assert not (run_dir / ".checkpoints" / "train_vae").exists()  # removed once done
    # number_digits 1: records carry one significant digit; generated numbers are spread
    records = pd.read_parquet(run_dir / "serialize" / "records.parquet")
    written = [json.loads(t)["income"] for t in records["text"]]
    assert all(v is None or float(f"{v:.1g}") == v for v in written)
    incomes = pd.read_parquet(run_dir / "generate" / "synthetic.parquet")["income"].dropna()
    assert len(incomes) and not all(float(f"{v:.1g}") == v for v in incomes if v != 0)


def run_conditioned(tmp_path: Path, table: pd.DataFrame, checkpoints, counts, **method) -> dict:
    """Run DiffLM on `table` with generate.conditions {status: counts} (shards of 4 rows);
    its summary."""
    path = difflm_config(tmp_path, table, checkpoints, decode_batch_size=4, **method)
    config = yaml.safe_load(path.read_text())
    config["generate"] = {"num_rows": sum(counts.values()), "max_attempts": 200,
                          "conditions": {"status": counts}}  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    return run_summary(path)


@pytest.mark.integration
def test_difflm_conditions_give_exact_counts_with_the_target_written_first(
    tmp_path, mixed_table, tiny_checkpoints
):
    """generate.conditions through DiffLM: the forced target slot gives the exact counts
    per value across shards; records are written target first; rows come back in the
    table's column order."""
    summary = run_conditioned(tmp_path, mixed_table, tiny_checkpoints, {"good": 2, "bad": 7},
                              max_record_tokens=96, reconstruction_records=0)  # fmt: skip
    run_dir = Path(summary["artifact_dir"])
    records = pd.read_parquet(run_dir / "serialize" / "records.parquet")
    first = {json.loads(t)[0] for t in records["text"]}  # compact: the first value
    assert first == {"good", "bad"}
    rows = pd.read_parquet(run_dir / "generate" / "synthetic.parquet")
    assert list(rows.columns) == list(mixed_table.columns)
    assert rows["status"].value_counts().to_dict() == {"bad": 7, "good": 2}
    generations = pd.read_parquet(run_dir / "generate" / "generations.parquet")
    assert set(generations["condition"]) == {"good", "bad"}
    assert generations["shard"].nunique() == 3  # 9 rows in shards of 4: quotas split


@pytest.mark.integration
def test_difflm_with_key_aliases_writes_short_keys_and_returns_the_column_names(
    tmp_path, mixed_table, tiny_checkpoints
):
    """method.record_keys: aliases: json records carry the short keys (target first), the
    grammar and parser use them, generate.conditions (named by the column) still give exact
    counts, and the rows and the reconstruction metrics come back under the column names."""
    summary = run_conditioned(tmp_path, mixed_table, tiny_checkpoints, {"good": 2, "bad": 3},
                              serialization="json", record_keys="aliases",
                              max_record_tokens="auto", reconstruction_records=4)  # fmt: skip
    run_dir = Path(summary["artifact_dir"])
    records = pd.read_parquet(run_dir / "serialize" / "records.parquet")
    assert list(json.loads(records["text"].iloc[0])) == ["s", "i", "a", "h", "m"]
    rows = pd.read_parquet(run_dir / "generate" / "synthetic.parquet")
    assert list(rows.columns) == list(mixed_table.columns)
    assert rows["status"].value_counts().to_dict() == {"bad": 3, "good": 2}
    m = summary["metrics"]
    for column in mixed_table.columns:
        assert 0.0 <= m[f"reconstruction_train_greedy_match_{column}"] <= 1.0, column
    assert not any(k.endswith("_match_s") for k in m)


def test_difflm_conditions_need_constrained_decoding():
    with pytest.raises(ValidationError, match="method.constrained: true"):
        PipelineConfig.model_validate(
            {
                "data": {"source": "x.csv", "target": "y"},
                "method": {"name": "difflm", "constrained": False},
                "generate": {"num_rows": 2, "conditions": {"y": {"a": 2}}},
            }
        )


def test_difflm_key_aliases_need_json_records():
    with pytest.raises(ValidationError, match="serialization: json, or record_keys: names"):
        PipelineConfig.model_validate(
            {
                "data": {"source": "x.csv", "target": "y"},
                "method": {"name": "difflm", "serialization": "compact", "record_keys": "aliases"},
            }
        )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("source", "suite", "expected"),
    [
        ("corpus:stdlib_code", "code", {"parse_rate", "distinct_ngrams_4", "embedding_mmd2"}),
        (
            "corpus:stdlib_tools",
            "tool",
            {"json_valid_rate", "schema_valid_rate", "parameter_name_entropy"},
        ),
    ],
)
def test_difflm_on_documents(tmp_path, tiny_checkpoints, source, suite, expected):
    # the tiny tokenizer spells documents out in hundreds of tokens: train on cut records
    path = difflm_config(
        tmp_path,
        pd.DataFrame({"x": [1]}),
        tiny_checkpoints,
        serialization="raw",
        max_truncated_share=1.0,
    )
    config = yaml.safe_load(path.read_text())
    config["data"] = {"source": source, "max_rows": 60}
    config["evaluate"] = {"suite": suite}
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    summary = run_summary(path)
    assert all(s["status"] == "completed" for s in summary["stages"])
    metrics = summary["metrics"]
    assert expected <= set(metrics)
    rates = [k for k in metrics if k.endswith("_rate") and not k.startswith(("generate", "filter"))]
    assert rates and all(0.0 <= metrics[k] <= 1.0 for k in rates)
    # raw records: every non-empty generation parses, so the budget is not the limit
    assert summary["metrics"]["generate_valid_rate"] > 0


def test_difflm_guidance_needs_a_null_class():
    with pytest.raises(ValidationError, match="set label_dropout > 0"):
        PipelineConfig.model_validate(
            {
                "data": {"source": "x.csv", "target": "y"},
                "method": {"name": "difflm", "label_dropout": 0.0, "guidance_scale": 2.0},
                "generate": {"num_rows": 2},
            }
        )
    method = PipelineConfig.model_validate(
        {
            "data": {"source": "x.csv", "target": "y"},
            "method": {"name": "difflm"},
            "generate": {"num_rows": 2},
        }
    ).method
    assert (method.class_conditional, method.label_dropout, method.guidance_scale) == (
        True,
        0.1,
        2.0,
    )
