"""Search loops: budgets, determinism, resume after a crash, and behaviour with a perfect surrogate
(checked against brute force on the real NB201 table)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import data_path
from nasrank.search import (BenchmarkOracle, forest_factory, greedy_by_proxy, iterative_sampling,
                    random_search, regularized_evolution, surrogate_evolution)
from nasrank.search.optuna_search import optuna_sampler_search
from nasrank.errors import NasrankError
from test_search_fixtures import CrashAfter, TableOracle, TinySpace

TINY = TinySpace()


def _methods():
    rf = forest_factory(TINY, n_estimators=10)
    return {
        "random": lambda **kw: random_search(**kw),
        "re": lambda **kw: regularized_evolution(**kw, population_size=3, sample_size=2),
        "sre": lambda **kw: surrogate_evolution(**kw, predictor_factory=rf, population_size=3,
                                                sample_size=2, n_init=2, n_children=4),
        "iterative": lambda **kw: iterative_sampling(**kw, predictor_factory=rf, rounds=2,
                                                     final_k=1),
        "optuna": lambda **kw: optuna_sampler_search(**kw, predictor_factory=rf,
                                                     n_startup_trials=2),
    }


@pytest.mark.parametrize("method", list(_methods()))
def test_budget_determinism_and_resume(method, tmp_path):
    run = _methods()[method]
    oracle = TableOracle()
    res = run(space=TINY, oracle=oracle, budget=5, seed=4)
    keys = [k for k, _, _ in res.queries]
    assert len(keys) == 5 and len(set(keys)) == 5 and oracle.calls == 5   # budget, unique
    assert res.best_value == max(v for _, v, _ in res.queries)
    assert res.best_so_far == list(np.maximum.accumulate([v for _, v, _ in res.queries]))
    again = run(space=TINY, oracle=TableOracle(), budget=5, seed=4)
    assert [k for k, _, _ in again.queries] == keys                        # same seed
    # crash after 2 evaluations, then resume from the record
    path = tmp_path / "run.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(space=TINY, oracle=CrashAfter(TableOracle(), 2), budget=5, seed=4, record=path)
    fresh = TableOracle()
    resumed = run(space=TINY, oracle=fresh, budget=5, seed=4, record=path)
    assert fresh.calls == 3                                # only the queries not recorded
    assert [k for k, _, _ in resumed.queries] == keys
    assert (resumed.best_arch, resumed.best_value) == (res.best_arch, res.best_value)


def test_argument_validation():
    kw = dict(space=TINY, oracle=TableOracle(), budget=3, seed=0)
    with pytest.raises(NasrankError, match="sample_size"):
        regularized_evolution(**kw, population_size=2, sample_size=3)
    rf = forest_factory(TINY)
    with pytest.raises(NasrankError, match="alpha"):
        iterative_sampling(**kw, predictor_factory=rf, alpha=1.5)
    with pytest.raises(NasrankError, match="final_k"):
        iterative_sampling(**kw, predictor_factory=rf, final_k=3)
    with pytest.raises(NasrankError, match="first_round"):
        iterative_sampling(**kw, predictor_factory=rf, first_round="best")
    # budget 3 = rounds of 1 + 1, then the final pick: the first fit would see 1 architecture
    with pytest.raises(NasrankError, match="trains 1 architecture before the first predictor"):
        iterative_sampling(**kw, predictor_factory=rf, rounds=2, final_k=1)
    from nasrank.search.iterative import check_first_fit

    assert check_first_fit(4, 2, 1) == [2, 1]  # the first fit sees 2: allowed
    assert check_first_fit(1, 1, 0) == [1]  # no fit at all: allowed
    with pytest.raises(NasrankError, match="predictor_factory"):
        surrogate_evolution(**kw, predictor_factory=lambda seed: object())
    with pytest.raises(NasrankError, match="space"):
        from nasrank.spaces.nb201 import NB201Space

        random_search(space=NB201Space(), oracle=TableOracle(), budget=3, seed=0)


# ----------------------------------------------------------------------------- real NB201
@pytest.fixture(scope="module")
def bench():
    from nasrank.spaces.benchmarks import load_nb201

    return load_nb201(data_path("nb201", "nb201.csv"))


class PerfectSurrogate:
    """Predicts the benchmark's own value: with it a search must behave like its brute-force
    reference."""

    def __init__(self, oracle: BenchmarkOracle) -> None:
        self.oracle = oracle
        self.fits = 0

    def fit(self, archs, y, **_):
        assert len(archs) == len(y) >= 1
        self.fits += 1
        return self

    def predict(self, archs):
        return np.array([self.oracle.evaluate(a).value for a in archs])


def test_greedy_queries_the_brute_force_top(bench):
    oracle = BenchmarkOracle(bench, metric="cifar100_test")
    res = greedy_by_proxy(space=bench.space, oracle=oracle, budget=30, seed=0,
                          labels=bench.table, column="zc_synflow")
    syn = bench.table.column("zc_synflow")
    top = np.sort(syn[np.isfinite(syn)])[::-1][:30]       # proxies exist for canonical cells only
    got = sorted((syn[bench.table.index(k)] for k, _, _ in res.queries), reverse=True)
    assert np.allclose(got, top)
    assert res.best_reported == pytest.approx(73.51, abs=0.01)  # synflow's top 30 hold the best


def test_iterative_sampling_with_perfect_surrogate_finds_the_optimum(bench):
    oracle = BenchmarkOracle(bench, metric="cifar10_valid", report_metric="cifar10_test")
    surrogate = PerfectSurrogate(oracle)
    res = iterative_sampling(space=bench.space, oracle=oracle, budget=12, seed=0,
                             predictor_factory=lambda seed: surrogate, rounds=2, alpha=0.5,
                             final_k=2)
    # rounds of 5 and 5, then 2: round 2 queries round(0.5 * 5) = 2 best-predicted archs (the
    # space's 2 best), the final step the 2 best not yet queried (brute force below)
    assert res.best_value == pytest.approx(91.57)
    assert res.best_reported == pytest.approx(94.30, abs=0.01)
    assert surrogate.fits == 2                             # after round 1, and before final top-k
    from nasrank.spaces.benchmarks import canonical_subset

    canon = canonical_subset(bench).table
    ranked = [canon.keys[i] for i in np.argsort(-canon.column("cifar10_valid"), kind="stable")]
    keys = [k for k, _, _ in res.queries]
    assert keys[5:7] == ranked[:2]
    before = set(keys[:10])
    assert keys[10:12] == [k for k in ranked if k not in before][:2]


def test_surrogate_evolution_queries_the_best_predicted_child(bench):
    oracle = BenchmarkOracle(bench, metric="cifar100_test")
    res = surrogate_evolution(space=bench.space, oracle=oracle, budget=40, seed=1,
                              predictor_factory=lambda seed: PerfectSurrogate(oracle),
                              n_init=10, n_children=50)
    plain = regularized_evolution(space=bench.space, oracle=oracle, budget=40, seed=1)
    rand = random_search(space=bench.space, oracle=oracle, budget=40, seed=1)
    # with a perfect surrogate each step is the best of 50 children: far ahead of plain search
    assert res.best_value > max(plain.best_value, rand.best_value)
    assert res.best_value >= 73.0


# ----------------------------------------------------------------------------- crossover (issue 18)
# Recorded with the code before crossover existed (commit b778dde): seed 0, NB201 cifar10_valid,
# budget 60, population 10, tournament 3 -> sha256 of the 60 query keys joined by newlines.
RE_SEED0_SHA256 = "8bf027ce7df7e6659cd93bb8c3f9ed011382298e90e0a64f74d9d62079e238b8"
RE_SEED0_FIRST = "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|"


def _re_keys(bench, space=None, **kw):
    import hashlib

    from nasrank.search.evolution import regularized_evolution as re_

    res = re_(space=space or bench.space, oracle=BenchmarkOracle(bench, metric="cifar10_valid"),
              budget=60, seed=0, population_size=10, sample_size=3, **kw)
    keys = [k for k, _, _ in res.queries]
    return keys, hashlib.sha256("\n".join(keys).encode()).hexdigest()


def test_evolution_crossover_zero_reproduces_the_recorded_mutation_only_run(bench):
    for kw in ({}, {"crossover_prob": 0.0}, {"crossover_prob": 0}):
        keys, digest = _re_keys(bench, **kw)
        assert keys[0] == RE_SEED0_FIRST and digest == RE_SEED0_SHA256


def test_evolution_crossover_uses_two_tournament_winners(bench):
    class Spy(type(bench.space)):
        """The NB201 space, recording each crossover's parents."""

        def __init__(self):
            super().__init__()
            self.calls = []

        def crossover(self, a, b, rng):
            self.calls.append((self.key(a), self.key(b)))
            return super().crossover(a, b, rng)

    never, always, half = Spy(), Spy(), Spy()
    _re_keys(bench, space=never)
    assert never.calls == []
    keys, digest = _re_keys(bench, space=always, crossover_prob=1.0)
    assert len(always.calls) == 60 - 10 and digest != RE_SEED0_SHA256  # one per child
    for j, (a, b) in enumerate(always.calls):  # parents come from the queries made before
        assert a in keys[:10 + j] and b in keys[:10 + j]
    assert _re_keys(bench, space=Spy(), crossover_prob=1.0)[1] == digest  # seeded
    _re_keys(bench, space=half, crossover_prob=0.5)
    assert 10 <= len(half.calls) <= 40  # Binomial(50, 0.5): mean 25, sd 3.5
    from nasrank.search.evolution import regularized_evolution as re_

    for bad in (-0.1, 1.5, "0.5", True, float("nan")):
        with pytest.raises(NasrankError, match="crossover_prob"):
            re_(space=bench.space, oracle=BenchmarkOracle(bench, metric="cifar10_valid"),
                budget=5, seed=0, crossover_prob=bad)


def test_crossover_prob_is_a_registered_search_option(bench):
    from nasrank.errors import ConfigError
    from nasrank.search.registry import SEARCH_METHODS

    run = SEARCH_METHODS.make("re", {"population_size": 10, "sample_size": 3,
                                     "crossover_prob": "0.0"}).build(space=bench.space)
    res = run(oracle=BenchmarkOracle(bench, metric="cifar10_valid"), budget=60, seed=0)
    import hashlib

    digest = hashlib.sha256("\n".join(k for k, _, _ in res.queries).encode()).hexdigest()
    assert digest == RE_SEED0_SHA256  # crossover_prob 0 through the registry: the recorded run
    with pytest.raises(ConfigError, match="crossover_prob = 1.5"):
        SEARCH_METHODS.make("surrogate-re", {"crossover_prob": 1.5})
