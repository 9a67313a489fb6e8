"""Device choice, mixed-precision dtype and seeding: the three knobs every model call shares."""

from __future__ import annotations

import random

import numpy as np
import torch

from synthloom.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a `run.device` value into a torch.device.

    "auto" -> the first CUDA GPU when one is visible, else CPU. "cpu", "cuda" and
    "cuda:N" are taken literally; asking for a GPU that is not visible raises ConfigError.
    """
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"run.device={name!r} is not a valid device. Fix: use auto, cpu, cuda or cuda:N."
            ) from None
        if not torch.cuda.is_available():
            raise ConfigError(
                f"run.device={name} but no GPU is visible to torch "
                f"(torch.cuda.is_available() is False). Fix: set run.device: auto or cpu."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"run.device={name} but only {torch.cuda.device_count()} GPU(s) are visible. "
                f"Fix: use cuda:0..cuda:{torch.cuda.device_count() - 1}, cuda or auto."
            )
        return device
    raise ConfigError(f"run.device={name!r} is not a known device. Fix: use auto, cpu or cuda.")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype to autocast to on `device`: bfloat16 on a CUDA GPU that supports it, else None.

    None means "run in float32"; CPU autocast is slower than fp32 for models this small.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def set_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy's global RNG and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
