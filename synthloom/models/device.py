"""Device choice, mixed-precision dtype and seeding: the three knobs every model call shares."""

from __future__ import annotations

import random
import time
from functools import cache

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


CPU_BF16_MIN_SPEEDUP = 1.25  # bf16 must beat fp32 by this much to be picked (timing noise)


def best_matmul_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    """Wall seconds of the fastest of `repeats` products a @ b, after one warm-up product."""
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@cache
def cpu_matmul_speedup_bf16(rows: int = 256, inner: int = 576, cols: int = 1536) -> float:
    """How many times faster a (rows x inner) @ (inner x cols) matmul runs in bfloat16 than
    in float32 on this CPU, with the current thread count: best of 5 timed products each,
    after one warm-up (the default shape is one of SmolLM2-135M's MLP layers on a batch).
    Measured once per process (cached): CPUs differ by an order of magnitude, from AMX
    (bf16 several times faster) to CPUs without bf16 units (bf16 slower than fp32)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(rows, inner, generator=gen), torch.randn(inner, cols, generator=gen)
    return best_matmul_seconds(a, b) / best_matmul_seconds(a.bfloat16(), b.bfloat16())


def frozen_model_dtype(choice: str, device: torch.device | str) -> torch.dtype | None:
    """The dtype for a frozen model's weights (DiffLM's decoder while the VAE trains, a text
    generator while it decodes and scores), from a config value: "float32", "bfloat16", or
    "auto" = bfloat16 on a CUDA GPU that supports it (None: the loader's default, which is
    bfloat16 there), on a CPU bfloat16 when `cpu_matmul_speedup_bf16()` is at least
    CPU_BF16_MIN_SPEEDUP, else float32."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    if choice != "auto":
        raise ConfigError(f"unknown dtype {choice!r}. Fix: use auto, float32 or bfloat16.")
    device = torch.device(device)
    if device.type == "cuda":
        return None
    return torch.bfloat16 if cpu_matmul_speedup_bf16() >= CPU_BF16_MIN_SPEEDUP else torch.float32


def set_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy's global RNG and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
