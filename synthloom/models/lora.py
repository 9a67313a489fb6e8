"""Low-rank adapters on a frozen decoder's linear layers (LoRA, Hu et al. 2021, arXiv 2106.09685).

    y = W x + (alpha / r) * B (A x),   A: (r, in) ~ N(0, 1 / in),   B: (out, r) = 0

W (and its bias) stays frozen; A and B train. B starts at zero, so an adapted decoder starts
exactly equal to the frozen one. `attach_lora` swaps each targeted `nn.Linear` of the decoder
for a `LoRALinear` around it, in place, and returns the adapters' parameters as one
`nn.ParameterDict` for the model that trains them (the same Parameter objects: moving or
loading them there moves or loads the decoder's adapters). The delta is computed in the
adapters' dtype (float32) and cast back, so a bfloat16 decoder keeps its dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from synthloom.errors import SynthloomError

DEFAULT_TARGETS = ("q_proj", "v_proj")  # attention queries and values, as in the paper


class LoRALinear(nn.Module):
    """`base(x) + scale * (x A^T) B^T` with x (..., in) -> (..., out), scale = alpha / rank."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank <= 0:
            raise SynthloomError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        self.scale = alpha / rank
        device = base.weight.device
        self.lora_a = nn.Parameter(
            torch.randn(rank, base.in_features, device=device) / math.sqrt(base.in_features)
        )
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = (x.to(self.lora_a.dtype) @ self.lora_a.T) @ self.lora_b.T  # (..., out)
        return self.base(x) + (self.scale * delta).to(x.dtype)


def attach_lora(
    decoder: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> nn.ParameterDict:
    """Wrap every `nn.Linear` of `decoder` whose name ends with one of `targets`; returns
    {dotted name with "__" for ".": parameter} for lora_a and lora_b of each. Raises when
    nothing matches or a layer already carries an adapter (attach once per decoder)."""
    found = [
        (name, module)
        for name, module in decoder.named_modules()
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear | LoRALinear)
    ]
    if not found:
        raise SynthloomError(
            f"LoRA: no linear layer of {type(decoder).__name__} is named one of {targets}. "
            "Fix: set method.decoder_lora_rank: 0 for this decoder."
        )
    params = nn.ParameterDict()
    for name, module in found:
        if isinstance(module, LoRALinear):
            raise SynthloomError(
                f"LoRA: {name} already has an adapter; load a fresh decoder for each VAE."
            )
        parent_name, _, child = name.rpartition(".")
        parent = decoder.get_submodule(parent_name) if parent_name else decoder
        adapted = LoRALinear(module, rank, alpha)
        setattr(parent, child, adapted)
        key = name.replace(".", "__")
        params[f"{key}__a"] = adapted.lora_a
        params[f"{key}__b"] = adapted.lora_b
    return params
