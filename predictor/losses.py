"""Ranking losses over ``[batch, list]`` score tensors with an optional padding mask.

Every loss takes ``scores`` (model outputs, higher = better), ``relevance`` / ``targets`` of the
same shape (higher = better) and ``mask`` (``True`` = a real entry, ``False`` = padding), and
returns a scalar tensor; nothing here calls ``backward()``. Pairs and list entries that touch
padding are ignored. Lists are averaged over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from nasrank.errors import NasrankError

LOSS_NAMES = ("lambdarank", "ranknet", "margin", "mse")


def acenas_relevance(y: np.ndarray | torch.Tensor, *, low_quantile: float = 0.2,
                     scale: float = 20.0):
    """AceNAS relevance: accuracy clipped to [``low_quantile`` quantile, max], mapped to
    [0, ``scale``]. All entries equal -> all relevance 0. Works on numpy arrays and tensors."""
    if isinstance(y, torch.Tensor):
        lo = torch.quantile(y.double(), low_quantile).to(y.dtype)
        hi = y.max()
        if hi <= lo:
            return torch.zeros_like(y)
        return (y.clamp(min=lo) - lo) / (hi - lo) * scale
    arr = np.asarray(y, dtype=np.float64)
    if arr.size == 0:
        raise NasrankError("acenas_relevance got an empty array; expected >= 1 value")
    if not np.all(np.isfinite(arr)):
        raise NasrankError(f"acenas_relevance got non-finite values: {arr[~np.isfinite(arr)][:5]}")
    lo, hi = np.quantile(arr, low_quantile), arr.max()
    if hi <= lo:
        return np.zeros_like(arr)
    return (np.clip(arr, lo, hi) - lo) / (hi - lo) * scale


def _prepare(scores: torch.Tensor, rel: torch.Tensor, mask: torch.Tensor | None):
    if scores.dim() == 1:
        scores, rel = scores.unsqueeze(0), rel.unsqueeze(0)
        mask = mask.unsqueeze(0) if mask is not None else None
    if scores.shape != rel.shape:
        raise NasrankError(
            f"scores shape {tuple(scores.shape)} and relevance shape {tuple(rel.shape)} differ; "
            "expected both [batch, list]"
        )
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    elif mask.shape != scores.shape:
        raise NasrankError(f"mask shape {tuple(mask.shape)} differs from scores {tuple(scores.shape)}")
    return scores, rel.to(scores.dtype), mask.bool()


def _pair_mask(rel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, L, L]``: True where i and j are real and rel_i > rel_j (each pair counted once)."""
    real = mask[:, :, None] & mask[:, None, :]
    return real & (rel[:, :, None] > rel[:, None, :])


#: NDCG gains of LambdaRank: ``exp`` is ``2^rel - 1`` (AceNAS, Burges), ``linear`` is ``rel``.
LAMBDARANK_GAINS = ("exp", "linear")


def check_mu(mu: Any) -> float:
    """``mu`` of :func:`lambdarank_loss` as a float; refuses a bool, a non-number, NaN, inf or
    a negative value, naming it."""
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu) \
            or mu < 0:
        raise NasrankError(f"mu must be a finite float >= 0 (LambdaLoss's NDCG-Loss2 weight), "
                           f"got {mu!r}")
    return float(mu)


def lambdarank_loss(scores: torch.Tensor, relevance: torch.Tensor,
                    mask: torch.Tensor | None = None, *, sigma: float = 1.0,
                    gain: str = "exp", mu: float = 0.0) -> torch.Tensor:
    """LambdaRank (NDCG-weighted pairwise logistic loss, Burges 2010; allRank's lambdaLoss with
    the ``lambdaRank_scheme``).

    For each pair with rel_i > rel_j: ``|delta NDCG_ij| * log2(1 + exp(-sigma (s_i - s_j)))``,
    where delta NDCG is the change of NDCG when i and j swap places in the ranking by the current
    scores (gain ``2^rel - 1``, or ``rel`` with ``gain="linear"``; discount
    ``1/log2(1 + position)``), and the ideal DCG sorts relevance in DESCENDING order. The
    weights are constants (no gradient through the sort). Summed over pairs, averaged over lists.
    With AceNAS's relevance (0-20) the exponential gain puts nearly all weight on the top few
    architectures of a list; the linear gain spreads it over the whole order.

    ``mu > 0`` adds NDCG-Loss2's term (LambdaLoss, Wang et al. CIKM 2018; "NDCG-Loss2++" with
    weight ``mu``): each pair's weight grows by ``mu * |G_i - G_j| * |1/D(d) - 1/D(d + 1)|``,
    with ``d = |p_i - p_j|`` the pair's distance in the current ranking and ``D(k) = log2(1 +
    k)``. That term does not depend on where in the list the pair sits, so it also orders the
    lower part of the list, which plain LambdaRank nearly ignores; Kendall tau counts those
    pairs as much as the top ones (BENCHMARKS.md, issue 15).
    """
    if gain not in LAMBDARANK_GAINS:
        raise ValueError(f"gain must be one of {LAMBDARANK_GAINS}, got {gain!r}")
    mu = check_mu(mu)
    scores, rel, mask = _prepare(scores, relevance, mask)
    B, L = scores.shape
    with torch.no_grad():
        # positions (1-based) in the ranking by current scores; padding sorted last.
        order = scores.masked_fill(~mask, float("-inf")).argsort(dim=1, descending=True)
        pos = torch.empty_like(order)
        pos.scatter_(1, order, torch.arange(1, L + 1, device=scores.device).expand(B, L))
        disc = 1.0 / torch.log2(pos.to(scores.dtype) + 1.0)
        gains = torch.where(mask, torch.pow(2.0, rel) - 1.0 if gain == "exp" else rel,
                            torch.zeros_like(rel))
        ideal = gains.sort(dim=1, descending=True).values
        ideal_disc = 1.0 / torch.log2(torch.arange(2, L + 2, device=scores.device,
                                                   dtype=scores.dtype))
        idcg = (ideal * ideal_disc).sum(dim=1, keepdim=True).clamp(min=1e-12)
        g = gains / idcg
        dg = (g[:, :, None] - g[:, None, :]).abs()
        weights = dg * (disc[:, :, None] - disc[:, None, :]).abs()
        if mu:
            posf = pos.to(scores.dtype)
            dist = (posf[:, :, None] - posf[:, None, :]).abs()
            # the diagonal (d = 0) is never a pair; clamp keeps its 1/log2(1) finite
            delta = 1.0 / torch.log2(dist + 1.0).clamp(min=1.0) - 1.0 / torch.log2(dist + 2.0)
            weights = weights + mu * dg * delta
        pairs = _pair_mask(rel, mask)
    diff = scores[:, :, None] - scores[:, None, :]
    pair_loss = nn.functional.softplus(-sigma * diff) / math.log(2.0)
    return (pair_loss * weights * pairs).sum(dim=(1, 2)).mean()


def ranknet_per_list(scores: torch.Tensor, relevance: torch.Tensor,
                     mask: torch.Tensor | None = None, *, sigma: float = 1.0,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """RankNet's mean logistic loss ``log(1 + exp(-sigma (s_i - s_j)))`` over the pairs with
    rel_i > rel_j of each list (``[lists, items]``; 0 for a list without such a pair), and each
    list's pair count."""
    scores, rel, mask = _prepare(scores, relevance, mask)
    pairs = _pair_mask(rel, mask)
    diff = scores[:, :, None] - scores[:, None, :]
    per_pair = nn.functional.softplus(-sigma * diff)
    counts = pairs.sum(dim=(1, 2))
    return (per_pair * pairs).sum(dim=(1, 2)) / counts.clamp(min=1), counts


def ranknet_loss(scores: torch.Tensor, relevance: torch.Tensor,
                 mask: torch.Tensor | None = None, *, sigma: float = 1.0) -> torch.Tensor:
    """RankNet: mean logistic loss ``log(1 + exp(-sigma (s_i - s_j)))`` over pairs with
    rel_i > rel_j (Burges et al. 2005), then mean over lists that have pairs."""
    per_list, counts = ranknet_per_list(scores, relevance, mask, sigma=sigma)
    has = counts > 0
    if not bool(has.any()):
        return (scores * 0.0).sum()
    return per_list[has].mean()


def margin_ranking_loss(scores: torch.Tensor, relevance: torch.Tensor,
                        mask: torch.Tensor | None = None, *, margin: float | str = 0.1,
                        ) -> torch.Tensor:
    """Pairwise hinge ``max(0, margin - (s_i - s_j))`` over pairs with rel_i > rel_j, via
    ``torch.nn.MarginRankingLoss``. ``margin="gap"`` uses each pair's label gap
    ``rel_i - rel_j`` as its margin (shifting the input by the gap is the same hinge).
    Mean over pairs of each list, then over lists that have pairs."""
    scores, rel, mask = _prepare(scores, relevance, mask)
    pairs = _pair_mask(rel, mask)
    b, i, j = pairs.nonzero(as_tuple=True)
    if b.numel() == 0:
        return (scores * 0.0).sum()
    s_i, s_j = scores[b, i], scores[b, j]
    target = torch.ones_like(s_i)
    if margin == "gap":
        gap = (rel[b, i] - rel[b, j]).detach()
        per_pair = nn.MarginRankingLoss(margin=0.0, reduction="none")(s_i - gap, s_j, target)
    elif isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin >= 0:
        per_pair = nn.MarginRankingLoss(margin=float(margin), reduction="none")(s_i, s_j, target)
    else:
        raise NasrankError(f"margin must be a float >= 0 or 'gap', got {margin!r}")
    # mean per list, then over lists (a long list must not dominate the batch)
    sums = torch.zeros(scores.shape[0], dtype=scores.dtype, device=scores.device)
    sums = sums.index_add(0, b, per_pair)
    counts = torch.bincount(b, minlength=scores.shape[0])
    has = counts > 0
    return (sums[has] / counts[has]).mean()


def mse_loss(scores: torch.Tensor, targets: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the real entries (regression baseline)."""
    scores, targets, mask = _prepare(scores, targets, mask)
    n = mask.sum()
    if int(n) == 0:
        return (scores * 0.0).sum()
    return (((scores - targets) ** 2) * mask).sum() / n


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "lambdarank": lambdarank_loss,
    "ranknet": ranknet_loss,
    "margin": margin_ranking_loss,
    "mse": mse_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function called ``name`` (one of :data:`LOSS_NAMES`)."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise NasrankError(f"unknown loss {name!r}; expected one of {list(LOSS_NAMES)}") from None


# ----------------------------------------------------------------------------- registry entries
# The RANKING_LOSSES entries live in the torch-free ``loss_configs`` module (the CLI lists them
# without importing torch); their names stay importable from here.
from .loss_configs import (  # noqa: E402, F401
    LambdaRankConfig,
    MarginConfig,
    MSEConfig,
    RankNetConfig,
    _LossConfig,
)
