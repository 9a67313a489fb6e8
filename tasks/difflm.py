"""DiffLM stage tasks: serialize -> train_vae -> train_diffusion -> generate.

Each wraps core functions from `synthloom.methods.difflm`; weights are safetensors, the
per-step training curves go to `history.json` ({metric: [[step, value], ...]}), which the
tracking step logs to MLflow as step metrics.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect.exceptions import MissingContextError

from synthloom.artifacts import atomic_write_json, read_table, write_table
from synthloom.conditions import check_conditions, shard_conditions
from synthloom.latent_classes import LatentClasses, counts_per_shard
from synthloom.linear_dependents import find_linear_dependents, rule_text, write_dependents
from synthloom.methods.difflm.diagnostics import reconstruction_report, restore_metric_names
from synthloom.methods.difflm.fit import (
    encode_means,
    fit_vae,
    load_base_models,
    load_trained_vae,
    resolve_max_record_tokens,
)
from synthloom.methods.difflm.generate import (
    BalancedLatents,
    class_groups,
    condition_groups,
    generate_grouped_rows,
    generate_valid_rows,
    merge_generation_stats,
    record_constraint,
)
from synthloom.methods.difflm.grammar import TokenConstraint
from synthloom.methods.difflm.latent_diffusion import (
    LatentDiffusionConfig,
    LatentDiffusionModel,
    averaging_decay,
    train_latent_diffusion,
)
from synthloom.models.device import autocast_dtype, frozen_model_dtype, resolve_device, set_seed
from synthloom.plots import plot_latents, plot_loss_curves
from synthloom.schema import TableSchema
from synthloom.serialize import (
    KEY_ALIASES,
    alias_names,
    record_schema,
    restore_names,
    serialize_table,
)
from tasks.runtime import StageOutput, StageRun, stage, stage_progress
from tasks.sharding import run_shards, shard_key, shard_sizes

DECODING = "decoding.json"  # train_vae: {"max_record_tokens": the limit it trained with}
CLASSES = "classes.json"  # train_diffusion, beside the weights: the LatentClasses it learnt
DERIVED = "derived_columns"  # records_schema's extra: {column: linear rule}, not in the records


def load_latent_classes(diffusion_dir: str | Path) -> LatentClasses | None:
    """The classes a class-conditional diffusion was trained on; None for an unconditional
    one (or the no-diffusion ablation)."""
    path = Path(diffusion_dir) / CLASSES
    if not path.is_file():
        return None
    return LatentClasses.from_dict(json.loads(path.read_text(encoding="utf-8")))


def records_schema(schema: TableSchema, method: dict[str, Any], train: pd.DataFrame) -> TableSchema:
    """The schema DiffLM's records are written in: `method.column_order` and
    `method.record_keys` (aliases only with json records: the config validates it). With
    `method.derive_linear`, each numeric column that is an exact linear function of an
    earlier one on the training rows `train` (`synthloom.linear_dependents`) is left out of
    the records; the rules stay in `extra["derived_columns"]` for `table_rows`."""
    rules = {}
    if method.get("derive_linear", False):
        rules = find_linear_dependents(train, schema, method["float_digits"])
    if rules:
        kept = tuple(c for c in schema.columns if c.name not in rules)
        schema = replace(schema, columns=kept, extra={**schema.extra, DERIVED: rules})
    return record_schema(schema, method["column_order"], method["record_keys"])


def table_rows(rows: pd.DataFrame, written: TableSchema, schema: TableSchema) -> pd.DataFrame:
    """Decoded records (keyed as `written`, a `records_schema`) as rows of the table
    `schema`: column names restored, each derived column written from its decoded source,
    the columns in the table's order."""
    frame = restore_names(rows, written)
    rules = written.extra.get(DERIVED) or {}
    if rules:
        frame = frame.assign(**write_dependents(frame, rules))
    return frame.reindex(columns=schema.names)


@stage("serialize", config="method")
def serialize_records(
    run: StageRun,
    method: dict[str, Any],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """Train and validation rows as text records (one per row) in records.parquet."""
    frames = []
    train, schema = read_table(seed_files["train"]["path"])
    written = records_schema(schema, method, train)
    for name, rule in (written.extra.get(DERIVED) or {}).items():
        run.log.info(
            "%s = %s in every training row: written back, not modelled", name, rule_text(rule)
        )
    for split in ("train", "validation"):
        table, schema = read_table(seed_files[split]["path"])
        texts = serialize_table(
            table,
            written,
            method["serialization"],
            method["float_digits"],
            method["number_digits"],
        )
        target = table[schema.target].astype(str) if schema.target else None
        frames.append(pd.DataFrame({"split": split, "text": texts, "label": target}))
    records = pd.concat(frames, ignore_index=True)
    write_table(records, run.out / "records.parquet", schema)
    chars = records["text"].str.len()
    run.log.info(
        "serialized %d records (%s), %.0f characters on average; e.g. %s",
        len(records),
        method["serialization"],
        chars.mean(),
        records["text"].iloc[0][:200],
    )
    return StageOutput(
        files={"records": ("records.parquet", len(records))},
        rows_in=len(records),
        rows_out=len(records),
        metrics={"mean_record_chars": float(chars.mean())},
    )


DECODER_DTYPE_FILE = "decoder_dtype.txt"  # in the stage's checkpoint directory


def vae_decoder_dtype(
    choice: str, device: torch.device, checkpoint_dir: Path
) -> torch.dtype | None:
    """The frozen decoder's dtype for VAE training: the one a killed run of this stage
    trained in (its checkpoint directory remembers it), else `method.vae_dtype` resolved
    for this machine (`auto` measures it, and a measurement could differ after a restart)."""
    remembered = checkpoint_dir / DECODER_DTYPE_FILE
    if remembered.exists():
        name = remembered.read_text().strip()
        if name in ("float32", "bfloat16", "float16"):
            return getattr(torch, name)
    return frozen_model_dtype(choice, device)


def remember_vae_decoder_dtype(checkpoint_dir: Path, name: str) -> None:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / DECODER_DTYPE_FILE).write_text(name)


@stage("train_vae", config="method")
def train_vae_stage(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    record_files: dict[str, dict[str, Any]],
    model_cache: str,
) -> StageOutput:
    """Train encoder + heads + injector against the frozen decoder; save weights and the
    latent means of every training record (the diffusion stage's data)."""
    set_seed(seed)
    torch_device = resolve_device(device)
    records, schema = read_table(record_files["records"]["path"])
    train = records[records["split"] == "train"]
    val = records[records["split"] == "validation"]
    decoder_dtype = vae_decoder_dtype(method["vae_dtype"], torch_device, run.checkpoint_dir)
    models = load_base_models(method, torch_device, Path(model_cache), decoder_dtype=decoder_dtype)
    trained_in = str(models.decoder.dtype).removeprefix("torch.")
    remember_vae_decoder_dtype(run.checkpoint_dir, trained_in)
    run.log.info("method.vae_dtype: %s -> frozen decoder in %s", method["vae_dtype"], trained_in)
    limited = resolve_max_record_tokens(method, train["text"].tolist(), models)
    if method["max_record_tokens"] == "auto":
        run.log.info(
            "method.max_record_tokens: auto -> %d decoder tokens per record",
            limited["max_record_tokens"],
        )
    start = time.perf_counter()
    vae, history = fit_vae(
        models,
        train["text"].tolist(),
        val["text"].tolist(),
        limited,
        device=torch_device,
        seed=seed,
        log=_progress_logger(run.log, method["vae_steps"]),
        checkpoint=run.checkpoint_dir / "vae.pt",
    )
    seconds = time.perf_counter() - start
    if history["resumed_from_step"]:
        run.log.info("resumed the VAE from its checkpoint at step %d", history["resumed_from_step"])
    if history["truncated_records"]:
        run.log.warning(
            "%d training records are longer than method.max_record_tokens = %d and were "
            "cut (no EOS); raise it to keep them",
            history["truncated_records"],
            limited["max_record_tokens"],
        )
    vae.save(run.out / "vae")
    atomic_write_json({"max_record_tokens": limited["max_record_tokens"]}, run.out / DECODING)
    means = encode_means(vae, models, train["text"].tolist(), limited, device=torch_device)
    means_frame = pd.DataFrame(means, columns=[f"z{i}" for i in range(means.shape[1])])
    means_frame.to_parquet(run.out / "latents.parquet")
    atomic_write_json(history, run.out / "history.json")
    plot_loss_curves(history, run.out / "loss_curves.png")
    plot_latents(means, train["label"].tolist(), run.out / "latents.png", target=schema.target)
    steps = len(history.get("recon", []))
    return StageOutput(
        files={
            "vae": ("vae", None),
            "latents": ("latents.parquet", len(means)),
            "history": ("history.json", None),
            "decoding": (DECODING, None),
        },
        rows_in=len(train),
        rows_out=len(means),
        metrics={
            "final_val_recon": history["val_recon"][-1][1]
            if history["val_recon"]
            else float("nan"),
            "best_step": float(history["best_step"]),
            "records_per_second": steps * method["vae_batch_size"] / max(seconds, 1e-9),
        },
        info={
            "stop_reason": history["stop_reason"],
            "device": str(torch_device),
            "decoder_dtype": trained_in,
        },
    )


@stage("train_diffusion", config="method")
def train_diffusion_stage(
    run: StageRun,
    method: dict[str, Any],
    seed: int,
    device: str,
    vae_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
) -> StageOutput:
    """EDM denoiser on the normalised latent means (skipped in the no-diffusion ablation).
    With `method.class_conditional` and a categorical or boolean target, the denoiser is
    conditioned on each training record's class (`synthloom.latent_classes`), written
    beside its weights as classes.json."""
    means = pd.read_parquet(vae_files["latents"]["path"]).to_numpy()
    if not method["diffusion"]:
        atomic_write_json({"diffusion": False}, run.out / "disabled.json")
        run.log.info("method.diffusion is false: latents will be drawn from N(0, I)")
        return StageOutput(files={"diffusion": ("disabled.json", None)}, rows_in=len(means))
    classes, labels = None, None
    if method["class_conditional"]:
        train, schema = read_table(seed_files["train"]["path"])
        fitted = LatentClasses.fit(train, schema, method["conditioning"])
        if fitted is None:
            run.log.info(
                "method.class_conditional: the table has no categorical or boolean target "
                "without missing values, so the diffusion is unconditional"
            )
        else:
            classes, labels = fitted
            if len(labels) != len(means):
                raise RuntimeError(
                    f"{len(means)} training latents but {len(labels)} training rows: the "
                    "train_vae stage's latents do not match the ingest split. Fix: rerun "
                    "from train_vae (synthloom rerun RUN_ID --from train_vae)."
                )
            run.log.info(
                "class-conditional diffusion on %s: %d classes (%s)",
                ", ".join(classes.columns),
                len(classes),
                classes.describe(),
            )
    config = LatentDiffusionConfig(
        hidden=method["diffusion_hidden"],
        epochs=1_000_000,  # bounded by max_steps and early stopping
        max_steps=method["diffusion_steps"],
        batch_size=method["diffusion_batch_size"],
        sampler_steps=method["sampler_steps"],
        ema_decay=averaging_decay(method["diffusion_ema"], method["diffusion_steps"]),
        lr_schedule=method["diffusion_lr_schedule"],
        seed=seed,
        n_classes=0 if classes is None else len(classes),
        label_dropout=0.0 if classes is None else method["label_dropout"],
    )
    history: dict[str, list] = {"diffusion_loss": []}

    def log(record: dict[str, Any]) -> None:
        history["diffusion_loss"].append([record["step"], record["loss"]])
        if record["epoch"] % 100 == 0:
            run.log.info("diffusion step %d loss %.4f", record["step"], record["loss"])

    model = train_latent_diffusion(
        means,
        config,
        device=resolve_device(device),
        log=log,
        checkpoint=run.checkpoint_dir / "diffusion.pt",
        checkpoint_seconds=method["checkpoint_seconds"],
        labels=labels,
    )
    if model.training["resumed_from_epoch"]:
        run.log.info(
            "resumed the diffusion from its checkpoint at epoch %d",
            model.training["resumed_from_epoch"],
        )
    model.save(run.out / "diffusion")
    if classes is not None:
        atomic_write_json(classes.to_dict(), run.out / "diffusion" / CLASSES)
    atomic_write_json(history, run.out / "history.json")
    last = history["diffusion_loss"][-1][1] if history["diffusion_loss"] else float("nan")
    return StageOutput(
        files={"diffusion": ("diffusion", None), "history": ("history.json", None)},
        rows_in=len(means),
        metrics={"final_loss": last},
    )


@lru_cache(maxsize=2)
def _load_decoding_models(
    method_json: str,
    device: str,
    model_cache: str,
    vae_path: str,
    vae_sha256: str,
    diffusion_path: str,
    diffusion_sha256: str,
) -> tuple[Any, Any, Any, torch.device]:
    """(vae, base models, diffusion or None, device), loaded once per process / worker."""
    method = json.loads(method_json)
    torch_device = resolve_device(device)
    # CPU decoding is fastest with bf16 weights (not autocast); on CUDA bf16 weights only
    # where the GPU supports bf16 (else fp32). The VAE's injections are cast to the
    # decoder's dtype by the decoding loop.
    bf16 = torch_device.type == "cpu" or autocast_dtype(torch_device) == torch.bfloat16
    dtype = torch.bfloat16 if method["bf16"] and bf16 else torch.float32
    models = load_base_models(method, torch_device, Path(model_cache), decoder_dtype=dtype)
    vae = load_trained_vae(Path(vae_path), models)
    diffusion_dir = Path(diffusion_path)
    diffusion = LatentDiffusionModel.load(diffusion_dir) if diffusion_dir.is_dir() else None
    return vae, models, diffusion, torch_device


@lru_cache(maxsize=8)
def _decoding_constraint(
    method_json: str, schema_json: str, *model_key: Any
) -> TokenConstraint | None:
    """The record constraint for the decoder of `_load_decoding_models(method_json,
    *model_key)`, built once per process: its per-state token tables fill as shards decode
    (building them is the slow part of a shard's start)."""
    _, models, _, _ = _load_decoding_models(method_json, *model_key)
    return record_constraint(TableSchema.from_json(schema_json), json.loads(method_json), models)


def decoding_method(method: dict[str, Any], vae_files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`method` with the record token limit the VAE was trained with ("auto" resolved by
    the train_vae stage, in its `decoding.json`)."""
    ref = vae_files.get("decoding")
    if ref is None:
        return method
    return method | json.loads(Path(ref["path"]).read_text(encoding="utf-8"))


def _shard_progress(total: int, done_before: int) -> Callable[[int, int, float], None]:
    """A per-decoding-batch progress callback for a shard: stage rows (done_before + this
    shard's valid rows) / total and rows/s, to the Prefect run log (and the CLI's bar);
    silent outside a Prefect run."""
    try:
        reporter = stage_progress("generate", total, "rows", min_interval=0.0)
    except MissingContextError:
        return lambda done, tried, rate: None
    reporter.update(done_before)
    return lambda done, tried, rate: reporter.update(done_before + done)


def decode_shard(
    method_json: str,
    device: str,
    model_cache: str,
    vae: tuple[str, str],
    diffusion: tuple[str, str],
    schema_json: str,
    max_attempts: int,
    sizes: tuple[int, ...],
    conditions: list[dict[str, dict[str, int]]] | None,
    class_counts: list[list[int]] | None,
    index: int,
    seed: int,
    rows: int,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Shard function: `rows` valid rows from latents seeded by `seed`, with this shard's
    share of the attempt budget, ceil(max_attempts * rows / sum(sizes)), and its share of
    `generate.conditions` when given (`conditions[index]`, by column name) or of the
    class-conditional diffusion's classes (`class_counts[index]`: rows per class); logs
    progress after every decoding batch. `schema_json`: the schema in record order."""
    method = json.loads(method_json)
    model_key = (device, model_cache, *vae, *diffusion)
    vae_model, models, diffusion_model, torch_device = _load_decoding_models(
        method_json, *model_key
    )
    classes = load_latent_classes(diffusion[0]) if diffusion_model is not None else None
    total = sum(sizes)
    common = {
        "max_attempts": max(1, math.ceil(max_attempts * rows / total)),
        "seed": seed,
        "device": torch_device,
        "progress": _shard_progress(total, sum(sizes[:index])),
    }
    schema = TableSchema.from_json(schema_json)
    groups = None
    if conditions:
        ((column, quotas),) = conditions[index].items()
        groups = condition_groups(schema, column, quotas, classes)
    elif class_counts and classes is not None:
        force = method["constrained"] and method["serialization"] in ("json", "compact")
        groups = class_groups(schema, classes, class_counts[index], force=force)
    if groups is not None:
        frame, texts, stats = generate_grouped_rows(
            vae_model,
            models,
            diffusion_model,
            schema,
            method,
            groups=groups,
            constraint_for=lambda sub: _decoding_constraint(method_json, sub.to_json(), *model_key),
            **common,
        )
    else:
        frame, texts, stats = generate_valid_rows(
            vae_model,
            models,
            diffusion_model,
            schema,
            method,
            num_rows=rows,
            constraint=_decoding_constraint(method_json, schema_json, *model_key),
            **common,
        )
    texts.insert(0, "shard", index)
    return {"synthetic": frame, "generations": texts}, stats


def merge_decoding_stats(stats: list[dict[str, Any]], rows: int, wall: float) -> dict[str, Any]:
    """Shard stats -> stage stats (`merge_generation_stats` over the stage wall), without the
    raw seconds and valid count (valid_rate and the rates carry them)."""
    merged = merge_generation_stats(stats, rows, wall)
    return {k: v for k, v in merged.items() if k not in ("seconds", "valid")}


@stage("generate", config=("generate", "method"), fail_midway=True)
def generate_records(
    run: StageRun,
    generate: dict[str, Any],
    method: dict[str, Any],
    seed: int,
    device: str,
    vae_files: dict[str, dict[str, Any]],
    diffusion_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    model_cache: str,
) -> StageOutput:
    """Sample latents -> inject -> decode -> parse, until num_rows valid rows or the budget.

    Sharded (tasks/sharding.py): shard i of min(`generate.batch_size`,
    `method.decode_batch_size`) rows (one decoding batch when every record is valid, so a
    kill loses at most about one batch of work) decodes with seed seed * 100003 + i and
    its share of `generate.max_attempts`; parts merge in shard order."""
    inputs = {
        "vae": vae_files["vae"]["sha256"],
        "diffusion": diffusion_files["diffusion"]["sha256"],
        "seed": seed,
    }

    train, schema = read_table(seed_files["train"]["path"])
    decoding = decoding_method(method, vae_files)
    total = generate["num_rows"]
    sizes = shard_sizes(total, min(generate["batch_size"], method["decode_batch_size"]))
    written = records_schema(schema, method, train)
    conditions = generate["conditions"]
    if conditions:
        column, quotas = check_conditions(conditions, schema, total)
        conditions = shard_conditions({column: {str(k): int(n) for k, n in quotas.items()}}, sizes)
    classes = load_latent_classes(diffusion_files["diffusion"]["path"])
    class_counts = None
    if classes is not None and not conditions:
        balance = classes.balanced(total)
        class_counts = counts_per_shard(balance, sizes)
        run.log.info("classes drawn in the training balance: %s", classes.describe(balance))
    start = time.perf_counter()
    shards = run_shards(
        "generate",
        run.stage_dir,
        shard_key(config=generate, method=method, inputs=inputs, code=run.code, sizes=sizes),
        sizes,
        seed,
        partial(
            decode_shard,
            json.dumps(decoding, sort_keys=True),
            device,
            model_cache,
            (vae_files["vae"]["path"], vae_files["vae"]["sha256"]),
            (diffusion_files["diffusion"]["path"], diffusion_files["diffusion"]["sha256"]),
            written.to_json(),
            generate["max_attempts"] or 5 * total,
            tuple(sizes),
            conditions or None,
            class_counts,
        ),
        progress=stage_progress("generate", total, "rows"),
    )
    frame = table_rows(shards.frame("synthetic"), written, schema)
    if class_counts:  # the shards hold the classes one after another: mix them (seeded)
        order = np.random.default_rng([seed, 13]).permutation(len(frame))
        frame = frame.iloc[order].reset_index(drop=True)
    texts = shards.frame("generations")
    write_table(frame, run.out / "synthetic.parquet", schema)
    texts.to_parquet(run.out / "generations.parquet")
    shards.remove()
    stats = merge_decoding_stats(
        [r["stats"] for r in shards.records], len(frame), time.perf_counter() - start
    )
    return StageOutput(
        files={
            "synthetic": ("synthetic.parquet", len(frame)),
            "generations": ("generations.parquet", len(texts)),
        },
        rows_out=len(frame),
        metrics={k: v for k, v in stats.items() if isinstance(v, int | float)},
        counts={f"invalid_{k.replace(' ', '_')}": v for k, v in stats["invalid"].items()},
        info=shards.describe(),
    )


@stage("reconstruction", config=("method", "mle"))
def reconstruction_stage(
    run: StageRun,
    method: dict[str, Any],
    mle: dict[str, Any],
    seed: int,
    device: str,
    record_files: dict[str, dict[str, Any]],
    vae_files: dict[str, dict[str, Any]],
    diffusion_files: dict[str, dict[str, Any]],
    generated_files: dict[str, dict[str, Any]],
    seed_files: dict[str, dict[str, Any]],
    model_cache: str,
) -> StageOutput:
    """Where DiffLM loses (synthloom.methods.difflm.diagnostics): `method.reconstruction_records`
    training and validation records decoded from their own latent, scored against the
    originals; MLE on the validation split of those rows, the originals and as many
    generated rows (`mle`: {grid, seeds}); diffusion samples against the training latents.
    Metrics reach summary.json and MLflow as reconstruction_*; every decoded text is kept
    in reconstructions.parquet."""
    set_seed(seed)
    decoding = decoding_method(method, vae_files)
    method_json = json.dumps(decoding, sort_keys=True)
    model_key = (
        device,
        model_cache,
        vae_files["vae"]["path"],
        vae_files["vae"]["sha256"],
        diffusion_files["diffusion"]["path"],
        diffusion_files["diffusion"]["sha256"],
    )
    vae, models, diffusion, torch_device = _load_decoding_models(method_json, *model_key)
    classes = load_latent_classes(diffusion_files["diffusion"]["path"])
    if classes is not None and diffusion is not None:
        # latents in the training balance, guided as generate guides them
        diffusion = BalancedLatents(diffusion, classes, method["guidance_scale"])
    records, _ = read_table(record_files["records"]["path"])
    validation, schema = read_table(seed_files["validation"]["path"])
    train, _ = read_table(seed_files["train"]["path"])
    schema = records_schema(schema, method, train)  # how the records are written
    validation = alias_names(validation, schema)
    generated, _ = read_table(generated_files["synthetic"]["path"])
    generated = alias_names(generated, schema)
    n = method["reconstruction_records"]
    texts = {}
    for split in ("train", "validation"):
        split_texts = records.loc[records["split"] == split, "text"]
        texts[split] = split_texts.sample(n=min(n, len(split_texts)), random_state=seed)
    val_texts = records.loc[records["split"] == "validation", "text"].tolist()[:1000]
    metrics, decoded = reconstruction_report(
        vae,
        models,
        diffusion,
        schema,
        decoding,
        texts={split: t.tolist() for split, t in texts.items()},
        train_latents=pd.read_parquet(vae_files["latents"]["path"]).to_numpy("float32"),
        validation_latents=encode_means(vae, models, val_texts, decoding, device=torch_device),
        generated=generated,
        validation=validation,
        constraint=_decoding_constraint(method_json, schema.to_json(), *model_key),
        mle_grid=mle["grid"],
        mle_seeds=mle["seeds"],
        seed=seed,
        device=torch_device,
        log=run.log.info,
    )
    metrics = restore_metric_names(metrics, schema.extra.get(KEY_ALIASES) or {})
    decoded.to_parquet(run.out / "reconstructions.parquet")
    run.log.info(
        "latents: MMD^2 diffusion %.4g, validation %.4g, prior %.4g (bandwidth %.3g); "
        "mean gap %.3f, std gap %.3f (in training stds)",
        metrics["latent_mmd2"],
        metrics["latent_mmd2_validation"],
        metrics["latent_mmd2_prior"],
        metrics["latent_bandwidth"],
        metrics["latent_mean_gap"],
        metrics["latent_std_gap"],
    )
    mle_keys = [k for k in metrics if "_mle_" in k]
    if mle_keys:
        run.log.info(
            "MLE on the validation split: %s",
            ", ".join(f"{k} {metrics[k]:.3f}" for k in mle_keys),
        )
    return StageOutput(
        files={"reconstructions": ("reconstructions.parquet", len(decoded))},
        rows_in=sum(len(t) for t in texts.values()),
        rows_out=len(decoded),
        metrics=metrics,
    )


def _progress_logger(logger: Any, total_steps: int):  # noqa: ANN202
    """Log VAE progress every ~5% of the steps and every evaluation."""
    every = max(1, total_steps // 20)

    def log(record: dict[str, Any]) -> None:
        if "val_recon" in record:
            logger.info(
                "step %d: val recon %.4f, val kl %.3f, latent spread %.3f",
                record["step"],
                record["val_recon"],
                record["val_kl"],
                record["val_mu_std"],
            )
        elif record["step"] % every == 0:
            logger.info(
                "step %d/%d: recon %.4f kl %.3f beta %.4g (%.1f records/s)",
                record["step"],
                total_steps,
                record["recon"],
                record["kl"],
                record["beta"],
                record.get("records_per_s", float("nan")),
            )

    return log
