"""Model loading, pooling and devices: fast tests on tiny models, integration on real ones."""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from synthloom.errors import ConfigError, SynthloomError
from synthloom.models import (
    autocast_dtype,
    causal_lm_info,
    encode_texts,
    load_causal_lm,
    load_encoder,
    mean_pool,
    resolve_device,
    set_seed,
    tiny_causal_lm,
    tiny_encoder,
)
from synthloom.models import causal_lm as causal_lm_mod

# ---------------------------------------------------------------- devices


def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("CPU") == torch.device("cpu")
    assert autocast_dtype("cpu") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_resolve_device_cuda_without_gpu_is_config_error():
    with pytest.raises(ConfigError, match=r"run\.device=cuda.*no GPU.*Fix: set run\.device: auto"):
        resolve_device("cuda")


def test_resolve_device_unknown_name():
    with pytest.raises(ConfigError, match="Fix:"):
        resolve_device("tpu")


def test_set_seed_makes_all_rngs_repeat():
    import random

    set_seed(7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_seed(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


# ---------------------------------------------------------------- tiny causal LM


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_causal_lm(seed=0)


def test_tiny_causal_lm_is_deterministic_and_offline():
    model_a, tok_a = tiny_causal_lm(seed=3)  # built in memory: no file, no network
    model_b, tok_b = tiny_causal_lm(seed=3)
    assert tok_a.get_vocab() == tok_b.get_vocab()
    assert all(
        torch.equal(a, b) for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True)
    )
    assert not model_a.training


def test_tiny_tokenizer_round_trips_any_json_record(tiny_lm):
    _, tok = tiny_lm
    text = '{"name": "Zoë", "note": "tab\\there ~ {}[]", "x": -1.5e-3, "ok": null}'
    assert tok.decode(tok(text)["input_ids"]) == text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")


def test_tiny_causal_lm_forward_shape(tiny_lm):
    model, tok = tiny_lm
    batch = tok(["a short one", "a somewhat longer prompt"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], model.config.vocab_size)


def test_tiny_causal_lm_left_pads_and_generates(tiny_lm):
    model, tok = tiny_lm
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert tok.padding_side == "left"
    prompts = ["hi", '{"name": "Alice", "age":']
    batch = tok(prompts, padding=True, return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1
    kw = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
    out = model.generate(**batch, **kw)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
    # Left padding must not change what the short prompt continues with.
    alone = model.generate(**tok(prompts[:1], return_tensors="pt"), **kw)
    assert torch.equal(out[0, -4:], alone[0, -4:])


def test_causal_lm_info(tiny_lm):
    info = causal_lm_info(tiny_lm[0])
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["num_parameters"] == sum(p.numel() for p in tiny_lm[0].parameters())
    assert info["dtype"] == "float32"
    assert info["vocab_size"] == len(tiny_lm[1])


def test_load_causal_lm_from_local_dir_sets_pad_token(tmp_path):
    model, tok = tiny_causal_lm()
    tok.pad_token = None
    tok.padding_side = "right"
    model.generation_config.pad_token_id = None
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_causal_lm(str(tmp_path / "m"), device="cpu", cache_dir=tmp_path)
    assert loaded_tok.pad_token == loaded_tok.eos_token
    assert loaded_tok.padding_side == "left"
    assert loaded.generation_config.pad_token_id == loaded_tok.eos_token_id
    assert not loaded.training and loaded.device.type == "cpu" and loaded.dtype == torch.float32


# ---------------------------------------------------------------- unknown models


@pytest.fixture
def hub_offline(monkeypatch):
    """Make hub lookups fail at once instead of retrying an unreachable network."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("name", ["no-such-org/no-such-model", "./no/such/dir", "/no/such/dir"])
def test_unknown_causal_lm_is_synthloom_error_with_fix(name, tmp_path, hub_offline):
    with pytest.raises(SynthloomError) as err:
        load_causal_lm(name, device="cpu", cache_dir=tmp_path)
    assert type(err.value) is SynthloomError
    msg = str(err.value)
    assert name in msg and "could not be found or reached" in msg
    assert "Fix:" in msg and "smollm2-135m-instruct" in msg and "config.json" in msg


def test_unknown_encoder_is_synthloom_error_with_fix(hub_offline):
    with pytest.raises(SynthloomError, match=r"could not be found.*Fix:.*minilm-l6"):
        load_encoder("no-such-org/no-such-encoder", device="cpu")


def test_local_dir_without_config_is_synthloom_error(tmp_path):
    with pytest.raises(SynthloomError, match="config.json"):
        load_causal_lm(str(tmp_path), device="cpu", cache_dir=tmp_path)


# ---------------------------------------------------------------- built-in cache handling


def _fake_convert(alias, out_dir):
    (out_dir / "config.json").write_text("{}")
    (out_dir / "model.safetensors").write_bytes(b"weights")


def test_builtin_copy_converts_once_and_leaves_no_temp_dirs(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        causal_lm_mod, "_convert_gguf", lambda a, d: (calls.append(a), _fake_convert(a, d))
    )
    alias = "smollm2-135m-instruct"
    (tmp_path / f".{alias}.tmp-killed").mkdir()  # left behind by a killed conversion
    assert causal_lm_mod.builtin_copy(alias, tmp_path) == tmp_path / alias
    assert causal_lm_mod.builtin_copy(alias, tmp_path) == tmp_path / alias
    assert calls == [alias]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{alias}.lock", alias]


def test_builtin_copy_failed_conversion_leaves_nothing_loadable(tmp_path, monkeypatch):
    def broken(alias, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed half-way through writing

    monkeypatch.setattr(causal_lm_mod, "_convert_gguf", broken)
    alias = "smollm2-135m-instruct"
    with pytest.raises(KeyboardInterrupt):
        causal_lm_mod.builtin_copy(alias, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f".{alias}.lock"]


def test_builtin_copy_accepts_losing_the_rename_race(tmp_path, monkeypatch):
    alias = "smollm2-135m-instruct"

    def convert_then_lose(a, out_dir):
        _fake_convert(a, out_dir)
        (tmp_path / alias).mkdir()  # another process (no lock on this OS) renamed first
        _fake_convert(a, tmp_path / alias)

    monkeypatch.setattr(causal_lm_mod, "_convert_gguf", convert_then_lose)
    assert causal_lm_mod.builtin_copy(alias, tmp_path) == tmp_path / alias
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{alias}.lock", alias]


# ---------------------------------------------------------------- encoder


def test_mean_pool_ignores_padded_positions():
    h = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]]
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.tensor([[(1 + 3) / 2, (2 + 4) / 2], [(5 + 7 + 9) / 3, (6 + 8 + 10) / 3]])
    assert torch.allclose(mean_pool(h, mask), expected)
    assert torch.equal(mean_pool(h, torch.zeros(2, 3)), torch.zeros(2, 2))  # no division by 0


@pytest.fixture(scope="module")
def tiny_enc():
    return tiny_encoder(seed=0)


def test_tiny_encoder_builds_with_bert_tokenizer():
    model, tok = tiny_encoder()
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 32
    assert tok.decode(tok("Hello World")["input_ids"]) == "[CLS] hello world [SEP]"


def test_encode_texts_unit_norm_deterministic_and_order_preserving(tiny_enc):
    model, tok = tiny_enc
    texts = ["a much longer sentence about a quick brown fox", "hi", "", "JSON {x: 1}"] * 5
    emb = encode_texts(model, tok, texts, batch_size=3)
    assert emb.shape == (len(texts), 32) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb, encode_texts(model, tok, texts, batch_size=3))
    one_by_one = np.stack([encode_texts(model, tok, [t])[0] for t in texts])
    assert np.allclose(emb, one_by_one, atol=1e-5)
    raw = encode_texts(model, tok, texts[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert encode_texts(model, tok, []).shape == (0, 32)


# ---------------------------------------------------------------- real models


@pytest.mark.integration
def test_builtin_causal_lm_converts_once_then_loads_the_copy(tmp_path):
    model, tok = load_causal_lm("smollm2-135m-instruct", device="cpu", cache_dir=tmp_path)
    info = causal_lm_info(model)
    assert info["architecture"] == "LlamaForCausalLM" and info["vocab_size"] == 49152
    assert 130e6 < info["num_parameters"] < 140e6
    assert tok.pad_token == tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    assert tok.chat_template
    # the second load reads the converted copy: converting again would fail here
    # (what was a wall-clock bound, which a loaded machine breaks)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(causal_lm_mod, "_convert_gguf", lambda *a: pytest.fail("converted again"))
        again, _ = load_causal_lm("smollm2-135m-instruct", device="cpu", cache_dir=tmp_path)
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".smollm2-135m-instruct.lock", "smollm2-135m-instruct"]


@pytest.mark.integration
def test_builtin_encoder_puts_paraphrases_closer():
    model, tok = load_encoder("minilm-l6", device="cpu")
    emb = encode_texts(
        model,
        tok,
        [
            "A man is playing a guitar.",
            "Someone strums a guitar.",
            "The stock market fell sharply today.",
        ],
    )
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_quiet_loading_silences_the_gguf_converters_progress_bar_and_restores_it(capfd):
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from synthloom.models.causal_lm import quiet_loading

    original = gguf_utils.tqdm
    with quiet_loading():
        assert list(gguf_utils.tqdm(range(3), desc="Converting")) == [0, 1, 2]
    assert "Converting" not in capfd.readouterr().err
    assert gguf_utils.tqdm is original
    list(gguf_utils.tqdm(range(3), desc="Converting", mininterval=0))
    assert "Converting" in capfd.readouterr().err  # the check above can fail


def test_split_output_head_reproduces_the_models_logits():
    from synthloom.models.output_head import split_output_head
    from synthloom.models.tiny import tiny_causal_lm

    model, tok = tiny_causal_lm(seed=4)
    split = split_output_head(model)
    assert split is not None and split_output_head(model) is split  # probed once
    ids = tok("a b c", return_tensors="pt").input_ids
    with torch.inference_mode():
        full = model(input_ids=ids).logits[:, -1]
        hidden = split.body(input_ids=ids).last_hidden_state[:, -1]
        subset = torch.tensor([0, 7, 42])
        assert torch.allclose(split.logits(hidden), full, atol=1e-5)
        assert torch.allclose(split.logits(hidden, subset), full[:, subset], atol=1e-5)


def test_split_output_head_refuses_a_model_whose_logits_are_not_the_plain_head():
    """A model that scales its logits (as some architectures do) gets no split, so the
    decoding loop keeps its full forward pass."""
    from synthloom.models.output_head import split_output_head
    from synthloom.models.tiny import tiny_causal_lm

    model, _ = tiny_causal_lm(seed=4)
    plain_forward = model.forward

    def scaled(*args, **kwargs):
        out = plain_forward(*args, **kwargs)
        out.logits = out.logits * 2.0
        return out

    model.forward = scaled
    assert split_output_head(model) is None


def test_frozen_model_dtype_follows_the_config_and_measures_the_cpu():
    from synthloom.models.device import (
        CPU_BF16_MIN_SPEEDUP,
        cpu_matmul_speedup_bf16,
        frozen_model_dtype,
    )

    assert frozen_model_dtype("float32", "cpu") is torch.float32
    assert frozen_model_dtype("bfloat16", "cpu") is torch.bfloat16
    assert frozen_model_dtype("auto", "cuda") is None  # the loader's default: bf16 where supported
    speedup = cpu_matmul_speedup_bf16()
    assert speedup > 0 and cpu_matmul_speedup_bf16() == speedup  # measured once
    expected = torch.bfloat16 if speedup >= CPU_BF16_MIN_SPEEDUP else torch.float32
    assert frozen_model_dtype("auto", "cpu") is expected
    with pytest.raises(ConfigError, match="auto, float32 or bfloat16"):
        frozen_model_dtype("fp8", "cpu")
