"""Numbers beside the text encoder (method.encoder_numeric_features): the spec, the normal
scores, and a VAE whose latent heads read them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import ndtri
from test_difflm_recipe import RECORDS, _train, make_vae, tokenized

from synthloom.errors import SynthloomError
from synthloom.methods.difflm.numeric_features import fit_numeric_spec, numeric_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_spec_keeps_numeric_fields_only_and_scores_are_normal_quantiles():
    texts = [json.dumps({"a": i, "b": "x", "c": bool(i % 2), "d": None if i % 3 else i / 2})
             for i in range(101)]  # fmt: skip
    spec = fit_numeric_spec(texts, "json")
    assert spec["fields"] == ["a", "d"] and len(spec["quantiles"][0]) == 101
    scores = numeric_scores(texts + ['{"a": null}', "not json"], spec)
    assert scores.shape == (103, 2) and scores.dtype == np.float32
    assert scores[50, 0] == pytest.approx(0.0, abs=1e-6)  # the median
    assert scores[75, 0] == pytest.approx(ndtri(0.75), abs=1e-5)
    assert scores[0, 0] == pytest.approx(ndtri(0.005), abs=1e-5)  # clipped tail
    assert (scores[101:] == 0).all() and scores[1, 1] == 0  # missing -> the median
    assert np.all(np.diff(scores[:101, 0]) >= 0)  # monotone in the value


def test_compact_records_are_keyed_by_position_and_raw_has_no_spec():
    spec = fit_numeric_spec(['["x", 1.5, 3]', '["y", 2.5, 4]'], "compact")
    assert spec["fields"] == ["1", "2"]
    assert fit_numeric_spec(["def f(): pass"], "raw") is None
    assert fit_numeric_spec(['{"a": "x"}'], "json") is None


def test_a_vae_with_a_numeric_spec_reads_the_scores_and_trains():
    spec = fit_numeric_spec(RECORDS, "json")
    assert spec["fields"] == ["age"]
    vae = make_vae("kv_memory", numeric_spec=spec)
    assert vae.heads.proj.in_features == vae.encoder.config.hidden_size + 1
    data = tokenized() | {"enc_features": torch.from_numpy(numeric_scores(RECORDS, spec))}
    mu, _ = vae.encode(data["enc_ids"][:4], data["enc_mask"][:4], data["enc_features"][:4])
    other, _ = vae.encode(data["enc_ids"][:4], data["enc_mask"][:4], -data["enc_features"][:4])
    assert not torch.allclose(mu, other)  # the scores reach the latent
    with pytest.raises(SynthloomError, match="enc_features"):
        vae.encode(data["enc_ids"][:4], data["enc_mask"][:4])
    history = _train(vae, data, 3)
    assert history["steps_run"] == 3 and np.isfinite(history["recon"][-1][1])
