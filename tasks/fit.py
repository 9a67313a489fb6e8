"""Task: fit the configured generator on the train split; save it under fit/model/.

A generator whose `fit` takes `validation` gets the validation split (for early stopping
and schedules; never the test split); one whose `fit` takes `checkpoint_dir` gets
`run.checkpoint_dir` (`<run>/.checkpoints/fit/`), outside the staged output, so a killed fit
resumes from its last checkpoint; the stage frame removes it once the output is in place.
TabSyn fits in two stages instead (tasks/tabsyn.py), with the same helpers."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from synthloom.artifacts import atomic_write_json, read_table
from synthloom.methods import build_generator
from synthloom.models.device import set_seed
from synthloom.plots import plot_latents, plot_loss_curves
from synthloom.schema import TableSchema
from tasks.runtime import StageOutput, StageRun, stage


@stage("fit", config="method")
def fit_generator(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Fit `method` on the train split and persist it (weights as safetensors, else JSON)."""
    set_seed(seed)
    train, schema = read_table(seed_files["train"]["path"])
    assert schema is not None, "the ingest stage stores the schema with every split"
    generator = build_generator(method)
    run.log.info("fitting %s on %d rows", method["name"], len(train))
    generator.fit(train, schema, seed=seed, **fit_extras(generator.fit, run, seed_files, device))
    return StageOutput(
        files=save_fitted(generator, train, schema, seed, run.out),
        rows_in=len(train),
        rows_out=None,
        info={"method": method["name"], "device": device, **generator.describe()},
    )


def fit_extras(
    fit: Callable[..., Any], run: StageRun, seed_files: dict[str, dict[str, Any]], device: str
) -> dict[str, Any]:
    """The keyword arguments a generator's `fit` (or fit phase) accepts beyond the rows:
    `validation` (the validation split), `checkpoint_dir`, `log` (throttled to the run log)
    and `device`."""
    accepts = inspect.signature(fit).parameters
    extra: dict[str, Any] = {}
    if "validation" in accepts and "validation" in seed_files:
        extra["validation"], _ = read_table(seed_files["validation"]["path"])
    if "checkpoint_dir" in accepts:
        extra["checkpoint_dir"] = run.checkpoint_dir
    if "log" in accepts:
        extra["log"] = _training_logger(run.log)
    if "device" in accepts:
        extra["device"] = device
    return extra


def save_fitted(
    generator: Any, train: pd.DataFrame, schema: TableSchema, seed: int, out: Path
) -> dict[str, tuple[str, int | None]]:
    """Save the fitted generator under `out/model/` (what the generate stage samples) and,
    for MLflow, `history.json` and `loss_curves.png` from a generator with
    `training_history()`, `latents.png` from one with `encode_rows`; returns the files."""
    generator.save(out / "model")
    files: dict[str, tuple[str, int | None]] = {"model": ("model", None)}
    if hasattr(generator, "training_history"):
        history = generator.training_history()
        atomic_write_json(history, out / "history.json")
        plot_loss_curves(history, out / "loss_curves.png")
        files["history"] = ("history.json", None)
    if hasattr(generator, "encode_rows"):
        labels = train[schema.target].astype(str).tolist() if schema.target else []
        means = generator.encode_rows(train, seed=seed)
        plot_latents(means, labels or ["all"] * len(means), out / "latents.png", schema.target)
    return files


def _training_logger(logger: Any, every_seconds: float = 30.0) -> Any:
    """A `log(record)` callback that writes a training record at most every `every_seconds`."""
    last = [float("-inf")]

    def log(record: dict[str, Any]) -> None:
        now = time.perf_counter()
        if now - last[0] >= every_seconds:
            last[0] = now
            shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}
            logger.info("fit: %s", shown)

    return log
