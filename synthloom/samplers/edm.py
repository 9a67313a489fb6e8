"""EDM training loss, noise schedule and Heun sampler (Karras et al. 2022, arXiv 2206.00364).

A denoiser is any callable D(x, sigma) -> estimate of the clean x_0, with x: (B, ...) and sigma a
(B,) tensor (see `synthloom.models.denoiser.EDMPrecond`). The sampler holds no weights: it only
integrates the probability-flow ODE

    dx/dsigma = (x - D(x; sigma)) / sigma

from sigma_max down to 0 on the schedule of Karras eq. 5 with Heun's method (Algorithm 1, or
Algorithm 2 with `s_churn` > 0). TabSyn (arXiv 2310.09656, `tabsyn/diffusion_utils.py`) uses
sigma in [0.002, 80], rho = 7, 50 steps and s_churn = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]


def edm_sigma_schedule(
    steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> Tensor:
    """Karras eq. 5 plus a final 0: (steps + 1,) float64, strictly decreasing.

    sigma_i = (sigma_max^(1/rho) + i / (steps - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho
    for i = 0..steps-1, then sigma_steps = 0. One step gives [sigma_max, 0].
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    i = torch.arange(steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (steps - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def edm_loss(
    denoiser: Denoiser,
    x: Tensor,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    sigma_data: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample EDM loss (Karras eq. 2, table 1), shape (B,); take `.mean()` to train.

    ln sigma ~ N(P_mean, P_std^2),  n ~ N(0, sigma^2 I),
    loss_b = lambda(sigma) * mean_j (D(x + n; sigma) - x)_j^2,
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.
    """
    b = x.shape[0]
    rnd = torch.randn(b, generator=generator, device=x.device, dtype=torch.float32)
    sigma = (rnd * P_std + P_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    shape = (b,) + (1,) * (x.dim() - 1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    x = x.float()
    denoised = denoiser(x + noise * sigma.reshape(shape), sigma)
    return weight * (denoised - x).pow(2).reshape(b, -1).mean(dim=1)


class EDMHeunSampler:
    """Heun's 2nd-order solver of the EDM probability-flow ODE (Karras Algorithms 1 and 2).

    Each step from sigma to sigma_next (Euler, then the trapezoidal correction unless
    sigma_next = 0, i.e. the last step):
        d  = (x - D(x; sigma)) / sigma
        x' = x + (sigma_next - sigma) d
        d' = (x' - D(x'; sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma) (d + d') / 2
    With s_churn > 0 each step first raises the noise to sigma_hat = sigma (1 + gamma),
    gamma = min(s_churn / steps, sqrt(2) - 1), adding sqrt(sigma_hat^2 - sigma^2) N(0, I).
    The Heun solver costs 2 * steps - 1 denoiser calls.
    """

    def __init__(
        self,
        steps: int = 50,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        s_churn: float = 0.0,
    ) -> None:
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho
        self.s_churn = s_churn
        self.set_steps(steps)

    def set_steps(self, steps: int) -> None:
        """Use `steps` solver steps: recompute the schedule `self.sigmas` (steps + 1 values)."""
        self.sigmas = edm_sigma_schedule(steps, self.sigma_min, self.sigma_max, self.rho)
        self.steps = steps

    def step(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigma: float | Tensor,
        sigma_next: float | Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One Heun step of the ODE from `sigma` to `sigma_next` (Euler only if sigma_next = 0).

        `generator` is only used when s_churn > 0.
        """
        sigma, sigma_next = float(sigma), float(sigma_next)
        if self.s_churn > 0:
            gamma = min(self.s_churn / self.steps, math.sqrt(2) - 1)
            sigma_hat = sigma * (1 + gamma)
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * _randn(x.shape, generator, x)
            sigma = sigma_hat
        d = (x - denoiser(x, _full(x, sigma))) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_next - denoiser(x_next, _full(x, sigma_next))) / sigma_next
            x_next = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        return x_next

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Draw x_0 ~ p_data: x_N ~ N(0, sigma_max^2 I), then `steps` Heun steps to sigma = 0.

        Noise is drawn on the generator's device and moved to `device`, so a CPU generator
        gives the same starting noise whatever the device. Returns float32 (shape).
        """
        device = torch.device(device)
        x = _randn(tuple(shape), generator, torch.empty(0, device=device))
        sigmas = self.sigmas.tolist()
        x = x * sigmas[0]
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            x = self.step(denoiser, x, sigma, sigma_next, generator=generator)
        return x

    @torch.no_grad()
    def inpaint(
        self,
        denoiser: Denoiser,
        known: Tensor,
        mask: Tensor,
        generator: torch.Generator | None = None,
        resample: int = 1,
    ) -> Tensor:
        """Draw x_0 ~ p(x | x[mask] = known[mask]) by replacement (RePaint, Lugmayr et al.
        2022, arXiv 2201.09865, in EDM's variance-exploding form).

        After every step to sigma_next the known entries are overwritten by a fresh forward
        noising of the known values, known + sigma_next N(0, I) (exactly `known` at
        sigma = 0), so the unknown entries are denoised beside a consistent noisy copy of
        the known ones. With `resample` = U > 1 each step is repeated U times, going back
        from sigma_next to sigma by adding sqrt(sigma^2 - sigma_next^2) N(0, I) in between,
        which lets the unknown entries agree with the known ones (U = 1: plain replacement).
        `known` (B, ...) on the target device; `mask` bool, broadcastable to it. The result
        equals `known` where `mask` holds. Costs U (2 * steps - 1) denoiser calls.
        """
        if resample < 1:
            raise ValueError(f"resample must be >= 1, got {resample}")
        known = known.float()
        mask = mask.to(known.device).expand_as(known)
        sigmas = self.sigmas.tolist()

        def noised(sigma: float) -> Tensor:
            return known + sigma * _randn(known.shape, generator, known) if sigma > 0 else known

        x = torch.where(mask, noised(sigmas[0]), sigmas[0] * _randn(known.shape, generator, known))
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            for u in range(resample):
                x_next = self.step(denoiser, x, sigma, sigma_next, generator=generator)
                x_next = torch.where(mask, noised(sigma_next), x_next)
                if u < resample - 1:  # back to sigma: x_next + sqrt(sigma^2 - sigma_next^2) n
                    jump = math.sqrt(sigma**2 - sigma_next**2)
                    x = x_next + jump * _randn(known.shape, generator, known)
            x = x_next
        return x


def _full(x: Tensor, sigma: float) -> Tensor:
    """sigma as a (B,) float32 tensor on x's device."""
    return torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)


def _randn(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Standard normal noise from `generator` (on its own device), moved to `like`'s device."""
    source = generator.device if generator is not None else like.device
    noise = torch.randn(tuple(shape), generator=generator, device=source, dtype=torch.float32)
    return noise.to(like.device)
