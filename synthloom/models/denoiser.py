"""A denoiser for vectors: an MLP on (x, noise level) wrapped in EDM preconditioning.

The raw network F(x_in; c_noise) is TabSyn's MLP (Zhang et al. 2024, arXiv 2310.09656,
`tabsyn/model.py`): project x to `hidden`, add an embedding of the noise level, run a 4-layer
SiLU MLP back to `dim`. `EDMPrecond` turns F into the denoiser D(x; sigma) ~ E[x_0 | x] of
Karras et al. 2022 ("Elucidating the design space", arXiv 2206.00364, table 1):

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

The network holds no sampling logic (see `synthloom.samplers.edm`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar (the noise label c_noise), as in transformers / EDM.

    emb(t) = [cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ..., sin(t w_{h-1})],
    w_i = max_positions^(-i / h), h = num_channels / 2.
    """

    def __init__(self, num_channels: int, max_positions: int = 10_000) -> None:
        super().__init__()
        if num_channels % 2:
            raise ValueError(f"num_channels must be even, got {num_channels}")
        half = num_channels // 2
        freqs = torch.exp(-math.log(max_positions) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """(B,) -> (B, num_channels)."""
        angles = t.float().reshape(-1, 1) * self.freqs
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class MLPDenoiser(nn.Module):
    """The raw network F(x_in; c_noise) for (B, dim) inputs (TabSyn's `MLPDiffusion` shape).

    h = proj(x_in) + noise_mlp(PositionalEmbedding(c_noise))     # (B, hidden)
    F = mlp(h): hidden -> 2 hidden -> 2 hidden -> hidden -> dim, SiLU between layers.
    noise_mlp is Linear-SiLU-Linear. With hidden=1024 and dim=64: about 10.6M parameters.

    With `n_classes` > 0 the network is class-conditional (TabDDPM's conditioning,
    arXiv 2209.15421): h += class_embed(y) for integer labels y in [0, n_classes). The
    embedding is built after the other layers, so an unconditional network's initial
    weights and state-dict keys are the same with or without this option.
    """

    def __init__(
        self, dim: int, hidden: int = 1024, max_positions: int = 10_000, n_classes: int = 0
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.proj = nn.Linear(dim, hidden)
        self.noise_embed = PositionalEmbedding(hidden, max_positions=max_positions)
        self.noise_mlp = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
        )
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.SiLU(),
            nn.Linear(2 * hidden, 2 * hidden),
            nn.SiLU(),
            nn.Linear(2 * hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )
        self.n_classes = n_classes
        self.class_embed = nn.Embedding(n_classes, hidden) if n_classes > 0 else None

    def forward(self, x: Tensor, c_noise: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """x: (B, dim), c_noise: (B,), class_labels: (B,) int64 (class-conditional only)."""
        h = self.proj(x) + self.noise_mlp(self.noise_embed(c_noise))
        if self.class_embed is not None:
            if class_labels is None:
                raise ValueError("a class-conditional denoiser needs class_labels")
            h = h + self.class_embed(class_labels.reshape(-1))
        elif class_labels is not None:
            raise ValueError("class_labels given to an unconditional denoiser")
        return self.mlp(h)


class EDMPrecond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) (Karras et al. 2022, table 1).

    `sigma` may be a float, a 0-d tensor or a (B,) tensor; computation is in float32.
    `sigma_data` is the standard deviation the (normalised) training data is expected to have.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for `sigma` (elementwise, same shape)."""
        sd2 = self.sigma_data**2
        s2 = sigma**2
        c_skip = sd2 / (s2 + sd2)
        c_out = sigma * self.sigma_data / (s2 + sd2).sqrt()
        c_in = 1.0 / (s2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(
        self, x: Tensor, sigma: Tensor | float, class_labels: Tensor | None = None
    ) -> Tensor:
        """x: (B, dim), sigma: scalar or (B,), class_labels: (B,) for a class-conditional
        net -> denoised estimate of x_0, (B, dim) float32."""
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.reshape(-1, 1).expand(x.shape[0], 1)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        if class_labels is None:
            f = self.net(c_in * x, c_noise.reshape(-1))
        else:
            f = self.net(c_in * x, c_noise.reshape(-1), class_labels)
        return c_skip * x + c_out * f.float()
