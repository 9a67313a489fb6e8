"""`method.paragraph_stop`: a blank line ends a sample as the closing delimiter does; and
the unfinished share, counted per continuation decoded.

The rule itself (`sample_stop_strings`), its config key on every text method, and that each
generator hands the resolved stop strings, and the `method.closing_ramp` it builds, to its
sampler (spies around the real samplers, tiny random models; the ramp itself:
test_closing_ramp.py). That the samplers cut at any stop string is tested in
test_text_sampling.py and test_corrsynth.py.
"""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

import synthloom.concepts.generate as concepts_generate
import synthloom.methods.text.bare as bare_module
import synthloom.methods.text.corrsynth as corrsynth_module
import synthloom.methods.text.fewgen as fewgen_module
import synthloom.methods.text.synalign as synalign_module
from synthloom.concepts.combine import Combination
from synthloom.concepts.config import SynthLLMConfig
from synthloom.concepts.generate import SeedDocuments, generate_from_combinations
from synthloom.config import (
    BAREConfig,
    CFGConfig,
    CorrSynthConfig,
    FewGenConfig,
    SynAlignConfig,
)
from synthloom.methods.text import build_text_generator
from synthloom.methods.text.base import ModelBox, SeedSet
from synthloom.methods.text.prompts import (
    BLANK_LINE,
    CLOSE,
    paragraph_count,
    sample_stop_strings,
)
from synthloom.methods.text.runner import run_generator, unfinished_share
from synthloom.methods.text.sampling import Continuations
from synthloom.models.tiny import tiny_causal_lm, tiny_encoder
from synthloom.samplers.closing_ramp import ClosingRamp

pytestmark = pytest.mark.usefixtures("one_thread")

ONE_PARAGRAPH = SeedSet(
    texts=(
        "A warm, funny film.",
        "Lovely acting.\nA second line is still one paragraph.",
        "Dull and far too long.",
        "I left early.",
    ),
    labels=("fresh", "fresh", "rotten", "rotten"),
)
TWO_PARAGRAPHS = SeedSet(
    texts=(*ONE_PARAGRAPH.texts[:3], "I left early.\n\nSo did everyone else."),
    labels=ONE_PARAGRAPH.labels,
)


def test_auto_stops_at_a_blank_line_only_when_every_seed_is_one_paragraph() -> None:
    assert paragraph_count(ONE_PARAGRAPH.texts[1]) == 1  # a single newline is no break
    assert paragraph_count(TWO_PARAGRAPHS.texts[3]) == 2
    assert sample_stop_strings(ONE_PARAGRAPH.texts, "auto") == (CLOSE, BLANK_LINE)
    assert sample_stop_strings(TWO_PARAGRAPHS.texts, "auto") == (CLOSE,)
    # explicit settings ignore the seeds
    assert sample_stop_strings(TWO_PARAGRAPHS.texts, True) == (CLOSE, BLANK_LINE)
    assert sample_stop_strings(ONE_PARAGRAPH.texts, False) == (CLOSE,)
    assert sample_stop_strings(ONE_PARAGRAPH.texts, "auto", close="}") == ("}", BLANK_LINE)


@pytest.mark.parametrize(
    "config", [FewGenConfig, CorrSynthConfig, CFGConfig, BAREConfig, SynAlignConfig, SynthLLMConfig]
)
def test_every_text_method_has_the_key_off_by_default(config) -> None:
    name = config.model_fields["name"].annotation.__args__[0]
    assert config.model_validate({"name": name}).paragraph_stop is False  # the papers' decoding
    for value in ("auto", True, False):
        assert config.model_validate({"name": name, "paragraph_stop": value}).paragraph_stop == (
            value
        )
    with pytest.raises(ValidationError, match="paragraph_stop"):
        config.model_validate({"name": name, "paragraph_stop": "sometimes"})


# the rest of a JSON attribute summary after SynAlign's pre-filled '{"style": "'
SUMMARY_TAIL = 'brief", "tone": "calm", "topic": "films", "length": "short"'


class StopSpy:
    """Wraps a sampler; records the stop strings and the closing ramp of every call, then
    runs the real one."""

    def __init__(self, real) -> None:
        self.real = real
        self.stops: list[tuple[str, ...]] = []
        self.ramps: list[ClosingRamp | None] = []

    def __call__(self, *args, **kwargs):
        stops = tuple(kwargs["stop_strings"])
        self.stops.append(stops)
        self.ramps.append(kwargs.get("closing_ramp"))
        if stops == ("}",):  # SynAlign's attribute summary: a valid one (the tiny LM writes none)
            n = len(args[2])
            return Continuations([SUMMARY_TAIL] * n, [True] * n, n, 1, n)
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def box() -> ModelBox:
    lm, encoder = tiny_causal_lm(0), tiny_encoder(0)
    return ModelBox(load_causal_lm=lambda name: lm, load_encoder=lambda: encoder)


# method, module whose sampler it calls, that sampler's name, extra config for tiny runs
GENERATORS = [
    ("fewgen", fewgen_module, "sample_prompts", {}),
    ("corrsynth", corrsynth_module, "decode_lockstep", {"sequences_per_label": 2}),
    ("cfg", corrsynth_module, "decode_lockstep", {"sequences_per_label": 2}),
    ("bare", bare_module, "sample_prompts", {"drafts_per_prompt": 2}),
    ("synalign", synalign_module, "sample_prompts", {"samples_per_cluster": 2}),
]


@pytest.mark.parametrize(("method", "module", "sampler", "extra"), GENERATORS)
def test_each_generator_passes_the_resolved_stops_to_its_sampler(
    monkeypatch, box, method, module, sampler, extra
) -> None:
    def sample_stops(seeds: SeedSet, setting) -> set[tuple[str, ...]]:
        spy = StopSpy(getattr(module, sampler))
        with monkeypatch.context() as patch:
            patch.setattr(module, sampler, spy)
            config = {"name": method, "max_new_tokens": 4, "paragraph_stop": setting, **extra}
            build_text_generator(config).generate(seeds, 2, models=box, seed=0)
        # the samples' decoding: the calls that stop at the closing delimiter (SynAlign's
        # attribute summaries stop at "}", BARE's refinements have their own rule)
        calls = [s for s in spy.stops if s[0] == CLOSE]
        assert calls, f"{method} never decoded a sample"
        return set(calls) if method != "bare" else {calls[0]}

    assert sample_stops(ONE_PARAGRAPH, "auto") == {(CLOSE, BLANK_LINE)}
    assert sample_stops(TWO_PARAGRAPHS, "auto") == {(CLOSE,)}
    assert sample_stops(ONE_PARAGRAPH, False) == {(CLOSE,)}


def test_synthllm_samples_stop_at_a_blank_line_and_get_the_ramp_with_the_keys(monkeypatch) -> None:
    model, tokenizer = tiny_causal_lm(0)
    seeds = SeedDocuments(
        texts=["Solar panels charge the car battery.", "Grid news."],
        labels=["pos", "pos"],
        concepts=[["solar panels", "battery"], ["grid"]],
    )
    combos = [Combination(("battery", "grid"), 2, (0,), "pos")]
    for setting, expected, strength in [
        ("auto", (CLOSE, BLANK_LINE, "\nConcepts:"), 0.0),
        (False, (CLOSE, "\nConcepts:"), 3.0),
    ]:
        spy = StopSpy(concepts_generate.sample_prompts)
        monkeypatch.setattr(concepts_generate, "sample_prompts", spy)
        generate_from_combinations(
            combos, seeds, model, tokenizer, output="labelled", task="notes", num_examples=1,
            temperature=1.0, top_p=1.0, max_new_tokens=10, batch_size=2, seed=0,
            paragraph_stop=setting, closing_ramp=strength,
        )  # fmt: skip
        assert spy.stops == [expected]
        (ramp,) = spy.ramps
        assert ramp is None if strength == 0 else ramp.strength == strength


def test_the_unfinished_share_counts_every_unfinished_reason_per_continuation() -> None:
    counts = {"draft_unfinished": 3, "refine_unfinished": 2, "refine_echo": 7, "unfinished": 1}
    assert unfinished_share(counts, {"samples": 80.0, "sampled": 120.0}) == pytest.approx(6 / 120)
    assert unfinished_share({"unfinished": 2}, {"samples": 40.0}) == pytest.approx(2 / 40)
    assert unfinished_share({}, {"samples": 0.0}) == 0.0


def test_run_generator_reports_the_unfinished_share_of_what_it_decoded(box) -> None:
    seeds = pd.DataFrame({"text": ONE_PARAGRAPH.texts, "label": ONE_PARAGRAPH.labels})
    method = {"name": "synalign", "max_new_tokens": 16, "samples_per_cluster": 4}
    spy = StopSpy(synalign_module.sample_prompts)  # valid attribute summaries
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synalign_module, "sample_prompts", spy)
        frame, stats = run_generator(method, seeds, 4, box, seed=0)
    m, counts = stats["metrics"], stats["counts"]
    # every candidate decoded: the pool, the unclosed (most of the tiny LM's) and the empty
    unfinished = counts.get("unfinished", 0)
    assert m["sampled"] == m["synalign_pool_size"] + unfinished + counts.get("empty", 0)
    assert m["sampled"] > len(frame) and unfinished > 0
    assert m["unfinished_share"] == pytest.approx(unfinished / m["sampled"])


@pytest.mark.parametrize(("method", "module", "sampler", "extra"), GENERATORS)
def test_each_generator_passes_the_closing_ramp_to_its_sampler(
    monkeypatch, box, method, module, sampler, extra
) -> None:
    def sample_ramps(strength: float) -> set[ClosingRamp | None]:
        spy = StopSpy(getattr(module, sampler))
        with monkeypatch.context() as patch:
            patch.setattr(module, sampler, spy)
            config = {"name": method, "max_new_tokens": 8, "closing_ramp": strength, **extra}
            build_text_generator(config).generate(ONE_PARAGRAPH, 2, models=box, seed=0)
        # the samples' decoding (BARE's refinements have their own rule and no ramp)
        ramps = [r for s, r in zip(spy.stops, spy.ramps, strict=True) if s[0] == CLOSE]
        assert ramps, f"{method} never decoded a sample"
        return set(ramps) if method != "bare" else {ramps[0]}

    assert sample_ramps(0.0) == {None}  # off by default: the papers' decoding
    (ramp,) = sample_ramps(2.5)
    assert ramp.strength == 2.5 and ramp.start <= ramp.end <= 8 - 1
