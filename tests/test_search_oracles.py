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
