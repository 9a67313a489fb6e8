"""Adapt a frozen generator to the seeds before it samples: a few LoRA steps on its own
few-shot prompts (issue 18's lever 6, in the spirit of LAMBADA's fine-tuning on the few
labelled examples, arXiv 1911.03118).

One training example is a leave-one-out prompt: a label y, a seed x of y as the target and
the prompt `fewshot_prompt(y, k other seeds of y, description of y)` the generator samples
from. The loss is the mean negative log-likelihood of the target's tokens and the closing
delimiter after that prompt,

    L = - 1/|T| sum_{t in T} log p_theta(x_t | prompt, x_<t),   T = tokens of "x\\n</text>"

minimised over LoRA adapters (synthloom.models.lora) on the attention queries and values
of a deep copy of the model (the caller's model, e.g. the label-margin scorer's, stays as
it was). The prompt's tokens carry no loss. Examples are drawn label by label in turn so
every label gets the same number of steps; with `steps * batch_size` near the number of
seeds each seed is a target about once, which teaches the model what the labels' texts
look like without time to memorise them (the filter's seed-copy rules count what slips
through). Deterministic for a given `seed` on one device and thread count.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from synthloom.methods.text.base import SeedSet
from synthloom.methods.text.prompts import CLOSE, fewshot_prompt
from synthloom.methods.text.sampling import encode_prompt
from synthloom.models.lora import attach_lora

__all__ = ["SeedAdaptation", "adapt_to_seeds", "leave_one_out_examples"]


@dataclass(frozen=True)
class SeedAdaptation:
    """What an adaptation did: its steps, the mean loss of its first and last steps (nats
    per target token) and its wall seconds."""

    steps: int
    first_loss: float
    last_loss: float
    seconds: float

    def as_metrics(self) -> dict[str, float]:
        return {
            "adaptation_steps": float(self.steps),
            "adaptation_first_loss": self.first_loss,
            "adaptation_last_loss": self.last_loss,
            "adaptation_seconds": self.seconds,
        }


def leave_one_out_examples(
    seeds: SeedSet, num: int, *, task: str, num_examples: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """`num` (prompt, target) pairs, labels in turn: target a random seed of the label, the
    prompt `fewshot_prompt` of up to `num_examples` of its OTHER seeds. Labels with a single
    seed show no examples (the prompt still names the label and its description)."""
    labels = list(seeds.label_names)
    pairs: list[tuple[str, str]] = []
    for i in range(num):
        label = labels[i % len(labels)]
        pool = list(seeds.for_label(label))
        target = int(rng.integers(len(pool)))
        others = [t for j, t in enumerate(pool) if j != target]
        pick = rng.choice(len(others), min(num_examples, len(others)), replace=False)
        prompt = fewshot_prompt(
            label,
            [others[j] for j in pick],
            task=task,
            description=seeds.description(label),
        )
        pairs.append((prompt, pool[target]))
    return pairs


def adapt_to_seeds(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seeds: SeedSet,
    *,
    task: str,
    num_examples: int,
    steps: int,
    batch_size: int = 8,
    rank: int = 8,
    alpha: float = 16.0,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[PreTrainedModel, SeedAdaptation]:
    """(a deep copy of `model` with trained LoRA adapters, in eval mode; what it did).
    `steps` AdamW steps of `batch_size` leave-one-out examples each (module docstring)."""
    if steps <= 0:
        raise ValueError(f"adapt_to_seeds needs steps > 0, got {steps}")
    start = time.perf_counter()
    adapted = copy.deepcopy(model)
    for p in adapted.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)  # the adapters' initial A
    params = attach_lora(adapted, rank, alpha)
    optimizer = torch.optim.AdamW(params.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    pairs = leave_one_out_examples(
        seeds, steps * batch_size, task=task, num_examples=num_examples, rng=rng
    )
    close = tokenizer("\n" + CLOSE, add_special_tokens=False).input_ids
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    losses: list[float] = []
    adapted.train()
    for step in range(steps):
        batch = pairs[step * batch_size : (step + 1) * batch_size]
        ids, mask, labels = _batch(tokenizer, batch, close, pad, adapted.device)
        logits = adapted(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    adapted.eval()
    for p in params.parameters():
        p.requires_grad_(False)
    head = max(1, min(3, len(losses)))
    return adapted, SeedAdaptation(
        steps=steps,
        first_loss=float(np.mean(losses[:head])),
        last_loss=float(np.mean(losses[-head:])),
        seconds=time.perf_counter() - start,
    )


def _batch(
    tokenizer: PreTrainedTokenizerBase,
    pairs: list[tuple[str, str]],
    close: list[int],
    pad: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) input ids, attention mask (1 on real tokens) and labels: -100 on
    prompt and padding tokens, the token id on the target's tokens and closing delimiter."""
    rows = []
    for prompt, target in pairs:
        p = encode_prompt(tokenizer, prompt).tolist()
        t = tokenizer(target.strip(), add_special_tokens=False).input_ids + close
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (seq, lab) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return ids.to(device), mask.to(device), labels.to(device)
