"""Regularized evolution (Real et al., AAAI 2019), plain and surrogate-assisted (NPENAS style).

Plain: a fixed-size population; each step a tournament of ``sample_size`` random members picks a
parent, its mutation is queried and joins the population, and the *oldest* member leaves.

Surrogate-assisted (Wei et al., NPENAS, 2022): after ``n_init`` random queries, each step fits the
surrogate on everything queried so far, makes ``n_children`` mutations of tournament-picked
parents, and queries only the ``queries_per_fit`` children the surrogate ranks best.

Both dedup by canonical key: a child that was already queried is mutated again (a few tries,
then replaced by a random unqueried arch), so every query spends budget on a new function.

Crossover (``crossover_prob = p``, both loops): with probability ``p`` a child starts as
``space.crossover(a, b)`` of two tournament winners ``a``, ``b`` (independent tournaments) and is
then mutated as usual; otherwise it is a mutation of one winner. ``p = 0`` (default) draws no
extra random numbers, so it reproduces the mutation-only runs exactly.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasrank.spaces.base import Arch, SearchSpace
from nasrank.errors import NasrankError

from .baselines import check_seed, check_space
from .oracles import BudgetedOracle, Oracle, _check_budget
from .records import SearchResult
from .surrogates import SurrogateFactory, describe_factory, make_surrogate


@dataclass(frozen=True)
class Individual:
    arch: Arch
    key: str
    value: float


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NasrankError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_tournament(population_size: int, sample_size: int) -> None:
    _positive("population_size", population_size)
    _positive("sample_size", sample_size)
    if sample_size > population_size:
        raise NasrankError(
            f"sample_size ({sample_size}) must not exceed population_size ({population_size})")


def _random_unseen(space: SearchSpace, bo: BudgetedOracle, rng: np.random.Generator,
                   exclude: set[str] = frozenset()) -> Arch:
    for _ in range(20_000):
        arch = space.sample(rng)
        k = space.key(arch)
        if not bo.seen_key(k) and k not in exclude:
            return arch
    raise NasrankError(f"could not find an unqueried arch in space {space.name!r}")


def _new_child(space: SearchSpace, parent: Arch, bo: BudgetedOracle,
               rng: np.random.Generator, exclude: set[str] = frozenset(),
               tries: int = 20) -> Arch:
    """A mutation of ``parent`` whose key is neither queried nor in ``exclude``."""
    for _ in range(tries):
        child = space.mutate(parent, rng)
        k = space.key(child)
        if not bo.seen_key(k) and k not in exclude:
            return child
    return _random_unseen(space, bo, rng, exclude)


def _tournament(pop: deque[Individual], sample_size: int,
                rng: np.random.Generator) -> Individual:
    idx = rng.choice(len(pop), size=min(sample_size, len(pop)), replace=False)
    return max((pop[int(i)] for i in sorted(idx)), key=lambda ind: ind.value)


def _check_crossover_prob(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise NasrankError(f"crossover_prob must be a probability in [0, 1], got {value!r}")
    return float(value)


def _child(space: SearchSpace, pop: deque[Individual], sample_size: int, bo: BudgetedOracle,
           rng: np.random.Generator, crossover_prob: float,
           exclude: set[str] = frozenset()) -> Arch:
    """A new child: mutation of a tournament winner, or (probability ``crossover_prob``) of the
    crossover of two winners. No random draw for the coin when ``crossover_prob == 0``."""
    parent = _tournament(pop, sample_size, rng)
    base = parent.arch
    if crossover_prob > 0.0 and rng.random() < crossover_prob:
        other = _tournament(pop, sample_size, rng)
        base = space.crossover(parent.arch, other.arch, rng)
    return _new_child(space, base, bo, rng, exclude)


def _query(bo: BudgetedOracle, arch: Arch) -> Individual:
    q = bo.query_full(arch)
    return Individual(arch, q.key, q.value)


def regularized_evolution(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int,
    population_size: int = 20, sample_size: int = 5, crossover_prob: float = 0.0,
    record: str | os.PathLike | None = None,
) -> SearchResult:
    """Plain regularized evolution for ``budget`` unique queries (the first
    ``population_size`` are random); ``crossover_prob``: see the module docstring."""
    check_space(space, oracle)
    _check_tournament(population_size, sample_size)
    crossover_prob = _check_crossover_prob(crossover_prob)
    if budget <= population_size:  # every query fills the random initial population
        logging.getLogger(__name__).warning(
            "regularized evolution: budget %d <= population_size %d, so no child is ever bred "
            "(this is random search); lower population_size (--method.population-size) or raise "
            "the budget", budget, population_size)
    config = {"method": "regularized_evolution", "seed": check_seed(seed),
              "population_size": population_size, "sample_size": sample_size}
    if crossover_prob > 0:  # recorded only when used: older records stay resumable
        config["crossover_prob"] = crossover_prob
    bo = BudgetedOracle(oracle, budget=_check_budget(budget), record=record, config=config)
    rng = np.random.default_rng(seed)
    pop: deque[Individual] = deque()
    while len(pop) < population_size and bo.remaining > 0:
        pop.append(_query(bo, _random_unseen(space, bo, rng)))
    while bo.remaining > 0:
        pop.append(_query(bo, _child(space, pop, sample_size, bo, rng, crossover_prob)))
        pop.popleft()
    return bo.result(config)


def surrogate_evolution(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int,
    predictor_factory: SurrogateFactory, population_size: int = 20, sample_size: int = 5,
    n_init: int = 10, n_children: int = 100, queries_per_fit: int = 1,
    fit_kwargs: Mapping[str, Any] | None = None, record: str | os.PathLike | None = None,
    crossover_prob: float = 0.0,
) -> SearchResult:
    """Surrogate-assisted regularized evolution (see module docstring)."""
    check_space(space, oracle)
    _check_tournament(population_size, sample_size)
    crossover_prob = _check_crossover_prob(crossover_prob)
    for name, v in (("n_init", n_init), ("n_children", n_children),
                    ("queries_per_fit", queries_per_fit)):
        _positive(name, v)
    config = {"method": "surrogate_evolution", "seed": check_seed(seed),
              "population_size": population_size, "sample_size": sample_size,
              "n_init": n_init, "n_children": n_children, "queries_per_fit": queries_per_fit,
              "predictor": describe_factory(predictor_factory),
              "fit_kwargs": {k: repr(v) for k, v in sorted((fit_kwargs or {}).items())}}
    if crossover_prob > 0:
        config["crossover_prob"] = crossover_prob
    bo = BudgetedOracle(oracle, budget=_check_budget(budget), record=record, config=config)
    rng = np.random.default_rng(seed)
    surrogate = make_surrogate(predictor_factory, seed)
    pop: deque[Individual] = deque(maxlen=population_size)  # appending drops the oldest
    archs: list[Arch] = []
    while len(archs) < n_init and bo.remaining > 0:
        ind = _query(bo, _random_unseen(space, bo, rng))
        pop.append(ind)
        archs.append(ind.arch)
    while bo.remaining > 0:
        surrogate.fit(archs, [bo.query_full(a).value for a in archs], **dict(fit_kwargs or {}))
        children, keys = [], set()
        for _ in range(n_children):
            try:
                child = _child(space, pop, sample_size, bo, rng, crossover_prob, exclude=keys)
            except NasrankError:
                if children:  # a small space may hold fewer unqueried archs than n_children
                    break
                raise
            keys.add(space.key(child))
            children.append(child)
        scores = np.asarray(surrogate.predict(children), dtype=np.float64)
        for j in np.argsort(-scores, kind="stable")[:min(queries_per_fit, bo.remaining)]:
            ind = _query(bo, children[int(j)])
            pop.append(ind)
            archs.append(ind.arch)
    return bo.result(config)
