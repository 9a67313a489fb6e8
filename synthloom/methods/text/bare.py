"""BARE, Base-Refine generation (Zhu et al., arXiv 2502.01697; official code github
pgasawa/BARE): a base model drafts, an instruct model refines.

1. Base step. `method.base_model` continues a raw few-shot prompt (no chat template):
   `fewshot_prompt(label, examples, task=...)` with `num_examples` (3) seed examples of the
   label between delimiters and an open delimiter at the end; `drafts_per_prompt`
   continuations share the prompt's KV cache, and a round's prompts decode in one batch
   (`sample_prompts` with copies), temperature
   `base_temperature` (1.0), stop at the closing delimiter, at most `max_new_tokens` (an
   int, or "auto": `prompts.token_budget` from the seeds' lengths). With `seed_openers`
   n > 0 each draft prompt ends with the first n words of a random seed of the label and
   the draft is that opener + the continuation (as FewGen's). A draft that never closes
   (token limit) or is empty is dropped: counts "draft_unfinished", "draft_empty".
2. Refine step. `method.instruct_model`, through its chat template, gets the same examples
   and the draft (`refine_request`) and is told to make the draft closer in style to the
   examples, remove ambiguity and fix errors without changing its theme; when the label is
   described (`data.label_descriptions`) and `refine_describes_label` is on (off by
   default: the paper's prompt; on Rotten Tomatoes it changed nothing measurable), the
   message also says what the label means and that the rewrite must keep it
   (`refine_request`). The assistant turn
   is pre-filled with the open delimiter (`refine_prefill`) and decoding stops at the
   closing one (or at a blank line when the draft and examples are one paragraph each);
   `parse_refinement` strips preambles ("Here is ...:"), delimiters, paragraphs beyond
   the draft's / examples' count (small models talk on: "Rewrite the text to ...") and
   quotes. Refinements that never close (and were not followed by a blank line and talk:
   `holds_whole_refinement`), are empty, or echo the instructions or a shown
   example are dropped: counts "refine_unfinished", "refine_empty", "refine_echo"
   ("refine_unchanged" counts kept refinements identical to their draft).
3. Draft fallback (`draft_fallback_ngram` n, off by default: the paper keeps every
   refinement). A small refiner often returns one of the seeds it was shown, nearly word
   for word, which the filter's seed_copy rule then drops. With n set, a refinement that
   shares a word n-gram with any seed (the same test as `text_filter.seed_ngram`) is
   replaced by its draft when the draft shares none ("refine_copy_fallback"), else dropped
   ("refine_copy"); the sample's `info` records `"fallback": "draft"`.

Labels get equal shares of `num_samples` (`fewgen.label_quotas`); per label at most
`max_attempts_factor` x its share of drafts are sampled, each round asking for enough drafts
to fill the gap at the keep rate seen so far ("surplus" / "short_of_quota" count the rest).
Each sample's `info` holds the draft, the refined text and the seeds shown (indices, texts).

Offline, both models default to the local SmolLM2-135M-Instruct, used as a raw completer
for the base step and through its chat template for the refine step. That is weaker than
the paper's true base / instruct pair (e.g. Llama-3.1-8B base + instruct): the "base"
drafts come from an instruction-tuned model, so less of BARE's diversity gain is expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from synthloom.config import BAREConfig
from synthloom.filters.text import ngrams_of, shares_ngram
from synthloom.methods.text.base import (
    GenerationStats,
    ModelBox,
    SeedSet,
    TextBatch,
    TextSample,
)
from synthloom.methods.text.fewgen import label_quotas
from synthloom.methods.text.prompts import (
    BLANK_LINE,
    CLOSE,
    OPEN,
    PARAGRAPH_BREAK,
    closing_ramp_for,
    fewshot_prompt,
    paragraph_count,
    random_seed_opener,
    sample_stop_strings,
    token_budget,
    with_opener,
)
from synthloom.methods.text.sampling import (
    chat_prompt,
    sample_prompts,
)

REFINE_INSTRUCTION = (
    "Rewrite the draft so that it is closer in style to the examples: remove ambiguity and "
    "fix errors, but do not change its theme. Answer with the rewritten text only."
)
# Appended to REFINE_INSTRUCTION when the label is described (`refine_describes_label`).
REFINE_KEEP_LABEL = 'The rewritten text must keep the label "{label}": {description}.'
# Phrases of the refine prompt that must never appear in an output (echo of instructions).
_ECHO_MARKERS = (
    "rewrite the draft",
    "rewrite the text",
    "answer with the",
    "closer in style",
    "rewritten text only",
    "must keep the label",
    "all with label",
    "here is a draft",
)
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|okay|ok)[,!.]?\s*)?"
    r"(?:here(?:'s| is| are)|below is|this is)\b[^:\n]{0,80}:\s*",
    re.IGNORECASE,
)


def refine_request(
    label: str,
    examples: Sequence[str],
    draft: str,
    *,
    task: str,
    description: str | None = None,
) -> str:
    """User message of the refine step: the examples, the draft, the instruction.

    With `description` (what the label means, `data.label_descriptions`) the header gains
    'Label "{label}" means: {description}.' and the instruction ends with
    `REFINE_KEEP_LABEL` ('The rewritten text must keep the label "{label}": {description}.'):
    the paper's instruction asks for style only and never says what the label is about.
    Without `description` the message is the paper's."""
    shown = "".join(f"{OPEN}\n{_clean(e)}\n{CLOSE}\n\n" for e in examples)
    head = f'Here are {len(examples)} examples of {task}, all with label "{label}".\n'
    instruction = REFINE_INSTRUCTION
    if description:
        meaning = description.strip().rstrip(".")
        head += f'Label "{label}" means: {meaning}.\n'
        instruction += " " + REFINE_KEEP_LABEL.format(label=label, description=meaning)
    return (
        f"{head}\n"
        f"{shown}"
        f"Here is a draft of a new one:\n\n{OPEN}\n{_clean(draft)}\n{CLOSE}\n\n"
        f"{instruction}"
    )


def _reply_body(reply: str) -> str:
    """The reply after an open delimiter if there is one, before the closing one, without
    a leading "Here is ...:" / "Sure! ..." preamble; stripped on the left only, so a
    trailing blank line stays visible."""
    text = reply
    if OPEN in text:
        text = text.split(OPEN, 1)[1]
    text = text.split(CLOSE, 1)[0].lstrip()
    text = _PREAMBLE.sub("", text, count=1).lstrip()
    if OPEN in text:  # "Here is the text: <text> ... "
        text = text.split(OPEN, 1)[1].lstrip()
    return text


def parse_refinement(reply: str, max_paragraphs: int | None = None) -> str:
    """The refined text inside `reply` (`_reply_body`), cut after `max_paragraphs`
    paragraphs (what follows is the model talking on: "Rewrite the text to ..."), without
    wrapping quotes."""
    text = _reply_body(reply).strip()
    if max_paragraphs is not None:
        blocks = [p for p in PARAGRAPH_BREAK.split(text) if p.strip()]
        text = BLANK_LINE.join(blocks[:max_paragraphs]).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def holds_whole_refinement(reply: str, max_paragraphs: int) -> bool:
    """A reply cut at the token budget still holds its whole refinement when a blank line
    followed its first `max_paragraphs` paragraphs: the model had moved on to talk
    ("Rewrite the text to ..."), which `parse_refinement` cuts. The per-row form of the
    blank-line stop, which a decoding batch can only apply when every row allows one
    paragraph."""
    blocks = PARAGRAPH_BREAK.split(_reply_body(reply))
    return len(blocks) > max_paragraphs and all(b.strip() for b in blocks[:max_paragraphs])


def is_echo(text: str, examples: Sequence[str]) -> bool:
    """True when `text` copies the refine instructions, a delimiter or a shown example."""
    low = _normalize(text)
    if OPEN in text or CLOSE in text or any(m in low for m in _ECHO_MARKERS):
        return True
    return any(low == _normalize(e) for e in examples)


class BAREGenerator:
    """Base drafts + instruct refinement (module docstring); `method` is a `BAREConfig`
    (synthloom.config) dumped to a dict: its keys and defaults live there alone."""

    name: ClassVar[str] = "bare"

    def __init__(self, method: dict[str, Any]) -> None:
        self.cfg = BAREConfig.model_validate({**method, "name": "bare"}).model_dump()

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        base_lm = models.causal_lm(cfg["base_model"])
        draft_tokens = token_budget(base_lm[1], seeds.texts, cfg["max_new_tokens"])
        instruct_lm = models.causal_lm(cfg["instruct_model"])
        n = cfg["draft_fallback_ngram"]
        seed_grams = ngrams_of(seeds.texts, n) if n else set()  # draft fallback: copies of these
        stats = GenerationStats()
        samples: list[TextSample] = []
        for label, quota in label_quotas(seeds.label_names, num_samples).items():
            pool = [i for i, lab in enumerate(seeds.labels) if lab == label]
            budget = math.ceil(cfg["max_attempts_factor"] * quota)
            kept: list[TextSample] = []
            tried = 0
            while len(kept) < quota and tried < budget:
                # enough drafts for the missing samples at the keep rate seen so far
                rate = max(len(kept) / tried, 0.1) if tried else 1.0
                want = min(math.ceil((quota - len(kept)) / rate), budget - tried)
                drafts = self._drafts(
                    seeds, label, pool, want, base_lm, draft_tokens, rng, generator, stats
                )
                tried += want
                kept.extend(
                    self._refine(seeds, label, drafts, instruct_lm, generator, stats, seed_grams)
                )
                models.report(len(samples) + min(len(kept), quota))
            samples.extend(kept[:quota])
            if len(kept) != quota:
                stats.count(
                    "surplus" if len(kept) > quota else "short_of_quota", abs(len(kept) - quota)
                )
        stats.metrics["bare_kept_fraction"] = len(samples) / max(num_samples, 1)
        return TextBatch(samples=samples, stats=stats)

    def _drafts(
        self,
        seeds: SeedSet,
        label: str,
        pool: list[int],
        want: int,
        lm,
        max_new_tokens: int,
        rng: np.random.Generator,
        generator: torch.Generator,
        stats: GenerationStats,
    ) -> list[tuple[str, list[int]]]:
        """`want` drafts sampled, the closed ones returned as (draft, seed indices shown); a
        fresh random set of examples per prompt, up to `drafts_per_prompt` drafts each (each
        starting with the prompt's seed opener, if any)."""
        cfg = self.cfg
        model, tokenizer = lm
        plan: list[tuple[str, list[int], int, str]] = []  # prompt, seeds shown, drafts, opener
        label_texts = [seeds.texts[i] for i in pool]
        for start in range(0, want, cfg["drafts_per_prompt"]):
            shown = [int(i) for i in rng.permutation(pool)[: cfg["num_examples"]]]
            prompt = fewshot_prompt(
                label,
                [seeds.texts[i] for i in shown],
                task=cfg["task"],
                description=seeds.description(label),
            )
            opener = random_seed_opener(label_texts, cfg["seed_openers"], rng)
            n = min(cfg["drafts_per_prompt"], want - start)
            plan.append((prompt + opener, shown, n, opener))
        out: list[tuple[str, list[int]]] = []
        if not plan:
            return out
        stops = sample_stop_strings(seeds.texts, cfg["paragraph_stop"])
        cont = sample_prompts(  # all prompts in one batch, each prefilled once
            model,
            tokenizer,
            [prompt for prompt, *_ in plan],
            copies=[n for _, _, n, _ in plan],
            max_new_tokens=max_new_tokens,
            temperature=cfg["base_temperature"],
            top_p=cfg["base_top_p"],
            stop_strings=stops,
            generator=generator,
            no_repeat_ngram=cfg["no_repeat_ngram"],
            closing_ramp=closing_ramp_for(
                tokenizer, seeds.texts, max_new_tokens, cfg["closing_ramp"], stops
            ),
        )
        stats.add_sampling_cost(cont)
        stats.count_sampled(cont)
        owners = [(shown, opener) for _, shown, n, opener in plan for _ in range(n)]
        for text, finished, (shown, opener) in zip(cont.texts, cont.finished, owners, strict=True):
            draft = with_opener(opener, text)
            if not finished:
                stats.count("draft_unfinished")
            elif not draft:
                stats.count("draft_empty")
            else:
                out.append((draft, shown))
        return out

    def _refine(
        self,
        seeds: SeedSet,
        label: str,
        drafts: list[tuple[str, list[int]]],
        lm,
        generator: torch.Generator,
        stats: GenerationStats,
        seed_grams: set[tuple[str, ...]],
    ) -> list[TextSample]:
        """Refine every draft with the instruct model; keep the parsed, non-echo results
        (a refinement with an n-gram in `seed_grams` falls back to its draft)."""
        cfg = self.cfg
        n = cfg["draft_fallback_ngram"]
        model, tokenizer = lm
        prefill = f"{OPEN}\n" if cfg["refine_prefill"] else ""
        description = seeds.description(label) if cfg["refine_describes_label"] else None
        kept: list[TextSample] = []
        for start in range(0, len(drafts), cfg["refine_batch_size"]):
            chunk = drafts[start : start + cfg["refine_batch_size"]]
            prompts = [
                chat_prompt(
                    tokenizer,
                    refine_request(
                        label,
                        [seeds.texts[i] for i in shown],
                        draft,
                        task=cfg["task"],
                        description=description,
                    ),
                )
                + prefill
                for draft, shown in chunk
            ]
            # a refinement has at most as many paragraphs as its draft or examples; when
            # that is one for every row, a blank line ends the text as the delimiter would
            limits = [
                max(paragraph_count(t) for t in [draft, *(seeds.texts[i] for i in shown)])
                for draft, shown in chunk
            ]
            stops = (CLOSE, BLANK_LINE) if max(limits) == 1 else (CLOSE,)
            cont = sample_prompts(
                model,
                tokenizer,
                prompts,
                max_new_tokens=cfg["refine_max_new_tokens"],
                temperature=cfg["refine_temperature"],
                top_p=cfg["refine_top_p"],
                stop_strings=stops,
                generator=generator,
                no_repeat_ngram=cfg["no_repeat_ngram"],
            )
            stats.add_sampling_cost(cont)
            stats.count_sampled(cont)
            for (draft, shown), reply, finished, limit in zip(
                chunk, cont.texts, cont.finished, limits, strict=True
            ):
                examples = [seeds.texts[i] for i in shown]
                refined = parse_refinement(reply, limit)
                if not (finished or holds_whole_refinement(reply, limit)):
                    stats.count("refine_unfinished")
                elif not refined:
                    stats.count("refine_empty")
                elif is_echo(refined, examples):
                    stats.count("refine_echo")
                else:
                    if _normalize(refined) == _normalize(draft):
                        stats.count("refine_unchanged")
                    info = {
                        "method": "bare",
                        "draft": draft,
                        "refined": refined,
                        "seed_indices": shown,
                        "seeds_shown": examples,
                    }
                    text = refined
                    if seed_grams and shares_ngram(refined, seed_grams, n):
                        if shares_ngram(draft, seed_grams, n):
                            stats.count("refine_copy")
                            continue
                        stats.count("refine_copy_fallback")
                        text, info["fallback"] = draft, "draft"
                    kept.append(TextSample(text=text, label=label, info=info))
        return kept


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _clean(text: str) -> str:
    return text.replace(CLOSE, "").replace(OPEN, "").strip()
