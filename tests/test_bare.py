"""BARE mechanics: raw base drafts, chat-template refinement, parsing, drops and counts.

The pipeline tests swap the two sampling functions for scripted ones (the prompts they
receive are recorded, the replies are fixed), so every branch is reached on purpose; one
test runs the real sampler on a tiny random model and checks that every draft is
accounted for. The integration test uses the real SmolLM2."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from synthloom.methods.text import bare as bare_module
from synthloom.methods.text.bare import (
    REFINE_INSTRUCTION,
    BAREGenerator,
    holds_whole_refinement,
    is_echo,
    paragraph_count,
    parse_refinement,
    refine_request,
)
from synthloom.methods.text.base import GenerationStats, ModelBox, SeedSet
from synthloom.methods.text.prompts import CLOSE, OPEN
from synthloom.methods.text.sampling import Continuations
from synthloom.models.tiny import tiny_causal_lm

SEEDS = SeedSet(
    texts=(
        "the cat sat on the mat",
        "a dog ran in the park",
        "birds sing at dawn",
        "fish swim in the lake",
        "stocks fell sharply today",
        "the bank raised rates",
        "markets rallied at noon",
        "bond yields dropped again",
    ),
    labels=("nature",) * 4 + ("money",) * 4,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_box() -> ModelBox:
    lm = tiny_causal_lm(0)
    return ModelBox(load_causal_lm=lambda name: lm)


class ScriptedSamplers:
    """Stand-in for sample_prompts (drafts: with copies; refinements: without) with fixed
    replies.

    Base call c returns drafts ["draft c-0", "", "draft c-2", "draft c-3"][:num] with
    finished [True, True, False, True]: one kept, one empty, one unclosed, one kept.
    Refining "draft c-0" answers with a preamble and quotes around "better c-0"; refining
    "draft c-3" answers `refine_c3(c, prompt)` -> (text, finished)."""

    def __init__(self, refine_c3) -> None:
        self.base_prompts: list[str] = []
        self.refine_prompts: list[str] = []
        self.refine_c3 = refine_c3

    def sample_prompts(self, model, tokenizer, prompts, copies=None, **kw):
        if copies is not None:  # base step: drafts, `copies[i]` of prompts[i]
            assert kw["stop_strings"] == (CLOSE,) and kw["temperature"] == 1.0
            texts, finished = [], []
            for prompt, num in zip(prompts, copies, strict=True):
                c = len(self.base_prompts)
                self.base_prompts.append(prompt)
                texts += [f"draft {c}-0", "", f"draft {c}-2", f"draft {c}-3"][:num]
                finished += [True, True, False, True][:num]
            return Continuations(texts, finished, 5 * len(texts), 5, 100 * len(prompts))
        assert kw["stop_strings"] == (CLOSE, "\n\n")  # one-paragraph seeds and drafts
        replies = []
        for prompt in prompts:
            self.refine_prompts.append(prompt)
            draft = prompt.split(f"Here is a draft of a new one:\n\n{OPEN}\n")[1].split("\n")[0]
            c, k = draft.removeprefix("draft ").split("-")
            if k == "0":
                replies.append((f'Here is the rewritten text:\n"better {c}-0"', True))
            else:
                replies.append(self.refine_c3(int(c), prompt))
        texts, finished = zip(*replies, strict=True) if replies else ((), ())
        return Continuations(list(texts), list(finished), 7 * len(prompts), 7, 50 * len(prompts))


def _run(monkeypatch, box, refine_c3, num_samples=4, **method):
    fake = ScriptedSamplers(refine_c3)
    monkeypatch.setattr(bare_module, "sample_prompts", fake.sample_prompts)
    config = {"name": "bare", "task": "sentences", "max_attempts_factor": 2.0, **method}
    batch = BAREGenerator(config).generate(SEEDS, num_samples, models=box, seed=0)
    return batch, fake


def test_drafts_are_raw_prompts_and_refinements_use_the_chat_template(monkeypatch, tiny_box):
    def echo_example(c, prompt):  # draft c-3 is "refined" into a copy of a shown example
        shown = prompt.split(f"{OPEN}\n")[1].split(f"\n{CLOSE}")[0]
        return shown, True

    batch, fake = _run(monkeypatch, tiny_box, echo_example, num_samples=8)
    # per label: quota 4, budget 8 drafts; each round asks 4 drafts (one prompt) and keeps
    # one ("better c-0"); the rest are empty, unclosed, or an echo of a shown example
    assert len(fake.base_prompts) == 4 and len(fake.refine_prompts) == 8
    for prompt in fake.base_prompts:
        assert "<|im_start|>" not in prompt and prompt.endswith(f"{OPEN}\n")
        assert prompt.count(CLOSE) == 3  # three examples
    assert [s.text for s in batch.samples] == [f"better {c}-0" for c in range(4)]
    assert [s.label for s in batch.samples] == ["money", "money", "nature", "nature"]
    assert batch.stats.counts == {
        "draft_empty": 4,
        "draft_unfinished": 4,
        "refine_echo": 4,
        "short_of_quota": 4,
    }
    for sample in batch.samples:
        assert sample.info["draft"] == "draft " + sample.text.removeprefix("better ")
        assert sample.info["refined"] == sample.text
        shown = sample.info["seed_indices"]
        assert len(shown) == 3 and {SEEDS.labels[i] for i in shown} == {sample.label}
    for prompt in fake.refine_prompts:
        assert prompt.startswith("<|im_start|>user\n")
        assert prompt.endswith(f"<|im_start|>assistant\n{OPEN}\n")  # pre-filled delimiter
        assert REFINE_INSTRUCTION in prompt
    # the refine step shows the same examples as the base prompt the draft came from
    first_examples = fake.base_prompts[0].split("\n\n")[1:4]
    assert len(first_examples) == 3
    assert all(e in fake.refine_prompts[0] for e in first_examples)
    # every draft and refinement decoded: the unfinished share's denominator
    assert batch.stats.metrics["sampled"] == 4 * 4 + 8
    # costs are summed over the 4 base calls (5 passes each) and 4 refine calls (7 each)
    assert batch.stats.forward_passes == 4 * 5 + 4 * 7
    assert batch.stats.generated_tokens == 4 * 4 * 5 + 8 * 7
    assert batch.stats.prompt_tokens == 4 * 100 + 8 * 50


def test_unclosed_unchanged_and_surplus_refinements_are_counted(monkeypatch, tiny_box):
    def scripted(c, prompt):
        if c % 2 == 0:
            return f"draft {c}-3", True  # unchanged: kept and counted
        return "half a sent", False  # never closed: dropped

    batch, fake = _run(monkeypatch, tiny_box, scripted, num_samples=6, max_attempts_factor=4.0)
    # per label: round 1 asks 3 drafts (1 kept), round 2 asks 6 at keep rate 1/3, split
    # over two prompts (4 + 2): 2 more kept for "money" (1-3 unclosed), 3 for "nature"
    # (4-3 unchanged), one of them surplus
    assert len(fake.base_prompts) == 6
    assert batch.stats.counts == {
        "draft_empty": 6,
        "draft_unfinished": 4,
        "refine_unfinished": 1,
        "refine_unchanged": 1,
        "surplus": 1,
    }
    assert len(batch.samples) == 6
    unchanged = [s for s in batch.samples if s.info["draft"] == s.info["refined"]]
    assert [s.text for s in unchanged] == ["draft 4-3"]


def test_a_refinement_that_copies_a_seed_falls_back_to_its_draft(monkeypatch, tiny_box):
    """draft_fallback_ngram n: a refinement sharing a word n-gram with a seed is replaced
    by its draft, unless the draft shares one too (then dropped); off, both are kept."""
    seeds = SeedSet(
        texts=(*SEEDS.texts[:4], "draft 1 3 is what this money seed says", *SEEDS.texts[5:]),
        labels=SEEDS.labels,
    )

    def copying(c, prompt):
        return "the cat sat on the mat today", True  # shares "the cat sat" with a seed

    def run(**method):
        fake = ScriptedSamplers(copying)
        monkeypatch.setattr(bare_module, "sample_prompts", fake.sample_prompts)
        config = {"name": "bare", "task": "sentences", "max_attempts_factor": 1.0, **method}
        return BAREGenerator(config).generate(seeds, 8, models=tiny_box, seed=0)

    paper = run()
    assert "refine_copy_fallback" not in paper.stats.counts
    assert sum(s.text == "the cat sat on the mat today" for s in paper.samples) == 2

    batch = run(draft_fallback_ngram=3)
    # per label one round of 4 drafts (budget 4): "draft c-0" is refined to "better c-0",
    # "draft c-3" to the copy: draft 0-3 replaces it, draft 1-3 is itself a seed's copy
    assert batch.stats.counts["refine_copy_fallback"] == 1
    assert batch.stats.counts["refine_copy"] == 1
    fallback = [s for s in batch.samples if s.info.get("fallback") == "draft"]
    assert [(s.text, s.info["refined"]) for s in fallback] == [
        ("draft 0-3", "the cat sat on the mat today")
    ]
    assert all("cat sat" not in s.text for s in batch.samples)


def test_real_sampler_on_a_tiny_model_accounts_for_every_draft(monkeypatch, tiny_box):
    drafted: list[int] = []
    real = bare_module.sample_prompts

    def counting(model, tokenizer, prompts, copies=None, **kw):
        if copies is not None:  # the base step
            drafted.append(sum(copies))
        return real(model, tokenizer, prompts, copies=copies, **kw)

    monkeypatch.setattr(bare_module, "sample_prompts", counting)
    method = {"name": "bare", "max_new_tokens": 6, "refine_max_new_tokens": 6}
    reported: list[int] = []
    box = ModelBox(tiny_box.load_causal_lm, progress=reported.append)
    first = BAREGenerator(method).generate(SEEDS, 4, models=box, seed=3)
    n_drafts = sum(drafted)
    again = BAREGenerator(method).generate(SEEDS, 4, models=tiny_box, seed=3)
    counts = first.stats.counts
    outcomes = ("draft_unfinished", "draft_empty", "refine_unfinished", "refine_empty")
    outcomes += ("refine_echo", "surplus")
    # every draft is dropped for one reason or kept; at most budget = 3 x 2 per label
    assert sum(counts.get(k, 0) for k in outcomes) + len(first.samples) == n_drafts
    assert 2 <= n_drafts <= 12
    assert first.stats.forward_passes > 0 and first.stats.generated_tokens > 0
    assert counts == again.stats.counts
    assert [s.text for s in first.samples] == [s.text for s in again.samples]
    # a progress report after each draft-and-refine round: samples kept so far
    assert reported and reported == sorted(reported) and reported[-1] == len(first.samples)


def test_parse_refinement_strips_preambles_delimiters_and_quotes():
    assert parse_refinement("Here is the rewritten text: the cat sat") == "the cat sat"
    assert parse_refinement("Sure! Here's a refined version:\n\nthe cat sat\n") == "the cat sat"
    assert parse_refinement(f"ok {OPEN}\nthe cat sat\n{CLOSE} trailing") == "the cat sat"
    assert parse_refinement('"the cat sat"') == "the cat sat"
    talk_on = "the cat sat\n\nRewrite the text to be better.\n\n[Tweet] more"
    assert parse_refinement(talk_on, 1) == "the cat sat"
    assert parse_refinement(talk_on, 2) == "the cat sat\n\nRewrite the text to be better."
    assert paragraph_count(talk_on) == 3 and paragraph_count("one\nline") == 1
    assert parse_refinement("Here is the text: ") == ""
    assert parse_refinement("here we go again, on my own") == "here we go again, on my own"


def test_a_reply_cut_at_the_budget_after_its_paragraphs_holds_the_whole_refinement():
    talk_on = "Sure! Here is the text:\n\nthe cat sat\n\nRewrite the text to be bet"
    assert holds_whole_refinement(talk_on, 1)  # the one paragraph ended, talk began
    assert not holds_whole_refinement(talk_on, 2)  # the second paragraph is cut
    assert holds_whole_refinement("the cat sat\n\n", 1)  # a blank line, nothing after
    assert not holds_whole_refinement("the cat sat and then the", 1)  # cut mid-text
    assert not holds_whole_refinement("\n\nthe cat sat on", 1)  # a leading blank line
    assert holds_whole_refinement(f"Here it is: {OPEN}\nthe cat sat\n\nI kept", 1)


def test_unclosed_refinements_that_moved_on_past_their_paragraph_are_kept(monkeypatch, tiny_box):
    def talks_on(c, prompt):  # never closes, but the refinement ended at a blank line
        return f"better {c}-3\n\nRewrite the text to make it", False

    batch, _ = _run(monkeypatch, tiny_box, talks_on, num_samples=8)
    assert "refine_unfinished" not in batch.stats.counts
    assert sorted(s.text for s in batch.samples if s.text.endswith("-3")) == [
        f"better {c}-3" for c in range(4)
    ]


def test_echo_detection_and_refine_request():
    examples = ["The cat sat.", "A dog ran."]
    assert is_echo("the  cat sat.", examples)
    assert is_echo("Rewrite the draft so that it is closer in style", examples)
    assert is_echo(f"{OPEN} hi", examples)
    assert not is_echo("A cat ran.", examples)
    request = refine_request("x", examples, "my draft", task="pets")
    assert request.count(OPEN) == 3 and "my draft" in request and REFINE_INSTRUCTION in request


@pytest.mark.parametrize("describes", [True, False])
def test_refine_message_names_the_label_meaning_only_when_asked(monkeypatch, tiny_box, describes):
    meaning = "the text is about money: prices, banks, markets"
    seeds = SeedSet(SEEDS.texts, SEEDS.labels, descriptions={"money": meaning})
    prompts: list[str] = []

    def sample_prompts(model, tokenizer, batch, copies=None, **kw):
        prompts.extend(batch)
        return Continuations(["rates rose."] * len(batch), [True] * len(batch), 1, 1, len(batch))

    monkeypatch.setattr(bare_module, "sample_prompts", sample_prompts)
    generator = BAREGenerator({"task": "sentences", "refine_describes_label": describes})
    kept = generator._refine(
        seeds,
        "money",
        [("a draft about stocks", [4, 5, 6])],
        tiny_box.causal_lm("x"),
        torch.Generator(),
        GenerationStats(),
        set(),
    )
    assert [s.text for s in kept] == ["rates rose."] and len(prompts) == 1
    keep_line = 'The rewritten text must keep the label "money": ' + meaning + "."
    assert (keep_line in prompts[0]) is describes
    assert (f'Label "money" means: {meaning}.' in prompts[0]) is describes
    assert REFINE_INSTRUCTION in prompts[0]  # the paper's instruction stays, first
    # a reply that repeats the added instruction is an echo, not a sample
    assert is_echo("It must keep the label money.", []) is True


def test_config_defaults_match_the_generator_and_the_registry_builds_it():
    from synthloom.methods.registry import METHOD_CONFIGS, TEXT_METHODS
    from synthloom.methods.text import build_text_generator

    assert "bare" in TEXT_METHODS
    config = METHOD_CONFIGS["bare"](name="bare", task="tweets")
    generator = build_text_generator(config.model_dump())
    assert isinstance(generator, BAREGenerator) and generator.cfg == config.model_dump()
    # the generator reads its defaults from the config model: one home for them
    assert BAREGenerator({"task": "tweets"}).cfg == config.model_dump()
    with pytest.raises(ValueError, match="drafts_per_promt"):
        BAREGenerator({"drafts_per_promt": 2})  # a misspelt key is an error, not ignored


def test_seed_openers_start_each_draft_with_a_seed_opening_of_its_label(monkeypatch, tiny_box):
    prompts: list[str] = []

    def sample_prompts(model, tokenizer, batch, copies=None, **kw):
        prompts.extend(batch)
        texts = [" and more words"] * sum(copies)
        return Continuations(texts, [True] * len(texts), len(texts), 1, len(batch))

    monkeypatch.setattr(bare_module, "sample_prompts", sample_prompts)
    generator = BAREGenerator({"task": "sentences", "seed_openers": 2, "max_new_tokens": "auto"})
    drafts = generator._drafts(
        SEEDS,
        "money",
        [4, 5, 6, 7],
        8,
        tiny_box.causal_lm("x"),
        16,
        np.random.default_rng(0),
        torch.Generator(),
        GenerationStats(),
    )
    assert len(prompts) == 2 and len(drafts) == 8
    money_openers = {" ".join(t.split()[:2]) for t in SEEDS.for_label("money")}
    for prompt in prompts:
        opener = prompt.rsplit(f"{OPEN}\n", 1)[1]
        assert opener in money_openers  # the prompt ends with two words of a money seed
    for draft, _ in drafts:
        assert draft.removesuffix(" and more words") in money_openers


@pytest.mark.integration
def test_bare_on_real_smollm2_writes_refined_samples():
    from synthloom.models.causal_lm import load_causal_lm

    cache = Path(os.environ["SYNTHLOOM_MODEL_CACHE"])
    box = ModelBox(load_causal_lm=lambda name: load_causal_lm(name, device="cpu", cache_dir=cache))
    method = {
        "name": "bare",
        "task": "short sentences about nature or money",
        "max_new_tokens": 40,
        "refine_max_new_tokens": 48,
    }
    batch = BAREGenerator(method).generate(SEEDS, 2, models=box, seed=0)
    stats = batch.stats
    assert stats.forward_passes > 0 and stats.generated_tokens > 0
    assert len(batch.samples) >= 1
    for sample in batch.samples:
        assert sample.text and OPEN not in sample.text and CLOSE not in sample.text
        assert sample.info["draft"] and sample.label in SEEDS.label_names
