"""Learning-rate multipliers per optimiser step: linear warmup, then constant or cosine."""

from __future__ import annotations

import math


def lr_factor(step: int, warmup_steps: int, progress: float, schedule: str) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based).

    (step + 1) / warmup_steps while step < warmup_steps; after it 1 for "constant", or
    0.5 * (1 + cos(pi * min(1, progress))) for "cosine", progress being the share of the
    budget after warmup already spent (0 at its start, 1 at its end).
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    if schedule != "constant":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    return 1.0
