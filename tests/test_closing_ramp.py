"""`method.closing_ramp`: the closing line grows likelier past the seeds' length.

The schedule (`ClosingRamp`), its construction from the seeds and the stop strings
(`closing_ramp_for`), both decoding loops under it (tiny random models, which never close a
sample by themselves) and the config key on every text method. That each generator hands
the ramp to its sampler is tested beside the stop strings, in test_paragraph_stop.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from synthloom.concepts.config import SynthLLMConfig
from synthloom.config import (
    BAREConfig,
    CFGConfig,
    CorrSynthConfig,
    FewGenConfig,
    SynAlignConfig,
    config_hash,
    load_config,
)
from synthloom.methods.text.base import SeedSet
from synthloom.methods.text.guidance import corrsynth_scores
from synthloom.methods.text.lockstep import decode_lockstep, prefill_prompts
from synthloom.methods.text.prompts import BLANK_LINE, CLOSE, closing_ramp_for, token_budget
from synthloom.methods.text.sampling import sample_prompts
from synthloom.models.tiny import tiny_causal_lm
from synthloom.samplers.closing_ramp import ClosingRamp

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = SeedSet(
    texts=(
        "A warm, funny film.",
        "Lovely acting from the whole cast, and a score that stays with you.",
        "Dull and far too long.",
        "I left early.",
    ),
    labels=("fresh", "fresh", "rotten", "rotten"),
)
PROMPT = (
    '2 examples of reviews, all with label "fresh".\n\n<text>\nA warm film.\n</text>\n\n<text>\n'
)


def test_the_bias_is_zero_before_start_linear_on_the_ramp_and_full_from_end() -> None:
    ramp = ClosingRamp(token_ids=(5,), start=3, end=6, strength=4.0)
    assert [ramp.bias(t) for t in range(9)] == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert ClosingRamp(token_ids=(5,), start=2, end=2, strength=3.0).bias(2) == 3.0
    assert ClosingRamp(token_ids=(5,), start=0, end=4, strength=0.0).bias(4) == 0.0
    for bad in [
        dict(token_ids=(), start=0, end=1, strength=1.0),
        dict(token_ids=(1,), start=3, end=2, strength=1.0),
        dict(token_ids=(1,), start=-1, end=2, strength=1.0),
        dict(token_ids=(1,), start=0, end=2, strength=-1.0),
    ]:
        with pytest.raises(ValueError, match="ClosingRamp"):
            ClosingRamp(**bad)


def test_apply_adds_the_bias_to_the_ramp_tokens_only() -> None:
    ramp = ClosingRamp(token_ids=(1, 3), start=1, end=2, strength=2.0)
    logits = torch.zeros(2, 5)
    assert ramp.apply(logits, 0) is logits  # no bias yet: untouched, no copy
    out = ramp.apply(logits, 1)
    assert out.tolist() == [[0.0, 1.0, 0.0, 1.0, 0.0]] * 2
    assert logits.abs().sum() == 0  # the input is not modified


def test_the_ramp_starts_at_the_seeds_length_and_is_full_where_the_closing_line_fits() -> None:
    _, tokenizer = tiny_causal_lm(0)
    budget = token_budget(tokenizer, SEEDS.texts, "auto")
    assert closing_ramp_for(tokenizer, SEEDS.texts, budget, 0.0) is None  # off: the papers
    ramp = closing_ramp_for(tokenizer, SEEDS.texts, budget, 3.0, (CLOSE, BLANK_LINE))
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in SEEDS.texts]
    close_line = tokenizer("\n" + CLOSE, add_special_tokens=False).input_ids
    blank = tokenizer(BLANK_LINE, add_special_tokens=False).input_ids
    assert ramp.start == math.ceil(float(np.percentile(lengths, 95)))
    assert ramp.end == budget - max(len(close_line), len(blank))
    assert ramp.token_ids == tuple(sorted({close_line[0], blank[0]}))
    assert ramp.strength == 3.0 and ramp.start < ramp.end < budget


def test_a_strong_ramp_closes_every_row_of_the_plain_sampler_by_its_end() -> None:
    model, tokenizer = tiny_causal_lm(0)
    stops = (BLANK_LINE,)
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    assert len(newline) == 1
    kw = dict(max_new_tokens=12, temperature=1.0, top_p=1.0, stop_strings=stops)
    free = sample_prompts(
        model, tokenizer, [PROMPT], copies=[6], generator=torch.Generator().manual_seed(0), **kw
    )
    assert not any(free.finished), "the random tiny LM closes by itself: pick another seed"
    ramp = ClosingRamp(token_ids=(newline[0],), start=4, end=6, strength=60.0)
    pushed = sample_prompts(
        model,
        tokenizer,
        [PROMPT],
        copies=[6],
        generator=torch.Generator().manual_seed(0),
        closing_ramp=ramp,
        **kw,
    )
    assert all(pushed.finished)
    # one forward pass per step, the prefill giving the first: a row is closed by the
    # second forced newline at the latest, step end + 1
    assert pushed.forward_passes <= ramp.end + 2


def test_a_strong_ramp_closes_every_stream_of_the_lockstep_loop() -> None:
    model, tokenizer = tiny_causal_lm(3)
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    pool = prefill_prompts(model, tokenizer, [PROMPT, PROMPT.replace("fresh", "rotten")])
    labels = torch.tensor([0, 1])

    def guidance(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        return corrsynth_scores(
            log_probs, labels[streams], gamma=1.0, delta=0.5, intra_weight=0.5,
            cross_weight=1.0, alpha=0.1,
        )  # fmt: skip

    def run(ramp: ClosingRamp | None):
        return decode_lockstep(
            model, tokenizer, pool, [0, 1], [0, 1], guidance, max_new_tokens=12,
            temperature=1.0, generator=torch.Generator().manual_seed(0),
            stop_strings=(BLANK_LINE,), closing_ramp=ramp,
        )  # fmt: skip

    assert not any(run(None).finished)
    ramp = ClosingRamp(token_ids=tuple(newline), start=2, end=5, strength=60.0)
    out = run(ramp)
    assert all(out.finished)
    assert max(len(ids) for ids in out.token_ids) <= ramp.end + 2


@pytest.mark.parametrize(
    "config", [FewGenConfig, CorrSynthConfig, CFGConfig, BAREConfig, SynAlignConfig, SynthLLMConfig]
)
def test_every_text_method_has_the_key_off_by_default(config) -> None:
    name = config.model_fields["name"].annotation.__args__[0]
    assert config.model_validate({"name": name}).closing_ramp == 0.0  # the papers' decoding
    assert config.model_validate({"name": name, "closing_ramp": 4}).closing_ramp == 4.0
    with pytest.raises(ValidationError, match="closing_ramp"):
        config.model_validate({"name": name, "closing_ramp": -1})


def test_the_key_at_its_default_keeps_a_run_s_identity() -> None:
    path = "pipeline_configs/text_trec_fewgen.yaml"  # a config without the key
    base = config_hash(load_config(path))
    assert config_hash(load_config(path, ["method.closing_ramp=0"])) == base
    assert config_hash(load_config(path, ["method.closing_ramp=4"])) != base
