"""The registered search methods: one config per search loop, its tunable fields its options.

``SEARCH_METHODS.make("re", {"population_size": 30}).build(space=sp, labels=table,
predictor_factory=f)`` returns ``search(oracle=..., budget=..., seed=..., record=...)``. The
inputs every method may need are handed to ``build``; each method takes what it uses
(``labels`` for greedy, ``predictor_factory`` for the surrogate-guided ones).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nasrank.errors import ConfigError, NasrankError
from nasrank.registry import Config, option

from .registry import SEARCH_METHODS

SearchFn = Callable[..., Any]  # (oracle=, budget=, seed=, record=) -> SearchResult

__all__ = ["SearchMethodConfig"]


@dataclass(frozen=True)
class SearchMethodConfig(Config):
    """Base of the search-method configs."""

    #: whether the method fits a surrogate (the caller then passes ``predictor_factory``)
    uses_predictor: ClassVar[bool] = False

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        raise NotImplementedError

    def check_budget(self, budget: int) -> None:
        """Refuse a ``budget`` this method cannot spend, before any work (default: any)."""

    def _need(self, what: str, value: Any) -> Any:
        if value is None:
            raise ConfigError(f"search method {self.name!r} needs {what}")
        return value


def _bind(fn: SearchFn, **kw: Any) -> SearchFn:
    @functools.wraps(fn)
    def search(*, oracle: Any, budget: int, seed: int,
               record: str | os.PathLike | None = None) -> Any:
        return fn(oracle=oracle, budget=budget, seed=seed, record=record, **kw)

    return search


@SEARCH_METHODS.register("iterative")
@dataclass(frozen=True)
class IterativeConfig(SearchMethodConfig):
    """AceNAS iterative sampling: rounds of predictor-ranked picks, refitted every round."""

    uses_predictor: ClassVar[bool] = True
    rounds: int = option(4, "rounds of queries before the final top-k", low=1)
    alpha: float = option(0.5, "share of each round taken from the predicted top", low=0.0,
                          high=1.0)
    final_k: int | None = option(None, "queries of the last, purely predicted round "
                                 "(default: budget // 10, at least 1)", low=0)
    pool_size: int = option(100_000, "candidate pool ranked by the predictor", low=1)
    first_round: str = option("random", "how the first round is picked",
                              choices=("random", "predicted"))

    def check_budget(self, budget: int) -> None:
        from .iterative import check_first_fit

        final_k = max(1, budget // 10) if self.final_k is None else self.final_k
        try:
            check_first_fit(budget, self.rounds, final_k)
        except NasrankError as err:
            raise ConfigError(f"--method iterative: {err}") from None

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        from .iterative import iterative_sampling

        return _bind(iterative_sampling, space=space,
                     predictor_factory=self._need("a predictor", predictor_factory),
                     rounds=self.rounds, alpha=self.alpha, final_k=self.final_k,
                     pool_size=self.pool_size, first_round=self.first_round,
                     fit_kwargs=fit_kwargs)


@dataclass(frozen=True)
class _Tournament(SearchMethodConfig):
    population_size: int = option(20, "population of the evolution", low=1)
    sample_size: int = option(5, "tournament size (at most the population)", low=1)
    crossover_prob: float = option(0.0, "probability that a child is the crossover of two "
                                   "tournament winners (then mutated); 0 = mutation only",
                                   low=0.0, high=1.0)

    def check(self) -> None:
        if self.sample_size > self.population_size:
            raise ConfigError(f"search method {self.name!r}: sample_size {self.sample_size} "
                              f"exceeds population_size {self.population_size}")


@SEARCH_METHODS.register("re")
@dataclass(frozen=True)
class EvolutionConfig(_Tournament):
    """Regularized evolution (Real et al. 2019): tournament selection, oldest dies."""

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        from .evolution import regularized_evolution

        return _bind(regularized_evolution, space=space, population_size=self.population_size,
                     sample_size=self.sample_size, crossover_prob=self.crossover_prob)


@SEARCH_METHODS.register("surrogate-re")
@dataclass(frozen=True)
class SurrogateEvolutionConfig(_Tournament):
    """Regularized evolution whose children are screened by the predictor."""

    uses_predictor: ClassVar[bool] = True
    n_init: int = option(10, "random queries before the first fit (a ranking needs 2)", low=2)
    n_children: int = option(100, "mutated children scored per query", low=1)
    queries_per_fit: int = option(1, "queries between two fits", low=1)

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        from .evolution import surrogate_evolution

        return _bind(surrogate_evolution, space=space,
                     predictor_factory=self._need("a predictor", predictor_factory),
                     population_size=self.population_size, sample_size=self.sample_size,
                     n_init=self.n_init, n_children=self.n_children,
                     queries_per_fit=self.queries_per_fit, fit_kwargs=fit_kwargs,
                     crossover_prob=self.crossover_prob)


@SEARCH_METHODS.register("random")
@dataclass(frozen=True)
class RandomConfig(SearchMethodConfig):
    """Random search: distinct uniformly sampled architectures (the baseline)."""

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        from .baselines import random_search

        return _bind(random_search, space=space)


@SEARCH_METHODS.register("greedy")
@dataclass(frozen=True)
class GreedyConfig(SearchMethodConfig):
    """Greedy by one weak-label column: query the best-scored architectures first."""

    proxy: str = option("zc_jacov", "label column ranking the architectures (higher = better)")

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None) -> SearchFn:
        from .baselines import greedy_by_proxy

        return _bind(greedy_by_proxy, space=space, labels=self._need("a label table", labels),
                     column=self.proxy)


@SEARCH_METHODS.register("optuna")
@dataclass(frozen=True)
class OptunaConfig(SearchMethodConfig):
    """An Optuna study driven by the predictor sampler (in memory, or shared by workers through
    ``storage``; see run_optuna_search)."""

    uses_predictor: ClassVar[bool] = True
    n_startup_trials: int = option(10, "random trials before the predictor proposes (its "
                                       "first fit ranks them: at least 2)", low=2)
    fit_every: int = option(1, "completed trials between two fits", low=1)
    pool_size: int = option(100_000, "candidate pool ranked by the predictor", low=1)

    def build(self, *, space: Any, labels: Any = None, predictor_factory: Any = None,
              fit_kwargs: Mapping[str, Any] | None = None, storage: str | None = None,
              study_name: str | None = None, worker: str = "0") -> SearchFn:
        """``storage`` (an Optuna storage URL) makes this one worker of a shared study."""
        from .optuna_search import optuna_sampler_search, run_optuna_search

        kw = dict(space=space, predictor_factory=predictor_factory,
                  n_startup_trials=self.n_startup_trials, fit_every=self.fit_every,
                  pool_size=self.pool_size, fit_kwargs=fit_kwargs)
        if storage is None:
            return _bind(optuna_sampler_search, **kw)
        return _bind(run_optuna_search, storage=storage, worker=worker,
                     study_name=self._need("a study name", study_name), **kw)
