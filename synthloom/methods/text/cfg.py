"""K-class classifier-free guidance (CFG), the baseline CorrSynth is compared against.

Each stream writes one sample x for a label c from its own few-shot prompt (the same prompt
slots as CorrSynth, see `corrsynth.seed_example_slots`). Its next token is drawn from

    s(w) = gamma * log p(w | prompt_c, x) - (gamma - 1) * log p(w | not c, x)

(p(w|c)^gamma / p(w|not c)^(gamma-1)), alpha-plausibility on p(.|prompt_c, x) first, then
temperature and top-p. "not c" is defined by `method.negative`:
- "mixture" (default): the equal mixture of the other labels' prompts, each continued
  with the stream's OWN prefix x:
      p(w | not c, x) = 1/(K-1) * sum_{j != c} p(w | prompt_j[slot], x),
  where prompt_j[slot] is label j's prompt in the stream's prompt slot. A stream costs K
  rows per step (1 conditional + K-1 contrasts), so K streams (one per label) cost K^2
  sequence evaluations per step where CorrSynth's K sequences cost K.
- "joint_prompt": ONE contrast prompt per stream whose examples are taken round-robin from
  the other labels' prompts in the same slot, headed `... all with label "not c"`; 2 rows
  per stream per step.

The contrast rows must run on each stream's own prefix, so they cannot be shared between
streams: that is the cost CorrSynth avoids by contrasting sequences with each other.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

import numpy as np
import torch

from synthloom.config import CFGConfig
from synthloom.methods.text.base import GenerationStats, ModelBox, SeedSet, TextBatch
from synthloom.methods.text.corrsynth import (
    check_seeds,
    decode_rounds,
    seed_example_slots,
)
from synthloom.methods.text.guidance import cfg_scores, mixture_log_probs
from synthloom.methods.text.lockstep import (
    Guidance,
    end_token_mask,
    prefill_prompts,
)
from synthloom.methods.text.prompts import (
    closing_ramp_for,
    fewshot_prompt,
    sample_stop_strings,
    token_budget,
)


def negative_examples(
    slots: dict[str, list[tuple[str, ...]]], label: str, slot: int, num_examples: int
) -> tuple[str, ...]:
    """The joint "not label" prompt's examples: round-robin over the other labels' examples
    in `slot` (labels in sorted order), the first `num_examples` of them."""
    others = [slots[lab][slot] for lab in sorted(slots) if lab != label]
    mixed = [e for group in itertools.zip_longest(*others) for e in group if e is not None]
    return tuple(mixed[:num_examples])


def cfg_guidance(rows_per_stream: int, *, gamma: float, alpha: float) -> Guidance:
    """The lockstep guidance rule of K-class CFG: each live stream owns `rows_per_stream`
    consecutive rows, its conditional row first, then its contrast rows, whose probability
    mixture is p(w | not c, x); scores = `cfg_scores`."""

    def guidance(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        per = log_probs.view(len(streams), rows_per_stream, -1)  # (S', J, V)
        return cfg_scores(per[:, 0], mixture_log_probs(per[:, 1:]), gamma=gamma, alpha=alpha)

    return guidance


class CFGGenerator:
    """K-class CFG: each stream guided away from the other labels on its own prefix."""

    name: ClassVar[str] = "cfg"

    def __init__(self, method: dict[str, Any]) -> None:
        self.config = CFGConfig.model_validate(method)

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        """About `num_samples` samples balanced over the labels: rounds of
        K * sequences_per_label streams (as CorrSynth) until the quotas are met."""
        cfg = self.config
        check_seeds(seeds, self.name, min_labels=2)
        start = time.perf_counter()
        stats = GenerationStats()
        labels = seeds.label_names
        k_labels, per_label = len(labels), cfg.prompts_per_label
        if num_samples <= 0:
            return TextBatch([], stats)
        model, tokenizer = models.causal_lm(cfg.model)
        budget = token_budget(tokenizer, seeds.texts, cfg.max_new_tokens)
        cfg = cfg.model_copy(update={"max_new_tokens": budget})
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        slots = seed_example_slots(seeds, per_label, cfg.num_examples, rng)
        prompts = [
            fewshot_prompt(lab, slots[lab][p], task=cfg.task, description=seeds.description(lab))
            for lab in labels
            for p in range(per_label)
        ]
        joint = cfg.negative == "joint_prompt"
        if joint:  # pool entries K*P + k*P + p: the "not label k" prompt of slot p
            prompts += [
                fewshot_prompt(
                    f"not {lab}",
                    negative_examples(slots, lab, p, cfg.num_examples),
                    task=cfg.task,
                )
                for lab in labels
                for p in range(per_label)
            ]
        pool = prefill_prompts(model, tokenizer, prompts)
        end_tokens = end_token_mask(model, tokenizer) if cfg.end_passthrough else None
        rows_per_stream = 2 if joint else k_labels

        guidance = cfg_guidance(rows_per_stream, gamma=cfg.gamma, alpha=cfg.alpha)
        stops = sample_stop_strings(seeds.texts, cfg.paragraph_stop)

        def rows_of(k: int, slot: int) -> list[int]:
            if joint:  # the stream's prompt, then its "not label k" prompt
                return [k * per_label + slot, k_labels * per_label + k * per_label + slot]
            others = [j * per_label + slot for j in range(k_labels) if j != k]
            return [k * per_label + slot, *others]

        samples = decode_rounds(
            model,
            tokenizer,
            pool,
            guidance,
            cfg,
            slots,
            labels,
            num_samples,
            rows_of,
            generator=generator,
            end_tokens=end_tokens,
            stats=stats,
            method=self.name,
            start=start,
            progress=models.report,
            stop_strings=stops,
            closing_ramp=closing_ramp_for(tokenizer, seeds.texts, budget, cfg.closing_ramp, stops),
        )
        return TextBatch(samples, stats)
