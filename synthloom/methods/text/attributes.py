"""SynAlign's latent attribute reasoning (arXiv 2502.08661, Sec. 3.2): the LLM first writes a
JSON summary of a demonstration cluster's attributes, then new samples are generated
conditioned on that summary and the cluster's examples.

Contract: `attribute_request` is the user message asking for {"style", "tone", "topic",
"length"} as one JSON object; the assistant turn is pre-filled with `ATTRIBUTE_PREFILL`
(the opening of that object) so small models answer in form. `parse_attributes` accepts the
first JSON object in a reply when it has every key with a short non-empty scalar value, and
rejects anything else (None). `summarize_with_retries` asks again up to `retries` times and
counts what happened in `GenerationStats.counts`: "attribute_retries" (extra attempts) and
"attribute_invalid" (clusters dropped because no attempt parsed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from synthloom.methods.text.base import GenerationStats
from synthloom.methods.text.prompts import CLOSE, OPEN, fewshot_prompt

ATTRIBUTE_KEYS: tuple[str, ...] = ("style", "tone", "topic", "length")
ATTRIBUTE_PREFILL = '{"style": "'
MAX_ATTRIBUTE_CHARS = 200


def attribute_request(
    label: str, examples: Sequence[str], *, task: str, keys: Sequence[str] = ATTRIBUTE_KEYS
) -> str:
    """User message: the examples between delimiters, then the request for one JSON object
    with its format spelled out ({"style": "...", ...})."""
    shown = "".join(f"{OPEN}\n{_clean(e)}\n{CLOSE}\n\n" for e in examples)
    fields = ", ".join(f'"{k}"' for k in keys)
    template = "{" + ", ".join(f'"{k}": "..."' for k in keys) + "}"
    return (
        f'Here are {len(examples)} examples of {task}, all with label "{label}".\n\n'
        f"{shown}"
        f"Describe what these texts have in common as one JSON object with the keys {fields}, "
        f"each a short phrase, in this format: {template}\nAnswer with the JSON object only."
    )


def parse_attributes(reply: str, keys: Sequence[str] = ATTRIBUTE_KEYS) -> dict[str, str] | None:
    """The attribute summary in `reply`, or None when it is not a valid one.

    Valid: the first '{' starts a JSON object (trailing text is ignored; a last string left
    open before the first '}' is closed, a slip small models make) that has every key
    in `keys` with a string or number value, non-empty after stripping, at most
    MAX_ATTRIBUTE_CHARS long and free of the text delimiters. Extra keys are dropped.
    """
    start = reply.find("{")
    if start < 0:
        return None
    obj = _decode_object(reply[start:])
    if not isinstance(obj, dict):
        return None
    out: dict[str, str] = {}
    for key in keys:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        text = str(value).strip()
        if not text or len(text) > MAX_ATTRIBUTE_CHARS or OPEN in text or CLOSE in text:
            return None
        out[key] = text
    return out


def summarize_with_retries(
    ask: Callable[[], str],
    *,
    retries: int,
    stats: GenerationStats,
    keys: Sequence[str] = ATTRIBUTE_KEYS,
) -> tuple[dict[str, str] | None, list[str]]:
    """Call `ask()` (one LLM reply) until `parse_attributes` accepts it, at most 1 + retries
    times. Returns (the summary or None, every raw reply). Counts "attribute_retries" per
    extra attempt and "attribute_invalid" when every attempt failed."""
    replies: list[str] = []
    for attempt in range(retries + 1):
        if attempt:
            stats.count("attribute_retries")
        replies.append(ask())
        parsed = parse_attributes(replies[-1], keys)
        if parsed is not None:
            return parsed, replies
    stats.count("attribute_invalid")
    return None, replies


def attribute_conditioned_prompt(
    label: str,
    examples: Sequence[str],
    attributes: dict[str, str],
    *,
    task: str,
    description: str | None = None,
) -> str:
    """Raw completion prompt: one line per attribute, then the usual few-shot prompt.

    Layout: "Style: ...\\nTone: ...\\nTopic: ...\\nLength: ...\\n\\n" + fewshot_prompt(...),
    ending with an open delimiter, so decoding stops at the closing one.
    """
    head = "".join(f"{key.capitalize()}: {value}\n" for key, value in attributes.items())
    return head + "\n" + fewshot_prompt(label, examples, task=task, description=description)


def _decode_object(text: str) -> object:
    """The JSON value at the start of `text` (trailing text ignored), or None. One repair:
    a last string value left open before the closing brace ({"length": "12}) is closed."""
    decoder = json.JSONDecoder()
    candidates = [text]
    end = text.find("}")
    if end > 0 and text[:end].count('"') % 2 == 1:
        candidates.append(text[:end] + '"' + text[end:])
    for candidate in candidates:
        try:
            return decoder.raw_decode(candidate)[0]
        except json.JSONDecodeError:
            continue
    return None


def _clean(example: str) -> str:
    return example.replace(CLOSE, "").replace(OPEN, "").strip()
