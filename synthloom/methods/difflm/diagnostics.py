"""DiffLM reconstruction diagnostic: where a trained VAE + latent diffusion lose the data.

Decode records from their own latent mean (z = mu, greedy and at the sampling
temperature, with the generate stage's constrained decoder) and compare each with the
record it came from; compare the diffusion's samples with the training latents. Low
agreement (or a low MLE score of the reconstructed rows) blames the VAE; good
reconstructions with poor generated rows, or a large latent distance, blame the diffusion.

Agreement of decoded records x_hat with their originals x, per column c over all N
records (a record that does not parse disagrees on every column)::

    match_c     = (1/N) sum_i [x_hat_ic == x_ic]          (both missing counts as equal;
                                                            numbers equal up to 1e-9 relative)
    rel_error_c = mean_i |x_hat_ic - x_ic| / max(|x_ic|, 0.01 * span_c, 1e-12)
                  over the records where both values are present (numeric columns only;
                  span_c = the schema's max - min of the column)

Latent distance between samples X (m, d) and training latents Y (n, d), with the RBF
kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)) and h the median pairwise distance between
training latents (the median heuristic, Gretton et al. 2012, JMLR 13), the unbiased
estimator (ibid., eq. 3)::

    MMD^2 = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (n (n-1))
            - 2 sum_{i,j} k(x_i, y_j) / (m n)

and per-dimension moment gaps in units of the training latents' std sigma_d::

    mean_gap = mean_d |mean(X_d) - mean(Y_d)| / sigma_d
    std_gap  = mean_d |std(X_d) - sigma_d| / sigma_d     (max_* : the largest over d)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthloom.methods.difflm.fit import encode_means
from synthloom.methods.difflm.generate import decode_latents, sample_latents
from synthloom.methods.difflm.grammar import TokenConstraint
from synthloom.metrics.mle import mle_scores
from synthloom.schema import ColumnKind, TableSchema
from synthloom.serialize import parse_record

DECODING_MODES = ("greedy", "sampled")  # temperature 0, and method.temperature


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def values_match(decoded: Any, original: Any, kind: ColumnKind) -> bool:
    """Equal values (numbers up to 1e-9 relative); two missing values are equal."""
    if _missing(decoded) or _missing(original):
        return _missing(decoded) and _missing(original)
    if kind is ColumnKind.NUMERIC:
        return math.isclose(float(decoded), float(original), rel_tol=1e-9, abs_tol=1e-12)
    return str(decoded) == str(original)


def column_agreement(
    decoded: Sequence[dict[str, Any] | None],
    originals: Sequence[dict[str, Any]],
    schema: TableSchema,
) -> dict[str, dict[str, float]]:
    """{column: {"match": match_c, "rel_error": rel_error_c (numeric columns)}} for decoded
    records (None where a decode did not parse) against their originals, in the same order
    (the module docstring has the formulas)."""
    assert len(decoded) == len(originals), "one decoded record per original"
    out: dict[str, dict[str, float]] = {}
    n = len(originals)
    for column in schema.columns:
        matches, errors = 0, []
        for got, want in zip(decoded, originals, strict=True):
            if got is None:
                continue
            a, b = got[column.name], want[column.name]
            matches += values_match(a, b, column.kind)
            if column.kind is ColumnKind.NUMERIC and not (_missing(a) or _missing(b)):
                span = (column.maximum or 0.0) - (column.minimum or 0.0)
                scale = max(abs(float(b)), 0.01 * abs(span), 1e-12)
                errors.append(abs(float(a) - float(b)) / scale)
        scores = {"match": matches / n if n else float("nan")}
        if column.kind is ColumnKind.NUMERIC:
            scores["rel_error"] = float(np.mean(errors)) if errors else float("nan")
        out[column.name] = scores
    return out


def agreement_metrics(
    decoded_texts: Sequence[str],
    originals: Sequence[dict[str, Any]],
    schema: TableSchema,
    fmt: str,
) -> tuple[dict[str, float], list[dict[str, Any] | None]]:
    """Flat metrics of decoded texts against their original records: valid_rate, match (the
    mean of match_c over columns), rel_error (the mean of rel_error_c over numeric columns),
    and match_<column> / rel_error_<column>; plus the parsed records (None: invalid)."""
    parsed = [parse_record(text, schema, fmt) for text in decoded_texts]
    records = [p.record if p.ok else None for p in parsed]
    per_column = column_agreement(records, originals, schema)
    metrics = {"valid_rate": sum(r is not None for r in records) / max(len(records), 1)}
    metrics["match"] = float(np.mean([s["match"] for s in per_column.values()]))
    errors = [s["rel_error"] for s in per_column.values() if "rel_error" in s]
    finite = [e for e in errors if math.isfinite(e)]
    metrics["rel_error"] = float(np.mean(finite)) if finite else float("nan")
    for name, scores in per_column.items():
        for key, value in scores.items():
            metrics[f"{key}_{metric_safe(name)}"] = value
    return metrics, records


def restore_metric_names(metrics: dict[str, float], names: dict[str, str]) -> dict[str, float]:
    """`metrics` with the column part of every `<prefix>_match_<column>` /
    `<prefix>_rel_error_<column>` key written as the column's name, where the records were
    written under `names` = {key alias: column name} (`serialize.record_schema`)."""
    columns = {metric_safe(alias): metric_safe(name) for alias, name in names.items()}
    out = {}
    for key, value in metrics.items():
        match = re.fullmatch(r"(.*_(?:match|rel_error))_(.+)", key)
        if match and match.group(2) in columns:
            key = f"{match.group(1)}_{columns[match.group(2)]}"
        out[key] = value
    return out


def metric_safe(name: str) -> str:
    """A column name as a metric-name part: characters other than [A-Za-z0-9_] become _."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def median_bandwidth(reference: np.ndarray, max_points: int = 1000) -> float:
    """h of the median heuristic: the median distance between distinct pairs of `reference`
    rows (the first `max_points`); 1.0 when it is zero or undefined."""
    x = torch.as_tensor(reference[:max_points], dtype=torch.float64)
    if len(x) < 2:
        return 1.0
    d = torch.cdist(x, x)
    upper = d[torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1)]
    h = float(upper.median())
    return h if h > 0 else 1.0


def rbf_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 between samples x (m, d) and y (n, d), RBF kernel of width
    `bandwidth` (module docstring); NaN when either has fewer than 2 rows."""
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    a = torch.as_tensor(x, dtype=torch.float64)
    b = torch.as_tensor(y, dtype=torch.float64)
    gamma = 1.0 / (2.0 * bandwidth**2)
    kxx = torch.exp(-gamma * torch.cdist(a, a) ** 2)
    kyy = torch.exp(-gamma * torch.cdist(b, b) ** 2)
    kxy = torch.exp(-gamma * torch.cdist(a, b) ** 2)
    m, n = len(a), len(b)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def moment_gaps(samples: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """mean_gap, std_gap and their maxima over dimensions (module docstring)."""
    sigma = reference.std(axis=0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    mean_gap = np.abs(samples.mean(axis=0) - reference.mean(axis=0)) / sigma
    std_gap = np.abs(samples.std(axis=0) - reference.std(axis=0)) / sigma
    return {
        "mean_gap": float(mean_gap.mean()),
        "std_gap": float(std_gap.mean()),
        "max_mean_gap": float(mean_gap.max()),
        "max_std_gap": float(std_gap.max()),
    }


def latent_distance(
    samples: np.ndarray,
    train_latents: np.ndarray,
    validation_latents: np.ndarray,
    seed: int,
) -> dict[str, float]:
    """The diffusion's samples against the training latents: latent_mmd2, beside two
    references at the same bandwidth: latent_mmd2_validation (held-out records' latents,
    what a sampler that had learnt the encoder's distribution would score, up to noise)
    and latent_mmd2_prior (N(0, I), what no diffusion scores); latent_bandwidth; the
    moment gaps as latent_mean_gap, latent_std_gap, latent_max_mean_gap, latent_max_std_gap."""
    h = median_bandwidth(train_latents)
    prior = np.random.default_rng(seed).standard_normal(samples.shape).astype(np.float32)
    out = {
        "latent_mmd2": rbf_mmd2(samples, train_latents, h),
        "latent_mmd2_validation": rbf_mmd2(validation_latents, train_latents, h),
        "latent_mmd2_prior": rbf_mmd2(prior, train_latents, h),
        "latent_bandwidth": h,
    }
    out.update({f"latent_{k}": v for k, v in moment_gaps(samples, train_latents).items()})
    return out


def mle_metric(
    rows: pd.DataFrame,
    validation: pd.DataFrame,
    schema: TableSchema,
    *,
    grid: str,
    seeds: Sequence[int],
) -> dict[str, float]:
    """{"mle_auc" | "mle_rmse": mean over seeds} of `rows` scored on the validation split
    (`synthloom.metrics.mle.mle_scores`); {} without a target, NaN with under 2 rows."""
    if schema.target is None or schema.task not in ("classification", "regression"):
        return {}
    metric = "auc" if schema.task == "classification" else "rmse"
    if len(rows) < 2 or len(validation) < 2:
        return {f"mle_{metric}": float("nan")}
    scores = mle_scores(rows, validation, schema, seeds=seeds, grid=grid)
    return {f"mle_{metric}": float(scores[f"mle_{metric}_mean"])}


def decode_all(
    vae: Any,
    models: Any,
    z: np.ndarray,
    method: dict[str, Any],
    temperature: float,
    *,
    seed: int,
    constraint: TokenConstraint | None,
    device: torch.device,
) -> list[str]:
    """Decode every latent of z (N, d) in batches of `method.decode_batch_size` at
    `temperature`, batch i drawing with seed * 1000003 + i; one text per row, in order."""
    texts: list[str] = []
    size = method["decode_batch_size"]
    for i, first in enumerate(range(0, len(z), size)):
        result = decode_latents(
            vae,
            models,
            torch.from_numpy(z[first : first + size]),
            method,
            temperature=temperature,
            seed=seed * 1_000_003 + i,
            constraint=constraint,
            device=device,
        )
        texts.extend(result.texts)
    return texts


def reconstruction_report(
    vae: Any,
    models: Any,
    diffusion: Any | None,
    schema: TableSchema,
    method: dict[str, Any],
    *,
    texts: dict[str, list[str]],
    train_latents: np.ndarray,
    validation_latents: np.ndarray,
    generated: pd.DataFrame,
    validation: pd.DataFrame,
    constraint: TokenConstraint | None,
    mle_grid: str,
    mle_seeds: Sequence[int],
    seed: int,
    device: torch.device,
    max_latents: int = 1000,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """The diagnostic's metrics and every decoded text.

    `texts`: {"train": [...], "validation": [...]} serialized records (the sample to
    reconstruct; each is its own original; one that does not parse is left out). The
    records are encoded to z = mu and decoded (all splits in the same batches), greedy and
    sampled at `method.temperature`: `{split}_{mode}_` + `agreement_metrics`. MLE on the
    validation split (never the test split), `mle_auc` or `mle_rmse`: `real_` (the
    original training records of the sample), `train_{mode}_` (their reconstructions)
    and `generated_` (the first as many rows of `generated`, the generate stage's rows
    from diffusion samples). Latent distance of as many diffusion samples as training
    latents (`latent_distance`; at most `max_latents` of each, a seeded subsample of the
    training latents: the kernel matrices are m x n)."""
    fmt = method["serialization"]
    metrics: dict[str, float] = {}
    decoded_rows: list[dict[str, Any]] = []
    mle = {"grid": mle_grid, "seeds": list(mle_seeds)}
    texts = {
        split: [t for t in split_texts if parse_record(t, schema, fmt).ok]
        for split, split_texts in texts.items()
    }
    originals = {
        split: [parse_record(t, schema, fmt).record for t in split_texts]
        for split, split_texts in texts.items()
    }
    # every split's records decode together (fuller batches), then split back
    splits = [split for split, split_texts in texts.items() if split_texts]
    everything = [t for split in splits for t in texts[split]]
    mu = encode_means(vae, models, everything, method, device=device)
    for mode in DECODING_MODES:
        temperature = 0.0 if mode == "greedy" else method["temperature"]
        decoded = decode_all(
            vae, models, mu, method, temperature, seed=seed, constraint=constraint, device=device
        )
        offset = 0
        for split in splits:
            split_texts = texts[split]
            split_decoded = decoded[offset : offset + len(split_texts)]
            offset += len(split_texts)
            scores, records = agreement_metrics(split_decoded, originals[split], schema, fmt)
            log(
                f"{split} records from their own latent, {mode}: valid "
                f"{scores['valid_rate']:.2f}, match {scores['match']:.3f} (mean over columns), "
                f"numeric relative error {scores['rel_error']:.3g} ({len(split_texts)} records)"
            )
            metrics.update({f"{split}_{mode}_{k}": v for k, v in scores.items()})
            if split == "train":
                rows = pd.DataFrame([r for r in records if r is not None], columns=schema.names)
                scores = mle_metric(rows, validation, schema, **mle)
                metrics.update({f"train_{mode}_{k}": v for k, v in scores.items()})
            decoded_rows.extend(
                {"split": split, "mode": mode, "original": o, "decoded": d, "valid": r is not None}
                for o, d, r in zip(split_texts, split_decoded, records, strict=True)
            )
    n = len(texts.get("train", []))
    real = pd.DataFrame(originals.get("train", []), columns=schema.names)
    metrics.update({f"real_{k}": v for k, v in mle_metric(real, validation, schema, **mle).items()})
    sample = generated.iloc[:n]
    metrics.update(
        {f"generated_{k}": v for k, v in mle_metric(sample, validation, schema, **mle).items()}
    )
    rng = np.random.default_rng(seed)
    if len(train_latents) > max_latents:
        train_latents = train_latents[rng.choice(len(train_latents), max_latents, replace=False)]
    samples = sample_latents(diffusion, len(train_latents), train_latents.shape[1], seed)
    metrics.update(latent_distance(samples, train_latents, validation_latents[:max_latents], seed))
    return metrics, pd.DataFrame(decoded_rows)
