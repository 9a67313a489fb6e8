"""Resumable training state on disk: one file, written atomically, read back only when it
was saved by the same code version with the same settings.

    save_training_state(path, version=1, settings={...}, state={...})   # torch.save + rename
    state = load_training_state(path, version=1, settings={...})         # None: start at zero

A kill during `save_training_state` leaves the previous file intact (the new one is written
to a sibling named after the process, then renamed over it). `load_training_state` returns
None, so training starts from zero and overwrites the file, when there is no file, when it
cannot be read (truncated, not a checkpoint), or when its version or settings differ.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch


def save_training_state(
    path: Path, *, version: int, settings: dict[str, Any], state: dict[str, Any]
) -> None:
    """torch.save {"version", "settings", "state"} to a temporary sibling, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save({"version": version, "settings": settings, "state": state}, tmp)
    os.replace(tmp, path)


def load_training_state(
    path: Path | None,
    *,
    version: int,
    settings: dict[str, Any],
    map_location: str | torch.device = "cpu",
) -> dict[str, Any] | None:
    """The saved state, or None (see the module docstring)."""
    if path is None or not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=False, map_location=map_location)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None
    if (
        not isinstance(saved, dict)
        or saved.get("version") != version
        or saved.get("settings") != settings
        or not isinstance(saved.get("state"), dict)
    ):
        return None
    return saved["state"]
