"""Shared-prefix and per-prompt text samplers against a cache-free greedy reference.

Exactness tests run the tiny LM in float64 (with larger random weights so that its greedy
output depends on the context) so the cached, batched loop and the reference (which
recomputes the whole sequence at every step) cannot differ by a rounding-level argmax flip.
"""

from __future__ import annotations

import pytest
import torch

import synthloom.methods.text.sampling as sampling
from synthloom.methods.text.sampling import chat_prompt, sample_continuations, sample_prompts
from synthloom.models.tiny import lively_tiny_causal_lm, tiny_causal_lm

PROMPT = (
    '3 examples of tweets, all with label "a".\n\n<text>\nThe quick brown fox\n</text>\n\n<text>\n'
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm():
    return lively_tiny_causal_lm(torch.float64)


def reference_greedy(
    model, tok, prompt: str, max_new_tokens: int, no_repeat_ngram: int = 0
) -> list[int]:
    """Greedy decoding recomputing the full sequence each step; stops at eos (excluded).
    With no_repeat_ngram n, a token that would repeat an n-gram of `out` is skipped
    (a naive scan of `out` at every step)."""
    ids = tok(prompt, return_tensors="pt").input_ids[0].tolist()
    out: list[int] = []
    n = no_repeat_ngram
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            if n and len(out) >= n - 1:
                tail = out[len(out) - n + 1 :] if n > 1 else []
                for i in range(len(out) - n + 1):
                    if out[i : i + n - 1] == tail:
                        logits[out[i + n - 1]] = float("-inf")
            token = int(logits.argmax())
            if token == tok.eos_token_id:
                break
            out.append(token)
    return out


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shared_prefix_greedy_equals_reference(lm):
    model, tok = lm
    result = sample_continuations(
        model, tok, PROMPT, 3, max_new_tokens=12, temperature=0.0, stop_strings=(), generator=gen()
    )
    ref = reference_greedy(model, tok, PROMPT, 12)
    assert result.texts == [tok.decode(ref, skip_special_tokens=True)] * 3
    assert result.prompt_tokens == len(tok(PROMPT).input_ids)
    ran_out = len(ref) == 12
    assert result.finished == [not ran_out] * 3
    # one forward pass per sampled token (the prefill gives the first); an eos is sampled too
    tokens_per_row = 12 if ran_out else len(ref) + 1
    assert result.forward_passes == tokens_per_row
    assert result.generated_tokens == 3 * tokens_per_row


def test_stop_string_cuts_text_and_saves_forward_passes(lm):
    model, tok = lm
    free = sample_continuations(
        model, tok, PROMPT, 2, max_new_tokens=16, temperature=0.0, stop_strings=(), generator=gen()
    )
    text = free.texts[0]
    assert len(text) >= 8, "the tiny LM should write something"
    stop = text[4:7]
    cut_at = text.find(stop)
    result = sample_continuations(
        model,
        tok,
        PROMPT,
        2,
        max_new_tokens=16,
        temperature=0.0,
        stop_strings=(stop,),
        generator=gen(),
    )
    assert result.texts == [text[:cut_at]] * 2
    assert result.finished == [True, True]
    assert result.forward_passes < free.forward_passes
    # every sampled token costs one forward pass (prefill included), per row
    assert result.generated_tokens == 2 * result.forward_passes


def test_sampled_rows_differ_and_are_reproducible(lm):
    model, tok = lm
    kw = dict(max_new_tokens=10, temperature=1.0, top_p=0.95, stop_strings=())
    a = sample_continuations(model, tok, PROMPT, 6, generator=gen(1), **kw)
    b = sample_continuations(model, tok, PROMPT, 6, generator=gen(1), **kw)
    c = sample_continuations(model, tok, PROMPT, 6, generator=gen(2), **kw)
    assert a.texts == b.texts
    assert len(set(a.texts)) > 1
    assert a.texts != c.texts


def test_compaction_does_not_change_sampled_rows(lm, monkeypatch):
    model, tok = lm
    kw = dict(max_new_tokens=14, temperature=1.0, stop_strings=("e", "o"))
    compacting = sample_continuations(model, tok, PROMPT, 8, generator=gen(3), **kw)
    monkeypatch.setattr(sampling, "_MIN_FINISHED_TO_COMPACT", 10**9)
    whole = sample_continuations(model, tok, PROMPT, 8, generator=gen(3), **kw)
    assert compacting.texts == whole.texts
    assert compacting.finished == whole.finished
    assert any(compacting.finished) and compacting.generated_tokens == whole.generated_tokens
    assert all("e" not in t and "o" not in t for t in compacting.texts)


def test_per_prompt_batch_equals_each_prompt_alone(lm):
    model, tok = lm
    prompts = [PROMPT, "Generate one new record", '{"name": "Alice", "age": 3']
    batched = sample_prompts(
        model, tok, prompts, max_new_tokens=10, temperature=0.0, stop_strings=(), generator=gen()
    )
    for prompt, text in zip(prompts, batched.texts, strict=True):
        ids = reference_greedy(model, tok, prompt, 10)
        assert text == tok.decode(ids, skip_special_tokens=True)
    assert batched.prompt_tokens == sum(len(tok(p).input_ids) for p in prompts)


def test_copies_share_a_prompt_and_equal_it_decoded_alone(lm):
    model, tok = lm
    prompts = [PROMPT, "Generate one new record"]

    def run(copies, temperature, seed=0):
        return sample_prompts(
            model, tok, prompts, copies=copies, max_new_tokens=8, temperature=temperature,
            stop_strings=(), generator=gen(seed),
        )  # fmt: skip

    greedy = run([3, 2], 0.0)
    alone = [reference_greedy(model, tok, p, 8) for p in prompts]
    expected = [tok.decode(alone[0], skip_special_tokens=True)] * 3
    expected += [tok.decode(alone[1], skip_special_tokens=True)] * 2
    assert greedy.texts == expected
    assert greedy.prompt_tokens == sum(len(tok(p).input_ids) for p in prompts)  # prefilled once
    sampled = run([4, 0], 1.0, seed=5)
    assert len(sampled.texts) == 4 and len(set(sampled.texts)) > 1  # independent samples
    with pytest.raises(ValueError, match="copies"):
        run([1], 0.0)


def test_chat_prompt_uses_template_or_falls_back():
    _, tok = tiny_causal_lm()
    rendered = chat_prompt(tok, "hello")
    assert rendered == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = None
    assert chat_prompt(tok, "hello") == "hello\n\n"


def repeats_an_ngram(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) < len(grams)


@pytest.mark.parametrize("n", [2, 3])
def test_no_repeat_ngram_greedy_equals_the_naive_reference(lm, n):
    model, tok = lm
    steps = 80
    plain = reference_greedy(model, tok, PROMPT, steps)
    assert repeats_an_ngram(plain, n), "the tiny LM's greedy output should loop"
    blocked = reference_greedy(model, tok, PROMPT, steps, no_repeat_ngram=n)
    assert not repeats_an_ngram(blocked, n)
    prompts = [PROMPT, "Generate one new record"]
    result = sample_prompts(
        model, tok, prompts, copies=[2, 1], max_new_tokens=steps, temperature=0.0,
        stop_strings=(), generator=gen(), no_repeat_ngram=n,
    )  # fmt: skip
    other = reference_greedy(model, tok, prompts[1], steps, no_repeat_ngram=n)
    expected = [tok.decode(blocked, skip_special_tokens=True)] * 2
    assert result.texts == expected + [tok.decode(other, skip_special_tokens=True)]
    alone = sample_continuations(
        model, tok, PROMPT, 1, max_new_tokens=steps, temperature=0.0, stop_strings=(),
        generator=gen(), no_repeat_ngram=n,
    )  # fmt: skip
    assert alone.texts == expected[:1]


def test_no_repeat_ngram_off_is_the_plain_sampler(lm):
    model, tok = lm
    kw = dict(max_new_tokens=20, temperature=1.0, top_p=0.9, stop_strings=())
    plain = sample_continuations(model, tok, PROMPT, 4, generator=gen(7), **kw)
    off = sample_continuations(model, tok, PROMPT, 4, generator=gen(7), no_repeat_ngram=0, **kw)
    on = sample_continuations(model, tok, PROMPT, 4, generator=gen(7), no_repeat_ngram=1, **kw)
    assert off.texts == plain.texts
    assert on.texts != plain.texts
