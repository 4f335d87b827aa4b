"""Oracles: the expensive ``arch -> value`` step of NAS, and the ledger that budgets it.

An *oracle* evaluates one architecture (:meth:`evaluate` returns the value the search maximises,
the value to report, and the seconds it cost): :class:`BenchmarkOracle` looks the answer up in a
benchmark table, :class:`TrainingOracle` trains the network from scratch.

A :class:`BudgetedOracle` wraps an oracle for one search run: it counts *unique* queries by
canonical key, refuses to exceed the budget (:class:`BudgetExhausted`), answers repeated queries
from memory for free, and records every new query in a :class:`~search.records.RunRecord`. A run
restarted on the same record replays the recorded answers (no evaluation, no new cost) and
carries on from where the record ends.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nasrank.spaces.base import Arch, SearchSpace
from nasrank.spaces.benchmarks import Benchmark
from nasrank.errors import LabelTableError, NasrankError

from .records import Query, RunRecord

logger = logging.getLogger(__name__)


class BudgetExhausted(NasrankError):
    """A search asked for more unique queries than its budget allows."""


@dataclass(frozen=True)
class Evaluation:
    value: float      # what the search maximises (e.g. validation accuracy)
    reported: float   # what is reported for the found arch (e.g. test accuracy)
    seconds: float    # cost of this evaluation


@runtime_checkable
class Oracle(Protocol):
    """Anything that evaluates architectures of ``space``; ``describe()`` is a JSON-able dict
    identifying the oracle (stored in run records so a record is never resumed by another)."""

    space: SearchSpace

    def evaluate(self, arch: Arch) -> Evaluation: ...
    def describe(self) -> dict[str, Any]: ...


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise NasrankError(f"budget must be a positive int, got {budget!r}")
    return budget


class BenchmarkOracle:
    """Look architectures up in a benchmark: select by ``metric``, report ``report_metric``.

    The row used is the arch's canonical key (NB201: the cell whose unreachable ops are
    ``none``), so two cells that compute the same function get the same answer. Tables keyed
    otherwise (NB101 hashes) go through :meth:`Benchmark.lookup_key`.
    """

    def __init__(self, benchmark: Benchmark, *, metric: str,
                 report_metric: str | None = None, restrict: bool = False) -> None:
        self.benchmark = benchmark
        self.space = benchmark.space
        self.metric = metric
        self.report_metric = report_metric or metric
        self._value = benchmark.table.column(metric)          # raises naming the bad column
        self._report = benchmark.table.column(self.report_metric)
        self.restricted = False
        labelled, total = benchmark.coverage(metric, self.report_metric)
        self.distinct = labelled  # distinct archs a search can query (budgets above fail)
        if labelled == 0:
            raise LabelTableError(
                f"benchmark {benchmark.name!r} has no architecture with finite {metric!r}"
                + (f" and {self.report_metric!r}" if self.report_metric != metric else ""))
        if total is None or labelled < total:
            if not restrict:
                of = "an unbounded space" if total is None else f"the space's {total:,}"
                raise LabelTableError(
                    f"benchmark {benchmark.name!r} labels {metric!r}"
                    + (f"/{self.report_metric!r}" if self.report_metric != metric else "")
                    + f" for only {labelled:,} architectures of {of}: a search would stop at "
                    f"the first unlabelled one; search only the labelled ones (restrict=True: "
                    f"use oracle.space as the search space) or choose a fully labelled metric")
            # searches must propose only labelled archs: use this oracle's space
            self.space = benchmark.labelled_space(metric, self.report_metric)
            self.restricted = True

    def row(self, arch: Arch) -> int:
        key = self.space.key(arch)
        table = self.benchmark.table
        if key not in table:
            key = self.benchmark.lookup_key(arch)
        return table.index(key)

    def evaluate(self, arch: Arch) -> Evaluation:
        t0 = time.perf_counter()
        i = self.row(arch)
        value, reported = float(self._value[i]), float(self._report[i])
        if not (math.isfinite(value) and math.isfinite(reported)):
            raise LabelTableError(
                f"benchmark {self.benchmark.name!r} has no finite {self.metric!r}/"
                f"{self.report_metric!r} for {self.space.key(arch)!r} ({value}, {reported})")
        return Evaluation(value, reported, time.perf_counter() - t0)

    def optimum(self) -> tuple[float, float]:
        """``(best value, reported value of that arch)`` over the canonical archs of the table
        (first row on ties): the target a search is measured against."""
        best_i, best = -1, -math.inf
        for i, v in enumerate(self._value):
            if math.isfinite(v) and v > best and math.isfinite(self._report[i]):
                best_i, best = i, float(v)
        return best, float(self._report[best_i])

    def describe(self) -> dict[str, Any]:
        d = {"oracle": "benchmark", "benchmark": self.benchmark.name,
             "space": self.space.name, "rows": len(self.benchmark.table),
             "metric": self.metric, "report_metric": self.report_metric}
        if self.restricted:
            d["labelled_archs"] = self.space.size
        return d


class TrainingOracle:
    """Train each architecture from scratch (``supernet.train.train_standalone``): the value is
    the validation accuracy, the reported value the test accuracy.

    ``checkpoint_dir`` (optional) keeps one checkpoint per arch, so a training interrupted
    mid-way resumes at its last epoch.
    """

    def __init__(self, space: SearchSpace, data: Any, *, epochs: int, batch_size: int,
                 lr: float, device: str = "cpu", seed: int = 0,
                 checkpoint_dir: str | os.PathLike | None = None,
                 train_kwargs: Mapping[str, Any] | None = None) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise NasrankError(f"epochs must be a positive int, got {epochs!r}")
        self.space, self.data = space, data
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.device, self.seed = device, seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.train_kwargs = dict(train_kwargs or {})

    def evaluate(self, arch: Arch) -> Evaluation:
        from nasrank.supernet.train import train_standalone  # heavy import only when training

        ckpt = None
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            # Named by the architecture as given, not its canonical key: two cells with one key
            # can differ in dead (unreachable) ops and so in parameter shapes.
            digest = hashlib.sha1(self.space.format(arch).encode()).hexdigest()[:16]
            ckpt = self.checkpoint_dir / f"{self.space.name}-{digest}.pt"
        t0 = time.perf_counter()
        res = train_standalone((self.space, arch), self.data, epochs=self.epochs,
                               batch_size=self.batch_size, lr=self.lr, device=self.device,
                               seed=self.seed, checkpoint=ckpt, **self.train_kwargs)
        secs = time.perf_counter() - t0
        logger.info("trained %s: valid_acc %.4f, test_acc %.4f (%d epochs, %.1f s)",
                    self.space.format(arch), float(res.valid_acc), float(res.test_acc),
                    self.epochs, secs)
        return Evaluation(float(res.valid_acc), float(res.test_acc), secs)

    def describe(self) -> dict[str, Any]:
        return {"oracle": "training", "space": self.space.name,
                "dataset": getattr(self.data, "name", type(self.data).__name__),
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "seed": self.seed, "train_kwargs": {k: repr(v) for k, v in
                                                    sorted(self.train_kwargs.items())}}


class BudgetedOracle:
    """One search run's view of an oracle: unique-query budget, memo, record, replay.

    ``query(arch)`` returns the value to maximise. A key asked before in this run costs nothing;
    a new key costs one unit of budget (raises :class:`BudgetExhausted` when none is left,
    before evaluating anything); a new key found in the record being resumed is answered from
    the record without evaluating (its recorded seconds still count as this run's cost).
    """

    def __init__(self, oracle: Oracle, *, budget: int,
                 record: str | os.PathLike | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        if not isinstance(oracle, Oracle):
            raise NasrankError(
                f"oracle must have evaluate(arch) and describe(), got {type(oracle).__name__}")
        self.oracle = oracle
        self.space = oracle.space
        self.budget = _check_budget(budget)
        limit = getattr(oracle, "distinct", None)
        if limit is None:
            limit = getattr(self.space, "size", None)
        if isinstance(limit, int) and budget > limit:
            raise NasrankError(
                f"budget {budget} exceeds the {limit:,} distinct architectures "
                f"{self.space.name!r} can offer here; a search could never spend it (use a "
                f"budget <= {limit:,})")
        self.queries: list[Query] = []
        self._memo: dict[str, Query] = {}
        self.record: RunRecord | None = None
        self._replay: dict[str, Query] = {}
        if record is not None:
            # the budget is not part of the run's identity: rerun with a larger one, the run
            # continues (its first queries replayed from the record, only the new ones evaluated)
            full = {"oracle": oracle.describe(), **dict(config or {})}
            self.record = RunRecord(record, full)
            self._replay = {q.key: q for q in self.record.queries}
        self.replayed = 0

    def preload(self, q: Query) -> None:
        """Make ``q`` a known answer to replay (e.g. a trial found in an Optuna study); the
        record's own answers take precedence."""
        self._replay.setdefault(q.key, q)

    @property
    def used(self) -> int:
        return len(self.queries)

    @property
    def remaining(self) -> int:
        return self.budget - len(self.queries)

    def seen(self, arch: Arch) -> bool:
        return self.space.key(arch) in self._memo

    def seen_key(self, key: str) -> bool:
        return key in self._memo

    def query(self, arch: Arch) -> float:
        return self.query_full(arch).value

    def query_full(self, arch: Arch) -> Query:
        key = self.space.key(arch)
        if key in self._memo:
            return self._memo[key]
        if len(self.queries) >= self.budget:
            raise BudgetExhausted(
                f"budget of {self.budget} unique queries is spent; refused to query {key!r}")
        if key in self._replay:
            q = self._replay[key]
            self.replayed += 1
        else:
            ev = self.oracle.evaluate(arch)
            q = Query(key, float(ev.value), float(ev.reported), float(ev.seconds))
            if not math.isfinite(q.value):
                raise NasrankError(
                    f"oracle {self.oracle.describe().get('oracle', type(self.oracle).__name__)!r}"
                    f" returned value {q.value} for architecture {key!r}; expected a finite "
                    f"number (nothing was recorded for it)")
            if self.record is not None:
                self.record.add_query(q)
        self._memo[key] = q
        self.queries.append(q)
        return q

    def result(self, config: Mapping[str, Any] | None = None):
        """The run's :class:`~search.records.SearchResult` (also appended to the record)."""
        from .records import SearchResult

        cfg = {"oracle": self.oracle.describe(), "budget": self.budget, **dict(config or {})}
        res = SearchResult.from_queries(self.queries, cfg)
        if self.record is not None:
            self.record.add_result(res)
        return res
