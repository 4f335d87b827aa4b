"""Iterative sampling (AceNAS, Zhang et al. 2021, Algorithm 1).

``rounds`` rounds of queries, then ``final_k`` more:

- round 1 is random (or, with ``first_round="predicted"``, ranked by the surrogate as given, e.g.
  a predictor pretrained on weak labels);
- each later round first fits the surrogate on everything queried so far (the surrogate restarts
  from its initial/pretrained state at every fit), then queries the ``alpha * n`` unqueried archs
  it ranks best in the candidate pool, and ``n - alpha * n`` random unqueried archs;
- finally the surrogate is fitted once more and its ``final_k`` best unqueried candidates are
  queried. The best queried arch is returned.

The candidate pool is the whole space (one arch per canonical key) when the space is finite and
no larger than ``pool_size``, else ``pool_size`` seeded random archs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nasrank.spaces.base import Arch, SearchSpace
from nasrank.errors import NasrankError

from .baselines import check_seed, check_space
from .evolution import _positive, _random_unseen
from .oracles import BudgetedOracle, Oracle, _check_budget
from .records import SearchResult
from .surrogates import SurrogateFactory, candidate_pool, describe_factory, make_surrogate


def round_sizes(budget: int, rounds: int, final_k: int) -> list[int]:
    """Queries per round: ``budget - final_k`` split as evenly as possible over ``rounds``
    (earlier rounds take the remainder); rounds that would be empty are dropped."""
    body = budget - final_k
    if body < 1:
        raise NasrankError(
            f"final_k ({final_k}) must leave at least one query for the rounds of budget {budget}")
    rounds = min(rounds, body)
    base, extra = divmod(body, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def check_first_fit(budget: int, rounds: int, final_k: int) -> list[int]:
    """:func:`round_sizes`, refusing a plan whose first predictor fit would see fewer than 2
    trained architectures (a ranking needs two): e.g. budget 2, 1 round and a final round of 1
    fits on one. Checked before any work, so ``nasrank run`` refuses it at once."""
    sizes = round_sizes(budget, rounds, final_k)
    if (len(sizes) > 1 or final_k) and sizes[0] < 2:
        raise NasrankError(
            f"budget {budget} with rounds={rounds} and final_k={final_k} trains {sizes[0]} "
            f"architecture before the first predictor fit, which needs at least 2 to rank: "
            f"raise the budget or lower rounds / final_k")
    return sizes


def _top_unseen(scores: np.ndarray, pool: Sequence[Arch], keys: Sequence[str],
                bo: BudgetedOracle, n: int) -> list[Arch]:
    out = []
    for j in np.argsort(-scores, kind="stable"):
        if len(out) == n:
            break
        if not bo.seen_key(keys[int(j)]):
            out.append(pool[int(j)])
    return out


def iterative_sampling(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int,
    predictor_factory: SurrogateFactory, rounds: int = 4, alpha: float = 0.5,
    final_k: int | None = None, pool_size: int = 100_000, first_round: str = "random",
    fit_kwargs: Mapping[str, Any] | None = None, record: str | os.PathLike | None = None,
) -> SearchResult:
    """AceNAS iterative sampling (see module docstring). ``final_k`` defaults to
    ``max(1, budget // 10)``."""
    check_space(space, oracle)
    budget = _check_budget(budget)
    _positive("rounds", rounds)
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise NasrankError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if final_k is None:
        final_k = max(1, budget // 10)
    if isinstance(final_k, bool) or not isinstance(final_k, int) or final_k < 0:
        raise NasrankError(f"final_k must be a non-negative int, got {final_k!r}")
    if first_round not in ("random", "predicted"):
        raise NasrankError(f"first_round must be 'random' or 'predicted', got {first_round!r}")
    sizes = check_first_fit(budget, rounds, final_k)
    config = {"method": "iterative_sampling", "seed": check_seed(seed), "rounds": rounds,
              "alpha": float(alpha), "final_k": final_k, "pool_size": pool_size,
              "first_round": first_round, "predictor": describe_factory(predictor_factory),
              "fit_kwargs": {k: repr(v) for k, v in sorted((fit_kwargs or {}).items())}}
    bo = BudgetedOracle(oracle, budget=budget, record=record, config=config)
    rng = np.random.default_rng(seed)
    pool = candidate_pool(space, np.random.default_rng([seed, 1]), pool_size)
    keys = [space.key(a) for a in pool]
    surrogate = make_surrogate(predictor_factory, seed)
    queried: list[Arch] = []

    def fit() -> None:
        surrogate.fit(queried, [bo.query_full(a).value for a in queried],
                      **dict(fit_kwargs or {}))

    def query(arch: Arch) -> None:
        bo.query(arch)
        queried.append(arch)

    for r, n in enumerate(sizes):
        if r == 0 and first_round == "random":
            n_pred = 0
        else:
            n_pred = n if r == 0 else int(round(alpha * n))
            if r > 0:
                fit()
        if n_pred:
            scores = np.asarray(surrogate.predict(pool), dtype=np.float64)
            for arch in _top_unseen(scores, pool, keys, bo, n_pred):
                query(arch)
        while len(queried) < sum(sizes[:r + 1]) and bo.remaining > 0:
            query(_random_unseen(space, bo, rng))
    if final_k:
        fit()
        scores = np.asarray(surrogate.predict(pool), dtype=np.float64)
        for arch in _top_unseen(scores, pool, keys, bo, min(final_k, bo.remaining)):
            query(arch)
    return bo.result(config)
