"""Write one new sample per concept combination (SynthLLM, arXiv 2503.19551, step 2).

Prompts (`combination_prompt`), by `output` kind:

- ``labelled`` / ``document``: a raw-completion few-shot prompt (as
  `synthloom.methods.text.prompts`): `num_examples` seed documents (of the combination's
  label for ``labelled``, after a line saying what the label means when
  `data.label_descriptions` describes it), each preceded by a "Concepts: ..." line with its
  own extracted concepts, then "Concepts: <the combination>" and an open delimiter. The model continues
  with a text written around the listed concepts; decoding stops at the closing delimiter
  (or a "Concepts:" line, and a blank line with `paragraph_stop`: `sample_stop_strings`).
  At level 1 the source document is the first example (the paper's document-grounded level)
  when it is one of the label's; a document of another label (`concept_source: all`) is
  never shown under this label, its concepts are.
- ``question``: a chat turn asking for one question that combines the concepts (the
  source document quoted at level 1); decoding stops at the end of the turn or a blank line.

`generate_from_combinations` decodes the prompts in batches with
`synthloom.methods.text.sampling.sample_prompts` (one continuation per prompt). Outputs that
never stop within `max_new_tokens` are dropped (``unfinished``), empty ones too (``empty``).
Each kept sample records its concepts, level, source documents and label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.concepts.combine import Combination
from synthloom.methods.text.prompts import (
    BLANK_LINE,
    CLOSE,
    OPEN,
    closing_ramp_for,
    random_seed_opener,
    sample_stop_strings,
    token_budget,
    with_opener,
)
from synthloom.methods.text.sampling import chat_prompt, sample_prompts

OUTPUT_KINDS = ("labelled", "document", "question")


@dataclass
class SeedDocuments:
    """The seed documents: texts[i] has label labels[i] and concepts concepts[i]."""

    texts: Sequence[str]
    labels: Sequence[str]
    concepts: Sequence[Sequence[str]]
    descriptions: Mapping[str, str] = field(default_factory=dict)  # label -> what it means


@dataclass
class ConceptSamples:
    rows: list[dict[str, Any]]  # text, label, level, concepts, documents
    counts: dict[str, int] = field(default_factory=dict)
    generated_tokens: int = 0
    forward_passes: int = 0
    prompt_tokens: int = 0


def _clean(text: str) -> str:
    return text.replace(CLOSE, "").replace(OPEN, "").strip()


def combination_prompt(
    combo: Combination,
    seeds: SeedDocuments,
    *,
    output: str,
    task: str,
    num_examples: int,
    rng: np.random.Generator,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> str:
    """The prompt for one combination (see the module docstring)."""
    concepts = ", ".join(combo.concepts)
    if output == "question":
        message = f"Write one question about {task} that combines these concepts: {concepts}."
        if combo.level == 1:
            message += f"\n\nBase it on this text: {seeds.texts[combo.documents[0]].strip()}"
        message += "\nReply with the question only."
        return chat_prompt(tokenizer, message) if tokenizer is not None else message + "\n\n"
    pool = [
        i
        for i in range(len(seeds.texts))
        if seeds.concepts[i] and (output != "labelled" or seeds.labels[i] == combo.label)
    ]
    # level 1 shows its source document first, unless it is another label's (a shared
    # concept pool): then the label's own seeds are the examples, as at level 2
    first = [combo.documents[0]] if combo.level == 1 and combo.documents[0] in pool else []
    rest = [i for i in pool if i not in first]
    take = max(num_examples - len(first), 0)
    picked = first + [rest[j] for j in rng.permutation(len(rest))[:take].tolist()]
    head = f"Examples of {task}"
    if output == "labelled":
        head += f', all with label "{combo.label}"'
    head += ". Each one is written around the concepts listed before it.\n"
    description = seeds.descriptions.get(str(combo.label)) if output == "labelled" else None
    if description:
        head += f'Label "{combo.label}" means: {description.strip().rstrip(".")}.\n'
    head += "\n"
    body = "".join(
        f"Concepts: {', '.join(seeds.concepts[i])}\n{OPEN}\n{_clean(seeds.texts[i])}\n{CLOSE}\n\n"
        for i in picked
    )
    return head + body + f"Concepts: {concepts}\n{OPEN}\n"


def combination_prompts(
    combinations: Sequence[Combination],
    seeds: SeedDocuments,
    *,
    output: str,
    task: str,
    num_examples: int,
    seed: int,
    seed_openers: int = 0,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[tuple[str, str]]:
    """(prompt, opener) per combination: `combination_prompt` (examples drawn with
    default_rng(seed)), then, for a ``labelled`` output with `seed_openers` n > 0, the first n
    words of a random seed of the label appended (drawn from default_rng([seed, 1]), so the
    examples stay those of n = 0); the opener is "" otherwise."""
    rng = np.random.default_rng(seed)
    opener_rng = np.random.default_rng([seed, 1])
    words = seed_openers if output == "labelled" else 0
    by_label: dict[str, list[str]] = {}
    for text, label in zip(seeds.texts, seeds.labels, strict=True):
        by_label.setdefault(label, []).append(text)
    out = []
    for c in combinations:
        own = by_label.get(c.label, []) if c.label is not None else []
        opener = random_seed_opener(own, words, opener_rng) if own else ""
        prompt = combination_prompt(
            c,
            seeds,
            output=output,
            task=task,
            num_examples=num_examples,
            rng=rng,
            tokenizer=tokenizer,
        )
        out.append((prompt + opener, opener))
    return out


def generate_from_combinations(
    combinations: Sequence[Combination],
    seeds: SeedDocuments,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    output: str,
    task: str,
    num_examples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int | str,
    batch_size: int,
    seed: int,
    seed_openers: int = 0,
    no_repeat_ngram: int = 0,
    paragraph_stop: bool | str = False,
    closing_ramp: float = 0.0,
) -> ConceptSamples:
    """One sampled continuation per combination, in order (see the module docstring).
    `max_new_tokens` "auto" is `token_budget` of the seed texts. Prompts are
    `combination_prompts`; with `seed_openers` n > 0 a labelled sample is its prompt's opener
    + the continuation, as in FewGen."""
    assert output in OUTPUT_KINDS, output
    max_new_tokens = token_budget(tokenizer, seeds.texts, max_new_tokens)
    generator = torch.Generator().manual_seed(seed)
    planned = combination_prompts(
        combinations,
        seeds,
        output=output,
        task=task,
        num_examples=num_examples,
        seed=seed,
        seed_openers=seed_openers,
        tokenizer=tokenizer,
    )
    prompts = [prompt for prompt, _ in planned]
    openers = [opener for _, opener in planned]
    stops = (
        (BLANK_LINE,)
        if output == "question"
        else (*sample_stop_strings(seeds.texts, paragraph_stop), "\nConcepts:")
    )
    ramp = closing_ramp_for(tokenizer, seeds.texts, max_new_tokens, closing_ramp, stops)
    out = ConceptSamples(rows=[], counts={"unfinished": 0, "empty": 0})
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        result = sample_prompts(
            model,
            tokenizer,
            chunk,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_strings=stops,
            generator=generator,
            no_repeat_ngram=no_repeat_ngram,
            closing_ramp=ramp,
        )
        out.generated_tokens += result.generated_tokens
        out.forward_passes += result.forward_passes
        out.prompt_tokens += result.prompt_tokens
        for offset, (text, done) in enumerate(zip(result.texts, result.finished, strict=True)):
            combo = combinations[start + offset]
            text = with_opener(openers[start + offset], text)
            if not done:
                out.counts["unfinished"] += 1
            elif not text:
                out.counts["empty"] += 1
            else:
                out.rows.append(
                    {
                        "text": text,
                        "label": combo.label if combo.label is not None else "",
                        "level": combo.level,
                        "concepts": list(combo.concepts),
                        "documents": list(combo.documents),
                    }
                )
    return out
