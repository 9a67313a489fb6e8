"""FewGen: the few-shot baseline. Per label, a raw-completion prompt with k random seed
examples of that label; several independent samples per prompt share its prefill, and the
prompts of a round decode together in one batch.

Each prompt is `fewshot_prompt(label, k examples, task=...)` (delimited examples, then an
open delimiter), decoded by `sample_prompts` with stop string `</text>` (and a blank line
with `paragraph_stop`, `sample_stop_strings`): the sample is the text before it. A round
plans prompts label by label in turn (one prompt per label per turn) until the round holds
`batch_rows` continuations or every label's plan covers
ceil(1.25 x the samples it still misses); a prompt samples at most `samples_per_prompt`.
Rounds repeat until every label has its share of `num_samples` (balanced; the first labels
get the remainder) or `max_prompts` prompts were tried. Continuations that never close
within `max_new_tokens` are dropped (count ``unfinished``), as are empty ones (``empty``);
samples beyond a label's share are not kept (``surplus``). With `seed_openers` n > 0 each
prompt ends with the first n words of a random seed of its label (`random_seed_opener`) and its
samples are that opener + the continuation: a small model follows a label's typical opening
("Who", "How many") far more reliably than its description. Each sample's `info` records the
seeds shown, its prompt and any opener; `stats.metrics["prompts"]` is the number of prompts decoded,
`stats.metrics["sampled"]` the number of continuations sampled from them. With an
`attributes` grid each prompt asks for one random value per attribute (`random_attributes`,
the lines just before the open delimiter; `info.attributes`). With
`seed_adaptation.steps` > 0 the model first trains LoRA adapters on leave-one-out prompts of
the seeds (`adapt_to_seeds`, on a copy) and samples from the adapted copy; its losses and
seconds join `stats.metrics`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from synthloom.config import FewGenConfig
from synthloom.methods.text.base import GenerationStats, ModelBox, SeedSet, TextBatch, TextSample
from synthloom.methods.text.prompts import (
    closing_ramp_for,
    fewshot_prompt,
    random_attributes,
    random_seed_opener,
    sample_stop_strings,
    token_budget,
    with_opener,
)
from synthloom.methods.text.sampling import sample_prompts
from synthloom.methods.text.seed_adaptation import adapt_to_seeds

# A prompt samples up to this many times the rows its label still misses (some get dropped).
_MARGIN = 1.25


def label_quotas(labels: tuple[str, ...], num_samples: int) -> dict[str, int]:
    """num_samples spread evenly over labels; the first `num_samples % K` get one more."""
    base, extra = divmod(num_samples, len(labels))
    return {label: base + (i < extra) for i, label in enumerate(labels)}


class FewGenGenerator:
    name: ClassVar[str] = "fewgen"

    def __init__(self, method: dict[str, Any]) -> None:
        """`method`: a `FewGenConfig` (synthloom.config) dumped to a dict; its keys and
        defaults live there alone."""
        config = FewGenConfig.model_validate({**method, "name": "fewgen"})
        self.model_name: str = config.model
        self.task: str = config.task
        self.num_examples: int = config.num_examples
        self.samples_per_prompt: int = config.samples_per_prompt
        self.temperature: float = config.temperature
        self.top_p: float = config.top_p
        self.max_new_tokens: int | str = config.max_new_tokens
        self.max_prompts: int | None = config.max_prompts
        self.batch_rows: int = config.batch_rows
        self.seed_openers: int = config.seed_openers
        self.config = config

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        model, tokenizer = models.causal_lm(self.model_name)
        stats = GenerationStats()
        adapt = self.config.seed_adaptation
        if adapt.steps:
            model, adaptation = adapt_to_seeds(
                model,
                tokenizer,
                seeds,
                task=self.task,
                num_examples=self.num_examples,
                steps=adapt.steps,
                batch_size=adapt.batch_size,
                rank=adapt.rank,
                lr=adapt.lr,
                seed=seed,
            )
            stats.metrics.update(adaptation.as_metrics())
        budget = token_budget(tokenizer, seeds.texts, self.max_new_tokens)
        stops = sample_stop_strings(seeds.texts, self.config.paragraph_stop)
        ramp = closing_ramp_for(tokenizer, seeds.texts, budget, self.config.closing_ramp, stops)
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        labels = seeds.label_names
        quotas = label_quotas(labels, num_samples)
        needed = sum(math.ceil(q / self.samples_per_prompt) for q in quotas.values())
        max_prompts = self.max_prompts or 3 * max(needed, 1)
        samples: list[TextSample] = []
        have = dict.fromkeys(labels, 0)
        prompts = sampled = rounds = 0
        while prompts < max_prompts and any(have[lab] < quotas[lab] for lab in labels):
            # plan a round: one prompt per label in turn until the batch is full
            # label, prompt, shown, rows, opener, attributes asked for
            plan: list[tuple[str, str, list[str], int, str, dict[str, str]]] = []
            wanted = {
                lab: math.ceil(_MARGIN * (quotas[lab] - have[lab]))
                for lab in labels
                if have[lab] < quotas[lab]
            }
            width = 0
            while wanted and width < self.batch_rows and prompts + len(plan) < max_prompts:
                for label in list(wanted):
                    if width >= self.batch_rows or prompts + len(plan) >= max_prompts:
                        break
                    rows = min(self.samples_per_prompt, wanted[label], self.batch_rows - width)
                    pool = seeds.for_label(label)
                    pick = rng.choice(len(pool), min(self.num_examples, len(pool)), replace=False)
                    shown = [pool[i] for i in pick]
                    wanted_attributes = random_attributes(self.config.attributes, rng)
                    prompt = fewshot_prompt(
                        label,
                        shown,
                        task=self.task,
                        description=seeds.description(label),
                        attributes=wanted_attributes,
                    )
                    opener = random_seed_opener(pool, self.seed_openers, rng)
                    plan.append((label, prompt + opener, shown, rows, opener, wanted_attributes))
                    width += rows
                    wanted[label] -= rows
                    if wanted[label] <= 0:
                        del wanted[label]
            out = sample_prompts(
                model,
                tokenizer,
                [prompt for _, prompt, *_ in plan],
                copies=[rows for _, _, _, rows, *_ in plan],
                max_new_tokens=budget,
                temperature=self.temperature,
                top_p=self.top_p,
                stop_strings=stops,
                generator=generator,
                no_repeat_ngram=self.config.no_repeat_ngram,
                closing_ramp=ramp,
            )
            sampled += width
            rounds += 1
            stats.add_sampling_cost(out)
            row = 0
            for label, _, shown, rows, opener, asked in plan:
                for text, finished in zip(
                    out.texts[row : row + rows], out.finished[row : row + rows], strict=True
                ):
                    text = with_opener(opener, text)
                    if not finished:
                        stats.count("unfinished")
                    elif not text:
                        stats.count("empty")
                    elif have[label] >= quotas[label]:
                        stats.count("surplus")
                    else:
                        have[label] += 1
                        info = {"prompt_index": prompts, "seeds_shown": shown}
                        if opener:
                            info["opener"] = opener
                        if asked:
                            info["attributes"] = asked
                        samples.append(TextSample(text=text, label=label, info=info))
                row += rows
                prompts += 1
            models.report(len(samples))
        stats.metrics["prompts"] = float(prompts)
        stats.metrics["sampled"] = float(sampled)
        stats.metrics["rounds"] = float(rounds)
        return TextBatch(samples=samples, stats=stats)
