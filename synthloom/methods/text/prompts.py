"""Raw-completion few-shot prompts with delimiters, shared by every text generator.

A prompt is plain text (no chat template): one task sentence, the examples each between
OPEN and CLOSE delimiter lines, and a final open delimiter. The model's continuation is
the new sample; decoding stops at the closing delimiter (`CLOSE`), and `completion_text`
cuts it there. Asking for a continuation instead of "write another example" is what keeps
small models from echoing the prompt ("Example 1: ...", "Here's a new ...").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from synthloom.samplers.closing_ramp import ClosingRamp

OPEN = "<text>"
CLOSE = "</text>"
BLANK_LINE = "\n\n"
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def fewshot_prompt(
    label: str,
    examples: Sequence[str],
    *,
    task: str,
    description: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> str:
    """`task` describes the data (e.g. "tweets, labelled by the device they were sent from");
    `description` (optional) says what the label means (`data.label_descriptions`);
    `attributes` (optional, e.g. {"topic": "sports"}) what the NEXT example should have.

    Layout:  "{n} examples of {task}, all with label "{label}".\\n"
             + ("Label "{label}" means: {description}.\\n" when described) + "\\n"
             + "<text>\\n{example}\\n</text>\\n\\n" per example
             + ("{Attribute} of the next example: {value}.\\n" per attribute) + "<text>\\n"
    The attribute lines come last, next to where the model writes: a small model follows
    what is near the open delimiter far more than a header line.
    """
    head = f'{len(examples)} examples of {task}, all with label "{label}".\n'
    if description:
        head += f'Label "{label}" means: {description.strip().rstrip(".")}.\n'
    head += "\n"
    body = "".join(f"{OPEN}\n{_clean(e)}\n{CLOSE}\n\n" for e in examples)
    wanted = "".join(
        f"{name.capitalize()} of the next example: {value.strip().rstrip('.')}.\n"
        for name, value in (attributes or {}).items()
    )
    return head + body + wanted + f"{OPEN}\n"


def random_attributes(
    grid: Mapping[str, Sequence[str]] | None, rng: np.random.Generator
) -> dict[str, str]:
    """One value per attribute of `grid` (attribute -> values, e.g. {"topic": ["sports",
    "music"]}), each drawn uniformly by `rng`, in the grid's order (AttrPrompt's one sampled
    combination per prompt); {} with no draw when the grid is empty or None."""
    return {name: values[rng.integers(len(values))] for name, values in (grid or {}).items()}


def seed_opener(text: str, words: int) -> str:
    """The first `words` whitespace-separated words of a seed text (its opening, e.g.
    "How many"), cleaned as examples are; the whole text when it is that short."""
    return " ".join(_clean(text).split()[:words])


def random_seed_opener(texts: Sequence[str], words: int, rng: np.random.Generator) -> str:
    """`seed_opener` of one of `texts` (a label's seeds) drawn by `rng`; "" when `words` is 0,
    with no draw, so a generator without openers keeps its random stream."""
    if not words:
        return ""
    return seed_opener(texts[rng.integers(len(texts))], words)


def with_opener(opener: str, continuation: str) -> str:
    """The sample a prompt ending in `opener` produced: opener + continuation, stripped;
    "" when the continuation is empty (an opener alone is no sample)."""
    return (opener + continuation).strip() if continuation.strip() else ""


def token_budget(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], setting: int | str
) -> int:
    """max_new_tokens from the config: an int as it is; "auto" from the seeds' lengths,
    ceil(1.5 x the 95th percentile of their token counts) + 8 (room for the closing
    delimiter), at least 16: samples the length of the data, no tokens spent past it."""
    if setting != "auto":
        return int(setting)
    return max(16, math.ceil(1.5 * _seed_length_p95(tokenizer, texts)) + 8)


def closing_ramp_for(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    budget: int,
    strength: float,
    stop_strings: Sequence[str] = (CLOSE,),
) -> ClosingRamp | None:
    """The `method.closing_ramp` key as a `ClosingRamp` (None at strength 0): the push
    goes to the first token of each way a sample ends (a stop string on its own line: "\\n"
    before "</text>"; a blank line's own token), starts at the seeds' 95th-percentile token
    length (`texts`, the seeds) and is full where the longest closing line still fits in
    `budget` tokens."""
    if strength <= 0:
        return None
    lines = [s if s.startswith("\n") else "\n" + s for s in stop_strings if s]
    encoded = [tokenizer(line, add_special_tokens=False).input_ids for line in lines]
    token_ids = tuple(sorted({ids[0] for ids in encoded if ids}))
    start = min(math.ceil(_seed_length_p95(tokenizer, texts)), budget - 1)
    end = max(start, budget - max(len(ids) for ids in encoded))
    return ClosingRamp(token_ids=token_ids, start=max(start, 0), end=end, strength=strength)


def _seed_length_p95(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> float:
    """The 95th percentile of the texts' token counts (32 for no texts)."""
    lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts] or [32]
    return float(np.percentile(lengths, 95))


def paragraph_count(text: str) -> int:
    """Blank-line-separated blocks in `text` (at least 1)."""
    return max(len([p for p in PARAGRAPH_BREAK.split(text.strip()) if p.strip()]), 1)


def sample_stop_strings(
    seed_texts: Sequence[str], paragraph_stop: bool | str, *, close: str = CLOSE
) -> tuple[str, ...]:
    """Where a sample ends (the `method.paragraph_stop` key): at `close` (the closing
    delimiter) always; also at a blank line (`BLANK_LINE`) when `paragraph_stop` is True, or
    "auto" and every seed text is one paragraph (`paragraph_count` 1): a sample's blank
    line then starts what the data never holds (a second text, a list, a reply), and
    without the stop it runs on to the token budget and is lost as unfinished."""
    if paragraph_stop == "auto":
        paragraph_stop = all(paragraph_count(t) == 1 for t in seed_texts)
    return (close, BLANK_LINE) if paragraph_stop else (close,)


def completion_text(continuation: str) -> tuple[str, bool]:
    """(text before the closing delimiter, stripped; whether the delimiter was reached)."""
    head, found, _ = continuation.partition(CLOSE)
    return head.strip(), bool(found)


def _clean(example: str) -> str:
    """An example must not close its own block early: drop delimiter strings inside it."""
    return example.replace(CLOSE, "").replace(OPEN, "").strip()
