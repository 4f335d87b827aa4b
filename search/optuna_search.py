"""Optuna integration: a sampler driven by a surrogate, and searches run as (shared) Optuna studies.

:class:`PredictorSampler` is an ordinary :class:`optuna.samplers.BaseSampler`: in any study whose
parameters are the space's categorical choices (``space.choices()``), it proposes, for each new
trial, the untried architecture that a surrogate fitted on the study's completed trials ranks
best. Parameters outside the space's choices are sampled independently by a seeded
:class:`~optuna.samplers.RandomSampler`.

:func:`run_optuna_search` runs one worker of a search as an Optuna study with ask/tell. Every
queried arch is a trial (user attributes ``key``, ``reported``, ``seconds``, ``worker``), so a
study in an RDB storage (SQLite, PostgreSQL, MySQL/MariaDB) is itself the record: a worker
restarted with the same ``worker`` id replays what it completed and carries on. Several processes
(on several machines) may share one study, each with its own budget share; no arch is completed
twice (see :class:`ClaimTable`). A worker that dies mid-trial is handled with Optuna's public API
only: trials run under ``study.optimize`` with the storage's heartbeat, a trial whose heartbeat
stopped is failed by ``optuna.storages.fail_stale_trials`` (run by every worker before each trial)
and enqueued again (``study.enqueue_trial``, user attribute ``retry_of``); the retry inherits the
dead trial's claim.

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

import hashlib
import json
import os
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import numpy as np

from nasrank.spaces.base import SearchSpace
from nasrank.errors import NasrankError
from nasrank.lazy import lazy_exports

from .baselines import check_seed, check_space
from .evolution import _positive
from .oracles import BudgetedOracle, Oracle, _check_budget
from .records import Query, SearchResult
from .surrogates import SurrogateFactory, describe_factory

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from ._optuna_sampler import PredictorSampler

#: defined in ``search/_optuna_sampler.py`` (a subclass of Optuna's ``BaseSampler``, so that
#: module imports Optuna at its top) and imported from there on first use: this module is loaded
#: by the ``SEARCH_METHODS`` registry (``nasrank search --help``), which must not pay for Optuna
_FROM_SAMPLER = ("PredictorSampler", "space_distributions")


__getattr__ = lazy_exports(globals(), dict.fromkeys(_FROM_SAMPLER, "_optuna_sampler"))


# ----------------------------------------------------------------------------- claims
def claim_id(study_name: str, key: str) -> str:
    """The claims table's key: sha256 hex of ``[study name, canonical arch key]``. Fixed length
    (64 characters) so that the primary key fits every engine's index limit (MySQL/MariaDB
    refuse a VARCHAR(512) + VARCHAR(1024) key: 3072 bytes at most)."""
    return hashlib.sha256(json.dumps([study_name, key]).encode("utf-8")).hexdigest()


class ClaimTable:
    """A storage-level guard: table ``nasrank_arch_claims`` (primary key
    :func:`claim_id` of (study, arch key)) in the same database as the Optuna study.

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
            "nasrank_arch_claims", meta,
            sa.Column("claim_id", sa.CHAR(64), primary_key=True),
            sa.Column("study_name", sa.String(512), nullable=False),
            sa.Column("arch_key", sa.Text, nullable=False),
            sa.Column("worker", sa.String(256), nullable=False),
            sa.Column("trial_number", sa.Integer, nullable=False),
        )
        meta.create_all(self.engine, checkfirst=True)

    def claim(self, study_name: str, key: str, worker: str, trial_number: int) -> bool:
        """True when this call inserted the claim, False when ``key`` was already claimed."""
        try:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert().values(
                    claim_id=claim_id(study_name, key), study_name=study_name, arch_key=key,
                    worker=worker, trial_number=trial_number))
            return True
        except self._sa.exc.IntegrityError:
            return False

    def take_over(self, study_name: str, key: str, from_trial: int, worker: str,
                  trial_number: int) -> bool:
        """Move the claim of ``key`` held by trial ``from_trial`` (a dead or failed trial being
        retried) to ``worker``'s trial ``trial_number``; True when this call moved it. One
        conditional ``UPDATE``: of two retries of one trial, exactly one succeeds."""
        t = self.table
        with self.engine.begin() as conn:
            n = conn.execute(t.update().where(
                (t.c.claim_id == claim_id(study_name, key))
                & (t.c.trial_number == from_trial)).values(
                    worker=worker, trial_number=trial_number)).rowcount
        return n == 1

    def owner(self, study_name: str, key: str) -> tuple[str, int] | None:
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(self._sa.select(t.c.worker, t.c.trial_number).where(
                t.c.claim_id == claim_id(study_name, key))).first()
        return None if row is None else (row[0], int(row[1]))

    def claims(self, study_name: str) -> list[tuple[str, str, int]]:
        """``(arch key, worker, trial number)`` of every claim in the study."""
        t = self.table
        with self.engine.connect() as conn:
            rows = conn.execute(self._sa.select(t.c.arch_key, t.c.worker, t.c.trial_number)
                                .where(t.c.study_name == study_name)).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()


class FileClaimTable:
    """The claims of a JournalStorage study (no database): a JSON-lines file next to the
    journal, every read-modify-write under Optuna's own journal file lock
    (:class:`~optuna.storages.journal.JournalFileOpenLock`, safe on NFS). Same methods and
    guarantees as :class:`ClaimTable`."""

    def __init__(self, path: str | os.PathLike) -> None:
        from optuna.storages.journal import JournalFileOpenLock

        self.path = Path(path)
        self.path.touch(exist_ok=True)
        self._lock = JournalFileOpenLock(str(self.path))

    def _rows(self) -> dict[str, list]:
        rows = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                cid, study, key, worker, number = json.loads(line)
                rows[cid] = [study, key, worker, int(number)]  # later lines win
        return rows

    def _append(self, study: str, key: str, worker: str, number: int) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps([claim_id(study, key), study, key, worker, number]) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _locked(self, fn: Callable[[], bool]) -> bool:
        while not self._lock.acquire():
            time.sleep(0.01)
        try:
            return fn()
        finally:
            self._lock.release()

    def claim(self, study_name: str, key: str, worker: str, trial_number: int) -> bool:
        def go() -> bool:
            if claim_id(study_name, key) in self._rows():
                return False
            self._append(study_name, key, worker, trial_number)
            return True
        return self._locked(go)

    def take_over(self, study_name: str, key: str, from_trial: int, worker: str,
                  trial_number: int) -> bool:
        def go() -> bool:
            row = self._rows().get(claim_id(study_name, key))
            if row is None or row[3] != from_trial:
                return False
            self._append(study_name, key, worker, trial_number)
            return True
        return self._locked(go)

    def owner(self, study_name: str, key: str) -> tuple[str, int] | None:
        row = self._rows().get(claim_id(study_name, key))
        return None if row is None else (row[2], row[3])

    def claims(self, study_name: str) -> list[tuple[str, str, int]]:
        return [(r[1], r[2], r[3]) for r in self._rows().values() if r[0] == study_name]

    def dispose(self) -> None:
        pass


def worker_seed(seed: int, worker: str) -> int:
    """The sampler seed of one worker: its own stream of ``SeedSequence`` entropy ``(seed,
    crc32(worker))``, so workers started with one ``seed`` do not propose the same archs."""
    state = np.random.SeedSequence([check_seed(seed), zlib.crc32(worker.encode("utf-8"))])
    return int(state.generate_state(1)[0] % 2**31)


#: seconds between two heartbeats of a running trial, and how old a heartbeat may grow before
#: another worker declares the trial's process dead (Optuna's RDBStorage heartbeat)
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
_OPEN_TRIES = 8


def _retry_stale_trial(study: Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: a trial whose worker died is enqueued again with its parameters; the
    retry (user attribute ``retry_of``) inherits the dead trial's claim."""
    _enqueue_retry(study, trial)


def _enqueue_retry(study: Study, trial: FrozenTrial) -> None:
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


JOURNAL_PREFIX = "journal:///"


def _storage(storage: str, *, heartbeat_interval: int, grace_period: int) -> BaseStorage:
    import optuna

    if isinstance(storage, str) and storage.startswith(JOURNAL_PREFIX) \
            and len(storage) > len(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = storage[len(JOURNAL_PREFIX):]
        return optuna.storages.JournalStorage(
            JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    if not isinstance(storage, str) or "://" not in storage:
        raise NasrankError(
            f"storage must be an RDB URL (sqlite:///study.db, postgresql://user@host/db, "
            f"mysql+pymysql://user@host/db) or {JOURNAL_PREFIX}PATH, got {storage!r}")
    kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else None
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            storage, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, heartbeat_stale_trial_callback=_retry_stale_trial)


def _claims(storage: str) -> ClaimTable | FileClaimTable:
    if storage.startswith(JOURNAL_PREFIX):
        return FileClaimTable(storage[len(JOURNAL_PREFIX):] + ".claims")
    return ClaimTable(storage)


def _open(storage: str, study_name: str, sampler: BaseSampler, *, heartbeat_interval: int,
          grace_period: int) -> tuple[Study, ClaimTable | FileClaimTable]:
    """Open (create on first use) the study and the claims table. Workers starting together on
    a new database race on creating the schema: the loser's ``CREATE TABLE`` / first insert
    fails with ``IntegrityError``, ``ProgrammingError`` "... already exists" (PostgreSQL's
    duplicate table, e.g. Optuna's ``alembic_version``) or ``OperationalError`` (a locked
    SQLite file) although the winner's schema is fine, so the whole opening is retried. Any
    other ``ProgrammingError`` is a real error and is raised at once."""
    import optuna
    import sqlalchemy as sa

    for attempt in range(_OPEN_TRIES):
        try:
            rdb = _storage(storage, heartbeat_interval=heartbeat_interval,
                           grace_period=grace_period)
            claims = _claims(storage)
            study = optuna.create_study(storage=rdb, sampler=sampler, study_name=study_name,
                                        direction="maximize", load_if_exists=True)
            return study, claims
        except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError) as err:
            if isinstance(err, sa.exc.ProgrammingError) and "already exists" not in str(err):
                raise
            if attempt == _OPEN_TRIES - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


def run_optuna_search(
    *, space: SearchSpace, oracle: Oracle, budget: int, seed: int, storage: str,
    study_name: str, worker: str = "0", predictor_factory: SurrogateFactory | None = None,
    sampler: BaseSampler | None = None, n_startup_trials: int = 10, fit_every: int = 1,
    pool_size: int = 100_000, fit_kwargs: Mapping[str, Any] | None = None,
    record: str | os.PathLike | None = None, max_duplicates: int = 1000,
    heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD,
) -> SearchResult:
    """Run one worker of a search as an Optuna study (see module docstring).

    ``storage``: an RDB URL (``sqlite:///study.db``, ``postgresql://user@host/db``,
    ``mysql+pymysql://user@host/db``) or ``journal:///PATH`` (Optuna's JournalStorage on a file;
    it has no heartbeat, so a dead worker's trial is retried only when that worker restarts).
    ``budget`` is this worker's share: it queries at most ``budget`` unique archs (counting the
    ones it completed before an interruption). ``sampler`` defaults to
    ``PredictorSampler(space, predictor_factory, seed=worker_seed(seed, worker), ...)``: each
    worker draws its own stream. Proposals already claimed in
    the study are pruned (user attribute ``duplicate_of``) and the worker asks again; after
    ``max_duplicates`` duplicates in a row it stops with an error. A ``worker`` id must be used by
    one process at a time.

    Crashed workers, with Optuna's public API only: trials run under ``study.optimize`` with
    the storage's heartbeat (``heartbeat_interval`` seconds); a RUNNING trial whose heartbeat is
    older than ``grace_period`` seconds is failed by the next worker starting a trial
    (``optuna.storages.fail_stale_trials``) and enqueued again with its parameters. A worker
    restarted under its old id does not wait for that: it fails its own RUNNING trials at once
    (``study.tell``) and enqueues them, as it does its trials that failed with an exception.
    """
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from ._optuna_sampler import PredictorSampler, space_distributions

    check_space(space, oracle)
    budget = _check_budget(budget)
    seed = check_seed(seed)
    if not isinstance(worker, str) or not worker:
        raise NasrankError(f"worker must be a non-empty string, got {worker!r}")
    for name, v in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        _positive(name, v)
    if grace_period < heartbeat_interval:
        raise NasrankError(f"grace_period {grace_period} s is shorter than heartbeat_interval "
                           f"{heartbeat_interval} s: live trials would be failed as dead")
    if sampler is None:
        sampler = PredictorSampler(space, predictor_factory, seed=worker_seed(seed, worker),
                                   n_startup_trials=n_startup_trials, fit_every=fit_every,
                                   pool_size=pool_size, fit_kwargs=fit_kwargs)
    config = {"method": "optuna", "seed": seed, "study_name": study_name, "worker": worker,
              "sampler": type(sampler).__name__, "n_startup_trials": n_startup_trials,
              "fit_every": fit_every, "pool_size": pool_size,
              "predictor": describe_factory(predictor_factory)}
    study, claims = _open(storage, study_name, sampler, heartbeat_interval=heartbeat_interval,
                          grace_period=grace_period)
    try:
        if len(study.directions) != 1 or study.direction != StudyDirection.MAXIMIZE:
            raise NasrankError(f"study {study_name!r} has directions "
                               f"{[d.name for d in study.directions]}; a search needs one "
                               "maximising objective")
        dists = space_distributions(space)
        bo = BudgetedOracle(oracle, budget=budget, record=record, config=config)
        trials = study.get_trials(deepcopy=False)
        mine = sorted((t for t in trials if t.user_attrs.get("worker") == worker),
                      key=lambda t: t.number)
        # 1) replay what this worker completed before (the study is the record)
        for t in mine:
            if t.state == TrialState.COMPLETE and "key" in t.user_attrs:
                q = Query(t.user_attrs["key"], float(t.value), float(t.user_attrs["reported"]),
                          float(t.user_attrs["seconds"]))
                bo.preload(q)
                if bo.remaining > 0:
                    bo.query_full(space.from_choices(t.params))
        # 2) this worker's trials that died with their process or failed with an error are
        #    evaluated again (by whichever worker asks first) under their old claim
        _requeue_own(study, worker)
        if bo.remaining > 0:
            study.optimize(_Objective(study_name, claims, bo, space, dists, worker,
                                      max_duplicates),
                           callbacks=[lambda st, _t: st.stop() if bo.remaining <= 0 else None])
    finally:
        claims.dispose()
    return bo.result(config)


def _requeue_own(study: Study, worker: str) -> None:
    """Fail this worker's RUNNING trials (their process is dead: one process per worker id) and
    enqueue a retry of each trial of it that failed during evaluation and has none yet."""
    import optuna
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == worker:
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # failed meanwhile by another worker's stale-trial check (and enqueued)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if (t.state == TrialState.FAIL and t.user_attrs.get("worker") == worker
                and "duplicate_of" not in t.user_attrs and t.number not in retried):
            _enqueue_retry(study, t)


def _record_heartbeat_now(trial: optuna.Trial) -> None:
    """Write the trial's first heartbeat before anything is evaluated. Optuna's heartbeat thread
    writes it asynchronously, and its stale-trial check skips RUNNING trials without a
    heartbeat row. A worker killed before that first write (seen under load on SQLite) would
    leave a RUNNING trial that no other worker ever fails and retries."""
    from optuna.storages._heartbeat import BaseHeartbeat  # Optuna's own seam for this

    storage = trial.storage
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        storage.record_heartbeat(trial._trial_id)


class _Objective:
    """One trial: claim the proposed arch, evaluate it, record it in user attributes."""

    def __init__(self, study_name: str, claims: ClaimTable | FileClaimTable, bo: BudgetedOracle,
                 space: SearchSpace, dists: Mapping[str, CategoricalDistribution], worker: str,
                 max_duplicates: int) -> None:
        self.study_name, self.claims, self.bo, self.space = study_name, claims, bo, space
        self.dists, self.worker, self.max_duplicates = dists, worker, max_duplicates
        self.duplicates = 0

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        _record_heartbeat_now(trial)
        trial.set_user_attr("worker", self.worker)
        params = {n: trial.suggest_categorical(n, d.choices) for n, d in self.dists.items()}
        arch = self.space.from_choices(params)
        key = self.space.key(arch)
        if not self.claims.claim(self.study_name, key, self.worker, trial.number):
            retry_of = trial.user_attrs.get("retry_of")
            if retry_of is None or not self.claims.take_over(
                    self.study_name, key, int(retry_of), self.worker, trial.number):
                trial.set_user_attr("duplicate_of", key)
                self.duplicates += 1
                if self.duplicates >= self.max_duplicates:
                    raise NasrankError(
                        f"worker {self.worker!r}: {self.duplicates} proposals in a row were "
                        f"already claimed in study {self.study_name!r}; the space may be "
                        "exhausted")
                raise optuna.TrialPruned(f"{key} is claimed by another trial")
        self.duplicates = 0
        q = self.bo.query_full(arch)
        for name, v in (("key", q.key), ("reported", q.reported), ("seconds", q.seconds)):
            trial.set_user_attr(name, v)
        return q.value


def study_queries(study: Study) -> list[tuple[int, str, str, float]]:
    """``(trial number, worker, key, value)`` of the study's completed trials, in order."""
    from optuna.trial import TrialState

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
    import optuna

    from ._optuna_sampler import PredictorSampler, space_distributions

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


__all__ = ["PredictorSampler", "ClaimTable", "FileClaimTable", "claim_id", "worker_seed", "run_optuna_search", "optuna_sampler_search",
           "space_distributions", "study_queries"]
