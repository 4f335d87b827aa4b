"""Search: oracles (benchmark lookup or real training), iterative sampling, regularized evolution
(plain and surrogate-assisted), baselines, Optuna loops, run records (see docs/architecture.md)."""

from __future__ import annotations

from nasrank.lazy import lazy_exports

# Exports are imported on first use (PEP 562), so that `nasrank --help`, which imports this
# package, does not import torch, optuna and PyG.
_EXPORTS = {
    "greedy_by_proxy": "baselines", "random_search": "baselines",
    "regularized_evolution": "evolution", "surrogate_evolution": "evolution",
    "iterative_sampling": "iterative",
    "PredictorSampler": "optuna_search", "optuna_sampler_search": "optuna_search",
    "run_optuna_search": "optuna_search",
    "BenchmarkOracle": "oracles", "BudgetedOracle": "oracles", "BudgetExhausted": "oracles",
    "Evaluation": "oracles", "Oracle": "oracles", "TrainingOracle": "oracles",
    "Query": "records", "RecordError": "records", "RunRecord": "records",
    "SearchResult": "records", "read_record": "records",
    "ForestSurrogate": "surrogates", "forest_factory": "surrogates",
    "ranking_predictor_factory": "surrogates",
}


__getattr__ = lazy_exports(globals(), _EXPORTS)


__all__ = [
    "BenchmarkOracle", "TrainingOracle", "BudgetedOracle", "BudgetExhausted", "Evaluation",
    "Oracle", "Query", "RecordError", "RunRecord", "SearchResult", "read_record",
    "random_search", "greedy_by_proxy", "regularized_evolution", "surrogate_evolution",
    "iterative_sampling", "PredictorSampler", "run_optuna_search", "optuna_sampler_search",
    "ForestSurrogate", "forest_factory", "ranking_predictor_factory",
]
