"""DiffLM reconstruction diagnostic (hand-checked agreement, MMD^2 and moment gaps), the
`max_record_tokens: auto` limit, and the config keys' run-id identity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from synthloom.config import PipelineConfig, config_hash
from synthloom.errors import ConfigError
from synthloom.methods.difflm.diagnostics import (
    agreement_metrics,
    latent_distance,
    mle_metric,
    moment_gaps,
    rbf_mmd2,
)
from synthloom.methods.difflm.fit import BaseModels, resolve_max_record_tokens
from synthloom.models.tiny import tiny_causal_lm
from synthloom.serialize import parse_record, serialize_table


def _records(table: pd.DataFrame, schema, fmt: str = "json") -> list[str]:
    return list(serialize_table(table.head(8), schema, fmt, 6))


@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_a_perfect_reconstruction_agrees_on_every_column(mixed_table, mixed_schema, fmt):
    texts = _records(mixed_table, mixed_schema, fmt)
    originals = [parse_record(t, mixed_schema, fmt).record for t in texts]
    metrics, records = agreement_metrics(texts, originals, mixed_schema, fmt)
    assert metrics["valid_rate"] == 1.0 and metrics["match"] == 1.0
    assert metrics["rel_error"] == 0.0
    for column in mixed_schema.names:
        assert metrics[f"match_{column}"] == 1.0
    assert metrics["rel_error_income"] == 0.0 and "rel_error_home" not in metrics
    assert records == originals


def test_agreement_counts_wrong_values_and_invalid_records(mixed_schema):
    originals = [
        {"income": 50.0, "age": 20.0, "home": "rent", "married": True, "status": "good"},
        {"income": 40.0, "age": 30.0, "home": "owner", "married": False, "status": "bad"},
        {"income": None, "age": 40.0, "home": "parents", "married": False, "status": "bad"},
        {"income": 10.0, "age": 50.0, "home": "rent", "married": True, "status": "good"},
    ]
    decoded = [
        '{"income": 55, "age": 20, "home": "rent", "married": true, "status": "good"}',
        '{"income": 40, "age": 33, "home": "rent", "married": false, "status": "bad"}',
        '{"income": null, "age": 40, "home": "parents", "married": false, "status": "good"}',
        "not a record",
    ]
    m, records = agreement_metrics(decoded, originals, mixed_schema, "json")
    assert m["valid_rate"] == 0.75 and records[3] is None
    # an invalid record disagrees on every column: the denominator is all 4 records
    assert m["match_income"] == 0.5 and m["match_age"] == 0.5 and m["match_home"] == 0.5
    assert m["match_married"] == 0.75 and m["match_status"] == 0.5
    assert m["match"] == pytest.approx((0.5 + 0.5 + 0.5 + 0.75 + 0.5) / 5)
    # relative error over the valid pairs with both values present: |55-50|/50, 0/40
    assert m["rel_error_income"] == pytest.approx((0.1 + 0.0) / 2)
    assert m["rel_error_age"] == pytest.approx((0 + 3 / 30 + 0) / 3)
    assert m["rel_error"] == pytest.approx((0.05 + 1 / 30) / 2)


def test_mmd2_is_the_unbiased_estimator_and_separates_shifted_samples():
    x = np.array([[0.0], [1.0]])
    # k(0,1) = exp(-1/2) at h = 1: xx = yy = e^-1/2, mean k(x, y) = (2 + 2 e^-1/2) / 4
    expected = 2 * math.exp(-0.5) - 2 * (2 + 2 * math.exp(-0.5)) / 4
    assert rbf_mmd2(x, x.copy(), 1.0) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 4)), rng.standard_normal((300, 4))
    assert abs(rbf_mmd2(a, b, 2.0)) < 0.02
    assert rbf_mmd2(a + 2.0, b, 2.0) > 0.3
    assert math.isnan(rbf_mmd2(a[:1], b, 1.0))


def test_moment_gaps_and_latent_distance_in_training_stds():
    reference = np.array([[0.0, 0.0], [2.0, 4.0]])  # means (1, 2), stds (1, 2)
    samples = np.array([[1.0, 4.0], [3.0, 4.0]])  # means (2, 4), stds (1, 0)
    gaps = moment_gaps(samples, reference)
    assert gaps == {"mean_gap": 1.0, "std_gap": 0.5, "max_mean_gap": 1.0, "max_std_gap": 1.0}
    rng = np.random.default_rng(1)
    train = rng.standard_normal((200, 3)) * 3 + 5
    d = latent_distance(train[::-1].copy(), train, train[:100] + 0.01, seed=0)
    assert d["latent_mmd2"] < 0.01 < d["latent_mmd2_prior"]
    assert abs(d["latent_mmd2_validation"]) < 0.05 and d["latent_bandwidth"] > 0
    assert d["latent_mean_gap"] == pytest.approx(0.0, abs=1e-9)


def test_mle_metric_scores_rows_on_the_validation_split(mixed_table, mixed_schema):
    train, validation = mixed_table.iloc[:150], mixed_table.iloc[150:]
    scores = mle_metric(train, validation, mixed_schema, grid="small", seeds=[0])
    assert set(scores) == {"mle_auc"} and 0.5 < scores["mle_auc"] <= 1.0
    assert math.isnan(
        mle_metric(train.iloc[:1], validation, mixed_schema, grid="small", seeds=[0])["mle_auc"]
    )


def _tiny_base_models() -> BaseModels:
    lm, tok = tiny_causal_lm()
    return BaseModels(None, None, lm, tok)  # type: ignore[arg-type]


def test_max_record_tokens_auto_is_the_longest_record_plus_a_margin():
    models = _tiny_base_models()
    texts = ["short", '{"a": 1, "b": "some longer record"}']
    lengths = [
        len(models.decoder_tokenizer(t, add_special_tokens=False)["input_ids"]) + 2 for t in texts
    ]
    method = {"max_record_tokens": "auto", "num_prompts": 4, "decoder": "tiny"}
    limit = resolve_max_record_tokens(method, texts, models)["max_record_tokens"]
    assert limit % 16 == 0 and max(lengths) + 16 <= limit < max(lengths) + 32
    assert resolve_max_record_tokens(method | {"max_record_tokens": 48}, texts, models) == (
        method | {"max_record_tokens": 48}
    )
    with pytest.raises(ConfigError, match="auto gives .* positions"):
        resolve_max_record_tokens(method, ["word " * 2000], models)


def _difflm(**method) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "data": {"source": "x.csv"},
            "method": {"name": "difflm", **method},
            "generate": {"num_rows": 10},
        }
    )


def test_new_difflm_keys_keep_run_ids_when_unset():
    base = config_hash(_difflm())
    assert config_hash(_difflm(reconstruction_records=32)) == base  # the default
    assert config_hash(_difflm(reconstruction_records=0)) != base
    assert config_hash(_difflm(max_record_tokens="auto")) == base  # the default
    assert config_hash(_difflm(max_record_tokens=160)) != base  # the default before auto
    with pytest.raises(ValidationError):
        _difflm(max_record_tokens="longest")
    with pytest.raises(ValidationError):
        _difflm(max_record_tokens=8)


def test_a_perfect_decoder_scores_full_agreement_through_the_report(
    mixed_table, mixed_schema, monkeypatch
):
    """The report's wiring with a stand-in encoder/decoder that returns each record itself:
    every agreement is 1.0, and the reconstructed rows score exactly the originals' MLE."""
    from types import SimpleNamespace

    import torch

    from synthloom.methods.difflm import diagnostics

    table = mixed_table.sample(frac=1.0, random_state=0).reset_index(drop=True)
    texts = list(serialize_table(table, mixed_schema, "json", 6))
    index = {t: i for i, t in enumerate(texts)}

    def encode(vae, models, batch, method, device):  # z = the record's index
        return np.array([[index[t]] for t in batch], dtype=np.float32)

    def decode(vae, models, z, method, **kw):
        return SimpleNamespace(texts=[texts[int(i)] for i in z[:, 0].tolist()])

    monkeypatch.setattr(diagnostics, "encode_means", encode)
    monkeypatch.setattr(diagnostics, "decode_latents", decode)
    method = {"serialization": "json", "temperature": 1.0, "decode_batch_size": 7}
    rng = np.random.default_rng(0)
    metrics, decoded = diagnostics.reconstruction_report(
        None,
        None,
        None,  # no diffusion: prior samples, against prior-like training latents
        mixed_schema,
        method,
        texts={"train": texts[:20], "validation": texts[200:210]},
        train_latents=rng.standard_normal((200, 4)).astype(np.float32),
        validation_latents=rng.standard_normal((50, 4)).astype(np.float32),
        generated=table.iloc[100:200],
        validation=table.iloc[200:],
        constraint=None,
        mle_grid="small",
        mle_seeds=[0],
        seed=0,
        device=torch.device("cpu"),
    )
    for split in ("train", "validation"):
        for mode in ("greedy", "sampled"):
            prefix = f"{split}_{mode}_"
            assert metrics[prefix + "valid_rate"] == 1.0 and metrics[prefix + "match"] == 1.0
            assert metrics[prefix + "rel_error"] == 0.0
            assert all(metrics[f"{prefix}match_{c}"] == 1.0 for c in mixed_schema.names)
    assert 0.5 < metrics["real_mle_auc"] <= 1.0
    assert metrics["train_greedy_mle_auc"] == metrics["real_mle_auc"]
    assert metrics["train_sampled_mle_auc"] == metrics["real_mle_auc"]
    assert 0.0 <= metrics["generated_mle_auc"] <= 1.0
    assert abs(metrics["latent_mmd2"]) < 0.05 and abs(metrics["latent_mmd2_prior"]) < 0.05
    assert len(decoded) == 2 * (20 + 10) and decoded["valid"].all()
    assert (decoded["original"] == decoded["decoded"]).all()
