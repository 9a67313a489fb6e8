"""DiffLM training recipe (issue 17): anchored injector init, data-dependent latent init,
parameter groups with warmup / cosine, the time budget, the latent-spread diagnostic.

Tiny offline models, single-threaded; each test checks a formula or a contract exactly.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch

from synthloom.config import DiffLMConfig, PipelineConfig, config_hash
from synthloom.methods.difflm.beta import DecreasingBeta
from synthloom.methods.difflm.fit import (
    ANCHOR_FILLER,
    anchor_token_ids,
    encoding_seconds,
    init_heads_from_records,
)
from synthloom.methods.difflm.train_vae import (
    batches,
    evaluate_vae,
    lr_factor,
    tokenize_records,
    train_vae,
)
from synthloom.models import tiny_causal_lm, tiny_encoder
from synthloom.models.vae import DiffLMVAE, VAEConfig

RECORDS = [
    f'{{"name": "p{i}", "age": {20 + 3 * i}, "city": "{city}"}}'
    for i, city in enumerate(["Paris", "Rome", "Oslo", "Lima"] * 4)
]
SMALL = {"latent_dim": 8, "num_prompts": 4, "injector_hidden": 32, "dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def _tiny_models():
    return (*tiny_causal_lm(), *tiny_encoder())


def make_vae(mode: str, **cfg) -> DiffLMVAE:
    decoder, _, encoder, _ = _tiny_models()
    decoder, encoder = copy.deepcopy(decoder), copy.deepcopy(encoder)
    torch.manual_seed(0)
    return DiffLMVAE(encoder, decoder, VAEConfig(mode=mode, **(SMALL | cfg)))


def tokenized(texts=RECORDS) -> dict[str, torch.Tensor]:
    _, dec_tok, _, enc_tok = _tiny_models()
    return tokenize_records(texts, enc_tok, dec_tok, 64, 64)


def anchor_ids(k: int = 4) -> list[int]:
    return anchor_token_ids(_tiny_models()[1], k, "one record as JSON:")


# ---------------------------------------------------------------- anchored injector


def test_anchor_token_ids_are_k_ids_ending_with_the_text():
    tok = _tiny_models()[1]
    text_ids = tok("one record as JSON:", add_special_tokens=False)["input_ids"]
    short = anchor_token_ids(tok, 2, "one record as JSON:")
    assert short == text_ids[-2:]
    long = anchor_token_ids(tok, len(text_ids) + 3, "one record as JSON:")
    filler = tok(ANCHOR_FILLER, add_special_tokens=False)["input_ids"]
    assert len(long) == len(text_ids) + 3 and long[-len(text_ids) :] == text_ids
    assert long[: -len(text_ids)] == (filler * 8)[-3:]


@pytest.mark.parametrize("mode", ["soft_prompt", "kv_memory"])
def test_anchored_injection_at_a_vanishing_residual_is_the_decoder_reading_the_anchor(mode):
    """With residual_scale ~ 0 the injected prefix IS the anchor text: the record's token
    losses equal those of the plain decoder run on [anchor ids, record] (positions and
    rotary phases included)."""
    ids = anchor_ids()
    vae = make_vae(mode, anchor_ids=ids, residual_scale=1e-9).eval()
    data = tokenized(RECORDS[:3])
    z = torch.randn(3, SMALL["latent_dim"])
    with torch.no_grad():
        got = vae.reconstruction_loss(vae.inject(z), data["dec_ids"], data["dec_mask"])
        dec = vae.decoder
        want = []
        for row, mask in zip(data["dec_ids"], data["dec_mask"], strict=True):
            record = row[mask.bool()]
            full = torch.cat([torch.tensor(ids), record])[None]
            logits = dec(input_ids=full).logits[0, len(ids) : -1]  # predict record[1:]
            want.append(torch.nn.functional.cross_entropy(logits.float(), record[1:]))
    assert torch.allclose(got, torch.stack(want), atol=1e-5), (got, want)


@pytest.mark.parametrize("mode", ["soft_prompt", "kv_memory"])
def test_residual_scale_sets_the_z_dependent_part_and_random_init_has_no_anchor(mode):
    ids = anchor_ids()
    z = torch.randn(64, SMALL["latent_dim"])

    def spread(vae: DiffLMVAE) -> float:
        with torch.no_grad():
            inj = vae.inject(z)
        out = inj.prefix_embeds if mode == "soft_prompt" else inj.past_key_values[0][1]
        return out.float().std(dim=0).mean().item()  # across latents: z's part only

    small = spread(make_vae(mode, anchor_ids=ids, residual_scale=0.1))
    full = spread(make_vae(mode, anchor_ids=ids, residual_scale=1.0))
    assert small == pytest.approx(0.1 * full, rel=1e-3)
    random = make_vae(mode)
    assert random.injector.anchor is None
    assert not any("anchor" in key for key in random.trainable_state_dict())


def test_anchor_of_the_wrong_length_is_refused_with_the_fix():
    with pytest.raises(Exception, match="num_prompts"):
        VAEConfig(num_prompts=4, anchor_ids=[1, 2])


def test_anchored_vae_saves_and_loads_to_the_same_losses(tmp_path):
    vae = make_vae("kv_memory", anchor_ids=anchor_ids()).eval()
    with torch.no_grad():
        vae.injector.anchor.add_(0.5)  # a trained anchor, not the init
    vae.save(tmp_path / "vae")
    decoder, _, encoder, _ = _tiny_models()
    loaded = DiffLMVAE.load(tmp_path / "vae", copy.deepcopy(encoder), vae.decoder).eval()
    data = tokenized(RECORDS[:4])
    inputs = {k: data[k] for k in ("enc_ids", "enc_mask", "dec_ids", "dec_mask")}
    with torch.no_grad():
        a = vae(**inputs, sample=False)["recon"]
        b = loaded(**inputs, sample=False)["recon"]
    assert torch.equal(a, b)


# ---------------------------------------------------------------- latent init


def test_pca_init_spreads_the_pooled_states_of_the_records():
    vae = make_vae("soft_prompt").eval()
    data = tokenized()
    init_heads_from_records(vae, data, torch.device("cpu"), logvar=-2.0)
    with torch.no_grad():
        mu, logvar = vae.encode(data["enc_ids"], data["enc_mask"])
    assert torch.allclose(mu.mean(dim=0), torch.zeros(8), atol=1e-4)
    cov = torch.cov(mu.T)  # 16 records, 8 dims: rank allows 8 directions
    variances = torch.diagonal(cov)
    assert torch.allclose(cov, torch.diag(variances), atol=1e-4)  # uncorrelated
    assert variances.mean().item() == pytest.approx(1.0, rel=1e-4)  # one common scale
    assert (variances[:-1] >= variances[1:] - 1e-6).all()  # principal order kept
    assert torch.allclose(logvar, torch.full_like(logvar, -2.0))


def test_pca_init_keeps_a_rank_deficient_sample_finite():
    vae = make_vae("soft_prompt").eval()
    data = tokenized(RECORDS[:3])  # 3 records: centred rank 2 < 8 latent dims
    init_heads_from_records(vae, data, torch.device("cpu"), logvar=0.0)
    with torch.no_grad():
        mu, _ = vae.encode(data["enc_ids"], data["enc_mask"])
    assert torch.isfinite(mu).all()
    assert torch.count_nonzero(vae.heads.proj.weight[:8].abs().sum(dim=1)) == 2


def test_evaluate_vae_reports_the_spread_of_the_latent_means():
    vae = make_vae("soft_prompt").eval()
    data = tokenized()
    init_heads_from_records(vae, data, torch.device("cpu"), logvar=-2.0)
    out = evaluate_vae(vae, batches(data, 16, False), torch.device("cpu"))
    with torch.no_grad():
        mu, _ = vae.encode(data["enc_ids"], data["enc_mask"])
    assert out["val_mu_std"] == pytest.approx(mu.std(dim=0).mean().item(), rel=1e-5)
    assert 0.5 < out["val_mu_std"] <= 1.0  # mean variance 1: mean std at most 1


# ---------------------------------------------------------------- optimiser


def test_lr_factor_warmup_constant_and_cosine():
    assert [lr_factor(s, 4, 0.0, "constant") for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(10, 4, 0.7, "constant") == 1.0
    assert lr_factor(4, 4, 0.0, "cosine") == 1.0
    assert lr_factor(9, 4, 0.5, "cosine") == pytest.approx(0.5)
    assert lr_factor(9, 4, 1.5, "cosine") == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(9, 0, 0.5, "linear")


def _train(vae, data, steps, **kw):
    return train_vae(
        vae,
        lambda epoch: batches(data, 8, True, seed=epoch),
        lambda: batches(data, 16, False),
        steps=steps,
        lr=1e-3,
        beta_schedule=DecreasingBeta(start=1e-3, floor=1e-4),
        eval_every=100,
        early_stopping_patience=100,
        device="cpu",
        **kw,
    )


def test_head_lr_drives_heads_and_injector_and_the_encoder_keeps_its_own():
    vae = make_vae("kv_memory")
    logged = []
    _train(vae, tokenized(), 3, head_lr=0.02, lr_schedule="cosine", log=logged.append)
    lrs = [r["lr"] for r in logged if "lr" in r]
    assert lrs[0] == pytest.approx(0.02)  # step 0 of 3: cosine at progress 0
    assert lrs[1] == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi / 3)))


def test_head_lr_none_trains_exactly_like_one_learning_rate():
    a, b = make_vae("kv_memory"), make_vae("kv_memory")
    _train(a, tokenized(), 3, seed=0)
    _train(b, tokenized(), 3, seed=0, head_lr=1e-3)
    for key, value in a.trainable_state_dict().items():
        assert torch.equal(value, b.trainable_state_dict()[key]), key


def test_minutes_budget_stops_on_the_clock_and_keeps_the_best_weights():
    ticks = iter(range(0, 10_000, 30))  # every call advances 30 s
    vae = make_vae("soft_prompt")
    history = _train(vae, tokenized(), 50, max_minutes=2.0, clock=lambda: next(ticks))
    assert history["stop_reason"] == "minutes"
    assert 1 <= history["steps_run"] < 50
    assert history["val_recon"] and history["val_recon"][-1][0] == history["steps_run"]


def _timed_training(tail_seconds: float) -> dict:
    """A 2-minute budget on a clock that only moves with the work: 10 s a training batch,
    25 s a validation pass, validation every 3 steps."""
    now = [0.0]
    data = tokenized()

    def train_batches(epoch):
        for batch in batches(data, 8, True, seed=epoch):
            now[0] += 10
            yield batch

    def val_batches():
        now[0] += 25
        yield from batches(data, 16, False)

    return train_vae(
        make_vae("soft_prompt"),
        train_batches,
        val_batches,
        steps=50,
        lr=1e-3,
        beta_schedule=DecreasingBeta(start=1e-3, floor=1e-4),
        eval_every=3,
        early_stopping_patience=100,
        device="cpu",
        max_minutes=2.0,
        tail_seconds=tail_seconds,
        clock=lambda: now[0],
    )


def test_minutes_budget_reserves_the_final_validation_and_the_work_after_training():
    # no tail: step 6 ends at 85 s and validates (110 s); 110 + a 25 s validation >= 120
    alone = _timed_training(0.0)
    assert alone["stop_reason"] == "minutes" and alone["steps_run"] == 6
    # the validation at step 6 is the final one: it is not run a second time
    assert [s for s, _ in alone["val_recon"]] == [3, 6]
    # a 30 s tail: after step 4 (65 s) 65 + 25 + 30 >= 120, so training stops there and
    # its final validation ends at 90 s, leaving the 30 s for the caller's work
    reserved = _timed_training(30.0)
    assert reserved["stop_reason"] == "minutes" and reserved["steps_run"] == 4
    assert [s for s, _ in reserved["val_recon"]] == [3, 4]


def test_encoding_seconds_scales_one_timed_pass_to_every_record():
    ticks = iter([100.0, 103.0])  # the timed pass over the first 8 records takes 3 s
    data = tokenized()  # 16 records
    seconds = encoding_seconds(
        make_vae("kv_memory"), data, torch.device("cpu"), sample=8, clock=lambda: next(ticks)
    )
    assert seconds == pytest.approx(3.0 * 16 / 8)


# ---------------------------------------------------------------- config identity


def _config(**method) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "data": {"source": "x.csv", "target": "y"},
            "method": {"name": "difflm", **method},
            "generate": {"num_rows": 10},
        }
    )


# config_hash of _config() before the recipe keys existed (computed at commit 12ff6f4)
PRE_RECIPE_HASH = "844c3b5eb9e9a409be13fd4f29bdb4907472907f937873eb441ede2a2295974d"
PAPER_RECIPE = {
    "injector_init": "random",
    "latent_init": "random",
    "encoder_dropout": True,
    "vae_head_lr": None,
    "vae_lr_schedule": "constant",
    "vae_warmup_steps": 0,
    "vae_minutes": None,
    "loss_tokens": "all",
    "max_record_tokens": 160,  # the default before auto
    "column_order": "schema",
    "encoder_numeric_features": False,
    "vae_dtype": "float32",  # the decoder's dtype in CPU training before the key existed
    "class_conditional": False,  # the paper's unconditional latent diffusion
    "derive_linear": False,  # every column in the records (the default, as the paper)
    "diffusion_ema": 0.0,  # the best epoch's denoiser weights
}


def test_the_paper_recipe_keeps_the_run_ids_of_runs_made_before_the_recipe_existed():
    assert config_hash(_config(**PAPER_RECIPE)) == PRE_RECIPE_HASH
    assert config_hash(_config()) != PRE_RECIPE_HASH  # the new defaults are a new run
    for key in ("latent_init", "injector_init", "vae_lr_schedule"):
        changed = PAPER_RECIPE | {key: DiffLMConfig.model_fields[key].default}
        assert config_hash(_config(**changed)) != PRE_RECIPE_HASH, key
    assert DiffLMConfig(name="difflm").injector_residual_scale == 0.1
    # keys that came later keep the ids at their defaults (checkpointing, number rounding)
    assert config_hash(_config(**PAPER_RECIPE, checkpoint_seconds=120)) == PRE_RECIPE_HASH
    assert config_hash(_config(**PAPER_RECIPE, number_digits=2)) != PRE_RECIPE_HASH
    assert config_hash(_config(**PAPER_RECIPE | {"derive_linear": True})) != PRE_RECIPE_HASH
    # without the class-conditional diffusion its keys change nothing, so not the id either
    unguided = PAPER_RECIPE | {"label_dropout": 0.0, "guidance_scale": 1.0}
    assert config_hash(_config(**unguided, conditioning="target_and_binary")) == PRE_RECIPE_HASH
    guided = PAPER_RECIPE | {"class_conditional": True}
    assert config_hash(_config(**guided)) != config_hash(_config(**guided, guidance_scale=1.5))


# ---------------------------------------------------------------- value-slot loss


def test_value_spans_cover_values_and_what_ends_them():
    from synthloom.serialize import value_spans

    text = '{"Status": "good", "Seniority": 9, "Records": false, "Note": null}'
    assert [text[a:b] for a, b in value_spans(text, "json")] == ['good"', "9,", "false,", "null}"]
    compact = '["a \\"b\\"", 1.5, true]'
    assert [compact[a:b] for a, b in value_spans(compact, "compact")] == [
        'a \\"b\\""',
        "1.5,",
        "true]",
    ]
    assert value_spans("def f(): pass", "raw") == [(0, 13)]
    assert value_spans('{"a":1}', "json") == [(0, 7)]  # not the canonical layout: all
    assert value_spans("not json", "json") == [(0, 8)]


def test_value_weights_mark_the_value_tokens_and_eos_only():
    _, dec_tok, _, enc_tok = _tiny_models()
    from synthloom.serialize import value_spans

    texts = ['{"name": "p1", "age": 23}', '{"name": "p22", "age": 5}']
    data = tokenize_records(
        texts, enc_tok, dec_tok, 64, 64, value_spans=[value_spans(t, "json") for t in texts]
    )
    weight, ids, mask = data["dec_weight"], data["dec_ids"], data["dec_mask"]
    assert weight.shape == ids.shape
    assert (weight[mask == 0] == 0).all() and (weight[:, 0] == 0).all()  # padding, BOS
    for row in range(2):
        n = int(mask[row].sum())
        assert weight[row, n - 1] == 1  # EOS
        kept = dec_tok.decode(ids[row, 1 : n - 1][weight[row, 1 : n - 1] > 0])
        dropped = dec_tok.decode(ids[row, 1 : n - 1][weight[row, 1 : n - 1] == 0])
        assert "p" in kept and "name" not in kept and "age" not in kept
        assert "name" in dropped and "age" in dropped


def test_weighted_reconstruction_loss_is_the_mean_over_the_weighted_targets():
    vae = make_vae("kv_memory").eval()
    data = tokenized(RECORDS[:2])
    ids, mask = data["dec_ids"], data["dec_mask"]
    weight = torch.zeros_like(mask, dtype=torch.float)
    weight[:, 3:6] = 1.0
    z = torch.zeros(2, SMALL["latent_dim"])
    with torch.no_grad():
        injection = vae.inject(z)
        every = vae.reconstruction_loss(injection, ids, mask, torch.ones_like(weight))
        assert torch.equal(every, vae.reconstruction_loss(injection, ids, mask))
        part = vae.reconstruction_loss(injection, ids, mask, weight)
        one = vae.reconstruction_loss(injection, ids, mask, (torch.arange(ids.shape[1]) == 4)[None])
    # the mean over targets 3, 4, 5 equals the mean of the three one-target losses
    singles = []
    for t in (3, 4, 5):
        w = torch.zeros_like(weight)
        w[:, t] = 1.0
        with torch.no_grad():
            singles.append(vae.reconstruction_loss(injection, ids, mask, w))
    assert torch.allclose(part, torch.stack(singles).mean(dim=0), atol=1e-6)
    assert torch.allclose(one, singles[1])


# ---------------------------------------------------------------- LoRA on the decoder


def test_lora_starts_as_the_frozen_decoder_and_trains_only_its_adapters():
    frozen, adapted = make_vae("kv_memory"), make_vae("kv_memory", lora_rank=2)
    data = tokenized(RECORDS[:4])
    z = torch.randn(4, SMALL["latent_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        args = (data["dec_ids"], data["dec_mask"])
        before = adapted.reconstruction_loss(adapted.inject(z), *args)
        assert torch.equal(before, frozen.reconstruction_loss(frozen.inject(z), *args))  # B = 0
    lora_keys = [k for k in adapted.trainable_state_dict() if k.startswith("lora.")]
    assert lora_keys and all(k.endswith(("__a", "__b")) for k in lora_keys)
    assert not any("base" in k for k in adapted.trainable_state_dict())  # no frozen weights
    weights = {n: p.detach().clone() for n, p in adapted.decoder.named_parameters()}
    _train(adapted, data, 3, head_lr=1e-2)
    for name, param in adapted.decoder.named_parameters():
        moved = not torch.equal(param, weights[name])
        assert moved == ("lora_" in name), name  # adapters move, frozen weights do not
    with torch.no_grad():
        after = adapted.reconstruction_loss(adapted.inject(z), *args)
    assert not torch.equal(after, before)


def test_lora_vae_saves_and_loads_its_adapters(tmp_path):
    vae = make_vae("soft_prompt", lora_rank=2)
    _train(vae, tokenized(), 2, head_lr=1e-2)
    vae.save(tmp_path / "vae")
    decoder, _, encoder, _ = _tiny_models()
    loaded = DiffLMVAE.load(tmp_path / "vae", copy.deepcopy(encoder), copy.deepcopy(decoder))
    for key, value in vae.trainable_state_dict().items():
        assert torch.equal(value, loaded.trainable_state_dict()[key]), key
    data = tokenized(RECORDS[:3])
    z = torch.zeros(3, SMALL["latent_dim"])
    with torch.no_grad():
        a = vae.eval().reconstruction_loss(vae.inject(z), data["dec_ids"], data["dec_mask"])
        b = loaded.reconstruction_loss(loaded.inject(z), data["dec_ids"], data["dec_mask"])
    assert torch.allclose(a, b)


def test_lora_attaches_once_per_decoder_and_names_the_fix():
    from synthloom.errors import SynthloomError
    from synthloom.models.lora import attach_lora

    vae = make_vae("kv_memory", lora_rank=2)
    with pytest.raises(SynthloomError, match="already has an adapter"):
        attach_lora(vae.decoder, 2, 16.0)
    with pytest.raises(SynthloomError, match="decoder_lora_rank: 0"):
        attach_lora(vae.decoder, 2, 16.0, targets=("no_such_layer",))


def test_lora_keeps_a_bfloat16_layer_in_bfloat16():
    from synthloom.models.lora import LoRALinear

    layer = LoRALinear(torch.nn.Linear(4, 3).to(torch.bfloat16), rank=2, alpha=4.0)
    torch.nn.init.ones_(layer.lora_b)
    x = torch.ones(2, 4, dtype=torch.bfloat16)
    out = layer(x)
    assert out.dtype == torch.bfloat16 and layer.lora_a.dtype == torch.float32
    expected = layer.base(x).float() + 2.0 * (x.float() @ layer.lora_a.T) @ layer.lora_b.T
    assert torch.allclose(out.float(), expected, atol=0.1)


def test_the_denoiser_average_spans_about_the_last_quarter_of_the_steps_by_default():
    from synthloom.methods.difflm.latent_diffusion import averaging_decay

    default = DiffLMConfig(name="difflm").diffusion_ema
    assert default is None
    assert averaging_decay(default, 4000) == pytest.approx(0.999)
    assert averaging_decay(default, 600) == pytest.approx(1 - 4 / 600)
    assert averaging_decay(default, 2) == 0.0  # too short to average
    assert averaging_decay(0.0, 2000) == 0.0  # the paper's best epoch
    assert averaging_decay(0.99, 600) == 0.99
