"""DiffLM decoding loop: token-exact against a cache-free reference, on the tiny LM.

Exactness tests run the tiny model in float64, so that the cached loop and the reference
(which recomputes every position at every step) cannot differ by a rounding-level argmax
flip; the loop itself is dtype-agnostic and the other tests run it in float32 (one in
bfloat16). Injections are random tensors of the right shapes, not the VAE's.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import DynamicCache

from synthloom.methods.difflm.decode import (
    NUCLEUS_CANDIDATES,
    DecodeResult,
    PreallocatedKVCache,
    _sample,
    batched,
    decode_records,
)
from synthloom.models.injection import INJECTION_MODES, Injection
from synthloom.models.kv_cache import CACHE_KEY, cache_kwargs, output_cache
from synthloom.models.tiny import lively_tiny_causal_lm

K = 4  # prefix length of soft-prompt and KV-memory injections


lively_tiny_lm = lively_tiny_causal_lm  # larger random weights: output depends on the input


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm64():
    return lively_tiny_lm(torch.float64)


@pytest.fixture(scope="module")
def lm32():
    return lively_tiny_lm()


def make_injection(model, mode: str, batch: int, seed: int = 0) -> Injection:
    """Random injection of the right shapes, scaled like the model's token embeddings."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    weight = model.get_input_embeddings().weight
    std, kw = weight.std().item(), {"generator": g, "dtype": weight.dtype}
    if mode == "soft_prompt":
        return Injection(prefix_embeds=torch.randn(batch, K, cfg.hidden_size, **kw) * std)
    if mode == "input_embedding":
        return Injection(embed_offset=torch.randn(batch, cfg.hidden_size, **kw) * std)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    shape = (batch, cfg.num_key_value_heads, K, head_dim)
    return Injection(
        past_key_values=tuple(
            (torch.randn(shape, **kw), torch.randn(shape, **kw))
            for _ in range(cfg.num_hidden_layers)
        )
    )


@torch.no_grad()
def naive_greedy(model, tok, injection: Injection, max_new_tokens: int, stops) -> list[list[int]]:
    """Row by row, re-run the whole sequence [prefix, BOS, generated...] without reusing any
    cache at every step, and take the argmax; stop at a stop token (excluded) or the budget."""
    embed = model.get_input_embeddings()
    out = []
    for i in range(injection.batch_size):
        row = injection.select(torch.tensor([i]))
        ids: list[int] = []
        for _ in range(max_new_tokens):
            tokens = embed(torch.tensor([[tok.bos_token_id, *ids]]))  # (1, 1+t, H)
            if row.prefix_embeds is not None:
                logits = model(inputs_embeds=torch.cat([row.prefix_embeds, tokens], 1)).logits
            elif row.embed_offset is not None:
                logits = model(inputs_embeds=tokens + row.embed_offset[:, None]).logits
            else:  # the memory as past key values, a fresh cache every step
                memory = DynamicCache(ddp_cache_data=list(row.past_key_values))
                n = tokens.shape[1]
                logits = model(
                    inputs_embeds=tokens,
                    cache=memory,
                    attention_mask=torch.ones(1, K + n, dtype=torch.long),
                    position_ids=torch.arange(K, K + n)[None],
                ).logits
            token = int(logits[0, -1].argmax())
            if token in stops:
                break
            ids.append(token)
        out.append(ids)
    return out


def stops_that_end_rows_at_different_steps(result: DecodeResult) -> list[int]:
    """Stop tokens picked from free-running greedy output so that rows end at different
    steps: row i's token at step 2 + 3 * i, unless it already occurs earlier in that row."""
    stops: list[int] = []
    for i, ids in enumerate(result.token_ids[:3]):
        step = 2 + 3 * i
        if ids[step] not in ids[:step]:
            stops.append(ids[step])
    return stops


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_loop_matches_cache_free_reference(lm64, mode):
    model, tok = lm64
    inj = make_injection(model, mode, batch=5)
    budget = 14
    free = decode_records(model, tok, inj, max_new_tokens=budget, temperature=0, stop_token_ids=())
    stops = stops_that_end_rows_at_different_steps(free)
    expected = naive_greedy(model, tok, inj, budget, set(stops))
    assert len({len(ids) for ids in expected}) > 1, "rows should finish at different steps"
    for compact in (1, 1000):  # drop finished rows at once / never
        got = decode_records(
            model,
            tok,
            inj,
            max_new_tokens=budget,
            temperature=0,
            stop_token_ids=stops,
            min_batch_to_compact=compact,
        )
        assert got.token_ids == expected
        assert got.num_tokens.tolist() == [len(ids) for ids in expected]
        assert got.finished.tolist() == [len(ids) < budget for ids in expected]
        full_batch = inj.batch_size * got.forward_passes
        assert (got.row_forwards < full_batch) if compact == 1 else (got.row_forwards == full_batch)


def test_kv_memory_of_a_soft_prompt_decodes_like_the_soft_prompt(lm64):
    """The model's own keys/values of a soft prompt, given as KV memory, decode the same."""
    model, tok = lm64
    soft = make_injection(model, "soft_prompt", batch=3)
    with torch.no_grad():
        cache = model(inputs_embeds=soft.prefix_embeds, use_cache=True).cache
    memory = Injection(past_key_values=tuple((lay.keys, lay.values) for lay in cache.layers))
    a = decode_records(model, tok, soft, max_new_tokens=12, temperature=0, stop_token_ids=())
    b = decode_records(model, tok, memory, max_new_tokens=12, temperature=0, stop_token_ids=())
    assert a.token_ids == b.token_ids


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_row_alone_equals_row_in_batch(lm64, mode):
    model, tok = lm64
    inj = make_injection(model, mode, batch=4, seed=1)
    together = decode_records(model, tok, inj, max_new_tokens=10, temperature=0)
    for i in range(4):
        alone = decode_records(
            model, tok, inj.select(torch.tensor([i])), max_new_tokens=10, temperature=0
        )
        assert alone.token_ids[0] == together.token_ids[i]
        assert alone.texts[0] == together.texts[i]


def test_stop_tokens_end_rows_and_are_not_in_texts(lm32):
    model, tok = lm32
    inj = make_injection(model, "soft_prompt", batch=6, seed=2)
    free = decode_records(model, tok, inj, max_new_tokens=12, temperature=0, stop_token_ids=())
    assert free.num_tokens.tolist() == [12] * 6 and not free.finished.any()
    assert free.forward_passes == 12
    stop = free.token_ids[0][3]
    res = decode_records(model, tok, inj, max_new_tokens=12, temperature=0, stop_token_ids=[stop])
    for ids, free_ids, n, done, text in zip(
        res.token_ids, free.token_ids, res.num_tokens, res.finished, res.texts, strict=True
    ):
        assert stop not in ids and len(ids) == n <= 12
        assert ids == free_ids[: len(ids)]  # same prefix, cut at the first stop
        assert bool(done) == (stop in free_ids)
        assert not done or free_ids[len(ids)] == stop
        assert text == tok.decode(ids, skip_special_tokens=True)
    assert res.finished[0] and res.num_tokens[0] <= 3
    assert res.generated_tokens == int(res.num_tokens.sum() + res.finished.sum())


def test_default_stop_is_eos(lm32):
    model, tok = lm32
    inj = make_injection(model, "input_embedding", batch=3, seed=3)
    free = decode_records(model, tok, inj, max_new_tokens=8, temperature=0, stop_token_ids=())
    tok = tok.__class__(tokenizer_object=tok.backend_tokenizer, bos_token=tok.bos_token)
    tok.eos_token = tok.convert_ids_to_tokens(free.token_ids[0][0])  # first token: row 0 stops
    res = decode_records(model, tok, inj, max_new_tokens=8, temperature=0)
    assert res.finished[0] and res.num_tokens[0] == 0 and res.texts[0] == ""
    assert res.forward_passes <= 8


@pytest.mark.parametrize("budget", [0, 1, 5])
def test_budget_is_respected(lm32, budget):
    model, tok = lm32
    inj = make_injection(model, "kv_memory", batch=2)
    res = decode_records(model, tok, inj, max_new_tokens=budget, stop_token_ids=())
    assert res.num_tokens.tolist() == [budget, budget]
    assert [len(ids) for ids in res.token_ids] == [budget, budget]
    assert res.forward_passes == budget


def test_seeded_sampling_is_reproducible(lm32):
    model, tok = lm32
    inj = make_injection(model, "soft_prompt", batch=4, seed=4)

    def sample(seed: int, top_p: float) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return decode_records(
            model, tok, inj, max_new_tokens=16, temperature=1.0, top_p=top_p, generator=g
        ).token_ids

    assert sample(0, 1.0) == sample(0, 1.0)
    assert sample(0, 0.9) == sample(0, 0.9)
    assert sample(0, 1.0) != sample(1, 1.0)


def test_sampled_outputs_do_not_depend_on_compaction(lm32):
    model, tok = lm32
    inj = make_injection(model, "kv_memory", batch=6, seed=6)
    stops = list(range(3, len(tok), 10))  # ~10% of the vocabulary: rows end at random steps

    def sample(compact: int):
        g = torch.Generator().manual_seed(0)
        return decode_records(
            model,
            tok,
            inj,
            max_new_tokens=16,
            temperature=0.7,
            generator=g,
            stop_token_ids=stops,
            min_batch_to_compact=compact,
        )

    eager, never = sample(1), sample(100)
    assert eager.token_ids == never.token_ids
    assert len(set(eager.num_tokens.tolist())) > 1 and eager.finished.any()
    assert eager.row_forwards < never.row_forwards


@pytest.mark.parametrize("mode", INJECTION_MODES)
def test_tiny_top_p_is_greedy(lm64, mode):
    model, tok = lm64
    inj = make_injection(model, mode, batch=4, seed=5)
    greedy = decode_records(model, tok, inj, max_new_tokens=12, temperature=0)
    g = torch.Generator().manual_seed(0)
    nucleus = decode_records(
        model, tok, inj, max_new_tokens=12, temperature=1.0, top_p=1e-9, generator=g
    )
    assert nucleus.token_ids == greedy.token_ids


def test_bfloat16_model_and_float32_injection(lm32):
    model, tok = lively_tiny_lm(torch.bfloat16)
    inj = make_injection(lm32[0], "soft_prompt", batch=3)  # float32 tensors
    res = decode_records(model, tok, inj, max_new_tokens=6, stop_token_ids=())
    assert res.num_tokens.tolist() == [6, 6, 6] and len(res.texts) == 3


def test_autocast_dtype_runs_the_float32_model_in_bfloat16(lm32):
    model, tok = lm32
    inj = make_injection(model, "input_embedding", batch=2)
    res = decode_records(
        model, tok, inj, max_new_tokens=5, stop_token_ids=(), autocast_dtype=torch.bfloat16
    )
    assert res.num_tokens.tolist() == [5, 5] and model.dtype == torch.float32


def test_preallocated_cache_returns_filled_views_and_selects_rows():
    cache = PreallocatedKVCache(num_layers=1, max_len=5)
    k1, v1 = torch.randn(3, 2, 2, 4), torch.randn(3, 2, 2, 4)
    keys, values = cache.update(k1, v1, 0)
    assert keys.shape == (3, 2, 2, 4) and torch.equal(keys, k1) and torch.equal(values, v1)
    k2, v2 = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
    keys, _ = cache.update(k2, v2, 0)
    assert torch.equal(keys, torch.cat([k1, k2], dim=2)) and cache.get_seq_length() == 3
    cache.select_rows(torch.tensor([2, 0]))
    assert torch.equal(cache.layers[0].keys, torch.cat([k1, k2], dim=2)[[2, 0]])
    with pytest.raises(AssertionError):
        cache.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4), 0)


def test_cache_goes_in_and_out_under_the_name_the_installed_transformers_uses(lm32):
    """transformers 5.2x renamed `past_key_values` to `cache`. A cache passed under the other
    name is swallowed by the model's **kwargs and ignored without an error (transformers 5.17
    did this on the GPU machine: every text sample came out empty), so the name is read from
    the installed version and a cache passed with it must be filled by the forward pass."""
    model, _ = lm32
    assert CACHE_KEY in inspect.signature(type(model).forward).parameters
    ids = torch.tensor([[1, 2, 3]])
    assert output_cache(model(input_ids=ids, use_cache=True)).get_seq_length() == 3
    cache = PreallocatedKVCache(num_layers=model.config.num_hidden_layers, max_len=8)
    model(input_ids=ids, use_cache=True, **cache_kwargs(cache))
    assert cache.get_seq_length() == 3


def test_batched_covers_n_rows():
    sizes = [
        inj.batch_size
        for inj in batched(lambda b: Injection(embed_offset=torch.zeros(b, 2)), 10, 4)
    ]
    assert sizes == [4, 4, 2]


def test_sampler_matches_the_tempered_distribution_and_the_nucleus():
    logits = torch.tensor([2.0, 1.0, 0.0, float("-inf"), -1.0])
    rows = logits.expand(40000, -1)
    g = torch.Generator().manual_seed(0)
    for temperature, top_p in [(1.0, 1.0), (0.5, 1.0), (1.0, 0.8)]:
        probs = torch.softmax(logits / temperature, dim=0)
        if top_p < 1.0:  # smallest prefix of the sorted probabilities reaching top_p
            keep = (probs.cumsum(0) - probs) < top_p
            probs = torch.where(keep, probs, 0.0) / probs[keep].sum()
        draws = _sample(rows, temperature, top_p, torch.rand(len(rows), generator=g))
        freq = torch.bincount(draws, minlength=5).double() / len(draws)
        torch.testing.assert_close(freq, probs.double(), atol=0.01, rtol=0)
        assert freq[3] == 0 and (top_p == 1.0 or freq[probs == 0].sum() == 0)


def test_nucleus_reaching_past_the_candidates_falls_back_to_a_full_sort():
    """A flat distribution: the 0.5 nucleus holds ~500 tokens, more than the candidates."""
    vocab = 4 * NUCLEUS_CANDIDATES
    logits = torch.linspace(0.0, 1.0, vocab)  # token i is more likely than token i - 1
    probs = torch.softmax(logits, dim=0).flip(0)  # sorted, most likely first
    nucleus_size = int(((probs.cumsum(0) - probs) < 0.5).sum())
    assert nucleus_size > NUCLEUS_CANDIDATES
    g = torch.Generator().manual_seed(0)
    draws = _sample(logits.expand(20000, -1), 1.0, 0.5, torch.rand(20000, generator=g))
    assert int(draws.min()) >= vocab - nucleus_size  # only the nucleus, and all of it
    assert int(draws.min()) < vocab - nucleus_size + 20 and int(draws.max()) > vocab - 20
