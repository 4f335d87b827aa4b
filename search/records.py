"""Run records: every query of a search, in order, on disk, so a run can be resumed and audited.

One JSON-lines file per run:

- line 1: ``{"type": "run", "config": {...}}`` (what was searched, how, with which seed);
- one ``{"type": "query", "i": n, "key": ..., "value": ..., "reported": ..., "seconds": ...}``
  line per *new* unique query, appended and flushed as soon as the answer is known (a killed run
  loses at most the query being evaluated);
- ``{"type": "result", ...}`` when a run finishes (a finished run that is run again appends a
  second, identical result line; readers take the last one).

JSON lines rather than one JSON document because appending one line is the only write, so a
crash can never corrupt what was already recorded (a torn last line, the query that was in
flight when the process died, is dropped on reading).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasrank.errors import NasrankError, UnsafePathError
from nasrank.safeio import disk_full_guard, open_append, refuse_symlink


class RecordError(NasrankError):
    """A run record that is malformed or belongs to another run configuration."""


@dataclass(frozen=True)
class Query:
    """One unique query: canonical key, the value the search maximised, the value reported
    (e.g. test accuracy when selecting by validation accuracy) and its cost in seconds."""

    key: str
    value: float
    reported: float
    seconds: float

    def as_tuple(self) -> tuple[str, float, float]:
        return (self.key, self.value, self.seconds)


@dataclass
class SearchResult:
    """What every search returns.

    ``queries`` lists ``(key, value, seconds)`` in query order; ``reported`` the reported value
    of each query in the same order; ``best_so_far[i]`` is the best value among the first
    ``i + 1`` queries; ``best_arch`` the key of the arch with the best value (first one on ties)
    and ``best_reported`` its reported value.
    """

    best_arch: str
    best_value: float
    best_reported: float
    queries: list[tuple[str, float, float]]
    reported: list[float]
    best_so_far: list[float]
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_queries(cls, queries: Sequence[Query], config: Mapping[str, Any]) -> SearchResult:
        if not queries:
            raise NasrankError(f"a search result needs at least one query; config {dict(config)}")
        best_i, curve, best = 0, [], -math.inf
        for i, q in enumerate(queries):
            if q.value > best:
                best, best_i = q.value, i
            curve.append(best)
        b = queries[best_i]
        return cls(b.key, b.value, b.reported, [q.as_tuple() for q in queries],
                   [q.reported for q in queries], curve, dict(config))

    def best_reported_at(self, n: int) -> float:
        """Reported value of the best-by-value arch among the first ``n`` queries."""
        if not 1 <= n <= len(self.queries):
            raise NasrankError(f"n={n} outside 1..{len(self.queries)} queries of this run")
        vals = [v for _, v, _ in self.queries[:n]]
        return self.reported[vals.index(max(vals))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_arch": self.best_arch, "best_value": self.best_value,
            "best_reported": self.best_reported,
            "queries": [list(q) for q in self.queries], "reported": self.reported,
            "best_so_far": self.best_so_far, "config": self.config,
        }

    def to_csv(self, path: str | os.PathLike) -> None:
        """The queries as CSV (``i,key,value,reported,seconds,best_so_far``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["i", "key", "value", "reported", "seconds", "best_so_far"])
            for i, ((k, v, s), r, b) in enumerate(zip(self.queries, self.reported,
                                                       self.best_so_far)):
                w.writerow([i, k, repr(v), repr(r), f"{s:.6g}", repr(b)])


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip ``config`` through JSON so that a fresh config compares equal to a read one."""
    try:
        return json.loads(json.dumps(dict(config), sort_keys=True))
    except TypeError as err:
        raise RecordError(f"run config must be JSON-serialisable: {err}") from None


class RunRecord:
    """The JSON-lines record of one run (see module docstring).

    Opening an existing record checks that it was written with the same ``config`` (a resumed run
    must be the same run) and loads its queries for replay.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.config = _jsonable(config)
        self.queries: list[Query] = []
        self.result: dict[str, Any] | None = None
        refuse_symlink(self.path, "run record")
        if self.path.exists() and self.path.stat().st_size > 0:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"type": "run", "config": self.config})

    def _load(self) -> None:
        """Read and check the whole record; only then drop a torn last line (the query in flight
        when the process died). A file that is not a record of ours is refused, never cut."""
        data = self.path.read_bytes()
        cut = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
        try:
            text, tail = data[:cut].decode("utf-8"), data[cut:].decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise UnsafePathError(
                f"{str(self.path)!r} is not a UTF-8 text file, so not a nasrank run record; "
                f"refusing to modify it: move it away or use another --out") from None
        entries = []
        for n, line in enumerate(text.split("\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{str(self.path)!r} line {n} is not JSON ({err}): not a "
                                  f"nasrank run record, or damaged; refusing to modify it") from None
            if not isinstance(e, dict):
                raise RecordError(f"{str(self.path)!r} line {n} is not a JSON object: not a "
                                  f"nasrank run record; refusing to modify it")
            entries.append(e)
        if not entries or entries[0].get("type") != "run":
            raise RecordError(f"{str(self.path)!r} does not start with a 'run' line: not a "
                              f"nasrank run record; refusing to modify it")
        if tail and (not tail.startswith("{") or "\x00" in tail or "\n" in tail):
            raise RecordError(f"{str(self.path)!r}: its unfinished last line {tail[:60]!r} is not "
                              f"a torn entry of a run record; refusing to modify it")
        recorded = entries[0].get("config")
        if isinstance(recorded, dict):  # records written before the budget left the identity
            recorded = {k: v for k, v in recorded.items() if k != "budget"}
        if recorded != self.config:
            raise RecordError(
                f"record {str(self.path)!r} was written by another run configuration:\n"
                f"  recorded {entries[0].get('config')}\n  this run {self.config}\n"
                f"use another record path")
        queries: list[Query] = []
        for e in entries[1:]:
            if e.get("type") == "query":
                try:
                    queries.append(Query(str(e["key"]), float(e["value"]),
                                         float(e["reported"]), float(e["seconds"])))
                except (KeyError, TypeError, ValueError):
                    raise RecordError(f"{str(self.path)!r}: malformed query entry {e}") from None
            elif e.get("type") == "result":
                self.result = e
            else:
                raise RecordError(f"{str(self.path)!r}: unknown entry type {e.get('type')!r}")
        self.queries = queries
        if tail:  # validated: drop the torn line so later appends start on a fresh line
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.ftruncate(fd, cut)
            finally:
                os.close(fd)

    def _append(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with disk_full_guard(self.path):
            with open_append(self.path, "run record") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def add_query(self, q: Query) -> None:
        self.queries.append(q)
        self._append({"type": "query", "i": len(self.queries) - 1, "key": q.key,
                      "value": q.value, "reported": q.reported, "seconds": q.seconds})

    def add_result(self, result: SearchResult) -> None:
        self._append({"type": "result", **result.to_dict()})


def read_record(path: str | os.PathLike) -> tuple[dict[str, Any], list[Query], dict | None]:
    """``(config, queries, last result or None)`` of a record file, for audits and reports."""
    p = Path(path)
    if not p.is_file():
        raise RecordError(f"run record {str(p)!r} does not exist")
    try:
        first = p.read_bytes().split(b"\n", 1)[0].decode("utf-8")
        config = json.loads(first)["config"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise RecordError(f"{str(p)!r} does not start with a 'run' line") from None
    rec = RunRecord(p, config)
    return rec.config, rec.queries, rec.result
