"""Kill a training subprocess with a real SIGKILL once its checkpoint has got far enough
(the resume tests of the DiffLM VAE, the TabSyn VAE and the latent diffusion share it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def kill_once_checkpointed(
    cmd: list[str],
    env: dict[str, str],
    checkpoint: Path,
    progress: Callable[[dict[str, Any]], int],
    at_least: int,
    timeout: float = 120.0,
) -> int:
    """Run `cmd`, poll `checkpoint` until `progress(saved)` >= `at_least`, SIGKILL the
    process (failing if it ended first) and return the progress of the checkpoint left."""
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file():
            try:
                if progress(torch.load(checkpoint, weights_only=False)) >= at_least:
                    break
            except (EOFError, RuntimeError):  # read while being replaced: try again
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return progress(torch.load(checkpoint, weights_only=False))
