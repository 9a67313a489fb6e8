"""CorrSynth (Kowshik et al., EMNLP 2024, arXiv 2411.08553): correlated lockstep sampling.

Each round decodes a *group* of K labels x M sequences in lockstep, one batched forward
pass per step (`lockstep.decode_lockstep`). Sequence i has its own few-shot prompt for its
label (different seed examples per sequence), and its next token is drawn from the guided
score (reconstructed form, see `guidance.py` and ../shared/METHODS.md)

    s_i(w) = gamma * log p(w | prompt_i, x_i) - sum_{j != i} gamma_{i,j} log p(w | prompt_j, x_j)

    gamma_{i,j} = (gamma - delta) * c_{i,j} / sum_{j' != i, live} c_{i,j'},
    c_{i,j} = intra_weight (same label) or cross_weight (other label)   [M-CorrSynth]

with tokens below alpha * max p(. | prompt_i, x_i) masked out before guidance, then
temperature and top-p. Every contrast uses the other sequence's OWN prefix, which is what
lets one forward pass per sequence per step serve all contrasts (K-class CFG needs the
contrast prompts run on each sequence's prefix: about K times more model evaluations).

Finished sequences (closing delimiter or EOS) leave the contrast set; the remaining
weights are renormalised (see `lockstep.py`). Prompts: `prompts_per_label` few-shot
prompts per label are prefilled once per `generate` call; sequence m of a round uses
prompt slot (round * M + m) mod prompts_per_label, so the prompt KV is shared across rounds.
With `seed_openers` n > 0 each prompt slot ends with the first n words of a random seed of
its label (FewGen's lever) and its samples are that opener + the continuation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from synthloom.config import CorrSynthConfig
from synthloom.errors import DataError
from synthloom.methods.text.base import (
    GenerationStats,
    ModelBox,
    SeedSet,
    TextBatch,
    TextSample,
)
from synthloom.methods.text.fewgen import label_quotas
from synthloom.methods.text.guidance import corrsynth_scores
from synthloom.methods.text.lockstep import (
    Guidance,
    LockstepOutput,
    PromptPool,
    decode_lockstep,
    end_token_mask,
    prefill_prompts,
)
from synthloom.methods.text.prompts import (
    CLOSE,
    closing_ramp_for,
    fewshot_prompt,
    random_seed_opener,
    sample_stop_strings,
    token_budget,
    with_opener,
)
from synthloom.samplers.closing_ramp import ClosingRamp


@dataclass(frozen=True)
class StreamInfo:
    """What one decoded stream was: its label, round, index within the label, prompt slot
    and the seed examples its prompt showed."""

    label: str
    round: int
    sequence: int
    slot: int
    examples: tuple[str, ...]


def seed_example_slots(
    seeds: SeedSet, per_label: int, num_examples: int, rng: np.random.Generator
) -> dict[str, list[tuple[str, ...]]]:
    """For each label, `per_label` tuples of min(num_examples, n) distinct seed examples.

    Slots draw from a queue of shuffled seeds, refilled with a fresh permutation when it
    runs out: every seed is shown once before any is shown twice (the first n // k slots
    are disjoint and, with enough slots, all seeds are used), and a slot never repeats one.
    """
    slots: dict[str, list[tuple[str, ...]]] = {}
    for label in seeds.label_names:
        texts = seeds.for_label(label)
        k = min(num_examples, len(texts))
        queue: list[int] = []
        label_slots = []
        for _ in range(per_label):
            chosen: list[int] = []
            while len(chosen) < k:
                pick = next((j for j, i in enumerate(queue) if i not in chosen), None)
                if pick is None:
                    queue += rng.permutation(len(texts)).tolist()
                    continue
                chosen.append(queue.pop(pick))
            label_slots.append(tuple(texts[i] for i in chosen))
        slots[label] = label_slots
    return slots


def check_seeds(seeds: SeedSet, method: str, min_labels: int = 1) -> None:
    """DataError unless the seed set has texts and at least `min_labels` labels."""
    if len(seeds.texts) == 0 or len(seeds.label_names) < min_labels:
        raise DataError(
            f"method.name={method!r} needs seed texts with at least {min_labels} distinct "
            f"label(s); got {len(seeds.texts)} texts and labels {list(seeds.label_names)}. "
            f"Fix: check data.text_column and data.target (the label column), and that the "
            f"seed sample keeps at least {min_labels} label(s)."
        )


def collect_samples(
    outputs: Sequence[tuple[LockstepOutput, Sequence[StreamInfo]]],
    labels: Sequence[str],
    num_samples: int,
    stats: GenerationStats,
    method: str,
    openers: dict[tuple[str, int], str] | None = None,
) -> list[TextSample]:
    """Samples from decoded rounds, in decoding order. Dropped and counted: "unfinished"
    (token budget hit before the closing delimiter or EOS), "empty" (no continuation), and
    "surplus" (beyond the label's quota: num_samples split evenly, earlier labels take the
    remainder). A sample of a slot with an opener is the opener + its continuation."""
    quota = label_quotas(labels, num_samples)
    openers = openers or {}
    samples: list[TextSample] = []
    for out, infos in outputs:
        for text, reason, ids, info in zip(
            out.texts, out.stop_reasons, out.token_ids, infos, strict=True
        ):
            opener = openers.get((info.label, info.slot), "")
            text = with_opener(opener, text)
            if reason == "budget":
                stats.count("unfinished")
                continue
            if not text:
                stats.count("empty")
                continue
            if quota[info.label] <= 0:
                stats.count("surplus")
                continue
            quota[info.label] -= 1
            samples.append(
                TextSample(
                    text=text,
                    label=info.label,
                    info={
                        "method": method,
                        "round": info.round,
                        "group": info.round,
                        "sequence": info.sequence,
                        "prompt_slot": info.slot,
                        "seed_examples": list(info.examples),
                        "stop_reason": reason,
                        "num_tokens": len(ids),
                        **({"opener": opener} if opener else {}),
                    },
                )
            )
    return samples


def corrsynth_guidance(stream_labels: torch.Tensor, config: CorrSynthConfig) -> Guidance:
    """The lockstep guidance rule of CorrSynth: stream s (one row each) has integer label
    stream_labels[s]; the live streams' log-probs (S', V) -> `corrsynth_scores` (S', V)."""

    def guidance(log_probs: torch.Tensor, streams: torch.Tensor) -> torch.Tensor:
        return corrsynth_scores(
            log_probs,
            stream_labels[streams.cpu()],
            gamma=config.gamma,
            delta=config.delta,
            intra_weight=config.intra_weight,
            cross_weight=config.cross_weight,
            alpha=config.alpha,
        )

    return guidance


class CorrSynthGenerator:
    """CorrSynth: K labels x M sequences per lockstep group, guided by each other."""

    name: ClassVar[str] = "corrsynth"

    def __init__(self, method: dict[str, Any]) -> None:
        self.config = CorrSynthConfig.model_validate(method)

    def generate(
        self, seeds: SeedSet, num_samples: int, *, models: ModelBox, seed: int
    ) -> TextBatch:
        """About `num_samples` samples balanced over the labels: rounds of K*M sequences
        until the quotas are met or `max_rounds` (default twice the rounds needed) is spent."""
        cfg = self.config
        check_seeds(seeds, self.name)
        start = time.perf_counter()
        stats = GenerationStats()
        labels = seeds.label_names
        if num_samples <= 0:
            return TextBatch([], stats)
        model, tokenizer = models.causal_lm(cfg.model)
        budget = token_budget(tokenizer, seeds.texts, cfg.max_new_tokens)
        cfg = cfg.model_copy(update={"max_new_tokens": budget})
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        m_per, per_label = cfg.sequences_per_label, cfg.prompts_per_label
        slots = seed_example_slots(seeds, per_label, cfg.num_examples, rng)
        openers = slot_openers(seeds, per_label, cfg.seed_openers, rng)
        prompts = [
            fewshot_prompt(lab, slots[lab][p], task=cfg.task, description=seeds.description(lab))
            + openers.get((lab, p), "")
            for lab in labels
            for p in range(per_label)
        ]
        pool = prefill_prompts(model, tokenizer, prompts)
        end_tokens = end_token_mask(model, tokenizer) if cfg.end_passthrough else None
        stream_labels = torch.arange(len(labels)).repeat_interleave(m_per)  # (K*M,)
        guidance = corrsynth_guidance(stream_labels, cfg)
        stops = sample_stop_strings(seeds.texts, cfg.paragraph_stop)

        samples = decode_rounds(
            model,
            tokenizer,
            pool,
            guidance,
            cfg,
            slots,
            labels,
            num_samples,
            lambda k, slot: [k * per_label + slot],  # one row: the stream's own prompt
            generator=generator,
            end_tokens=end_tokens,
            stats=stats,
            method=self.name,
            start=start,
            progress=models.report,
            openers=openers,
            stop_strings=stops,
            closing_ramp=closing_ramp_for(tokenizer, seeds.texts, budget, cfg.closing_ramp, stops),
        )
        return TextBatch(samples, stats)


def slot_openers(
    seeds: SeedSet, per_label: int, words: int, rng: np.random.Generator
) -> dict[tuple[str, int], str]:
    """{(label, prompt slot): the first `words` words of a random seed of the label}; empty
    when `words` is 0 (no rng draw then, so outputs without openers are unchanged)."""
    if not words:
        return {}
    texts = {label: seeds.for_label(label) for label in seeds.label_names}
    return {
        (label, slot): random_seed_opener(texts[label], words, rng)
        for label in seeds.label_names
        for slot in range(per_label)
    }


def decode_rounds(
    model: Any,
    tokenizer: Any,
    pool: PromptPool,
    guidance: Guidance,
    cfg: Any,
    slots: dict[str, list[tuple[str, ...]]],
    labels: Sequence[str],
    num_samples: int,
    rows_of: Callable[[int, int], list[int]],
    *,
    generator: torch.Generator,
    end_tokens: torch.Tensor | None,
    stats: GenerationStats,
    method: str,
    start: float,
    progress: Callable[[int], None] | None = None,
    openers: dict[tuple[str, int], str] | None = None,
    stop_strings: Sequence[str] = (CLOSE,),
    closing_ramp: ClosingRamp | None = None,
) -> list[TextSample]:
    """Lockstep rounds of K labels x M streams until every label's quota is met or
    `cfg.max_rounds` (default twice the rounds needed) were decoded; costs go to `stats`.
    A stream ends at the first of `stop_strings` (`sample_stop_strings`); `closing_ramp`
    (`closing_ramp_for`) pushes it toward the closing line past the seeds' length.
    `openers` ((label, slot) -> text its prompt ended with) start the samples of that slot.

    Stream m of label k in round r uses prompt slot (r * M + m) mod prompts_per_label and
    the pool rows `rows_of(k, slot)` (its own prompt first, then any contrast prompts).
    `progress` gets the samples usable so far (within each label's quota) after each round."""
    m_per, per_label = cfg.sequences_per_label, cfg.prompts_per_label
    max_rounds = cfg.max_rounds or 2 * math.ceil(num_samples / (len(labels) * m_per))
    quota = label_quotas(labels, num_samples)
    kept = dict.fromkeys(labels, 0)
    outputs: list[tuple[LockstepOutput, list[StreamInfo]]] = []
    decode_passes = sequence_steps = 0
    for rnd in range(max_rounds):
        infos, row_prompt, row_stream = [], [], []
        for k, lab in enumerate(labels):
            for m in range(m_per):
                slot = (rnd * m_per + m) % per_label
                infos.append(StreamInfo(lab, rnd, m, slot, slots[lab][slot]))
                rows = rows_of(k, slot)
                row_prompt += rows
                row_stream += [len(infos) - 1] * len(rows)
        out = decode_lockstep(
            model,
            tokenizer,
            pool,
            row_prompt,
            row_stream,
            guidance,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            generator=generator,
            end_tokens=end_tokens,
            no_repeat_ngram=cfg.no_repeat_ngram,
            repeat_passthrough=cfg.repeat_passthrough,
            stop_strings=stop_strings,
            closing_ramp=closing_ramp,
        )
        outputs.append((out, infos))
        decode_passes += out.forward_passes
        sequence_steps += out.sequence_steps
        stats.generated_tokens += out.generated_tokens
        for info, text, ok in zip(infos, out.texts, out.finished, strict=True):
            kept[info.label] += int(ok and bool(text.strip()))
        if progress is not None:
            progress(sum(min(kept[lab], quota[lab]) for lab in labels))
        if all(kept[lab] >= quota[lab] for lab in labels):
            break
    samples = collect_samples(outputs, labels, num_samples, stats, method, openers)
    record_costs(
        stats,
        pool.forward_passes,
        pool.prompt_tokens,
        decode_passes,
        sequence_steps,
        len(outputs),
        len(samples),
        start,
    )
    stats.metrics["sampled"] = float(sum(len(infos) for _, infos in outputs))  # streams decoded
    return samples


def record_costs(
    stats: GenerationStats,
    prefill_passes: int,
    prompt_tokens: int,
    decode_passes: int,
    sequence_steps: int,
    rounds: int,
    num_samples: int,
    start: float,
) -> None:
    """forward_passes = prefill + decoding model calls; metrics: sequence_steps (rows fed to
    decoding calls = model evaluations), the two pass counts, rounds, seconds, samples/s."""
    seconds = time.perf_counter() - start
    stats.forward_passes += prefill_passes + decode_passes
    stats.prompt_tokens += prompt_tokens
    stats.metrics.update(
        {
            "sequence_steps": float(sequence_steps),
            "prefill_forward_passes": float(prefill_passes),
            "decode_forward_passes": float(decode_passes),
            "rounds": float(rounds),
            "seconds": seconds,
            "samples_per_second": num_samples / seconds if seconds > 0 else 0.0,
        }
    )
