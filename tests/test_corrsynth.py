"""CorrSynth and K-class CFG decoding: the cached lockstep loop against an uncached reference,
finished sequences leaving the contrast set, forward-pass counts, and the generators."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from synthloom.config import CFGConfig, CorrSynthConfig
from synthloom.errors import DataError
from synthloom.methods.registry import METHOD_CONFIGS
from synthloom.methods.text import build_text_generator
from synthloom.methods.text.base import ModelBox, SeedSet, TextGenerator
from synthloom.methods.text.cfg import CFGGenerator, cfg_guidance, negative_examples
from synthloom.methods.text.corrsynth import (
    CorrSynthGenerator,
    corrsynth_guidance,
    seed_example_slots,
)
from synthloom.methods.text.lockstep import (
    decode_lockstep,
    encode_prompt,
    end_of_sequence_ids,
    end_token_mask,
    prefill_prompts,
)
from synthloom.models.tiny import tiny_causal_lm

PROMPTS = [
    "short one",
    'A "much" longer prompt about the quick brown fox and the lazy dog.',
    '{"name": "Alice", "age": 34}',
    "Generate one new record as JSON.",
    "x",
    "Return only the JSON object, nothing else.",
]

SEEDS = SeedSet(
    texts=tuple(f"{word} text number {i}" for word in ("happy", "sad", "calm") for i in range(4)),
    labels=tuple(label for label in ("pos", "neg", "neu") for _ in range(4)),
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_causal_lm(3)


def _eos_biased_tiny(seed: int, bias: float):
    """The tiny LM with an untied output head whose bias favours EOS, so sequences end at
    random steps (the random model alone never writes a closing delimiter)."""
    model, tokenizer = tiny_causal_lm(seed)
    old = model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[tokenizer.eos_token_id] = bias
    model.lm_head = head
    return model, tokenizer


def _reference(model, tokenizer, prompts, row_prompt, row_stream, guidance, steps, stops):
    """Greedy lockstep decoding recomputed from scratch: every step runs each live row's full
    sequence (its prompt + its stream's tokens) through the model alone, no cache, no
    padding. Same stop rules: an EOS token or a stop string in the stream's text."""
    eos = set(end_of_sequence_ids(model, tokenizer))
    num_streams = max(row_stream) + 1
    out: list[list[int]] = [[] for _ in range(num_streams)]
    live = [True] * num_streams
    for _ in range(steps):
        rows = [r for r in range(len(row_prompt)) if live[row_stream[r]]]
        if not rows:
            break
        log_probs = []
        for r in rows:
            ids = encode_prompt(tokenizer, prompts[row_prompt[r]]).tolist() + out[row_stream[r]]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            log_probs.append(torch.log_softmax(logits.float(), dim=-1))
        streams = torch.tensor(sorted({row_stream[r] for r in rows}))
        tokens = guidance(torch.stack(log_probs), streams).argmax(dim=-1)
        for s, tok in zip(streams.tolist(), tokens.tolist(), strict=True):
            if tok in eos:
                live[s] = False
                continue
            out[s].append(tok)
            if any(stop in tokenizer.decode(out[s], skip_special_tokens=True) for stop in stops):
                live[s] = False
    return out


def _corrsynth(**kw) -> CorrSynthConfig:
    return CorrSynthConfig(name="corrsynth", **kw)


@pytest.mark.parametrize("method", ["corrsynth", "cfg"])
def test_cached_lockstep_loop_equals_uncached_reference_under_greedy(tiny, method) -> None:
    model, tokenizer = tiny
    if method == "corrsynth":  # K=2 labels x M=3, six prompts of different lengths
        row_prompt, row_stream = list(range(6)), list(range(6))
        guidance = corrsynth_guidance(
            torch.tensor([0, 0, 0, 1, 1, 1]), _corrsynth(gamma=2.0, delta=0.5, alpha=0.0)
        )
    else:  # K=3, one stream per label: conditional row + the two other labels' prompts
        row_prompt = [0, 1, 2, 1, 0, 2, 2, 0, 1]
        row_stream = [0, 0, 0, 1, 1, 1, 2, 2, 2]
        guidance = cfg_guidance(3, gamma=2.0, alpha=0.0)
    pool = prefill_prompts(model, tokenizer, PROMPTS)
    steps = 8
    # Stop string: the piece stream 0 writes at step 1 of an unstopped run, so that some
    # streams stop early while others keep decoding (and the contrast set shrinks).
    probe = decode_lockstep(
        model, tokenizer, pool, row_prompt, row_stream, guidance,
        max_new_tokens=steps, temperature=0.0, stop_strings=(),
    )  # fmt: skip
    stop = tokenizer.decode(probe.token_ids[0][1:2])
    assert stop.strip(), "probe produced an empty piece"
    out = decode_lockstep(
        model, tokenizer, pool, row_prompt, row_stream, guidance,
        max_new_tokens=steps, temperature=0.0, stop_strings=(stop,), compact_fraction=0.0,
    )  # fmt: skip
    expected = _reference(
        model, tokenizer, PROMPTS, row_prompt, row_stream, guidance, steps, (stop,)
    )
    assert out.token_ids == expected
    lengths = {len(ids) for ids in out.token_ids}
    assert len(lengths) > 1, "every stream stopped at the same step: the test proves less"
    assert "stop_string" in out.stop_reasons and "budget" in out.stop_reasons
    for text, reason in zip(out.texts, out.stop_reasons, strict=True):
        assert (stop not in text) or reason == "budget"
    # Finished rows were dropped from the batch: fewer sequence-steps than rows x calls.
    assert out.sequence_steps < len(row_prompt) * out.forward_passes


def test_finished_streams_are_dropped_from_the_contrast_set(tiny) -> None:
    model, tokenizer = _eos_biased_tiny(1, bias=7.0)
    pool = prefill_prompts(model, tokenizer, PROMPTS[:4])
    seen: list[list[int]] = []
    base = corrsynth_guidance(torch.tensor([0, 0, 1, 1]), _corrsynth(alpha=0.0))

    def recording(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        assert log_probs.shape[0] == len(streams)
        seen.append(streams.tolist())
        return base(log_probs, streams)

    out = decode_lockstep(
        model, tokenizer, pool, [0, 1, 2, 3], [0, 1, 2, 3], recording,
        max_new_tokens=12, temperature=1.0, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    ended = {s: len(ids) for s, ids in enumerate(out.token_ids) if out.stop_reasons[s] == "eos"}
    assert ended, "no stream ended: raise the EOS bias"
    assert any(n + 1 < len(seen) for n in ended.values()), "no stream ended before the rest"
    for s, n in ended.items():  # eos sampled at step n: present up to it, absent after
        assert all(s in step for step in seen[: n + 1])
        assert all(s not in step for step in seen[n + 1 :])


def test_end_passthrough_in_the_loop(tiny) -> None:
    """With every token an end token the guidance is bypassed (own distribution), so an
    adversarial guidance changes nothing; with none, the adversarial guidance decides."""
    model, tokenizer = tiny
    pool = prefill_prompts(model, tokenizer, PROMPTS[:4])

    def anti(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        return -log_probs  # the least likely token wins

    def own(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        return log_probs

    vocab = model.get_output_embeddings().weight.shape[0]

    def run(guidance, end_tokens):
        return decode_lockstep(
            model, tokenizer, pool, [0, 1, 2, 3], [0, 1, 2, 3], guidance,
            max_new_tokens=6, temperature=0.0, end_tokens=end_tokens,
        ).token_ids  # fmt: skip

    plain = run(own, None)
    assert run(anti, torch.ones(vocab, dtype=torch.bool)) == plain
    assert run(anti, torch.zeros(vocab, dtype=torch.bool)) != plain
    mask = end_token_mask(model, tokenizer)
    assert mask[tokenizer.eos_token_id] and mask.sum() < vocab


def test_sampling_is_reproducible_and_seed_dependent(tiny) -> None:
    model, tokenizer = tiny
    pool = prefill_prompts(model, tokenizer, PROMPTS[:4])
    guidance = corrsynth_guidance(torch.tensor([0, 0, 1, 1]), _corrsynth())

    def run(seed: int) -> list[list[int]]:
        return decode_lockstep(
            model, tokenizer, pool, [0, 1, 2, 3], [0, 1, 2, 3], guidance,
            max_new_tokens=6, temperature=1.0, generator=torch.Generator().manual_seed(seed),
        ).token_ids  # fmt: skip

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_forward_passes_corrsynth_needs_k_times_fewer_sequence_steps_than_cfg(tiny) -> None:
    model, tokenizer = tiny
    box = ModelBox(lambda name: (model, tokenizer))
    steps, k, m = 5, len(SEEDS.label_names), 2
    common = dict(
        sequences_per_label=m, prompts_per_label=2, max_new_tokens=steps, temperature=0.0,
        max_rounds=1, alpha=0.0,
    )  # fmt: skip
    corr = CorrSynthGenerator({"name": "corrsynth", **common}).generate(
        SEEDS, k * m, models=box, seed=0
    )
    cfg = CFGGenerator({"name": "cfg", **common}).generate(SEEDS, k * m, models=box, seed=0)
    # Greedy on the random model never writes "</text>" or EOS: every stream runs the full
    # budget, so the counts are exact. Step 0 reads the prefill's logits (no model call).
    assert corr.stats.counts == {"unfinished": k * m} == cfg.stats.counts
    for batch in (corr, cfg):
        assert batch.stats.metrics["prefill_forward_passes"] == k * 2  # K labels x 2 prompts
        assert batch.stats.metrics["decode_forward_passes"] == steps - 1
        assert batch.stats.forward_passes == k * 2 + steps - 1
    assert corr.stats.metrics["sequence_steps"] == k * m * (steps - 1)
    assert cfg.stats.metrics["sequence_steps"] == k * k * m * (steps - 1)
    assert corr.stats.prompt_tokens == cfg.stats.prompt_tokens > 0
    joint = CFGGenerator({"name": "cfg", "negative": "joint_prompt", **common}).generate(
        SEEDS, k * m, models=box, seed=0
    )
    assert joint.stats.metrics["sequence_steps"] == 2 * k * m * (steps - 1)
    assert joint.stats.metrics["prefill_forward_passes"] == 2 * k * 2  # + "not c" prompts


@pytest.mark.parametrize("name", ["corrsynth", "cfg"])
def test_generators_return_balanced_labelled_samples_with_provenance(name) -> None:
    # EOS keeps its own probability under both guidances (end passthrough): the bias gives
    # a few percent chance of ending per step. (Without passthrough CorrSynth's contrast
    # flattened EOS to about sqrt(p) and needed bias 7.)
    model, tokenizer = _eos_biased_tiny(0, bias=3.5)
    reported: list[int] = []
    box = ModelBox(lambda _: (model, tokenizer), progress=reported.append)
    generator = build_text_generator(
        {"name": name, "sequences_per_label": 3, "prompts_per_label": 2, "max_new_tokens": 12,
         "alpha": 0.0}
    )  # fmt: skip
    assert isinstance(generator, TextGenerator)
    assert type(generator) is {"corrsynth": CorrSynthGenerator, "cfg": CFGGenerator}[name]
    batch = generator.generate(SEEDS, 7, models=box, seed=1)
    again = generator.generate(SEEDS, 7, models=box, seed=1)
    assert [s.text for s in batch.samples] == [s.text for s in again.samples]
    counts = Counter(s.label for s in batch.samples)
    assert set(counts) <= {"neg", "neu", "pos"}
    assert all(n <= 3 for n in counts.values())  # quotas 3, 2, 2 in label order
    assert counts["neg"] <= 3 and counts["neu"] <= 2 and counts["pos"] <= 2
    assert batch.samples, "nothing generated: the EOS bias is too high or too low"
    rounds = int(batch.stats.metrics["rounds"])
    # one progress report per round (two runs): samples within quota so far, up to all
    first, second = reported[:rounds], reported[rounds:]
    assert first == second == sorted(first) and first[-1] == len(batch.samples)
    decoded = rounds * 3 * 3
    assert batch.stats.metrics["sampled"] == decoded  # streams: the unfinished share's base
    dropped = sum(batch.stats.counts.values())
    assert len(batch.samples) + dropped == decoded
    for sample in batch.samples:
        assert sample.text == sample.text.strip() and sample.text
        info = sample.info
        assert info["method"] == name and info["stop_reason"] == "eos"
        assert 0 <= info["round"] < rounds and 0 <= info["sequence"] < 3
        assert len(info["seed_examples"]) == 3
        assert set(info["seed_examples"]) <= set(SEEDS.for_label(sample.label))
    assert batch.stats.generated_tokens > 0 and batch.stats.prompt_tokens > 0
    assert batch.stats.metrics["samples_per_second"] > 0


def test_seed_openers_start_every_sample_of_a_slot_with_its_seed_opening() -> None:
    model, tokenizer = _eos_biased_tiny(0, bias=3.5)
    box = ModelBox(lambda _: (model, tokenizer))
    common = {"name": "corrsynth", "sequences_per_label": 3, "prompts_per_label": 2,
              "max_new_tokens": 12, "alpha": 0.0}  # fmt: skip
    batch = build_text_generator({**common, "seed_openers": 2}).generate(
        SEEDS, 7, models=box, seed=1
    )
    assert batch.samples
    by_slot: dict[tuple[str, int], set[str]] = {}
    for sample in batch.samples:
        opener = sample.info["opener"]
        assert opener in {" ".join(t.split()[:2]) for t in SEEDS.for_label(sample.label)}
        assert sample.text.startswith(opener) and len(sample.text) > len(opener)
        by_slot.setdefault((sample.label, sample.info["prompt_slot"]), set()).add(opener)
    assert all(len(openers) == 1 for openers in by_slot.values())  # one opener per slot
    plain = build_text_generator(common).generate(SEEDS, 7, models=box, seed=1)
    assert all("opener" not in s.info for s in plain.samples)  # off by default


def test_seed_example_slots_differ_per_slot_and_cover_the_seeds() -> None:
    import numpy as np

    slots = seed_example_slots(SEEDS, per_label=5, num_examples=3, rng=np.random.default_rng(0))
    for label in SEEDS.label_names:
        assert len(slots[label]) == 5
        assert all(len(set(s)) == 3 for s in slots[label])  # no repeat within a prompt
        assert len(set(slots[label])) > 1  # different examples per prompt
        # 4 seeds: slot 0 and the first example of slot 1 are one permutation of them
        assert set(slots[label][0] + slots[label][1][:1]) == set(SEEDS.for_label(label))
        assert {e for s in slots[label] for e in s} == set(SEEDS.for_label(label))
    mixed = negative_examples(slots, "neg", 0, 3)
    assert len(mixed) == 3 and not set(mixed) & set(SEEDS.for_label("neg"))
    assert set(mixed) & set(SEEDS.for_label("pos")) and set(mixed) & set(SEEDS.for_label("neu"))


def test_cfg_needs_two_labels_and_configs_are_registered(tiny) -> None:
    one_label = SeedSet(texts=("a", "b"), labels=("x", "x"))
    box = ModelBox(lambda _: tiny)
    with pytest.raises(DataError, match="at least 2 distinct"):
        CFGGenerator({"name": "cfg"}).generate(one_label, 2, models=box, seed=0)
    assert METHOD_CONFIGS["corrsynth"] is CorrSynthConfig and METHOD_CONFIGS["cfg"] is CFGConfig
    with pytest.raises(ValueError):
        CorrSynthConfig(name="corrsynth", alpha=1.5)


@pytest.mark.integration
def test_real_smollm2_writes_labelled_samples_with_both_guided_methods(tmp_path: Path) -> None:
    import os

    from synthloom.models.causal_lm import load_causal_lm

    cache = Path(os.environ.get("SYNTHLOOM_MODEL_CACHE", tmp_path / "models"))
    box = ModelBox(lambda name: load_causal_lm(name, device="cpu", cache_dir=cache))
    seeds = SeedSet(
        texts=(
            "Great game tonight, what a win for the team!",
            "Our team played so well, proud of everyone.",
            "What a comeback in the final minutes!",
            "The new phone has a faster chip and a better camera.",
            "This laptop update fixes the battery drain.",
            "The software release adds a dark mode.",
        ),
        labels=("sports",) * 3 + ("tech",) * 3,
    )
    common = {
        "task": "short news posts, labelled by topic",
        "sequences_per_label": 2,
        "prompts_per_label": 2,
        "num_examples": 2,
        "max_new_tokens": 40,
        "max_rounds": 2,
    }
    for name in ("corrsynth", "cfg"):
        batch = build_text_generator({"name": name, **common}).generate(
            seeds, 4, models=box, seed=0
        )
        assert batch.samples, f"{name}: no sample finished ({batch.stats.counts})"
        assert {s.label for s in batch.samples} <= {"sports", "tech"}
        assert all("</text>" not in s.text and s.text for s in batch.samples)
        assert batch.stats.forward_passes > 0 and batch.stats.metrics["sequence_steps"] > 0


def test_repeat_passthrough_takes_the_guidance_off_a_stream_s_own_repeats(tiny) -> None:
    """A guidance that boosts one token T by e^50 makes every stream T, T, T, ...; with the
    passthrough at n, once T would repeat an n-gram of the stream it is only as likely as
    the model makes it, so the stream rarely repeats an n-gram (its first n tokens are
    still T)."""
    model, tokenizer = tiny
    pool = prefill_prompts(model, tokenizer, PROMPTS[:4])
    boosted = 7

    def guidance(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        scores = log_probs.clone()
        scores[:, boosted] += 50.0
        return scores

    def run(n: int) -> list[list[int]]:
        return decode_lockstep(
            model, tokenizer, pool, [0, 1, 2, 3], [0, 1, 2, 3], guidance, max_new_tokens=40,
            temperature=1.0, stop_strings=(), generator=torch.Generator().manual_seed(0),
            repeat_passthrough=n,
        ).token_ids  # fmt: skip

    def repeated_ngrams(ids: list[int], n: int) -> int:
        grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        return len(grams) - len(set(grams))

    assert all(ids == [boosted] * 40 for ids in run(0))
    for n in (1, 2):
        for ids in run(n):
            assert ids[:n] == [boosted] * n
            assert repeated_ngrams(ids, n) <= 5 < repeated_ngrams([boosted] * 40, n), ids


def test_no_repeat_ngram_in_the_lockstep_loop(tiny) -> None:
    """No stream repeats a bigram of its own tokens with the rule on; the random tiny LM's
    greedy guided streams loop without it, and the rule at 0 is the plain loop."""
    model, tokenizer = tiny
    pool = prefill_prompts(model, tokenizer, PROMPTS[:4])
    guidance = corrsynth_guidance(torch.tensor([0, 0, 1, 1]), _corrsynth())

    def run(n: int | None) -> list[list[int]]:
        extra = {} if n is None else {"no_repeat_ngram": n}
        return decode_lockstep(
            model, tokenizer, pool, [0, 1, 2, 3], [0, 1, 2, 3], guidance, max_new_tokens=60,
            temperature=0.0, stop_strings=(), **extra,
        ).token_ids  # fmt: skip

    def repeats(ids: list[int]) -> bool:
        grams = list(zip(ids, ids[1:], strict=False))
        return len(set(grams)) < len(grams)

    plain = run(None)
    assert run(0) == plain
    assert all(repeats(ids) for ids in plain)
    blocked = run(2)
    assert not any(repeats(ids) for ids in blocked)
    assert all(len(ids) > 1 for ids in blocked)
