"""DiffLM VAE: injection modes, exact losses, frozen decoder, training loop, beta schedules.

Fast tests run on the tiny offline models (single-threaded: faster for matrices this
small); one integration test uses MiniLM + SmolLM2-135M.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from synthloom.errors import ConfigError, SynthloomError
from synthloom.methods.difflm import train_vae as train_vae_mod
from synthloom.methods.difflm.beta import CyclicalBeta, DecreasingBeta
from synthloom.methods.difflm.fit import check_record_lengths
from synthloom.methods.difflm.train_vae import batches, tokenize_records, train_vae
from synthloom.models import tiny_causal_lm, tiny_encoder
from synthloom.models.injection import INJECTION_MODES, Injection
from synthloom.models.vae import DiffLMVAE, VAEConfig, kl_divergence

RECORDS = [
    f'{{"name": "p{i}", "age": {20 + 3 * i}, "city": "{city}"}}'
    for i, city in enumerate(["Paris", "Rome", "Oslo", "Lima"] * 4)
]
SMALL = {"latent_dim": 16, "num_prompts": 4, "injector_hidden": 64, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _tiny_models():
    """One tiny (decoder, tokenizer, encoder, tokenizer) set for the whole module: the tiny
    WordPiece vocabulary is not always the same size from call to call, so models and
    tokenizers must come from the same call."""
    return (*tiny_causal_lm(), *tiny_encoder())


def make_vae(mode: str = "soft_prompt", *, steerable: bool = False, **cfg) -> DiffLMVAE:
    """A VAE around fresh copies of the tiny models (the VAE freezes its decoder in place)."""
    decoder, _, encoder, _ = _tiny_models()
    decoder, encoder = copy.deepcopy(decoder), copy.deepcopy(encoder)
    if steerable:
        _fan_in_init(decoder)
    torch.manual_seed(0)
    return DiffLMVAE(encoder, decoder, VAEConfig(mode=mode, **(SMALL | cfg)))


def _fan_in_init(decoder: torch.nn.Module) -> None:
    """Weights ~ N(0, 1/fan_in), embeddings ~ N(0, 0.3^2): unlike the tiny model's 0.02 init,
    attention is not uniform and the logits are not flat, so an injection can steer it."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
        emb = decoder.get_input_embeddings().weight
        emb.copy_(torch.randn(emb.shape, generator=gen) * 0.3)


def tokenized(texts=RECORDS, max_dec_len: int = 64) -> dict[str, torch.Tensor]:
    _, dec_tok, _, enc_tok = _tiny_models()
    return tokenize_records(texts, enc_tok, dec_tok, 64, max_dec_len)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("enc_ids", "enc_mask", "dec_ids", "dec_mask")}


def fit(vae: DiffLMVAE, data, steps: int, **kw):
    kw = {
        "lr": 3e-3,
        "beta_schedule": DecreasingBeta(start=1e-3, floor=1e-4),
        "eval_every": max(steps // 5, 1),
        "early_stopping_patience": 100,
        "device": "cpu",
        "seed": 0,
    } | kw
    return train_vae(
        vae,
        lambda epoch: batches(data, 8, True, seed=epoch),
        lambda: batches(data, 16, False),
        steps=steps,
        **kw,
    )


# ---------------------------------------------------------------- data helpers


def test_tokenize_records_bos_eos_truncation_and_trimmed_batches():
    dec_tok = _tiny_models()[1]
    data = tokenized(["short", RECORDS[0]], max_dec_len=8)
    ids, mask = data["dec_ids"], data["dec_mask"]
    body = dec_tok("short", add_special_tokens=False)["input_ids"]
    assert ids[0, : len(body) + 2].tolist() == [dec_tok.bos_token_id, *body, dec_tok.eos_token_id]
    assert mask[0].sum() == len(body) + 2 and mask[1].sum() == 8  # right padded; cut at 8
    assert (data["dec_full_length"] > 8).tolist() == [False, True]
    assert ids[1, -1] != dec_tok.eos_token_id  # a cut record gets no EOS
    first = next(batches(data, 1, shuffle=False))  # padding columns trimmed per batch
    assert first["dec_ids"].shape[1] == len(body) + 2 and first["dec_mask"].all()
    rows = [b["enc_ids"][:, 1] for b in batches(tokenized(), 5, shuffle=True, seed=3)]
    assert sum(len(r) for r in rows) == len(RECORDS)  # every row once, last batch smaller


def test_records_longer_than_max_record_tokens_fail_early_with_the_fix():
    data = tokenized(["short", RECORDS[0]], max_dec_len=64)
    lengths = data["dec_full_length"]
    assert lengths.tolist() == data["dec_mask"].sum(dim=1).tolist()  # nothing cut at 64
    longest = int(lengths.max())
    ok = {"max_record_tokens": longest, "max_truncated_share": 0.1, "serialization": "json"}
    assert check_record_lengths(lengths, ok) == 0
    tight = ok | {"max_record_tokens": longest - 1}
    with pytest.raises(ConfigError) as err:  # 1 of 2 records (50%) does not fit
        check_record_lengths(lengths, tight)
    message = str(err.value)
    assert "max_record_tokens" in message and f"longest has {longest}" in message
    assert "serialization: compact" in message
    suggested = int(message.split("config to ")[1].split()[0])
    assert suggested >= longest and suggested % 16 == 0
    # one cut record among many is tolerated (and counted): the share is the test
    many = torch.cat([lengths.new_full((200,), 5), lengths])
    assert check_record_lengths(many, tight) == 1


# ---------------------------------------------------------------- shapes and exact losses


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_injection_shapes_and_finite_loss(mode):
    vae = make_vae(mode)
    dec = vae.decoder.config
    inj = vae.inject(torch.randn(3, 16))
    assert inj.batch_size == 3
    if mode == "soft_prompt":
        assert inj.prefix_embeds.shape == (3, 4, dec.hidden_size) and inj.prefix_length == 4
    elif mode == "kv_memory":
        head_dim = dec.hidden_size // dec.num_attention_heads
        assert len(inj.past_key_values) == dec.num_hidden_layers
        for key, value in inj.past_key_values:
            assert key.shape == value.shape == (3, dec.num_key_value_heads, 4, head_dim)
    else:
        assert inj.embed_offset.shape == (3, dec.hidden_size) and inj.prefix_length == 0
    out = vae(**model_inputs(next(batches(tokenized(), 3, shuffle=False))))
    assert out["recon"].shape == (3,) and out["mu"].shape == out["logvar"].shape == (3, 16)
    assert torch.isfinite(out["loss_recon"]) and torch.isfinite(out["kl"])


def test_injection_starts_at_token_embedding_scale():
    vae = make_vae("soft_prompt", steerable=True)
    emb_std = vae.decoder.get_input_embeddings().weight.std().item()
    prompt_std = vae.inject(torch.randn(512, 16)).prefix_embeds.std().item()
    assert prompt_std == pytest.approx(emb_std, rel=0.1)


def _manual_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean NLL of ids[:, 1:] from logits over the record positions (B, T, V) -> (B,)."""
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return nll.mean(dim=1)


@torch.no_grad()
def test_soft_prompt_loss_equals_hand_computed_nll():
    vae = make_vae("soft_prompt").eval()
    ids = tokenized()["dec_ids"][:3, :20]  # no padding in the first 20 columns
    inj = vae.inject(torch.randn(3, 16))
    embeds = torch.cat([inj.prefix_embeds, vae.decoder.get_input_embeddings()(ids)], dim=1)
    logits = vae.decoder(inputs_embeds=embeds).logits[:, 4:]  # record positions only
    expected = _manual_nll(logits, ids)
    got = vae.reconstruction_loss(inj, ids, torch.ones_like(ids))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_input_embedding_loss_equals_hand_computed_nll():
    vae = make_vae("input_embedding").eval()
    ids = tokenized()["dec_ids"][:3, :20]
    inj = vae.inject(torch.randn(3, 16))
    embeds = vae.decoder.get_input_embeddings()(ids) + inj.embed_offset[:, None]
    expected = _manual_nll(vae.decoder(inputs_embeds=embeds).logits, ids)
    got = vae.reconstruction_loss(inj, ids, torch.ones_like(ids))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_kv_memory_of_the_soft_prompt_reproduces_the_soft_prompt_loss():
    """The decoder's own keys/values of a soft prompt, given as KV memory, must give the
    soft-prompt loss exactly: checks masks, position ids and the cache path together."""
    vae = make_vae("soft_prompt").eval()
    data = tokenized()
    ids, mask = data["dec_ids"][:4], data["dec_mask"][:4]  # rows of different lengths
    mask[1, 20:] = 0  # and one much shorter
    soft = vae.inject(torch.randn(4, 16))
    cache = vae.decoder(inputs_embeds=soft.prefix_embeds, use_cache=True).cache
    memory = Injection(past_key_values=tuple((lay.keys, lay.values) for lay in cache.layers))
    assert memory.prefix_length == 4
    torch.testing.assert_close(
        vae.reconstruction_loss(memory, ids, mask),
        vae.reconstruction_loss(soft, ids, mask),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("mode", INJECTION_MODES)
@torch.no_grad()
def test_padding_does_not_change_a_records_loss(mode):
    vae = make_vae(mode).eval()
    data = tokenized(["short one", RECORDS[3], RECORDS[7] + " and a much longer tail"])
    inj = vae.inject(torch.randn(3, 16))
    batch = vae.reconstruction_loss(inj, data["dec_ids"], data["dec_mask"])
    for i in range(3):
        n = int(data["dec_mask"][i].sum())
        alone = vae.reconstruction_loss(
            inj.select(torch.tensor([i])),
            data["dec_ids"][i : i + 1, :n],
            data["dec_mask"][i : i + 1, :n],
        )
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=1e-5, atol=1e-5)
    if mode != "input_embedding":  # left padding too (the injection keeps a real key to attend)
        shifts = (data["dec_mask"] == 0).sum(dim=1)
        left_ids = torch.stack(
            [r.roll(int(s)) for r, s in zip(data["dec_ids"], shifts, strict=True)]
        )
        left_mask = torch.stack(
            [r.roll(int(s)) for r, s in zip(data["dec_mask"], shifts, strict=True)]
        )
        left = vae.reconstruction_loss(inj, left_ids, left_mask)
        torch.testing.assert_close(left, batch, rtol=1e-5, atol=1e-5)


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 16), torch.randn(5, 16)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(16), torch.ones(16))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected, rtol=1e-5, atol=1e-5)
    vae = make_vae()
    out = vae(**model_inputs(next(batches(tokenized(), 4, shuffle=False))))
    per_dim = kl_divergence(out["mu"], out["logvar"]).mean() / out["mu"].shape[-1]
    torch.testing.assert_close(out["kl"], per_dim)  # DiffLM's code: KL averaged over dims


# ---------------------------------------------------------------- frozen decoder, training


def test_decoder_frozen_and_kept_out_of_the_trainable_state():
    vae = make_vae("kv_memory")
    assert all(not p.requires_grad for p in vae.decoder.parameters())
    decoder_ids = {id(p) for p in vae.decoder.parameters()}
    assert not decoder_ids & {id(p) for p in vae.trainable_parameters()}
    assert not any(k.startswith("decoder") for k in vae.trainable_state_dict())
    vae.train()
    assert vae.training and vae.encoder.training and not vae.decoder.training
    with pytest.raises(AttributeError):  # re-assigning would register the decoder's weights
        vae.decoder = copy.deepcopy(vae.decoder)


def test_training_changes_encoder_heads_injector_but_not_one_decoder_bit():
    vae = make_vae("soft_prompt", dropout=0.1)
    decoder_before = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    trainable_before = {k: v.clone() for k, v in vae.trainable_state_dict().items()}
    fit(vae, tokenized(), steps=5, eval_every=100)
    for key, value in vae.decoder.state_dict().items():
        assert torch.equal(value, decoder_before[key]), key
    after = vae.trainable_state_dict()
    for part in ("encoder.", "heads.", "injector."):
        keys = [k for k in after if k.startswith(part) and after[k].is_floating_point()]
        assert any(not torch.equal(after[k], trainable_before[k]) for k in keys), part


def test_training_lowers_reconstruction_loss_substantially():
    vae = make_vae("soft_prompt", steerable=True)
    history = fit(vae, tokenized(), steps=100, autocast_dtype=None)
    first_train = history["recon"][0][1]
    assert history["val_recon"][-1][1] < 0.7 * first_train
    assert history["stop_reason"] == "steps" and history["steps_run"] == 100
    assert {"loss", "kl", "beta", "lr", "records_per_s", "val_kl"} <= history.keys()


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_a_bfloat16_decoder_trains_the_float32_parts(mode):
    """`method.vae_dtype: bfloat16` (auto on AMX CPUs): the frozen decoder's weights are
    bf16, the encoder, heads and injector stay float32 and still learn."""
    decoder, _, encoder, _ = _tiny_models()
    decoder, encoder = copy.deepcopy(decoder), copy.deepcopy(encoder)
    _fan_in_init(decoder)
    decoder.to(torch.bfloat16)
    torch.manual_seed(0)
    vae = DiffLMVAE(encoder, decoder, VAEConfig(mode=mode, **SMALL))
    history = fit(vae, tokenized(), steps=100, autocast_dtype=None)
    trained = [p for p in vae.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert all(p.dtype == torch.bfloat16 for p in vae.decoder.parameters())
    assert history["val_recon"][-1][1] < 0.8 * history["recon"][0][1]


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_bf16_autocast_step_runs(mode):
    history = fit(make_vae(mode), tokenized(), steps=2, autocast_dtype=torch.bfloat16)
    assert all(math.isfinite(v) for _, v in history["loss"] + history["val_recon"])


def test_early_stopping_stops_and_restores_the_best_weights(monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])  # best at the 2nd evaluation
    snapshots = []

    def fake_evaluate(vae, val_batches, device, autocast_dtype=None):
        snapshots.append({k: v.clone() for k, v in vae.trainable_state_dict().items()})
        return {"val_recon": next(scripted), "val_kl": 1.0, "val_mu_std": 0.5}

    monkeypatch.setattr(train_vae_mod, "evaluate_vae", fake_evaluate)
    logged = []
    vae = make_vae("soft_prompt")
    history = fit(
        vae, tokenized(), steps=50, eval_every=2, early_stopping_patience=3, log=logged.append
    )
    assert history["stop_reason"] == "early_stopping"
    assert history["steps_run"] == 10 and history["best_step"] == 4
    assert [s for s, _ in history["val_recon"]] == [2, 4, 6, 8, 10]
    for key, value in vae.trainable_state_dict().items():
        assert torch.equal(value, snapshots[1][key]), key
    assert {"step", "loss", "recon", "kl", "beta", "lr", "records_per_s"} == logged[0].keys()
    assert {"step", "val_recon", "val_kl", "val_mu_std"} == logged[2].keys()


def test_save_load_round_trip_gives_identical_losses(tmp_path: Path):
    vae = make_vae("kv_memory", dropout=0.1)
    data = tokenized()
    fit(vae, data, steps=3)
    vae.save(tmp_path / "vae")
    encoder = copy.deepcopy(vae.encoder)
    with torch.no_grad():  # other weights: load must replace them
        for p in encoder.parameters():
            p.add_(torch.randn_like(p))
    loaded = DiffLMVAE.load(tmp_path / "vae", encoder, vae.decoder)
    assert loaded.config == vae.config and loaded.decoder_name == vae.decoder_name
    batch = model_inputs(next(batches(data, 8, shuffle=False)))
    vae.eval(), loaded.eval()
    with torch.no_grad():
        a, b = vae(**batch, sample=False), loaded(**batch, sample=False)
    assert torch.equal(a["recon"], b["recon"]) and torch.equal(a["mu"], b["mu"])
    other = copy.deepcopy(vae.decoder)
    other.config.num_hidden_layers = 1  # a differently shaped decoder is refused
    with pytest.raises(SynthloomError, match="trained against decoder"):
        DiffLMVAE.load(tmp_path / "vae", encoder, other)


# ---------------------------------------------------------------- beta schedules


def test_decreasing_beta_decays_on_plateau_and_respects_floor():
    beta = DecreasingBeta(start=0.1, decay=0.5, floor=0.02, patience=2)
    assert beta.update(0, None) == 0.1  # no recon loss: nothing changes
    for loss in (5.0, 4.0, 3.0):  # improving: beta stays
        assert beta.update(1, loss) == 0.1
    assert beta.update(2, 3.0) == 0.1  # 1st stalled check
    assert beta.update(3, 2.9999) == pytest.approx(0.05)  # 2nd (within rel_tol): decay
    assert beta.update(4, 3.1) == pytest.approx(0.05)  # counting restarts after a decay
    assert beta.update(5, 3.1) == pytest.approx(0.025)
    assert beta.update(6, 2.0) == pytest.approx(0.025)  # improvement resets the count
    for step in range(7, 20):
        beta.update(step, 2.5)
    assert beta.value == 0.02  # never below the floor


def test_cyclical_beta_ramps_then_holds_each_cycle():
    beta = CyclicalBeta(max_beta=1.0, cycle_steps=10, ratio=0.5)
    values = [beta.update(step) for step in range(20)]
    assert values[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert values[6:10] == [1.0] * 4
    assert values[10:20] == pytest.approx(values[:10])  # the next cycle repeats
    assert beta.value == values[-1]


# ---------------------------------------------------------------- real models


@pytest.fixture(scope="session")
def real_models(tmp_path_factory):
    from synthloom.models import load_causal_lm, load_encoder

    decoder, dec_tok = load_causal_lm(cache_dir=tmp_path_factory.mktemp("models"), device="cpu")
    encoder, enc_tok = load_encoder(device="cpu")
    return encoder, enc_tok, decoder, dec_tok


@pytest.mark.integration
def test_two_training_steps_with_minilm_and_smollm2(real_models):
    encoder, enc_tok, decoder, dec_tok = real_models
    texts = [
        f'{{"age": {30 + i}, "workclass": "{w}", "hours": {35 + 2 * i}}}'
        for i, w in enumerate(["Private", "State-gov", "Self-emp", "Local-gov"] * 2)
    ]
    data = tokenize_records(texts, enc_tok, dec_tok, 64, 64)
    assert (data["dec_ids"][:, 0] == dec_tok.bos_token_id).all()
    vae = DiffLMVAE(encoder, decoder, VAEConfig())  # soft prompt, k = 16, d = 64
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    history = train_vae(
        vae,
        lambda epoch: batches(data, 4, True, seed=epoch),
        lambda: batches(data, 8, False),
        steps=2,
        lr=1e-4,
        beta_schedule=DecreasingBeta(),
        eval_every=2,
        early_stopping_patience=3,
        device="cpu",
        seed=0,
    )
    assert all(math.isfinite(v) for _, v in history["loss"] + history["val_recon"])
    assert all(torch.equal(v, before[k]) for k, v in decoder.state_dict().items())
