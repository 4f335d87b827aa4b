"""Oracles, budgets and run records (tiny hand-written space + the real NB201 table)."""

from __future__ import annotations

import json

import pytest

from nasrank.search.baselines import random_search
from nasrank.search.oracles import BenchmarkOracle, BudgetedOracle, BudgetExhausted, TrainingOracle
from nasrank.search.records import RecordError, SearchResult, read_record
from nasrank.errors import NasrankError
from nasrank.spaces.nb201 import NB201Arch
from test_search_fixtures import TINY_VALUES, TableOracle, TinySpace


def test_budget_counts_unique_keys_and_refuses_to_exceed():
    oracle = TableOracle()
    bo = BudgetedOracle(oracle, budget=3)
    assert bo.query(("a", "b")) == 1.0
    assert bo.query(("a", "c")) == 1.0          # same function as a-b: no new cost
    assert bo.query("a-a") == 1.0
    assert bo.used == 1 and oracle.calls == 1
    bo.query(("b", "b"))
    bo.query(("c", "b"))
    assert bo.remaining == 0
    with pytest.raises(BudgetExhausted, match="budget of 3"):
        bo.query(("c", "c"))
    assert oracle.calls == 3                     # refused before evaluating
    assert bo.query(("b", "b")) == 5.0           # known answers stay free
    with pytest.raises(NasrankError, match="budget"):
        BudgetedOracle(oracle, budget=0)


def test_record_holds_every_query_and_resume_replays_without_cost(tmp_path):
    path = tmp_path / "run.jsonl"
    first = TableOracle()
    res = random_search(space=TinySpace(), oracle=first, budget=5, seed=3, record=path)
    assert first.calls == 5
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["type"] for e in lines] == ["run"] + ["query"] * 5 + ["result"]
    assert [e["key"] for e in lines[1:6]] == [k for k, _, _ in res.queries]
    assert all(e["value"] == TINY_VALUES[e["key"]] for e in lines[1:6])
    # rerun on the same record: same answers, no evaluation at all
    again = TableOracle()
    res2 = random_search(space=TinySpace(), oracle=again, budget=5, seed=3, record=path)
    assert again.calls == 0
    assert res2.queries == res.queries and res2.best_arch == res.best_arch
    config, queries, result = read_record(path)
    assert config["method"] == "random" and len(queries) == 5
    assert result["best_arch"] == res.best_arch


def test_record_of_another_run_is_refused(tmp_path):
    path = tmp_path / "run.jsonl"
    random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=0, record=path)
    with pytest.raises(RecordError, match="another run configuration"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=1, record=path)


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "run.jsonl"
    random_search(space=TinySpace(), oracle=TableOracle(), budget=4, seed=0, record=path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # crash while writing query 3
    oracle = TableOracle()
    res = random_search(space=TinySpace(), oracle=oracle, budget=4, seed=0, record=path)
    assert oracle.calls == 2 and len(res.queries) == 4


def test_search_result_curve_and_prefix_reads():
    from nasrank.search.records import Query

    qs = [Query("x", 1.0, 10.0, 0.1), Query("y", 3.0, 9.0, 0.1), Query("z", 2.0, 11.0, 0.1)]
    r = SearchResult.from_queries(qs, {"m": 1})
    assert r.best_so_far == [1.0, 3.0, 3.0]
    assert (r.best_arch, r.best_value, r.best_reported) == ("y", 3.0, 9.0)
    assert r.best_reported_at(1) == 10.0 and r.best_reported_at(3) == 9.0


@pytest.fixture(scope="module")
def bench():
    from nasrank.spaces.benchmarks import load_nb201
    from conftest import data_path

    return load_nb201(data_path("nb201", "nb201.csv"))


def test_benchmark_oracle_published_optima(bench):
    c10 = BenchmarkOracle(bench, metric="cifar10_valid", report_metric="cifar10_test")
    value, reported = c10.optimum()
    assert value == pytest.approx(91.57, abs=0.01)          # best CIFAR-10 validation acc
    assert reported == pytest.approx(94.30, abs=0.01)       # its test accuracy (issue 6)
    c100 = BenchmarkOracle(bench, metric="cifar100_test")
    assert c100.optimum()[0] == pytest.approx(73.51, abs=0.01)


def test_benchmark_oracle_answers_by_canonical_key(bench):
    oracle = BenchmarkOracle(bench, metric="cifar100_test")
    # edge 0->1 is none, so node 1 has no input and the ops on its outgoing edges 1->2, 1->3
    # are dead: both cells compute one function and must share a key, a row and a query
    dead = NB201Arch(("none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1",
                      "nor_conv_3x3"))
    canon = NB201Arch(("none", "nor_conv_3x3", "none", "skip_connect", "none", "nor_conv_3x3"))
    row = bench.table.index(bench.space.format(canon))
    assert oracle.evaluate(dead).value == bench.table.column("cifar100_test")[row]
    bo = BudgetedOracle(oracle, budget=1)
    bo.query(dead)
    assert bo.query(canon) == bo.query(dead) and bo.used == 1


def test_training_oracle_matches_direct_training():
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.train import train_standalone

    from nasrank.spaces.nb201 import NB201Space

    space = NB201Space()
    data = load_dataset("digits", subset=200, seed=0)
    arch = space.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|")
    kw = dict(epochs=1, batch_size=64, lr=0.05, seed=1, build_kwargs={"C": 4, "N": 1})
    oracle = TrainingOracle(space, data, epochs=1, batch_size=64, lr=0.05, seed=1,
                            train_kwargs={"build_kwargs": {"C": 4, "N": 1}})
    ev = oracle.evaluate(arch)
    direct = train_standalone((space, arch), data, device="cpu", **kw)
    assert ev.value == direct.valid_acc and ev.reported == direct.test_acc
    assert ev.seconds > 0
    with pytest.raises(NasrankError, match="epochs"):
        TrainingOracle(space, data, epochs=0, batch_size=8, lr=0.1)


def test_bad_arguments_raise():
    with pytest.raises(NasrankError, match="seed"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=2, seed=-1)
    with pytest.raises(NasrankError, match="budget"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=2.5, seed=0)
    with pytest.raises(NasrankError, match="only 7 distinct"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=8, seed=0)


# ----------------------------------------------------------------------------- issue 17/19
import math  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402

from nasrank.errors import DiskFullError, LabelTableError, UnsafePathError  # noqa: E402
from conftest import data_path  # noqa: E402


def _record(tmp_path, budget=3):
    path = tmp_path / "run.jsonl"
    random_search(space=TinySpace(), oracle=TableOracle(), budget=budget, seed=0, record=path)
    return path


def test_record_symlinked_to_another_file_is_refused_and_that_file_kept(tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("line one\nline two, no newline")
    link = tmp_path / "run.jsonl"
    link.symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=0, record=link)
    assert victim.read_text() == "line one\nline two, no newline"


@pytest.mark.parametrize("content", [
    bytes(range(256)),                                       # binary
    b"just some text\nwith an unfinished line",             # foreign text
    b'{"type": "run", "config": {}}\nnot json\n{"type": "q',  # damaged in the middle
])
def test_record_repair_refuses_foreign_files_and_cuts_nothing(tmp_path, content):
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    with pytest.raises(NasrankError, match="refusing to modify"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=0, record=path)
    assert path.read_bytes() == content


def test_record_of_another_run_keeps_its_torn_line(tmp_path):
    path = _record(tmp_path)
    data = path.read_bytes() + b'{"type": "query", "i"'
    path.write_bytes(data)
    with pytest.raises(RecordError, match="another run configuration"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=1, record=path)
    assert path.read_bytes() == data


def test_record_disk_full_names_the_file_and_says_rerun_resumes(tmp_path, monkeypatch):
    import nasrank.search.records as records

    class Full:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, *_):
            raise OSError(28, "No space left on device")

    path = tmp_path / "run.jsonl"
    monkeypatch.setattr(records, "open_append", lambda *a, **k: Full())
    with pytest.raises(DiskFullError, match=r"run\.jsonl.*resumes"):
        random_search(space=TinySpace(), oracle=TableOracle(), budget=3, seed=0, record=path)


class _NanOracle(TableOracle):
    def evaluate(self, arch):
        ev = super().evaluate(arch)
        return type(ev)(math.nan, ev.reported, ev.seconds)


def test_nan_from_an_oracle_names_the_arch_and_is_not_recorded(tmp_path):
    bo = BudgetedOracle(_NanOracle(), budget=3, record=tmp_path / "r.jsonl")
    with pytest.raises(NasrankError, match=r"value nan for architecture 'b-b'"):
        bo.query(("b", "b"))
    assert bo.used == 0
    assert [json.loads(x)["type"] for x in (tmp_path / "r.jsonl").read_text().splitlines()] == ["run"]


def test_nan_labels_into_the_forest_name_the_arch(nb201_bench):
    from nasrank.search.surrogates import ForestSurrogate

    sp = nb201_bench.space
    archs = [sp.parse(k) for k in nb201_bench.table.keys[:4]]
    with pytest.raises(NasrankError, match=re.escape(f"{sp.format(archs[2])!r} is nan")):
        ForestSurrogate(sp).fit(archs, [1.0, 2.0, math.nan, 3.0])


def _cvpr_file(tmp_path, labelled=3, rows=6):
    lines = data_path("cvpr2021_track1", "archs.csv").read_text().splitlines()[:rows + 1]
    out = [lines[0]] + [ln if i < labelled else ln.rsplit(",", 1)[0] + ","
                        for i, ln in enumerate(lines[1:])]
    p = tmp_path / "archs.csv"
    p.write_text("\n".join(out) + "\n")
    return p


def test_partial_benchmark_refused_up_front_or_searched_only_where_labelled(tmp_path):
    from nasrank.spaces.benchmarks import load_benchmark

    bench = load_benchmark("cvpr2021", _cvpr_file(tmp_path))
    with pytest.raises(LabelTableError, match="only 3 architectures"):
        BenchmarkOracle(bench, metric="gt_acc")
    with pytest.raises(LabelTableError, match="only 6 architectures"):
        BenchmarkOracle(bench, metric="supernet_acc_run1")
    oracle = BenchmarkOracle(bench, metric="gt_acc", restrict=True)
    assert oracle.space.size == 3 and oracle.space.name == "cvpr2021"
    res = random_search(space=oracle.space, oracle=oracle, budget=3, seed=0)
    labelled = {bench.space.key(bench.archs[k]) for k in bench.labelled("gt_acc")}
    assert {k for k, _, _ in res.queries} == labelled
    assert res.best_value == max(bench.table.column("gt_acc")[:3])
    with pytest.raises(NasrankError, match="budget 4 exceeds the 3 distinct"):
        random_search(space=oracle.space, oracle=oracle, budget=4, seed=0,
                      record=tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()   # refused before anything was written
    rng = np.random.default_rng(0)
    for _ in range(20):  # the search operators never leave the labelled archs
        a = oracle.space.sample(rng)
        assert oracle.space.mutate(a, rng) in oracle.space
        assert oracle.space.crossover(a, oracle.space.sample(rng), rng) in oracle.space


def test_budget_above_the_distinct_archs_fails_at_once(nb201_bench, tmp_path):
    # NB201: 15,625 cells but 9,445 distinct functions (DESIGN.md, "Known facts")
    oracle = BenchmarkOracle(nb201_bench, metric="cifar10_valid")
    assert oracle.distinct == 9445
    with pytest.raises(NasrankError, match="budget 9446 exceeds the 9,445 distinct"):
        random_search(space=nb201_bench.space, oracle=oracle, budget=9446, seed=0,
                      record=tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()
