"""Optuna integration: a sampler driven by a surrogate, and searches run as (shared) Optuna studies.

:class:`PredictorSampler` is an ordinary :class:`optuna.samplers.BaseSampler`: in any study whose
parameters are the space's categorical choices (``space.choices()``), it proposes, for each new
trial, the untried architecture that a surrogate fitted on the study's completed trials ranks
best. Parameters outside the space's choices are sampled independently by a seeded
:class:`~optuna.samplers.RandomSampler`.

:func:`run_optuna_search` runs one worker of a search as an Optuna study with ask/tell. Every
queried arch is a trial (user attributes ``key``, ``reported``, ``seconds``, ``worker``), so a
study in an RDB storage (SQLite by default) is itself the record: a worker restarted with the same
``worker`` id finishes its interrupted trial and carries on. Several processes may share one
study, each with its own budget share; no arch is ever evaluated twice (see :class:`ClaimTable`).

Example::

    import optuna
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.search.optuna_search import PredictorSampler
    from nasrank.search.surrogates import forest_factory

    space = NB201Space()
    sampler = PredictorSampler(space, forest_factory(space), seed=0, n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        params = {n: trial.suggest_categorical(n, opts) for n, opts in space.choices().items()}
        return my_accuracy(space.from_choices(params))

    study.optimize(objective, n_trials=20)
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasrank.spaces.base import Arch, SearchSpace
from nasrank.errors import NasrankError

from .baselines import check_seed, check_space
from .evolution import _positive
from .oracles import BudgetedOracle, Oracle, _check_budget
from .records import Query, SearchResult
from .surrogates import SurrogateFactory, candidate_pool, describe_factory, make_surrogate


def space_distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """The space's choices as Optuna categorical distributions."""
    return {name: CategoricalDistribution(list(opts)) for name, opts in space.choices().items()}


class PredictorSampler(BaseSampler):
    """Propose the untried architecture a surrogate ranks best (see module docstring).

    - The first ``n_startup_trials`` trials (counted in completed trials) are random untried
      archs.
    - After that, the surrogate (``predictor_factory(seed)``) is fitted on the completed trials
      with finite values (objective negated for ``minimize`` studies, so higher is better), at
      most once per ``fit_every`` new completed trials, and the best-scored untried candidate is
      proposed. Candidates: :func:`~search.surrogates.candidate_pool` (the whole space,
      deduplicated by canonical key, when finite). ``predictor_factory=None`` keeps proposing
      random untried archs (a dedup-aware random search).
    - "Tried" means any other trial of the study (any state) whose parameters give that
      canonical key.

    Every choice is a function of (seed, trial number, completed trials): the same seed gives
    the same trials, and a study resumed from storage continues exactly as it would have.
    """

    def __init__(self, space: SearchSpace, predictor_factory: SurrogateFactory | None = None, *,
                 seed: int | None = None, n_startup_trials: int = 10, fit_every: int = 1,
                 pool_size: int = 100_000, fit_kwargs: Mapping[str, Any] | None = None) -> None:
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) \
                or n_startup_trials < 1:
            raise NasrankError(f"n_startup_trials must be a positive int, got {n_startup_trials!r}")
        _positive("fit_every", fit_every)
        self.space = space
        self.predictor_factory = predictor_factory
        self._seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None \
            else check_seed(seed)
        self.n_startup_trials = n_startup_trials
        self.fit_every = fit_every
        self.pool_size = pool_size
        self.fit_kwargs = dict(fit_kwargs or {})
        self._dists = space_distributions(space)
        self._pool: list[Arch] | None = None
        self._pool_keys: list[str] = []
        self._cache: tuple[tuple[int, ...], np.ndarray] | None = None
        self._surrogate: Any = None
        self.n_fits = 0

    # -- Optuna sampler API
    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**31)
        self._surrogate, self._cache, self._pool = None, None, None

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return dict(self._dists)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        arch = self._propose(study, trial)
        params = self.space.to_choices(arch)
        return {n: params[n] for n in search_space}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # a fresh RandomSampler per (seed, trial, name): resumable and order-independent
        sub_seed = int(np.random.default_rng(
            [self._seed, trial.number, zlib.crc32(param_name.encode())]).integers(2**31))
        return RandomSampler(seed=sub_seed).sample_independent(
            study, trial, param_name, param_distribution)

    # -- internals
    def _arch_of(self, params: Mapping[str, Any]) -> Arch | None:
        if not all(n in params for n in self._dists):
            return None
        return self.space.from_choices(dict(params))

    def _ensure_pool(self) -> None:
        if self._pool is None:
            self._pool = candidate_pool(self.space, np.random.default_rng([self._seed, 1]),
                                        self.pool_size)
            self._pool_keys = [self.space.key(a) for a in self._pool]

    def _propose(self, study: Study, trial: FrozenTrial) -> Arch:
        all_trials = study.get_trials(deepcopy=False)
        tried = set()
        for t in all_trials:
            if t.number != trial.number:
                a = self._arch_of(t.params)
                if a is not None:
                    tried.add(self.space.key(a))
        complete = [t for t in all_trials if t.state == TrialState.COMPLETE
                    and t.value is not None and np.isfinite(t.value)
                    and self._arch_of(t.params) is not None]
        complete.sort(key=lambda t: t.number)
        self._ensure_pool()
        untried = [j for j, k in enumerate(self._pool_keys) if k not in tried]
        if not untried:
            raise NasrankError(
                f"every one of the {len(self._pool_keys)} candidate archs of space "
                f"{self.space.name!r} has been tried")
        if self.predictor_factory is None or len(complete) < self.n_startup_trials:
            rng = np.random.default_rng([self._seed, trial.number])
            return self._pool[untried[int(rng.integers(len(untried)))]]
        # fit on a prefix whose length only depends on the count: resumable, cacheable
        n_fit = self.n_startup_trials + (len(complete) - self.n_startup_trials) \
            // self.fit_every * self.fit_every
        used = complete[:n_fit]
        numbers = tuple(t.number for t in used)
        if self._cache is None or self._cache[0] != numbers:
            sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
            if self._surrogate is None:  # one instance: every fit restarts it (protocol)
                self._surrogate = make_surrogate(self.predictor_factory, self._seed)
            surrogate = self._surrogate
            surrogate.fit([self._arch_of(t.params) for t in used],
                          np.array([sign * t.value for t in used]), **self.fit_kwargs)
            self._cache = (numbers, np.asarray(surrogate.predict(self._pool), dtype=np.float64))
            self.n_fits += 1
        scores = self._cache[1]
        best = max(untried, key=lambda j: (scores[j], -j))
        return self._pool[best]


# ----------------------------------------------------------------------------- claims
class ClaimTable:
    """A storage-level guard: table ``nasrank_claims`` with primary key (study, arch key), in
    the same database as the Optuna study.

    Why it is race-free: a worker evaluates an arch only after its ``INSERT`` of the claim
    succeeded. The database checks the primary key atomically inside the insert (SQLite holds
    its single write lock for the whole statement; server RDBMSs enforce the unique index under
    concurrency), so of two workers claiming the same key at the same moment exactly one insert
    succeeds and the other gets an ``IntegrityError`` -- no read-then-write window exists.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        self._sa = sa
        self.engine = sa.create_engine(url, **kwargs)
        meta = sa.MetaData()
        self.table = sa.Table(
            "nasrank_claims", meta,
            sa.Column("study_name", sa.String(512), primary_key=True),
            sa.Column("arch_key", sa.String(1024), primary_key=True),
            sa.Column("worker", sa.String(256), nullable=False),
            sa.Column("trial_number", sa.Integer, nullable=False),
        )
        meta.create_all(self.engine, checkfirst=True)

    def claim(self, study_name: str, key: str, worker: str, trial_number: int) -> bool:
        """True when this call inserted the claim, False when ``key`` was already claimed."""
        try:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert().values(
                    study_name=study_name, arch_key=key, worker=worker,
                    trial_number=trial_number))
            return True
        except self._sa.exc.IntegrityError:
            return False

    def owner(self, study_name: str, key: str) -> tuple[str, int] | None:
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(self._sa.select(t.c.worker, t.c.trial_number).where(
                (t.c.study_name == study_name) & (t.c.arch_key == key))).first()
        return None if row is None else (row[0], int(row[1]))

    def claims(self, study_name: str) -> list[tuple[str, str, int]]:
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(self._sa.select(t.c.arch_key, t.c.worker, t.c.trial_number)
                                .where(t.c.study_name == study_name)).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()


def _storage(storage: str) -> optuna.storages.RDBStorage:
    if not isinstance(storage, str) or "://" not in storage:
        raise NasrankError(
            f"storage must be an RDB URL such as 'sqlite:///study.db', got {storage!r}")
    kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    return optuna.storages.RDBStorage(storage, engine_kwargs=kwargs)


def run_optuna_search(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int, storage: str,
    study_name: str, worker: str = "0", predictor_factory: SurrogateFactory | None = None,
    sampler: BaseSampler | None = None, n_startup_trials: int = 10, fit_every: int = 1,
    pool_size: int = 100_000, fit_kwargs: Mapping[str, Any] | None = None,
    record: str | os.PathLike | None = None, max_duplicates: int = 1000,
) -> SearchResult:
    """Run one worker of a search as an Optuna study (see module docstring).

    ``budget`` is this worker's share: it queries at most ``budget`` unique archs (counting the
    ones it completed before an interruption). ``sampler`` defaults to
    ``PredictorSampler(space, predictor_factory, seed=seed, ...)``. Proposals already claimed in
    the study are told as FAIL (user attribute ``duplicate_of``) and the worker asks again; after
    ``max_duplicates`` duplicates in a row it stops with an error. A ``worker`` id must be used by
    one process at a time.
    """
    check_space(space, oracle)
    budget = _check_budget(budget)
    seed = check_seed(seed)
    if not isinstance(worker, str) or not worker:
        raise NasrankError(f"worker must be a non-empty string, got {worker!r}")
    if sampler is None:
        sampler = PredictorSampler(space, predictor_factory, seed=seed,
                                   n_startup_trials=n_startup_trials, fit_every=fit_every,
                                   pool_size=pool_size, fit_kwargs=fit_kwargs)
    config = {"method": "optuna", "seed": seed, "study_name": study_name, "worker": worker,
              "sampler": type(sampler).__name__, "n_startup_trials": n_startup_trials,
              "fit_every": fit_every, "pool_size": pool_size,
              "predictor": describe_factory(predictor_factory)}
    rdb = _storage(storage)
    claims = ClaimTable(storage)
    study = optuna.create_study(storage=rdb, sampler=sampler, study_name=study_name,
                                direction="maximize", load_if_exists=True)
    if study.direction != StudyDirection.MAXIMIZE:
        raise NasrankError(f"study {study_name!r} minimises; searches need a maximising study")
    dists = space_distributions(space)
    bo = BudgetedOracle(oracle, budget=budget, record=record, config=config)

    mine = sorted((t for t in study.get_trials(deepcopy=False)
                   if t.user_attrs.get("worker") == worker), key=lambda t: t.number)
    # 1) replay what this worker completed before (the study is the record)
    for t in mine:
        if t.state == TrialState.COMPLETE and "key" in t.user_attrs:
            q = Query(t.user_attrs["key"], float(t.value), float(t.user_attrs["reported"]),
                      float(t.user_attrs["seconds"]))
            bo.preload(q)
            if bo.remaining > 0:
                bo.query_full(space.from_choices(t.params))
    # 2) finish this worker's interrupted trials, in order
    for t in mine:
        if t.state != TrialState.RUNNING:
            continue
        if all(n in t.params for n in dists) and bo.remaining > 0:
            _evaluate_trial(study, claims, bo, space, worker, t.number, t._trial_id, t.params)
        else:
            study.tell(t.number, state=TrialState.FAIL)

    duplicates = 0
    while bo.remaining > 0:
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in dists.items()}
        if _evaluate_trial(study, claims, bo, space, worker, trial.number, trial._trial_id,
                           params):
            duplicates = 0
        else:
            duplicates += 1
            if duplicates >= max_duplicates:
                raise NasrankError(
                    f"worker {worker!r}: {duplicates} proposals in a row were already claimed "
                    f"in study {study_name!r}; the space may be exhausted")
    claims.dispose()
    return bo.result(config)


def _evaluate_trial(study: Study, claims: ClaimTable, bo: BudgetedOracle, space: SearchSpace,
                    worker: str, number: int, trial_id: int, params: Mapping[str, Any]) -> bool:
    """Claim, evaluate and tell one trial; False (trial told FAIL) when another trial owns the
    arch. User attributes are written through the study's storage because a resumed trial is
    known by number/id only (Optuna has no public handle for a RUNNING trial of a dead process).
    """
    arch = space.from_choices(dict(params))
    key = space.key(arch)
    storage = study._storage
    if not claims.claim(study.study_name, key, worker, number):
        if claims.owner(study.study_name, key) != (worker, number):  # else: our own claim
            storage.set_trial_user_attr(trial_id, "duplicate_of", key)
            study.tell(number, state=TrialState.FAIL)
            return False
    q = bo.query_full(arch)
    for name, v in (("key", q.key), ("reported", q.reported), ("seconds", q.seconds)):
        storage.set_trial_user_attr(trial_id, name, v)
    study.tell(number, q.value)
    return True


def study_queries(study: Study) -> list[tuple[int, str, str, float]]:
    """``(trial number, worker, key, value)`` of the study's completed trials, in order."""
    return [(t.number, t.user_attrs.get("worker", ""), t.user_attrs.get("key", ""),
             float(t.value)) for t in sorted(study.get_trials(
                 deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)]


def optuna_sampler_search(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int,
    predictor_factory: SurrogateFactory | None, n_startup_trials: int = 10,
    fit_every: int = 1, pool_size: int = 100_000, fit_kwargs: Mapping[str, Any] | None = None,
    record: str | os.PathLike | None = None,
) -> SearchResult:
    """The :class:`PredictorSampler` in an in-memory study (``study.optimize``), for benchmarks
    and single-process use; :func:`run_optuna_search` is the resumable, shareable form."""
    check_space(space, oracle)
    budget = _check_budget(budget)
    sampler = PredictorSampler(space, predictor_factory, seed=check_seed(seed),
                               n_startup_trials=n_startup_trials, fit_every=fit_every,
                               pool_size=pool_size, fit_kwargs=fit_kwargs)
    config = {"method": "optuna_sampler", "seed": seed, "n_startup_trials": n_startup_trials,
              "fit_every": fit_every, "pool_size": pool_size,
              "predictor": describe_factory(predictor_factory)}
    bo = BudgetedOracle(oracle, budget=budget, record=record, config=config)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = space_distributions(space)

    def objective(trial: optuna.Trial) -> float:
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in dists.items()}
        return bo.query(space.from_choices(params))

    while bo.remaining > 0:  # the sampler never proposes a tried arch, so each trial is new
        study.optimize(objective, n_trials=bo.remaining)
    return bo.result(config)


__all__ = ["PredictorSampler", "ClaimTable", "run_optuna_search", "optuna_sampler_search",
           "space_distributions", "study_queries"]
