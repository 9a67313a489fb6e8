"""KL weights for the DiffLM VAE loss recon + beta * KL (arXiv 2411.03250, section 3.2, 5.1).

Both schedules share one interface: `.value` is the beta to use now, and
`.update(step, recon_loss)` advances it. The training loop calls `update(step, None)`
before every optimizer step and `update(step, val_recon)` after every evaluation.
"""

from __future__ import annotations

from typing import Protocol


class BetaSchedule(Protocol):
    @property
    def value(self) -> float: ...

    def update(self, step: int, recon_loss: float | None = None) -> float: ...


class DecreasingBeta:
    """DiffLM's "decreasing" beta: strong KL pressure first, relaxed when recon stalls.

    beta_0 = start; after each `patience` consecutive checks without improvement,
    beta <- max(floor, decay * beta), and the count restarts. A check is a call with a
    recon loss; it improves when recon < best * (1 - rel_tol) (best: lowest seen so far).
    DiffLM code (backtracking trainer): start 0.1, decay 0.7, floor 1e-3, patience 2.
    Calls without a recon loss change nothing.
    """

    def __init__(
        self,
        start: float = 0.1,
        decay: float = 0.7,
        floor: float = 1e-3,
        patience: int = 2,
        rel_tol: float = 1e-3,
    ) -> None:
        if not (0.0 < decay < 1.0 and 0.0 <= floor <= start and patience >= 1):
            raise ValueError("need 0 < decay < 1, 0 <= floor <= start and patience >= 1")
        self.start, self.decay, self.floor = start, decay, floor
        self.patience, self.rel_tol = patience, rel_tol
        self._value = start
        self.best = float("inf")
        self.stalled = 0  # checks since the last improvement or decay

    @property
    def value(self) -> float:
        return self._value

    def update(self, step: int, recon_loss: float | None = None) -> float:
        if recon_loss is None:
            return self._value
        if recon_loss < self.best * (1.0 - self.rel_tol):
            self.best, self.stalled = recon_loss, 0
            return self._value
        self.stalled += 1
        if self.stalled >= self.patience:
            self._value = max(self.floor, self._value * self.decay)
            self.stalled = 0
        return self._value


class CyclicalBeta:
    """Cyclical annealing (Fu et al. 2019), DiffLM's ablation baseline ("DiffLM-Cycle").

    With C = cycle_steps and tau = (step mod C) / C in [0, 1):
    beta(step) = max_beta * min(1, tau / ratio): a linear ramp from 0 to max_beta over
    the first `ratio` of every cycle, then flat at max_beta. `step` counts from 0.
    """

    def __init__(self, max_beta: float = 0.1, cycle_steps: int = 1000, ratio: float = 0.5) -> None:
        if not (cycle_steps >= 1 and 0.0 < ratio <= 1.0 and max_beta >= 0.0):
            raise ValueError("need cycle_steps >= 1, 0 < ratio <= 1 and max_beta >= 0")
        self.max_beta, self.cycle_steps, self.ratio = max_beta, cycle_steps, ratio
        self._value = 0.0

    @property
    def value(self) -> float:
        return self._value

    def at(self, step: int) -> float:
        """beta at `step` (no state change)."""
        tau = (step % self.cycle_steps) / self.cycle_steps
        return self.max_beta * min(1.0, tau / self.ratio)

    def update(self, step: int, recon_loss: float | None = None) -> float:
        self._value = self.at(step)
        return self._value
