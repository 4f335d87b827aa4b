"""The :data:`~nasrank.predictor.registry.RANKING_LOSSES` entries: one config per ranking loss.

Torch-free (issue 19): the registry's loader imports only this module, so ``nasrank finetune
--help`` lists the losses and their options without importing torch; ``build()`` imports the loss
functions of :mod:`nasrank.predictor.losses` when called. The names stay importable from
``nasrank.predictor.losses`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasrank.predictor.registry import RANKING_LOSSES
from nasrank.registry import Config, option


@dataclass(frozen=True)
class _LossConfig(Config):
    def build(self) -> Callable[..., Any]:
        """``loss(scores, targets, mask=None) -> scalar``."""
        from .losses import LOSSES

        return LOSSES[self.name]

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``RankingPredictor.fit`` that select this loss."""
        return {"loss": self.name}


@RANKING_LOSSES.register("lambdarank")
@dataclass(frozen=True)
class LambdaRankConfig(_LossConfig):
    """LambdaRank: pairwise logistic loss weighted by |delta NDCG| (rewards the top)."""

    gain: str = option("exp", "NDCG gain: exp (2^rel - 1, AceNAS) or linear (rel; weighs the "
                       "whole order)", choices=("exp", "linear"))
    mu: float = option(0.0, "weight of LambdaLoss's NDCG-Loss2 term (NDCG-Loss2++; 0 = plain "
                       "LambdaRank): also orders pairs below the top of each list", low=0.0)

    def build(self) -> Callable[..., Any]:
        import functools

        from .losses import lambdarank_loss

        return functools.partial(lambdarank_loss, gain=self.gain, mu=self.mu)

    def fit_kwargs(self) -> dict[str, Any]:
        return {"loss": "lambdarank", "gain": self.gain, "mu": self.mu}


@RANKING_LOSSES.register("ranknet")
@dataclass(frozen=True)
class RankNetConfig(_LossConfig):
    """RankNet: pairwise logistic loss over every ordered pair."""


@RANKING_LOSSES.register("margin")
@dataclass(frozen=True)
class MarginConfig(_LossConfig):
    """Pairwise hinge max(0, margin - (s_i - s_j)) (torch MarginRankingLoss)."""

    margin: float = option(0.1, "hinge margin", low=0.0)

    def build(self) -> Callable[..., Any]:
        import functools

        from .losses import margin_ranking_loss

        return functools.partial(margin_ranking_loss, margin=self.margin)

    def fit_kwargs(self) -> dict[str, Any]:
        return {"loss": "margin", "margin": self.margin}


@RANKING_LOSSES.register("mse")
@dataclass(frozen=True)
class MSEConfig(_LossConfig):
    """Mean squared error (regression baseline)."""


__all__ = ["LambdaRankConfig", "RankNetConfig", "MarginConfig", "MSEConfig"]
