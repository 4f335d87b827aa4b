"""Search: oracles (benchmark lookup or real training), iterative sampling, regularized evolution
(plain and surrogate-assisted), baselines, Optuna loops, run records (see DESIGN.md)."""

from __future__ import annotations

from .baselines import greedy_by_proxy, random_search
from .evolution import regularized_evolution, surrogate_evolution
from .iterative import iterative_sampling
from .optuna_search import PredictorSampler, optuna_sampler_search, run_optuna_search
from .oracles import (
    BenchmarkOracle,
    BudgetedOracle,
    BudgetExhausted,
    Evaluation,
    Oracle,
    TrainingOracle,
)
from .records import Query, RecordError, RunRecord, SearchResult, read_record
from .surrogates import ForestSurrogate, forest_factory, ranking_predictor_factory

__all__ = [
    "BenchmarkOracle", "TrainingOracle", "BudgetedOracle", "BudgetExhausted", "Evaluation",
    "Oracle", "Query", "RecordError", "RunRecord", "SearchResult", "read_record",
    "random_search", "greedy_by_proxy", "regularized_evolution", "surrogate_evolution",
    "iterative_sampling", "PredictorSampler", "run_optuna_search", "optuna_sampler_search",
    "ForestSurrogate", "forest_factory", "ranking_predictor_factory",
]
