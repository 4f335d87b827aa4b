"""Ranking predictor: DGCNN (or GIN, a graph transformer) graph encoder, weak-label pretraining,
ranking-loss fine-tuning, metrics and checkpoints (see docs/architecture.md)."""

from __future__ import annotations

from nasrank.lazy import lazy_exports

# Exports are imported on first use (PEP 562), so that importing a light module of this package
# (the RANKING_LOSSES registry and its configs, for `nasrank finetune --help`) does not import
# torch and PyG.
_EXPORTS = {
    "DGCNNEncoder": "encoder", "DirectedGCNLayer": "encoder", "PredictorNet": "encoder",
    "GINEncoder": "encoder", "DirectedGINLayer": "encoder", "ENCODERS": "encoder",
    "TransformerEncoder": "encoder", "DirectedTransformerLayer": "encoder",
    "LOSS_NAMES": "losses", "acenas_relevance": "losses", "get_loss": "losses",
    "lambdarank_loss": "losses", "margin_ranking_loss": "losses", "mse_loss": "losses",
    "ranknet_loss": "losses",
    "kendall_tau": "metrics", "ndcg_at_k": "metrics", "ndcg_exp_at_k": "metrics",
    "ndcg_lin_at_k": "metrics", "precision_at_k": "metrics", "spearman": "metrics",
    "summary": "metrics", "top_k_regret": "metrics",
    "PRETRAINED_FINETUNE_LR": "model", "RankingPredictor": "model",
    "PretrainingEnsemble": "pretraining_ensemble",
}


__getattr__ = lazy_exports(globals(), _EXPORTS)


__all__ = [
    "RankingPredictor", "PretrainingEnsemble", "PRETRAINED_FINETUNE_LR", "DGCNNEncoder", "DirectedGCNLayer", "PredictorNet",
    "GINEncoder", "DirectedGINLayer", "ENCODERS", "TransformerEncoder", "DirectedTransformerLayer",
    "LOSS_NAMES", "acenas_relevance", "get_loss", "lambdarank_loss", "ranknet_loss",
    "margin_ranking_loss", "mse_loss",
    "kendall_tau", "spearman", "ndcg_at_k", "ndcg_exp_at_k", "ndcg_lin_at_k", "precision_at_k",
    "top_k_regret", "summary",
]
