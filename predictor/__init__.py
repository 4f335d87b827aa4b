"""Ranking predictor: DGCNN graph encoder, weak-label pretraining, ranking-loss fine-tuning,
metrics and checkpoints (see docs/architecture.md)."""

from __future__ import annotations

from .encoder import DGCNNEncoder, DirectedGCNLayer, PredictorNet
from .losses import (
    LOSS_NAMES,
    acenas_relevance,
    get_loss,
    lambdarank_loss,
    margin_ranking_loss,
    mse_loss,
    ranknet_loss,
)
from .metrics import (
    kendall_tau,
    ndcg_at_k,
    ndcg_exp_at_k,
    ndcg_lin_at_k,
    precision_at_k,
    spearman,
    summary,
    top_k_regret,
)
from .model import PRETRAINED_FINETUNE_LR, RankingPredictor

__all__ = [
    "RankingPredictor", "PRETRAINED_FINETUNE_LR", "DGCNNEncoder", "DirectedGCNLayer", "PredictorNet",
    "LOSS_NAMES", "acenas_relevance", "get_loss", "lambdarank_loss", "ranknet_loss",
    "margin_ranking_loss", "mse_loss",
    "kendall_tau", "spearman", "ndcg_at_k", "ndcg_exp_at_k", "ndcg_lin_at_k", "precision_at_k",
    "top_k_regret", "summary",
]
