"""The multi-worker Optuna search on real database servers: a throwaway PostgreSQL (initdb/pg_ctl)
and MariaDB (mariadb-install-db/mariadbd), each on a unix socket in a temporary folder, 3 worker
processes on one study. Skipped, saying why, where a server binary or a Python driver is missing.

CI (Debian) installs the servers with ``apt-get install -y postgresql mariadb-server`` and the
drivers with the ``dev`` extra (psycopg2-binary, PyMySQL).
"""

from __future__ import annotations

import glob
import multiprocessing as mp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from nasrank.search.optuna_search import ClaimTable, run_optuna_search, study_queries
from test_search_fixtures import TINY_VALUES, TableOracle, TinySpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _binary(name: str, patterns: tuple[str, ...] = ()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(h for p in patterns for h in glob.glob(p))
    return hits[-1] if hits else None


def _server_dir(owner: str | None) -> Path:
    """A short folder in /tmp (unix socket paths are limited to ~107 bytes) that the server's
    user can enter; pytest's tmp_path lives under a 0700 folder of root."""
    d = Path(tempfile.mkdtemp(prefix="nasrank-db-", dir="/tmp"))
    d.chmod(0o755)
    if owner is not None:
        shutil.chown(d, owner, owner)
    return d


def _as(user: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (servers refuse to run as root)."""
    if user is None:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _service_user(name: str) -> str | None:
    """None when we are not root (run the server as ourselves); else the system user ``name``."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"running as root and there is no {name!r} user to run the server as")
    if shutil.which("runuser") is None:
        pytest.skip("running as root and runuser (util-linux) is missing")
    return name


def _wait_for(check, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not come up within {timeout:.0f} s")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb = _binary("initdb", ("/usr/lib/postgresql/*/bin/initdb",))
    if initdb is None:
        pytest.skip("no PostgreSQL server binary (initdb): apt-get install -y postgresql")
    pytest.importorskip("psycopg2", reason="no PostgreSQL driver: pip install psycopg2-binary")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    user = _service_user("postgres")
    root = _server_dir(user)
    data = root / "data"
    subprocess.run(_as(user, [initdb, "-D", str(data), "-U", "postgres", "--auth=trust",
                              "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True, timeout=300)
    opts = f"-c listen_addresses='' -c unix_socket_directories='{root}' -c fsync=off"
    subprocess.run(_as(user, [pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"),
                              "-w", "-t", "120", "start"]),
                   check=True, capture_output=True, timeout=300)
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={root}"
    finally:
        subprocess.run(_as(user, [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    install = _binary("mariadb-install-db") or _binary("mysql_install_db")
    server = _binary("mariadbd") or _binary("mysqld", ("/usr/sbin/mysqld",))
    if install is None or server is None:
        pytest.skip("no MariaDB server binary (mariadbd, mariadb-install-db): "
                    "apt-get install -y mariadb-server")
    pymysql = pytest.importorskip("pymysql", reason="no MySQL driver: pip install PyMySQL")
    user = _service_user("mysql")
    root = _server_dir(user)
    data, sock = root / "data", root / "mysql.sock"
    who = ["--user=" + (user or pwd.getpwuid(os.geteuid()).pw_name)]
    subprocess.run([install, "--no-defaults", *who, f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen([server, "--no-defaults", *who, f"--datadir={data}",
                             f"--socket={sock}", "--skip-networking", f"--pid-file={root}/pid",
                             f"--log-error={root}/err.log", "--innodb-flush-log-at-trx-commit=0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError("mariadbd exited: "
                                 + (root / "err.log").read_text(errors="replace")[-2000:])
        try:
            pymysql.connect(user="root", unix_socket=str(sock)).close()
            return True
        except pymysql.err.OperationalError:
            return False

    try:
        _wait_for(up, "mariadbd")
        conn = pymysql.connect(user="root", unix_socket=str(sock))
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE nasrank CHARACTER SET utf8mb4")
        conn.close()
        yield f"mysql+pymysql://root@localhost/nasrank?unix_socket={sock}&charset=utf8mb4"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


class _Slow(TableOracle):
    def evaluate(self, arch):
        time.sleep(0.3)  # keep the workers' trials overlapping
        return super().evaluate(arch)


def _worker(url: str, worker: str, budget: int, out: mp.Queue) -> None:
    oracle = _Slow()
    res = run_optuna_search(space=TinySpace(), oracle=oracle, budget=budget, seed=0,
                            storage=url, study_name="servers", worker=worker)
    out.put((worker, [k for k, _, _ in res.queries], oracle.calls))


def _three_workers(url: str) -> None:
    """3 worker processes, same seed, budget 2 each, on a new study in ``url`` (7 distinct
    archs: the workers collide often); forked, so they need no new imports."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, f"w{i}", 2, q)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    got = {w: (keys, calls) for w, keys, calls in (q.get(timeout=10) for _ in procs)}
    for w, (keys, calls) in got.items():
        assert len(keys) == 2 and calls == 2, (w, keys, calls)  # budget met, nothing wasted
    keys = [k for ks, _ in got.values() for k in ks]
    assert len(keys) == len(set(keys)) == 6 and set(keys) <= set(TINY_VALUES)

    study = optuna.load_study(study_name="servers", storage=url)
    TS = optuna.trial.TrialState
    assert {t.state for t in study.trials} <= {TS.COMPLETE, TS.PRUNED}  # none left RUNNING
    done = study_queries(study)
    assert sorted(k for _, _, k, _ in done) == sorted(keys)
    assert all(v == TINY_VALUES[k] for _, _, k, v in done)
    claims = ClaimTable(url)
    try:
        assert {k: w for k, w, _ in claims.claims("servers")} == {k: w for _, w, k, _ in done}
    finally:
        claims.dispose()


@pytest.mark.slow
def test_three_workers_on_postgresql(postgres_url):
    _three_workers(postgres_url)


@pytest.mark.slow
def test_three_workers_on_mariadb(mariadb_url):
    _three_workers(mariadb_url)  # the claims table's key fits MySQL's index limit
