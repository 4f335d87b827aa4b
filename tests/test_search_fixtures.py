"""Shared fixtures of the search tests (no tests here): a 9-cell space with 7 distinct functions
and an oracle whose answers are a hand-written table."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from nasrank.search.oracles import Evaluation
from nasrank.errors import InvalidArchitectureError

OPTS = ("a", "b", "c")


class TinySpace:
    """Archs are pairs (p, q) of ops in a/b/c; when p == 'a' the second op is unreachable, so
    (a, *) share the key 'a-a': 9 cells, 7 distinct keys."""

    name = "tiny"
    size = 9
    node_feature_dim = max_nodes = hparam_dim = 0

    def parse(self, text: str) -> tuple[str, str]:
        parts = tuple(text.split("-"))
        if len(parts) != 2 or any(p not in OPTS for p in parts):
            raise InvalidArchitectureError(f"bad tiny arch {text!r}")
        return parts  # type: ignore[return-value]

    def format(self, arch: Any) -> str:
        return "-".join(self._check(arch))

    def _check(self, arch: Any) -> tuple[str, str]:
        if isinstance(arch, str):
            return self.parse(arch)
        if not (isinstance(arch, tuple) and len(arch) == 2 and all(p in OPTS for p in arch)):
            raise InvalidArchitectureError(f"bad tiny arch {arch!r}")
        return arch

    def canonical(self, arch: Any) -> tuple[str, str]:
        p, q = self._check(arch)
        return (p, "a") if p == "a" else (p, q)

    def key(self, arch: Any) -> str:
        return "-".join(self.canonical(arch))

    def sample(self, rng: np.random.Generator) -> tuple[str, str]:
        i, j = rng.integers(0, 3, size=2)
        return (OPTS[i], OPTS[j])

    def mutate(self, arch: Any, rng: np.random.Generator) -> tuple[str, str]:
        p, q = self._check(arch)
        e = int(rng.integers(2))
        cur = (p, q)[e]
        new = [o for o in OPTS if o != cur][int(rng.integers(2))]
        return (new, q) if e == 0 else (p, new)

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> tuple[str, str]:
        return (a[0], b[1]) if rng.random() < 0.5 else (b[0], a[1])

    def enumerate(self):
        return iter(itertools.product(OPTS, OPTS))

    def choices(self) -> dict[str, list[str]]:
        return {"p": list(OPTS), "q": list(OPTS)}

    def to_choices(self, arch: Any) -> dict[str, str]:
        p, q = self._check(arch)
        return {"p": p, "q": q}

    def from_choices(self, params: dict[str, Any]) -> tuple[str, str]:
        return self._check((params["p"], params["q"]))


# value of each distinct key (hand-written; 'c-b' is the best, reported = value - 1)
TINY_VALUES = {"a-a": 1.0, "b-a": 2.0, "b-b": 5.0, "b-c": 3.0, "c-a": 4.0, "c-b": 7.0, "c-c": 6.0}


class TableOracle:
    """Answers from ``TINY_VALUES``; counts evaluations; can fail after ``fail_after`` of them
    (simulates a crash mid-run)."""

    def __init__(self, space: Any = None, values: dict[str, float] | None = None,
                 fail_after: int | None = None) -> None:
        self.space = space or TinySpace()
        self.values = values or TINY_VALUES
        self.calls = 0
        self.fail_after = fail_after

    def evaluate(self, arch: Any) -> Evaluation:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        v = self.values[self.space.key(arch)]
        return Evaluation(v, v - 1.0, 0.5)

    def describe(self) -> dict[str, Any]:
        return {"oracle": "table", "space": self.space.name}


class CrashAfter:
    """Wrap an oracle so that it raises after ``k`` evaluations (a crash mid-search)."""

    def __init__(self, oracle: Any, k: int) -> None:
        self.oracle, self.k, self.calls = oracle, k, 0
        self.space = oracle.space

    def evaluate(self, arch: Any) -> Evaluation:
        if self.calls >= self.k:
            raise RuntimeError("simulated crash")
        self.calls += 1
        return self.oracle.evaluate(arch)

    def describe(self) -> dict[str, Any]:
        return self.oracle.describe()
