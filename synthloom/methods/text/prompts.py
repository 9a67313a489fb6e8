"""Raw-completion few-shot prompts with delimiters, shared by every text generator.

A prompt is plain text (no chat template): one task sentence, the examples each between
OPEN and CLOSE delimiter lines, and a final open delimiter. The model's continuation is
the new sample; decoding stops at the closing delimiter (`CLOSE`), and `completion_text`
cuts it there. Asking for a continuation instead of "write another example" is what keeps
small models from echoing the prompt ("Example 1: ...", "Here's a new ...").
"""

from __future__ import annotations

from collections.abc import Sequence

OPEN = "<text>"
CLOSE = "</text>"


def fewshot_prompt(label: str, examples: Sequence[str], *, task: str) -> str:
    """`task` describes the data (e.g. "tweets, labelled by the device they were sent from").

    Layout:  "{n} examples of {task}, all with label "{label}".\\n\\n"
             + "<text>\\n{example}\\n</text>\\n\\n" per example + "<text>\\n"
    """
    head = f'{len(examples)} examples of {task}, all with label "{label}".\n\n'
    body = "".join(f"{OPEN}\n{_clean(e)}\n{CLOSE}\n\n" for e in examples)
    return head + body + f"{OPEN}\n"


def completion_text(continuation: str) -> tuple[str, bool]:
    """(text before the closing delimiter, stripped; whether the delimiter was reached)."""
    head, found, _ = continuation.partition(CLOSE)
    return head.strip(), bool(found)


def _clean(example: str) -> str:
    """An example must not close its own block early: drop delimiter strings inside it."""
    return example.replace(CLOSE, "").replace(OPEN, "").strip()
