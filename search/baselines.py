"""Baselines: random search and greedy-by-proxy (query the archs a cheap score ranks best)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from nasrank.spaces.base import SearchSpace
from nasrank.errors import NasrankError
from nasrank.spaces.labels import LabelTable

from .oracles import BudgetedOracle, Oracle, _check_budget
from .records import SearchResult


def check_space(space: SearchSpace, oracle: Oracle) -> None:
    if space.name != oracle.space.name:
        raise NasrankError(
            f"search space {space.name!r} differs from the oracle's space {oracle.space.name!r}")


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NasrankError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def random_search(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int,
    record: str | os.PathLike | None = None,
) -> SearchResult:
    """Query ``budget`` uniformly sampled archs with distinct canonical keys; return the best."""
    check_space(space, oracle)
    config = {"method": "random", "seed": check_seed(seed)}
    bo = BudgetedOracle(oracle, budget=_check_budget(budget), record=record, config=config)
    rng = np.random.default_rng(seed)
    size = space.size if space.size is not None else math.inf
    misses = 0
    while bo.remaining > 0:
        arch = space.sample(rng)
        if bo.seen(arch):
            misses += 1
            if misses > 1000 * budget:  # only when the space has fewer distinct keys than budget
                raise NasrankError(
                    f"random search found only {bo.used} distinct archs in space {space.name!r} "
                    f"(size {size}); budget {budget} is too large")
            continue
        bo.query(arch)
    return bo.result(config)


def greedy_by_proxy(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int, labels: LabelTable,
    column: str, record: str | os.PathLike | None = None,
) -> SearchResult:
    """Query the ``budget`` archs with the highest ``labels[column]`` (a zero-cost proxy or a
    weak label; higher = better), one per canonical key; ties are broken by a seeded shuffle.
    Rows whose value is not finite are never queried."""
    check_space(space, oracle)
    labels.check_space(space.name)
    col = labels.column(column)
    config = {"method": "greedy_by_proxy", "seed": check_seed(seed), "column": column,
              "labels": len(labels)}
    bo = BudgetedOracle(oracle, budget=_check_budget(budget), record=record, config=config)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    finite = perm[np.isfinite(col[perm])]
    order = finite[np.argsort(-col[finite], kind="stable")]  # stable: the shuffle breaks ties
    texts = labels.arch_texts if labels.arch_texts is not None else labels.keys  # 'arch' column
    for i in order:
        if bo.remaining == 0:
            break
        arch = space.parse(texts[i])
        if not bo.seen(arch):
            bo.query(arch)
    if bo.used == 0:
        raise NasrankError(f"column {column!r} has no finite value to rank archs by")
    return bo.result(config)
