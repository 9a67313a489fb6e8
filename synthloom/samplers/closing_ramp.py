"""A length-aware push toward the end of a sample: the closing ramp.

A sample that runs to its token budget is lost (unfinished: cut mid-sentence, or a loop).
The ramp makes the closing line likelier the longer a sample gets, so it ends where the
data's texts end instead of at the budget. At decoding step t (0-based: the t-th new token)

    bias(t) = strength * clamp((t - start + 1) / (end - start + 1), 0, 1)

is added to the logit of each of `token_ids` (the first token of the closing line: "\\n"
before "</text>"): 0 up to `start` (the seeds' 95th-percentile length, so a sample of the
data's length decodes as without the ramp), `strength` from `end` on (the last step at
which the closing line still fits in the budget). It acts like HF's
`exponential_decay_length_penalty` on the end-of-sequence token, but linear in nats and on
the delimiter a raw-completion prompt ends with. A mid-sentence newline stays unlikely (at
strength 4 and temperature 0.9 the push is at most e^(4/0.9) ~ 85x, and half that on
average over the ramp); after a full stop the closing line wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ClosingRamp"]


@dataclass(frozen=True)
class ClosingRamp:
    """bias(step) in nats on `token_ids`, from 0 before `start` to `strength` at `end`."""

    token_ids: tuple[int, ...]
    start: int
    end: int
    strength: float

    def __post_init__(self) -> None:
        if not self.token_ids:
            raise ValueError("ClosingRamp: token_ids must name at least one token")
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"ClosingRamp: need 0 <= start <= end, got {self.start}, {self.end}")
        if self.strength < 0:
            raise ValueError(f"ClosingRamp: strength must be >= 0, got {self.strength}")

    def bias(self, step: int) -> float:
        """The nats added at decoding step `step` (0-based)."""
        if step < self.start or self.strength == 0:
            return 0.0
        return self.strength * min(1.0, (step - self.start + 1) / (self.end - self.start + 1))

    def apply(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """(B, V) logits or log-probs with bias(step) added to the ramp's tokens (a new
        tensor); `logits` itself when the bias is 0."""
        bias = self.bias(step)
        if bias == 0.0:
            return logits
        out = logits.clone()
        out[:, list(self.token_ids)] += bias
        return out
