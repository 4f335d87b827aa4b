"""Read-only benchmarks: label tables with ground truth, read from the public file formats.

Every loader takes the user's path (a file, or a folder holding the usual file name); nothing is
downloaded and no path is built in.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import SearchSpace
from nasrank.errors import LabelTableError, NasrankError
from nasrank.proxy_names import canonical_column
from .labels import LabelTable
from .nb201 import EDGES, NB201Arch, NB201Space, parse_arch


ENUMERATE_LIMIT = 2_000_000  # spaces up to this size are enumerated to count distinct functions


@dataclass(frozen=True)
class Benchmark:
    """A label table with ground truth for (some of) a space's architectures.

    ``table.keys`` are the benchmark's own keys (NB201: the official string of every cell;
    NB101: the official hash); ``archs`` maps each key to its architecture value.
    """

    name: str
    space: SearchSpace
    table: LabelTable
    archs: dict[str, Any] = field(repr=False)
    metrics: tuple[str, ...]

    def value(self, arch: Any, metric: str) -> float:
        """The benchmark's value of ``metric`` for ``arch`` (an arch value or its string)."""
        key = self.lookup_key(arch)
        v = self.table.column(metric)[self.table.index(key)]
        return float(v)

    def lookup_key(self, arch: Any) -> str:
        """The table key of ``arch``: its formatted string when the table lists every arch,
        else its canonical key."""
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        text = self.space.format(arch)
        if text in self.table:
            return text
        key = self.space.key(arch)
        if key in self.table:
            return key
        raise LabelTableError(f"architecture {text!r} is not in benchmark {self.name!r}")

    def labelled(self, metric: str) -> list[str]:
        """Keys whose ``metric`` is finite (e.g. the 500 CVPR archs with ground truth)."""
        col = self.table.column(metric)
        return [k for k, v in zip(self.table.keys, col) if math.isfinite(v)]

    def coverage(self, *metrics: str) -> tuple[int, int | None]:
        """``(labelled, total)``: distinct architectures (canonical keys) with every ``metrics``
        finite, and the distinct architectures of the space (``None`` when it cannot be
        enumerated). A search that may propose any arch of the space needs the two equal."""
        cache = self.table.__dict__.setdefault("_coverage", {})  # tables are never mutated
        if metrics not in cache:
            cache[metrics] = self._coverage(metrics)
        return cache[metrics]

    def _coverage(self, metrics: tuple[str, ...]) -> tuple[int, int | None]:
        cols = [self.table.column(m) for m in metrics]
        ok = np.logical_and.reduce([np.isfinite(c) for c in cols])
        rows = np.flatnonzero(ok)
        size = self.space.size
        labelled = {self.space.key(self.archs[self.table.keys[i]]) for i in rows}
        if size is not None and rows.size >= size:  # every arch has a row: all are labelled
            return len(labelled), len(labelled)
        if size is None:
            return len(labelled), None
        if size > ENUMERATE_LIMIT:  # too many to enumerate: far more archs than any table holds
            return len(labelled), int(size)
        return len(labelled), _distinct_archs(self.space)

    def labelled_space(self, *metrics: str) -> SubsetSpace:
        """The space restricted to the architectures with every ``metrics`` finite."""
        cols = [self.table.column(m) for m in metrics]
        ok = np.logical_and.reduce([np.isfinite(c) for c in cols])
        archs = [self.archs[self.table.keys[i]] for i in np.flatnonzero(ok)]
        if not archs:
            raise LabelTableError(
                f"benchmark {self.name!r} has no architecture with finite {list(metrics)}")
        return SubsetSpace(self.space, archs)


_DISTINCT: dict[tuple, int] = {}


def _distinct_archs(space: SearchSpace) -> int:
    """Distinct canonical keys of a finite space (NB201: 9,445 of 15,625 cells), computed once
    per process and space structure."""
    try:
        sig = (type(space).__qualname__, space.name, space.size,
               repr(sorted((k, repr(v)) for k, v in space.choices().items())))
    except Exception:  # a space without choices(): no memo
        sig = None
    if sig is not None and sig in _DISTINCT:
        return _DISTINCT[sig]
    n = len({space.key(a) for a in space.enumerate()})
    if sig is not None:
        _DISTINCT[sig] = n
    return n


class SubsetSpace:
    """A space restricted to a finite list of its architectures (a benchmark's labelled ones).

    ``sample``, ``enumerate`` and ``size`` cover the list only; ``mutate`` and ``crossover`` use
    the space's own operators and, when the child falls outside the list, return the listed
    architecture closest to it (fewest differing choices, ties broken by ``rng``). Everything else
    (``key``, ``parse``, ``to_graph``, ``name``...) is the underlying space's, so records and
    checkpoints see the same space.
    """

    def __init__(self, space: SearchSpace, archs: list[Any]) -> None:
        self._space = space
        self._by_key: dict[str, Any] = {}
        for a in archs:
            self._by_key.setdefault(space.key(a), a)
        if not self._by_key:
            raise NasrankError(f"a subset of space {space.name!r} needs at least one architecture")
        self._archs = list(self._by_key.values())
        self.size = len(self._archs)
        self._codes: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_space":
            raise AttributeError(name)
        return getattr(self._space, name)

    def __contains__(self, arch: Any) -> bool:
        return self._space.key(arch) in self._by_key

    def enumerate(self):
        return iter(self._archs)

    def sample(self, rng: np.random.Generator) -> Any:
        return self._archs[int(rng.integers(self.size))]

    def _encode(self, arch: Any) -> np.ndarray:
        params = self._space.to_choices(arch)
        return np.array([repr(params[n]) for n in self._space.choices()], dtype=object)

    def _nearest(self, arch: Any, rng: np.random.Generator, exclude: str | None = None) -> Any:
        if self._codes is None:
            self._codes = np.stack([self._encode(a) for a in self._archs])
        dist = (self._codes != self._encode(arch)).sum(axis=1).astype(np.float64)
        if exclude is not None and self.size > 1:
            dist[self._archs.index(self._by_key[exclude])] = np.inf
        best = np.flatnonzero(dist == dist.min())
        return self._archs[int(best[int(rng.integers(best.size))])]

    def mutate(self, arch: Any, rng: np.random.Generator) -> Any:
        parent = self._space.key(arch)
        child = arch
        for _ in range(16):
            child = self._space.mutate(arch, rng)
            k = self._space.key(child)
            if k in self._by_key and k != parent:
                return self._by_key[k]
        return self._nearest(child, rng, exclude=parent if parent in self._by_key else None)

    def crossover(self, a: Any, b: Any, rng: np.random.Generator) -> Any:
        child = self._space.crossover(a, b, rng)
        k = self._space.key(child)
        return self._by_key[k] if k in self._by_key else self._nearest(child, rng)


def _resolve(path: str | os.PathLike, names: tuple[str, ...], what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in names:
            if (p / name).is_file():
                return p / name
        raise LabelTableError(f"no {what} file ({' or '.join(names)}) under folder {str(p)!r}")
    if not p.is_file():
        raise LabelTableError(f"{what} file {str(p)!r} does not exist")
    if p.stat().st_size == 0:
        raise LabelTableError(f"{what} file {str(p)!r} is empty")
    return p


# ----------------------------------------------------------------------------- NB201
NB201_REQUIRED = ("arch_str", "cifar10_valid", "cifar10_test", "cifar100_test")


#: Values the published sources write where a measurement failed (NAS-Bench-Suite-Zero's proxies,
#: HW-NAS-Bench's Edge TPU latency); loaded as NaN with a note, never as real numbers.
NB201_SENTINELS: dict[str, float] = {
    "zc_jacov": -1e8, "zc_nwot": -1e8, "zc_epe_nas": -1e8, "zc_zen": -1e8,
    "hw_edgetpu_latency": -1.0,
}


def clear_sentinels(names: Sequence[str], values: list[float]) -> str:
    """Turn the published failure sentinels (:data:`NB201_SENTINELS`) of one row into NaN, in
    place (``values[j]`` is column ``names[j]``); return the row's note naming what was
    cleared (``""`` when nothing was). Every loader and converter of the public files uses it."""
    failed = []
    for j, name in enumerate(names):
        bad = NB201_SENTINELS.get(name)
        if bad is not None and values[j] == bad:
            values[j] = math.nan
            failed.append(f"{name}={bad:g}")
    return f"published failure sentinel: {', '.join(failed)}" if failed else ""


def load_nb201(path: str | os.PathLike) -> Benchmark:
    """NAS-Bench-201 as published in ``nb201.csv`` (one row per cell, ``arch_str`` plus numeric
    columns: accuracies, 12-epoch accuracies, ``zc_*`` proxies, ``hw_*`` latencies).

    ``path`` is the CSV or a folder holding ``nb201.csv`` or ``nb201/nb201.csv``. Every row must
    have every field (a truncated file is refused); the published failure sentinels
    (:data:`NB201_SENTINELS`) become NaN with a note in the row's ``note``.
    """
    file = _resolve(path, ("nb201.csv", "nb201/nb201.csv"), "NB201 benchmark")
    space = NB201Space()
    try:
        with open(file, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None) or []
            for col in NB201_REQUIRED:
                if col not in header:
                    raise LabelTableError(
                        f"NB201 file {str(file)!r} lacks column {col!r}; header is {header[:8]}"
                    )
            a_col = header.index("arch_str")
            numeric = [(j, h) for j, h in enumerate(header) if h not in ("arch_str", "index")]
            names = [h for _, h in numeric]
            keys, rows, archs, notes = [], [], {}, []
            for rec in reader:
                lineno = reader.line_num
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise LabelTableError(
                        f"{str(file)!r} line {lineno}: {len(rec)} fields, expected "
                        f"{len(header)} (a truncated or damaged file?)")
                text = rec[a_col]
                if text.strip() == "" or text.strip().lower() == "nan":
                    raise LabelTableError(f"{str(file)!r} line {lineno}: empty arch_str")
                arch = parse_arch(text)
                vals = []
                for j, h in numeric:
                    v = rec[j].strip()
                    try:
                        vals.append(float(v) if v else math.nan)
                    except ValueError:
                        raise LabelTableError(
                            f"{str(file)!r} line {lineno}: column {h!r} has non-numeric value "
                            f"{v!r}") from None
                key = space.format(arch)
                keys.append(key)
                archs[key] = arch
                rows.append(vals)
                notes.append(clear_sentinels(names, vals))
    except UnicodeDecodeError as err:
        raise LabelTableError(
            f"NB201 file {str(file)!r} is not UTF-8 text (byte {err.start}); expected a CSV") from None
    except csv.Error as err:
        raise LabelTableError(f"NB201 file {str(file)!r} is not a valid CSV: {err}") from None
    if not keys:
        raise LabelTableError(f"NB201 file {str(file)!r} has no rows")
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    table = LabelTable(keys, {h: data[:, j] for j, h in enumerate(names)}, space=space.name,
                       notes=notes)
    metrics = tuple(h for h in names if not h.startswith(("zc_", "hw_")) and "12ep" not in h)
    return Benchmark("nb201", space, table, archs, metrics)


def canonical_subset(bench: Benchmark) -> Benchmark:
    """The rows whose key is already canonical (NB201: the 9,445 distinct functions)."""
    keys = [k for k, a in bench.archs.items() if bench.space.key(a) == k]
    return Benchmark(bench.name, bench.space, bench.table.select(keys),
                     {k: bench.archs[k] for k in keys}, bench.metrics)


# ----------------------------------------------------------------------------- NAS-Bench-Suite-Zero
# NASLib writes NB201 cells as op-index tuples: edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) in its
# 1-based node numbering, op indices into this list.
NASLIB_NB201_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_NB201_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def naslib_nb201_to_arch(text: str) -> NB201Arch:
    """Convert NASLib's ``"(i0, i1, ..., i5)"`` NB201 key to our arch."""
    try:
        idx = [int(t) for t in text.strip().strip("()[]").split(",") if t.strip()]
    except ValueError:
        raise LabelTableError(f"NASLib NB201 key {text!r} is not a tuple of ints") from None
    if len(idx) != 6 or any(not 0 <= i < len(NASLIB_NB201_OPS) for i in idx):
        raise LabelTableError(
            f"NASLib NB201 key {text!r}: expected 6 op indices in 0..{len(NASLIB_NB201_OPS) - 1}"
        )
    ops = dict(zip(NASLIB_NB201_EDGES, (NASLIB_NB201_OPS[i] for i in idx)))
    return NB201Arch(tuple(ops[e] for e in EDGES))


def read_nbsuite_zero(
    path: str | os.PathLike, *, dataset: str = "cifar10", space: SearchSpace | None = None,
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """The architectures and the raw columns (``val_accuracy``, ``zc_<proxy>``, published
    failure sentinels kept) of one dataset of NAS-Bench-Suite-Zero's json
    ``{dataset: {arch_key: {"val_accuracy": x, <proxy>: {"score": s, ...}, ...}}}``.

    ``path``: the json, or a folder holding ``zc_nasbench201.json``. NB201 keys may be official
    strings or NASLib op-index tuples; other spaces' keys are parsed with ``space.parse``.
    Proxy names are made canonical (:mod:`nasrank.proxy_names`); columns are sorted by name,
    the order of the published ``nb201.csv``. A missing value is NaN.
    """
    space = space or NB201Space()
    file = _resolve(path, ("zc_nasbench201.json",), "NAS-Bench-Suite-Zero")
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelTableError(f"{str(file)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or dataset not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LabelTableError(f"{str(file)!r} has no dataset {dataset!r}; it has {have}")
    entries = data[dataset]
    if not isinstance(entries, dict) or not entries:
        raise LabelTableError(f"dataset {dataset!r} in {str(file)!r} holds no architectures")
    bad = next((k for k, e in entries.items() if not isinstance(e, dict)), None)
    if bad is not None:
        raise LabelTableError(f"{str(file)!r}: entry {bad!r} of {dataset!r} is "
                              f"{type(entries[bad]).__name__}, expected an object of scores")
    raw_proxies = {p for e in entries.values() for p, v in e.items() if isinstance(v, dict)}
    by_name: dict[str, str] = {}
    for p in sorted(raw_proxies):
        name = canonical_column(f"zc_{p}")
        if name in by_name:
            raise LabelTableError(f"{str(file)!r} names proxy {name[3:]!r} twice: "
                                  f"{by_name[name]!r} and {p!r}")
        by_name[name] = p
    names = ["val_accuracy"] + sorted(by_name)
    archs, rows = [], []
    for raw_key, entry in entries.items():
        if space.name == "nb201" and raw_key.strip().startswith(("(", "[")):
            arch = naslib_nb201_to_arch(raw_key)
        else:
            arch = space.parse(raw_key)
        row = [_score(entry.get("val_accuracy", math.nan), file, raw_key, "val_accuracy")]
        for name in names[1:]:
            v = entry.get(by_name[name])
            row.append(math.nan if not isinstance(v, dict) or "score" not in v
                       else _score(v["score"], file, raw_key, name))
        archs.append(arch)
        rows.append(row)
    arr = np.asarray(rows, dtype=np.float64)
    return archs, {n: arr[:, j] for j, n in enumerate(names)}


def _score(value: Any, file: Path, key: str, column: str) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        raise LabelTableError(f"{str(file)!r}: {column} of {key!r} is {value!r}, expected a "
                              f"number") from None


def load_nbsuite_zero(
    path: str | os.PathLike, *, dataset: str = "cifar10", space: SearchSpace | None = None,
) -> LabelTable:
    """NAS-Bench-Suite-Zero's json (:func:`read_nbsuite_zero`) as a label table with columns
    ``val_accuracy`` and ``zc_<proxy>``; the published failure sentinels become NaN with a
    note. Keys are the measured cells as formatted by the space (NB201: the official string
    of the exact cell, so cells that compute one function stay distinct rows), also kept as
    the table's ``arch`` column."""
    space = space or NB201Space()
    archs, columns = read_nbsuite_zero(path, dataset=dataset, space=space)
    names = list(columns)
    rows = [[float(v) for v in r] for r in np.stack([columns[n] for n in names], axis=1)]
    notes = [clear_sentinels(names, row) for row in rows]  # NaN in place, with the reason
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    keys = [space.format(a) for a in archs]
    return LabelTable(keys, {n: data[:, j] for j, n in enumerate(names)}, space=space.name,
                      notes=notes, archs=keys)


# ----------------------------------------------------------------------------- dispatch
def _load_cvpr2021(path: str | os.PathLike) -> Benchmark:
    from .cvpr2021 import load_cvpr2021_csv

    return load_cvpr2021_csv(path)


def _load_nb101(path: str | os.PathLike) -> Benchmark:
    from .nb101 import load_nb101_json

    return load_nb101_json(path)


LOADERS: dict[str, Callable[[str | os.PathLike], Benchmark]] = {
    "nb201": load_nb201,
    "cvpr2021": _load_cvpr2021,
    "nb101": _load_nb101,
}


def load_benchmark(name: str, path: str | os.PathLike) -> Benchmark:
    """Load benchmark ``name`` (``nb201``, ``cvpr2021``, ``nb101``) from the user's ``path``."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise NasrankError(f"unknown benchmark {name!r}; expected one of {sorted(LOADERS)}") from None
    return loader(path)


# ----------------------------------------------------------------------------- registry entries
from nasrank.registry import Config, option  # noqa: E402  (entries below; loaders stay first)
from nasrank.spaces.registry import BENCHMARKS  # noqa: E402


@dataclass(frozen=True)
class _BenchmarkConfig(Config):
    path: str = option(help="benchmark file (or a folder holding it)")

    def build(self) -> Benchmark:
        return LOADERS[self.name](self.path)


@BENCHMARKS.register("nb201")
@dataclass(frozen=True)
class NB201BenchmarkConfig(_BenchmarkConfig):
    """NAS-Bench-201 (15,625 cells; CIFAR-10/100, ImageNet16-120 accuracies, proxies)."""


@BENCHMARKS.register("cvpr2021")
@dataclass(frozen=True)
class CVPR2021BenchmarkConfig(_BenchmarkConfig):
    """CVPR 2021 NAS track 1 (ResNet-20 widths; 500 archs with ground truth)."""


@BENCHMARKS.register("nb101")
@dataclass(frozen=True)
class NB101BenchmarkConfig(_BenchmarkConfig):
    """NAS-Bench-101 sample (keys are the official module hashes)."""


@BENCHMARKS.register("nbsuite-zero")
@dataclass(frozen=True)
class NBSuiteZeroConfig(_BenchmarkConfig):
    """NAS-Bench-Suite-Zero proxies + validation accuracy on NB201 (one dataset)."""

    dataset: str = option("cifar10", "dataset of the json to read")

    def build(self) -> Benchmark:
        table = load_nbsuite_zero(self.path, dataset=self.dataset)
        space = NB201Space()
        archs = {k: space.parse(k) for k in table.keys}
        return Benchmark("nbsuite-zero", space, table, archs, ("val_accuracy",))
