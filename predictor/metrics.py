"""Ranking-quality metrics of a predictor: ``y_true`` = real accuracy, ``y_pred`` = scores,
higher = better for both. Library implementations where they exist (scipy, sklearn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import ndcg_score

from nasrank.errors import NasrankError

from .losses import acenas_relevance


def _pair(y_true: Sequence[float], y_pred: Sequence[float], min_len: int = 1):
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise NasrankError(f"y_true has {t.size} values and y_pred {p.size}; expected equal lengths")
    if t.size < min_len:
        raise NasrankError(f"metric needs at least {min_len} values, got {t.size}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a))
            raise NasrankError(f"{name} has non-finite values at positions {bad[:5].tolist()}")
    return t, p


def _resolve_k(k: int | float, n: int) -> int:
    """An int k >= 1 as is (capped at n); a float in (0, 1) as that share of n (at least 1)."""
    if isinstance(k, bool):
        raise NasrankError(f"k must be an int >= 1 or a fraction in (0, 1), got {k!r}")
    if isinstance(k, (int, np.integer)):
        if k < 1:
            raise NasrankError(f"k must be >= 1, got {k}")
        return min(int(k), n)
    if isinstance(k, float) and 0.0 < k < 1.0:
        return max(1, int(round(k * n)))
    raise NasrankError(f"k must be an int >= 1 or a fraction in (0, 1), got {k!r}")


def kendall_tau(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``)."""
    t, p = _pair(y_true, y_pred, 2)
    return float(stats.kendalltau(t, p).statistic)


def spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``)."""
    t, p = _pair(y_true, y_pred, 2)
    return float(stats.spearmanr(t, p).statistic)


NDCG_GAINS: tuple[str, ...] = ("exp", "lin")


def ndcg_at_k(y_true: Sequence[float], y_pred: Sequence[float], k: int | float = 10, *,
              gain: str = "exp") -> float:
    """NDCG@k with AceNAS relevance (``y_true`` clipped to [20th percentile, max], scaled to
    [0, 20]) and discount ``1 / log2(1 + position)``, via ``sklearn.metrics.ndcg_score`` (ties
    in ``y_pred`` averaged).

    ``gain="exp"`` (default): gain ``2^rel - 1``, what AceNAS's LambdaRank loss optimises (and
    :func:`~nasrank.predictor.losses.lambdarank_loss` here), so the metric measures what the
    loss trains for; it is passed to sklearn as transformed relevance. ``gain="lin"``: gain
    ``rel`` (sklearn's own), what this function computed before issue 18; it weighs the lower
    ranks far more than the exponential gain does.
    """
    if gain not in NDCG_GAINS:
        raise NasrankError(f"NDCG gain {gain!r} is unknown; expected one of {NDCG_GAINS}")
    t, p = _pair(y_true, y_pred, 2)
    kk = _resolve_k(k, t.size)
    rel = acenas_relevance(t)
    gains = np.exp2(rel) - 1.0 if gain == "exp" else rel
    return float(ndcg_score(gains[None, :], p[None, :], k=kk))


def ndcg_exp_at_k(y_true: Sequence[float], y_pred: Sequence[float], k: int | float = 10
                  ) -> float:
    """:func:`ndcg_at_k` with the exponential gain ``2^rel - 1`` (AceNAS)."""
    return ndcg_at_k(y_true, y_pred, k, gain="exp")


def ndcg_lin_at_k(y_true: Sequence[float], y_pred: Sequence[float], k: int | float = 10
                  ) -> float:
    """:func:`ndcg_at_k` with the linear gain ``rel``."""
    return ndcg_at_k(y_true, y_pred, k, gain="lin")


def precision_at_k(y_true: Sequence[float], y_pred: Sequence[float], k: int | float) -> float:
    """Share of the true top-k found in the predicted top-k (k an int, or a fraction of n).
    Ties are broken by position (stable sort), for both rankings."""
    t, p = _pair(y_true, y_pred)
    kk = _resolve_k(k, t.size)
    top_true = set(np.argsort(-t, kind="stable")[:kk].tolist())
    top_pred = set(np.argsort(-p, kind="stable")[:kk].tolist())
    return len(top_true & top_pred) / kk


def top_k_regret(y_true: Sequence[float], y_pred: Sequence[float], k: int | float = 1) -> float:
    """Best true value overall minus the best true value among the predicted top-k (>= 0)."""
    t, p = _pair(y_true, y_pred)
    kk = _resolve_k(k, t.size)
    chosen = np.argsort(-p, kind="stable")[:kk]
    return float(t.max() - t[chosen].max())


def summary(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """The benchmark's metric set: Kendall tau, Spearman, NDCG@10 with the exponential
    (``ndcg_exp@10``, AceNAS's) and the linear gain (``ndcg_lin@10``), precision@1%, top-10
    regret."""
    return {
        "kendall_tau": kendall_tau(y_true, y_pred),
        "spearman": spearman(y_true, y_pred),
        "ndcg_exp@10": ndcg_exp_at_k(y_true, y_pred, 10),
        "ndcg_lin@10": ndcg_lin_at_k(y_true, y_pred, 10),
        "precision@1%": precision_at_k(y_true, y_pred, 0.01),
        "regret@10": top_k_regret(y_true, y_pred, 10),
    }
