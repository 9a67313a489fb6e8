"""Scaling-curve plots (PNG, matplotlib Agg, no pyplot): one curve, or several overlaid.

Each curve is drawn on log-log axes as its measured points (mean over seeds, error bars = std
over seeds, faint dots = single seeds), its fitted rectified law L(D) = B / (D_l + D^beta) + E
(solid over the measured sizes, dashed beyond them up to `extrapolate_to`), and its plateau E
as a dotted horizontal line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synthloom.scaling.curve import summarize_points
from synthloom.scaling.law import ScalingFit


@dataclass
class CurveToPlot:
    label: str
    points: pd.DataFrame  # the long frame of `synthloom.scaling.curve` (size, seed, error, ...)
    fit: ScalingFit | None
    metric: str


def _draw(ax: Axes, curve: CurveToPlot, color: str, extrapolate_to: float) -> None:
    finite = curve.points[np.isfinite(curve.points["error"].astype(float))]
    if finite.empty:
        return
    ax.scatter(finite["size"], finite["error"], s=8, color=color, alpha=0.3, linewidths=0)
    summary = summarize_points(curve.points)
    label = curve.label
    if curve.fit is not None:
        f = curve.fit
        label += f" (E={f.E:.3g}, beta={f.beta:.2f}, R2={f.r2_log:.2f})"
    ax.errorbar(
        summary["size"],
        summary["mean"],
        yerr=summary["std"].fillna(0.0),
        fmt="o",
        color=color,
        capsize=3,
        label=label,
    )
    if curve.fit is None:
        return
    lo, hi = float(summary["size"].min()), float(summary["size"].max())
    inside = np.geomspace(lo, hi, 200)
    ax.plot(inside, curve.fit.predict(inside), color=color, lw=1.5)
    if extrapolate_to > hi:
        beyond = np.geomspace(hi, extrapolate_to, 100)
        ax.plot(beyond, curve.fit.predict(beyond), color=color, lw=1.5, ls="--")
    if curve.fit.E > 0:
        ax.axhline(curve.fit.E, color=color, lw=0.8, ls=":")


def plot_scaling_curves(
    curves: Sequence[CurveToPlot],
    path: str | Path,
    *,
    extrapolate_factor: float = 10.0,
    title: str | None = None,
) -> Path:
    """Draw every curve on one log-log panel and write the PNG to `path`."""
    fig = Figure(figsize=(7.5, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    largest = max((float(c.points["size"].max()) for c in curves if len(c.points)), default=1.0)
    for i, curve in enumerate(curves):
        _draw(ax, curve, colors[i % len(colors)], largest * extrapolate_factor)
    ax.set_xscale("log")
    ax.set_yscale("log")
    metrics = sorted({c.metric for c in curves})
    ax.set_xlabel("training-set size D (rows)")
    ax.set_ylabel("error on the real test split (" + ", ".join(metrics) + ")")
    ax.set_title(title or "rectified scaling law  L(D) = B / (D_l + D^beta) + E")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)
    return path
