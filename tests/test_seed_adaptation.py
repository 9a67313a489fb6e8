"""Seed adaptation (issue 18, lever 6): LoRA steps on leave-one-out few-shot prompts of the
seeds, on a copy of the generator. Tiny random models; the real-model effect is measured
in benchmarks/text_quality.py, not here."""

from __future__ import annotations

import numpy as np
import torch

import synthloom.methods.text.fewgen as fewgen
from synthloom.methods.text.base import ModelBox, SeedSet
from synthloom.methods.text.sampling import Continuations
from synthloom.methods.text.seed_adaptation import adapt_to_seeds, leave_one_out_examples
from synthloom.models.lora import LoRALinear
from synthloom.models.tiny import tiny_causal_lm

SEEDS = SeedSet(
    texts=(
        "who won the cup",
        "who wrote the song",
        "who made the film",
        "how many legs has a cat",
        "how many days in May",
        "how many moons has Mars",
    ),
    labels=("person", "person", "person", "number", "number", "number"),
    descriptions={"person": "asks for a person"},
)


def test_leave_one_out_examples_never_show_their_target_and_take_labels_in_turn():
    pairs = leave_one_out_examples(
        SEEDS, 12, task="questions", num_examples=2, rng=np.random.default_rng(0)
    )
    assert len(pairs) == 12
    for i, (prompt, target) in enumerate(pairs):
        label = SEEDS.label_names[i % 2]
        assert f'label "{label}"' in prompt
        assert SEEDS.labels[SEEDS.texts.index(target)] == label
        shown = [t for t in SEEDS.texts if f"<text>\n{t}\n</text>" in prompt]
        assert target not in shown and len(shown) == 2
        assert all(SEEDS.labels[SEEDS.texts.index(t)] == label for t in shown)
    assert "asks for a person" in pairs[1][0] and "asks for" not in pairs[0][0]
    again = leave_one_out_examples(
        SEEDS, 12, task="questions", num_examples=2, rng=np.random.default_rng(0)
    )
    assert again == pairs


def _target_nll(model, tokenizer) -> float:
    """Mean NLL of every seed as the target of its leave-one-out prompt (fixed draw)."""
    from synthloom.methods.text.seed_adaptation import _batch

    pairs = leave_one_out_examples(
        SEEDS, 6, task="questions", num_examples=2, rng=np.random.default_rng(1)
    )
    close = tokenizer("\n</text>", add_special_tokens=False).input_ids
    ids, mask, labels = _batch(tokenizer, pairs, close, tokenizer.pad_token_id, model.device)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    return float(
        torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
    )


def test_adaptation_lowers_the_seeds_loss_on_a_copy_and_is_deterministic():
    model, tok = tiny_causal_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nll_before = _target_nll(model, tok)
    kw = dict(task="questions", num_examples=2, steps=25, batch_size=4, lr=1e-2, seed=3)
    adapted, info = adapt_to_seeds(model, tok, SEEDS, **kw)
    assert adapted is not model and not adapted.training
    assert any(isinstance(m, LoRALinear) for m in adapted.modules())
    assert not any(isinstance(m, LoRALinear) for m in model.modules())  # the original: as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert info.steps == 25 and info.last_loss < info.first_loss
    assert _target_nll(adapted, tok) < nll_before - 0.1
    twin, twin_info = adapt_to_seeds(model, tok, SEEDS, **kw)
    assert twin_info.last_loss == info.last_loss
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        assert torch.equal(adapted(input_ids=ids).logits, twin(input_ids=ids).logits)


def test_fewgen_samples_from_the_adapted_copy_and_reports_it(monkeypatch):
    model, tok = tiny_causal_lm()
    used: list[object] = []

    def sample(model_arg, tokenizer, prompts, *, copies, generator, **kw):
        used.append(model_arg)
        n = sum(copies)
        return Continuations([f"who is number {i}" for i in range(n)], [True] * n, n, 1, 1)

    monkeypatch.setattr(fewgen, "sample_prompts", sample)
    method = {"task": "questions", "num_examples": 2, "seed_adaptation": {"steps": 2}}
    batch = fewgen.FewGenGenerator(method).generate(
        SEEDS, 4, models=ModelBox(lambda name: (model, tok)), seed=0
    )
    assert len(batch.samples) == 4 and used and all(m is not model for m in used)
    assert any(isinstance(m, LoRALinear) for m in used[0].modules())
    assert batch.stats.metrics["adaptation_steps"] == 2
    assert batch.stats.metrics["adaptation_seconds"] > 0
    plain = fewgen.FewGenGenerator({**method, "seed_adaptation": {"steps": 0}})
    used.clear()
    plain.generate(SEEDS, 4, models=ModelBox(lambda name: (model, tok)), seed=0)
    assert all(m is model for m in used)  # off by default: the frozen model itself
