"""Task: fit the configured generator on the train split; save it under fit/model/.

A generator whose `fit` takes `validation` gets the validation split (for early stopping
and schedules; never the test split); one whose `fit` takes `checkpoint_dir` gets
`run.checkpoint_dir` (`<run>/.checkpoints/fit/`), outside the staged output, so a killed fit
resumes from its last checkpoint; the stage frame removes it once the output is in place."""

from __future__ import annotations

import inspect
import time
from typing import Any

from synthloom.artifacts import atomic_write_json, read_table
from synthloom.methods import build_generator
from synthloom.models.device import set_seed
from synthloom.plots import plot_latents, plot_loss_curves
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
    accepts = inspect.signature(generator.fit).parameters
    extra: dict[str, Any] = {}
    if "validation" in accepts and "validation" in seed_files:
        extra["validation"], _ = read_table(seed_files["validation"]["path"])
    if "checkpoint_dir" in accepts:
        extra["checkpoint_dir"] = run.checkpoint_dir
    if "log" in accepts:
        extra["log"] = _training_logger(run.log)
    if "device" in accepts:
        extra["device"] = device
    generator.fit(train, schema, seed=seed, **extra)
    generator.save(run.out / "model")
    files: dict[str, tuple[str, int | None]] = {"model": ("model", None)}
    if hasattr(generator, "training_history"):  # curves and latents for MLflow
        history = generator.training_history()
        atomic_write_json(history, run.out / "history.json")
        plot_loss_curves(history, run.out / "loss_curves.png")
        files["history"] = ("history.json", None)
    if hasattr(generator, "encode_rows"):
        labels = train[schema.target].astype(str).tolist() if schema.target else []
        means = generator.encode_rows(train, seed=seed)
        plot_latents(means, labels or ["all"] * len(means), run.out / "latents.png", schema.target)
    return StageOutput(
        files=files,
        rows_in=len(train),
        rows_out=None,
        info={"method": method["name"], "device": device, **generator.describe()},
    )


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
