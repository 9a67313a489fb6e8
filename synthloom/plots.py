"""Diagnostic plots (PNG) for a synthetic table: per-column distributions and DCR histograms.

Drawn with matplotlib's Agg canvas on `matplotlib.figure.Figure` objects (no pyplot, no global
backend switch, no display needed), so they are safe in worker processes and threads.

- `plot_column_distributions`: a grid with one panel per column (the target first, then schema
  order, at most `max_columns`, text columns skipped). Numeric columns: density histograms of real
  and synthetic over shared bins (datetimes on a date axis). Categorical/boolean columns: side by
  side bars of category shares (the 12 most frequent real categories, the rest pooled as
  "<rest>", missing as "<missing>"). The panel title gives the missing share of each side.
- `plot_dcr_histogram`: overlaid histograms of the synthetic rows' distance to the closest
  training row and to the closest holdout row (see `synthloom.metrics.privacy`), with medians.
Both write `path` (parents created) and return it as a Path.

Training diagnostics of the latent generators (DiffLM, TabSyn), each writing `path`:
- `plot_loss_curves`: train/validation reconstruction loss, KL and beta per step.
- `plot_latents`: 2-D PCA of the VAE's latent means, coloured by the target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synthloom.schema import ColumnKind, TableSchema

REAL_COLOR = "#1f77b4"
SYN_COLOR = "#ff7f0e"
MAX_LEVELS = 12


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def _missing_pct(s: pd.Series) -> float:
    return 100.0 * float(s.isna().mean()) if len(s) else 0.0


def _numeric_panel(ax: Axes, real: pd.Series, syn: pd.Series, is_datetime: bool) -> None:
    if is_datetime:
        from matplotlib import dates as mdates

        r = pd.to_datetime(real, errors="coerce").dropna()
        s = pd.to_datetime(syn, errors="coerce").dropna()
        r_vals = mdates.date2num(r.to_numpy()) if len(r) else np.array([])
        s_vals = mdates.date2num(s.to_numpy()) if len(s) else np.array([])
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(mdates.AutoDateLocator()))
    else:
        r_vals = pd.to_numeric(real, errors="coerce").dropna().to_numpy(dtype=float)
        s_vals = pd.to_numeric(syn, errors="coerce").dropna().to_numpy(dtype=float)
    both = np.concatenate([r_vals, s_vals])
    both = both[np.isfinite(both)]
    if both.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 31)
    for vals, color, label in ((r_vals, REAL_COLOR, "real"), (s_vals, SYN_COLOR, "synthetic")):
        vals = vals[np.isfinite(vals)]
        if vals.size:
            ax.hist(vals, bins=bins, density=True, alpha=0.5, color=color, label=label)
    ax.set_ylabel("density")


def _category_panel(ax: Axes, real: pd.Series, syn: pd.Series) -> None:
    def labels(s: pd.Series) -> pd.Series:
        out = s.astype(object).map(str)
        out[s.isna().to_numpy()] = "<missing>"
        return out

    r, s = labels(real), labels(syn)
    r_share = r.value_counts(normalize=True)
    s_share = s.value_counts(normalize=True)
    order = list(r_share.index) + [v for v in s_share.index if v not in r_share.index]
    keep = order[:MAX_LEVELS]
    r_plot = [float(r_share.get(v, 0.0)) for v in keep]
    s_plot = [float(s_share.get(v, 0.0)) for v in keep]
    if len(order) > MAX_LEVELS:
        keep.append("<rest>")
        r_plot.append(max(0.0, 1.0 - sum(r_plot)) if len(r) else 0.0)
        s_plot.append(max(0.0, 1.0 - sum(s_plot)) if len(s) else 0.0)
    x = np.arange(len(keep))
    ax.bar(x - 0.2, r_plot, width=0.4, color=REAL_COLOR, alpha=0.8, label="real")
    ax.bar(x + 0.2, s_plot, width=0.4, color=SYN_COLOR, alpha=0.8, label="synthetic")
    ax.set_xticks(x)
    ax.set_xticklabels([k if len(k) <= 12 else k[:11] + "…" for k in keep], rotation=45, ha="right")
    ax.set_ylabel("share")


def plot_column_distributions(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    path: str | Path,
    max_columns: int = 16,
) -> Path:
    """Grid of real-vs-synthetic distributions, one panel per column; writes a PNG to `path`."""
    names = [c.name for c in schema.columns if c.kind is not ColumnKind.TEXT]
    if schema.target in names:
        names.remove(schema.target)
        names.insert(0, schema.target)
    names = names[:max_columns]
    n = max(1, len(names))
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        kind = schema.column(name).kind
        r, s = real[name], synthetic[name]
        if kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
            _numeric_panel(ax, r, s, kind is ColumnKind.DATETIME)
        else:
            _category_panel(ax, r, s)
        tag = " (target)" if name == schema.target else ""
        ax.set_title(
            f"{name}{tag} [{kind.value}]\nmissing: real {_missing_pct(r):.1f}%, "
            f"syn {_missing_pct(s):.1f}%",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if not names:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no plottable columns", ha="center", va="center")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", ncols=2)
    fig.suptitle(f"Real ({len(real)} rows) vs synthetic ({len(synthetic)} rows)", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    return _save(fig, path)


def plot_dcr_histogram(
    d_train: np.ndarray, d_holdout: np.ndarray, path: str | Path, bins: int = 50
) -> Path:
    """Overlaid histograms of DCR to train and to holdout (shared bins, medians dashed)."""
    d_train = np.asarray(d_train, dtype=float)
    d_holdout = np.asarray(d_holdout, dtype=float)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    both = np.concatenate([d_train, d_holdout])
    both = both[np.isfinite(both)]
    if both.size:
        hi = float(both.max())
        edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
        for d, color, label in (
            (d_train, REAL_COLOR, "to closest train row"),
            (d_holdout, SYN_COLOR, "to closest holdout row"),
        ):
            d = d[np.isfinite(d)]
            if d.size:
                ax.hist(d, bins=edges, alpha=0.5, color=color, label=label)
                ax.axvline(float(np.median(d)), color=color, linestyle="--", linewidth=1)
        n = min(len(d_train), len(d_holdout))
        share = float(np.mean((d_train[:n] < d_holdout[:n]) + 0.5 * (d_train[:n] == d_holdout[:n])))
        ax.set_title(f"Distance to closest record (L1); share closer to train = {share:.3f}")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no distances", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Distance to closest record (L1)")
    ax.set_xlabel("L1 distance (one-hot + min-max scaled)")
    ax.set_ylabel("synthetic rows")
    fig.tight_layout()
    return _save(fig, path)


def plot_embedding_projection(
    real_emb: np.ndarray,
    real_labels: list[str],
    syn_emb: np.ndarray,
    syn_labels: list[str],
    path: str | Path,
) -> Path:
    """Real and synthetic text embeddings on the first two principal axes of the real ones
    (SVD of the centred real embeddings): circles real, crosses synthetic, one colour per
    label, so a synthetic set that misses or blurs a label's region shows at a glance."""
    real = np.asarray(real_emb, dtype=float)
    syn = np.asarray(syn_emb, dtype=float).reshape(-1, real.shape[1] if real.ndim == 2 else 1)
    fig = Figure(figsize=(7, 5.5))
    ax = fig.subplots()
    if len(real) >= 2:
        mean = real.mean(axis=0)
        _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
        axes = vt[:2].T  # (D, 2)
        labels = sorted(set(real_labels) | set(syn_labels))
        colors = [f"C{i % 10}" for i in range(len(labels))]
        for label, color in zip(labels, colors, strict=True):
            r = (real - mean)[np.asarray(real_labels) == label] @ axes
            ax.scatter(r[:, 0], r[:, 1], s=10, alpha=0.35, color=color, label=f"real {label}")
            if len(syn):
                s = (syn - mean)[np.asarray(syn_labels) == label] @ axes
                ax.scatter(
                    s[:, 0], s[:, 1], s=18, marker="x", color=color, label=f"synthetic {label}"
                )
        ax.legend(fontsize=7, loc="best")
    ax.set_title("Text embeddings, first two principal axes of the real texts")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    return _save(fig, path)


def plot_loss_curves(history: dict[str, Any], path: str | Path) -> Path:
    """Training/validation reconstruction loss, KL and beta per step (PNG)."""
    fig = Figure(figsize=(11, 3.4))
    panels = (
        ("recon", "val_recon", "reconstruction NLL"),
        ("kl", "val_kl", "KL"),
        ("beta", None, "beta"),
    )
    for i, (train_key, val_key, title) in enumerate(panels, 1):
        ax = fig.add_subplot(1, 3, i)
        for key, label in ((train_key, "train"), (val_key, "validation")):
            points = history.get(key) if key else None
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=label, marker="o" if label == "validation" else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        if title == "beta":
            ax.set_yscale("log")
        else:
            ax.legend()
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def plot_latents(
    means: np.ndarray, labels: list[str], path: str | Path, target: str | None
) -> Path:
    """2-D PCA projection of the latent means coloured by the target (paper figure 6)."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    centered = means - means.mean(axis=0, keepdims=True)
    if len(means) >= 2:
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        xy = centered @ vt[:2].T
    else:
        xy = np.zeros((len(means), 2))
    values = np.asarray(labels, dtype=object)
    groups = sorted({str(v) for v in values}) if target else ["all"]
    for group in groups[:12]:
        mask = (values.astype(str) == group) if target else np.ones(len(values), bool)
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, label=group)
    ax.set_title(f"VAE latent means (PCA), coloured by {target or 'nothing'}")
    if target:
        ax.legend(markerscale=2, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=110)
