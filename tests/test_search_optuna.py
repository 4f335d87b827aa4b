"""Optuna: the PredictorSampler (reproducibility like Optuna's own sampler tests, proposals
checked by brute force) and run_optuna_search (resume, two real processes on one SQLite study)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from nasrank.search.optuna_search import ClaimTable, PredictorSampler, run_optuna_search, study_queries
from nasrank.search.surrogates import forest_factory
from nasrank.errors import NasrankError
from test_search_fixtures import TINY_VALUES, CrashAfter, TableOracle, TinySpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = TinySpace()
ROOT = Path(__file__).resolve().parents[1]


def _objective(trial: optuna.Trial) -> float:
    params = {n: trial.suggest_categorical(n, opts) for n, opts in TINY.choices().items()}
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)  # a parameter outside the space
    return TINY_VALUES[TINY.key(TINY.from_choices(params))] + 0.0 * lr


def _trials(seed: int, n: int = 6, factory=None) -> list[dict]:
    sampler = PredictorSampler(TINY, factory or forest_factory(TINY, n_estimators=5), seed=seed,
                               n_startup_trials=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials]


def test_same_seed_same_trials_different_seed_different_trials():
    a, b = _trials(0), _trials(0)
    assert a == b                                           # params incl. the independent "lr"
    assert _trials(1) != a
    keys = [TINY.key(TINY.from_choices(p)) for p in a]
    assert len(set(keys)) == len(keys)                      # never proposes a tried arch


class Perfect:
    def __init__(self, seed: int) -> None:
        self.fitted_on: list = []

    def fit(self, archs, y, **_):
        self.fitted_on = list(zip((TINY.key(a) for a in archs), y))
        assert all(TINY_VALUES[k] == v for k, v in self.fitted_on)  # y = the study's values
        return self

    def predict(self, archs):
        return np.array([TINY_VALUES[TINY.key(a)] for a in archs])


def test_proposals_after_startup_are_the_best_untried():
    sampler = PredictorSampler(TINY, Perfect, seed=3, n_startup_trials=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=7)
    keys = [TINY.key(TINY.from_choices(t.params)) for t in study.trials]
    # brute force: after 2 random trials, the untried keys in decreasing true value
    rest = sorted((k for k in TINY_VALUES if k not in keys[:2]), key=lambda k: -TINY_VALUES[k])
    assert keys[2:] == rest
    with pytest.raises(NasrankError, match="has been tried"):
        study.optimize(_objective, n_trials=1)              # all 7 functions are tried


def test_minimize_study_ranks_by_negated_value():
    sampler = PredictorSampler(TINY, Perfect, seed=0, n_startup_trials=1)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    # Perfect.fit asserts y equals the true values, so negate back inside: use a wrapper
    class Neg(Perfect):
        def fit(self, archs, y, **_):
            return Perfect.fit(self, archs, -np.asarray(y))

        def predict(self, archs):
            return -Perfect.predict(self, archs)
    sampler.predictor_factory = Neg
    study.optimize(_objective, n_trials=3)
    keys = [TINY.key(TINY.from_choices(t.params)) for t in study.trials]
    rest = sorted((k for k in TINY_VALUES if k != keys[0]), key=lambda k: TINY_VALUES[k])
    assert keys[1:] == rest[:2]                             # smallest values first


def test_run_optuna_search_resumes_to_the_uninterrupted_result(tmp_path):
    kw = dict(space=TINY, budget=5, seed=2, study_name="s", n_startup_trials=2,
              predictor_factory=forest_factory(TINY, n_estimators=5))
    ref = run_optuna_search(oracle=TableOracle(), storage=f"sqlite:///{tmp_path / 'a.db'}", **kw)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_optuna_search(oracle=CrashAfter(TableOracle(), 3), storage=url, **kw)
    oracle = TableOracle()
    res = run_optuna_search(oracle=oracle, storage=url, **kw)
    assert oracle.calls == 2                                # 3 answers came from the study
    assert res.queries == [(k, v, 0.5) for k, v, _ in ref.queries]
    study = optuna.load_study(study_name="s", storage=url)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the crashed trial...
    crashed = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == crashed.number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert retry[0].params == crashed.params                # ...evaluated again by its retry
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(states) - 1
    assert sorted(q[2] for q in study_queries(study)) == sorted(k for k, _, _ in ref.queries)


WORKER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from nasrank.search.optuna_search import run_optuna_search
    from test_search_fixtures import TableOracle, TinySpace

    class Slow(TableOracle):
        def evaluate(self, arch):
            time.sleep(0.2)   # keep both workers busy at the same time
            return super().evaluate(arch)

    res = run_optuna_search(space=TinySpace(), oracle=Slow(), budget=3, seed=0,
                            storage={url!r}, study_name="shared", worker=sys.argv[1])
    print(",".join(k for k, _, _ in res.queries))
""")


def test_two_processes_sharing_one_sqlite_study_never_query_the_same_arch(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # create tables and study once, so the two workers only load it
    optuna.create_study(storage=url, study_name="shared", direction="maximize")
    ClaimTable(url).dispose()
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), tests=str(ROOT / "tests"), url=url))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), w], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for w in ("w0", "w1")]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    queried = [out.strip().split(",") for out, _ in outs]
    assert all(len(q) == 3 for q in queried)                # each worker spent its share
    assert not set(queried[0]) & set(queried[1])            # no arch queried twice
    study = optuna.load_study(study_name="shared", storage=url)
    done = study_queries(study)
    assert sorted(k for _, _, k, _ in done) == sorted(queried[0] + queried[1])
    claims = ClaimTable(url)
    assert {k: w for k, w, _ in claims.claims("shared")} == \
        {k: w for _, w, k, _ in done}                       # every evaluation was claimed first
    claims.dispose()
    # proposals another worker had claimed meanwhile are pruned, marked duplicate_of
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE,
                                               optuna.trial.TrialState.PRUNED}
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all("duplicate_of" in t.user_attrs for t in pruned)


KILLABLE = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    from nasrank.search.optuna_search import run_optuna_search
    from test_search_fixtures import TableOracle, TinySpace

    class Slow(TableOracle):
        def evaluate(self, arch):
            print("EVAL", self.space.key(arch), flush=True)   # the parent kills on this line
            time.sleep(0.4)
            return super().evaluate(arch)

    # a long grace: however slowly a loaded machine runs these workers, none of them takes
    # over w2's dead trial before the late worker (grace 2 s) of the test does
    res = run_optuna_search(space=TinySpace(), oracle=Slow(), budget=int(sys.argv[2]), seed=0,
                            storage={url!r}, study_name="shared", worker=sys.argv[1],
                            heartbeat_interval=1, grace_period=120)
    print("DONE", ",".join(k for k, _, _ in res.queries), flush=True)
""")


@pytest.mark.slow
def test_sigkilled_workers_trials_are_retried_once_and_none_left_running(tmp_path):
    """Three workers start together on a new SQLite file (no schema race may kill one); w1 is
    SIGKILLed mid-trial and restarted (it requeues its dead trial at once), w2 is SIGKILLed and
    never comes back (its trial is found by the heartbeat check of a later worker). The
    workers' grace period is long and the late worker's short, so which worker retries w2's
    trial does not depend on how fast the machine runs them (under load a worker still running
    2 s after the kill used to take it over, one evaluation more than the budgets)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    script = tmp_path / "worker.py"
    script.write_text(KILLABLE.format(root=str(ROOT), tests=str(ROOT / "tests"), url=url))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(worker: str, budget: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), worker, str(budget)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)

    w0, w1, w2 = start("w0", 2), start("w1", 2), start("w2", 2)
    for p in (w1, w2):                                      # kill each in its first evaluation
        line = p.stdout.readline()
        assert line.startswith("EVAL"), (line, p.stderr.read())
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=60)
    killed_at = time.monotonic()
    w1b = start("w1", 2)
    outs = {name: p.communicate(timeout=900) for name, p in (("w0", w0), ("w1", w1b))}
    for name, p in (("w0", w0), ("w1", w1b)):
        assert p.returncode == 0, outs[name][1]
    # a later worker's stale-trial check (heartbeat older than the 2 s grace) requeues w2's
    time.sleep(max(0.0, killed_at + 3.0 - time.monotonic()))
    late = run_optuna_search(space=TINY, oracle=TableOracle(), budget=1, seed=0, storage=url,
                             study_name="shared", worker="late", heartbeat_interval=1,
                             grace_period=2)
    assert len(late.queries) == 1

    study = optuna.load_study(study_name="shared", storage=url)
    TS = optuna.trial.TrialState
    assert not [t for t in study.trials if t.state in (TS.RUNNING, TS.WAITING)]
    done = study_queries(study)
    keys = [k for _, _, k, _ in done]
    assert len(keys) == len(set(keys)) == 2 + 2 + 1         # no arch evaluated twice, budgets met
    assert [w for _, w, _, _ in done].count("w0") == 2
    assert [w for _, w, _, _ in done].count("w1") == 2
    # each killed worker's trial failed and was completed once by a retry with its params
    for dead in ("w1", "w2"):
        failed = [t for t in study.trials if t.state == TS.FAIL
                  and t.user_attrs.get("worker") == dead]
        assert len(failed) == 1
        retries = [t for t in study.trials if t.user_attrs.get("retry_of") == failed[0].number]
        assert [t.state for t in retries] == [TS.COMPLETE]
        assert retries[0].params == failed[0].params
    claims = ClaimTable(url)
    owners = {k: w for k, w, _ in claims.claims("shared")}
    claims.dispose()
    assert owners == {k: w for _, w, k, _ in done}          # claims moved to the retries


# ------------------------------------------------------------------ issue 19: distributed Optuna
def test_claims_key_is_one_fixed_length_column_and_takes_long_keys(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'c.db'}"
    claims = ClaimTable(url)
    pk = sa.inspect(claims.engine).get_pk_constraint("nasrank_arch_claims")
    assert pk["constrained_columns"] == ["claim_id"]        # MySQL: 64 chars, not 512 + 1024
    long_key = "x" * 5000
    assert claims.claim("s", long_key, "w0", 0)
    assert not claims.claim("s", long_key, "w1", 1)         # same (study, key): refused
    assert claims.claim("other", long_key, "w1", 1)         # another study: its own claim
    assert claims.owner("s", long_key) == ("w0", 0)
    assert claims.take_over("s", long_key, 0, "w2", 5)      # a retry of trial 0 takes it
    assert not claims.take_over("s", long_key, 0, "w3", 6)  # a second retry of 0 does not
    assert claims.claims("s") == [(long_key, "w2", 5)]
    claims.dispose()


def test_workers_with_one_seed_draw_different_archs():
    """Two workers started at once with the same seed each see an empty study: their random
    startup proposals must differ (they used to be identical)."""
    from nasrank.search.optuna_search import worker_seed
    from nasrank.spaces.nb201 import NB201Space

    space = NB201Space()
    seeds = {w: worker_seed(0, w) for w in ("0", "1", "2", "3")}
    assert len(set(seeds.values())) == 4 and worker_seed(0, "1") == seeds["1"]

    def first_keys(seed: int) -> list[str]:
        sampler = PredictorSampler(space, None, seed=seed, n_startup_trials=1, pool_size=500)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        keys = []
        for _ in range(4):
            t = study.ask()
            p = {n: t.suggest_categorical(n, o) for n, o in space.choices().items()}
            keys.append(space.key(space.from_choices(p)))
        return keys

    proposals = [first_keys(s) for s in seeds.values()]
    flat = [k for ks in proposals for k in ks]
    assert len(set(flat)) == len(flat)                      # no arch proposed by two workers


def test_multi_objective_study_refused_with_a_clear_message():
    sampler = PredictorSampler(TINY, Perfect, seed=0, n_startup_trials=1)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def two(trial):
        p = {n: trial.suggest_categorical(n, o) for n, o in TINY.choices().items()}
        return TINY_VALUES[TINY.key(TINY.from_choices(p))], 1.0

    with pytest.raises(NasrankError, match="multi-objective search is not supported"):
        study.optimize(two, n_trials=1)


def test_schema_race_on_open_is_retried(tmp_path, monkeypatch):
    """Workers starting together on a new database: the loser of the schema creation gets an
    IntegrityError from Optuna; the worker retries instead of dying (issue 17)."""
    import sqlalchemy as sa

    real, calls = optuna.create_study, []

    def racy(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.IntegrityError("INSERT INTO version_info", {}, Exception("UNIQUE"))
        return real(*a, **kw)

    monkeypatch.setattr(optuna, "create_study", racy)
    res = run_optuna_search(space=TINY, oracle=TableOracle(), budget=2, seed=0,
                            storage=f"sqlite:///{tmp_path / 'r.db'}", study_name="s")
    assert len(calls) == 2 and len(res.queries) == 2


def test_postgres_duplicate_table_race_is_retried_other_programming_errors_are_not(tmp_path,
                                                                                   monkeypatch):
    """The same race on PostgreSQL surfaces as ProgrammingError 'relation "alembic_version"
    already exists' (psycopg2's DuplicateTable; seen in test_optuna_servers): retried. A
    ProgrammingError of another kind (here a permission error) is raised at once."""
    import sqlalchemy as sa

    import nasrank.search.optuna_search as mod

    real, calls = mod._storage, []

    def racy(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.ProgrammingError("CREATE TABLE alembic_version", {},
                                          Exception('relation "alembic_version" already exists'))
        return real(*a, **kw)

    monkeypatch.setattr(mod, "_storage", racy)
    res = run_optuna_search(space=TINY, oracle=TableOracle(), budget=2, seed=0,
                            storage=f"sqlite:///{tmp_path / 'p.db'}", study_name="s")
    assert len(calls) == 2 and len(res.queries) == 2

    def denied(*a, **kw):
        calls.append(1)
        raise sa.exc.ProgrammingError("CREATE TABLE studies", {},
                                      Exception("permission denied for schema public"))

    calls.clear()
    monkeypatch.setattr(mod, "_storage", denied)
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        run_optuna_search(space=TINY, oracle=TableOracle(), budget=2, seed=0,
                          storage=f"sqlite:///{tmp_path / 'q.db'}", study_name="s")
    assert len(calls) == 1


def test_journal_storage_two_workers_and_a_crash(tmp_path):
    url = f"journal:///{tmp_path / 'study.log'}"
    kw = dict(space=TINY, seed=0, storage=url, study_name="j")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_optuna_search(oracle=CrashAfter(TableOracle(), 1), budget=3, worker="a", **kw)
    a = run_optuna_search(oracle=TableOracle(), budget=3, worker="a", **kw)
    b = run_optuna_search(oracle=TableOracle(), budget=3, worker="b", **kw)
    keys = [k for k, _, _ in a.queries + b.queries]
    assert len(keys) == len(set(keys)) == 6
    study = optuna.load_study(study_name="j", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))))
    assert sorted(k for _, _, k, _ in study_queries(study)) == sorted(keys)
    TS = optuna.trial.TrialState
    assert not [t for t in study.trials if t.state in (TS.RUNNING, TS.WAITING)]


def test_cli_search_workers_share_one_study(tmp_path, capsys):
    from test_cli import NB201, _need_nb201, run_cli

    _need_nb201()
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    common = ["search", "--benchmark", "nb201", "--data", str(NB201), "--method", "optuna",
              "--method.n-startup-trials", "10", "--budget", "3", "--storage", url,
              "--study-name", "cli"]
    for w in ("0", "1"):
        code, _, err = run_cli(capsys, *common, "--worker", w, "--out", str(tmp_path / w))
        assert code == 0, err
        assert len(json.loads((tmp_path / w / "result.json").read_text())["queries"]) == 3
    study = optuna.load_study(study_name="cli", storage=url)  # optuna-dashboard can show it
    done = study_queries(study)
    assert sorted(w for _, w, _, _ in done) == ["0", "0", "0", "1", "1", "1"]
    assert len({k for _, _, k, _ in done}) == 6
    code, _, err = run_cli(capsys, "search", "--data", str(NB201), "--method", "re",
                           "--storage", url, "--out", str(tmp_path / "x"))
    assert code == 2 and "--storage needs --method optuna" in err
    code, _, err = run_cli(capsys, "search", "--data", str(NB201), "--worker", "3",
                           "--out", str(tmp_path / "y"))
    assert code == 2 and "need --storage" in err


def test_a_trial_has_a_heartbeat_before_its_arch_is_evaluated(tmp_path, monkeypatch):
    """Optuna's heartbeat thread writes a trial's first heartbeat asynchronously, and its
    stale-trial check skips RUNNING trials without one: a worker killed before that write left
    a trial RUNNING for good (seen once in CI). With the thread's writes switched off, every
    evaluation must still find its own trial's heartbeat row in the database."""
    import contextlib
    import sqlite3

    import optuna.study._optimize as optimize_mod

    monkeypatch.setattr(optimize_mod, "get_heartbeat_thread",
                        lambda trial_id, storage: contextlib.nullcontext())
    db = tmp_path / "hb.db"
    seen = []

    class Checking(TableOracle):
        def evaluate(self, arch):
            with sqlite3.connect(db) as con:
                seen.append(con.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0])
            return super().evaluate(arch)

    res = run_optuna_search(space=TinySpace(), oracle=Checking(), budget=3, seed=0,
                            storage=f"sqlite:///{db}", study_name="hb", worker="w",
                            heartbeat_interval=1, grace_period=2)
    assert len(res.queries) == 3
    assert seen == [1, 2, 3], seen  # one new heartbeat row per trial, written before evaluation
