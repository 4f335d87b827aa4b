"""PNG plots of a run: predicted vs true, best-so-far curves, weak-label correlations.

Each plot is its own :class:`matplotlib.figure.Figure` drawn by an Agg canvas
(``FigureCanvasAgg``): works on headless machines and leaves the process alone (pyplot's global
backend, figure registry and rcParams are never touched).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def _figure(figsize: tuple[float, float], dpi: int = 120):
    """A fresh figure with its own Agg canvas (not registered with pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def scatter_predicted_vs_true(
    path: str | os.PathLike, predicted: Sequence[float], true: Sequence[float], *,
    top_k: int = 5, title: str = "predictor score vs measured accuracy",
    xlabel: str = "predicted score", ylabel: str = "measured accuracy",
) -> None:
    """Scatter of predictor scores against true values; the true top-k are highlighted."""
    p, t = np.asarray(predicted, float), np.asarray(true, float)
    top = np.argsort(-t)[: min(top_k, len(t))]
    fig, ax = _figure((5, 4))
    ax.scatter(p, t, s=14, alpha=0.6, label="architectures")
    ax.scatter(p[top], t[top], s=40, facecolors="none", edgecolors="red", label=f"true top-{len(top)}")
    if len(p) > 2:
        from scipy.stats import spearmanr  # here, not at import: scipy.stats costs seconds

        rho = spearmanr(p, t).statistic
        title = f"{title}\nSpearman {rho:.3f}"
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def best_so_far_curves(
    path: str | os.PathLike, curves: Mapping[str, Sequence[float]], *,
    ylabel: str = "best accuracy so far", title: str = "search progress",
) -> None:
    """One line per method: best value found after each query."""
    fig, ax = _figure((5, 4))
    for name, curve in curves.items():
        c = np.asarray(curve, float)
        ax.plot(np.arange(1, len(c) + 1), c, marker="o", ms=3, label=name)
    ax.set(xlabel="queries (real trainings)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def correlation_heatmap(
    path: str | os.PathLike, columns: Mapping[str, Sequence[float]], *,
    title: str = "Spearman correlation of weak labels",
) -> np.ndarray:
    """Heatmap of pairwise Spearman correlations (rows with a non-finite value are skipped
    pairwise). Returns the matrix."""
    from scipy.stats import spearmanr  # here, not at import: scipy.stats costs seconds

    names = list(columns)
    data = [np.asarray(columns[n], float) for n in names]
    m = np.full((len(names), len(names)), np.nan)
    for i in range(len(names)):
        for j in range(len(names)):
            ok = np.isfinite(data[i]) & np.isfinite(data[j])
            if ok.sum() > 2 and np.ptp(data[i][ok]) > 0 and np.ptp(data[j][ok]) > 0:
                m[i, j] = spearmanr(data[i][ok], data[j][ok]).statistic
    fig, ax = _figure((1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(m, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return m
