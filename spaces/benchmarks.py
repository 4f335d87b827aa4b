"""Read-only benchmarks: label tables with ground truth, read from the public file formats.

Every loader takes the user's path (a file, or a folder holding the usual file name); nothing is
downloaded and no path is built in.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import SearchSpace
from nasrank.errors import LabelTableError, NasrankError
from .labels import LabelTable
from .nb201 import EDGES, NB201Arch, NB201Space, parse_arch


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


def load_nb201(path: str | os.PathLike) -> Benchmark:
    """NAS-Bench-201 as published in ``nb201.csv`` (one row per cell, ``arch_str`` plus numeric
    columns: accuracies, 12-epoch accuracies, ``zc_*`` proxies, ``hw_*`` latencies).

    ``path`` is the CSV or a folder holding ``nb201.csv`` or ``nb201/nb201.csv``.
    """
    file = _resolve(path, ("nb201.csv", "nb201/nb201.csv"), "NB201 benchmark")
    space = NB201Space()
    with open(file, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in NB201_REQUIRED:
            if col not in header:
                raise LabelTableError(
                    f"NB201 file {str(file)!r} lacks column {col!r}; header is {header}"
                )
        numeric = [h for h in header if h not in ("arch_str", "index")]
        keys, rows, archs = [], [], {}
        for lineno, rec in enumerate(reader, start=2):
            text = rec["arch_str"]
            if text is None or text.strip() == "" or text.strip().lower() == "nan":
                raise LabelTableError(f"{str(file)!r} line {lineno}: empty arch_str")
            arch = parse_arch(text)
            vals = []
            for h in numeric:
                v = (rec[h] or "").strip()
                try:
                    vals.append(float(v) if v else math.nan)
                except ValueError:
                    raise LabelTableError(
                        f"{str(file)!r} line {lineno}: column {h!r} has non-numeric value {v!r}"
                    ) from None
            key = space.format(arch)
            keys.append(key)
            archs[key] = arch
            rows.append(vals)
    if not keys:
        raise LabelTableError(f"NB201 file {str(file)!r} has no rows")
    data = np.asarray(rows, dtype=np.float64)
    table = LabelTable(keys, {h: data[:, j] for j, h in enumerate(numeric)}, space=space.name)
    metrics = tuple(h for h in numeric if not h.startswith(("zc_", "hw_")) and "12ep" not in h)
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


def load_nbsuite_zero(
    path: str | os.PathLike, *, dataset: str = "cifar10", space: SearchSpace | None = None,
) -> LabelTable:
    """Read NAS-Bench-Suite-Zero's json layout
    ``{dataset: {arch_key: {"val_accuracy": x, <proxy>: {"score": s, ...}, ...}}}``
    into a label table with columns ``val_accuracy`` and ``zc_<proxy>``.

    NB201 keys may be official strings or NASLib op-index tuples; other spaces' keys are parsed
    with ``space.parse``. Keys are stored canonically (``space.key``).
    """
    space = space or NB201Space()
    file = _resolve(path, (f"zc_nasbench201.json",), "NAS-Bench-Suite-Zero")
    try:
        with open(file) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise LabelTableError(f"{str(file)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or dataset not in data:
        have = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise LabelTableError(f"{str(file)!r} has no dataset {dataset!r}; it has {have}")
    entries = data[dataset]
    if not isinstance(entries, dict) or not entries:
        raise LabelTableError(f"dataset {dataset!r} in {str(file)!r} holds no architectures")
    proxies = sorted({p for e in entries.values() for p, v in e.items() if isinstance(v, dict)})
    names = ["val_accuracy"] + [f"zc_{p}" for p in proxies]
    keys, rows = [], []
    for raw_key, entry in entries.items():
        if space.name == "nb201" and raw_key.strip().startswith(("(", "[")):
            arch = naslib_nb201_to_arch(raw_key)
        else:
            arch = space.parse(raw_key)
        row = [float(entry.get("val_accuracy", math.nan))]
        for p in proxies:
            v = entry.get(p)
            if not isinstance(v, dict) or "score" not in v:
                row.append(math.nan)
            else:
                row.append(float(v["score"]))
        keys.append(space.key(arch))
        rows.append(row)
    arr = np.asarray(rows, dtype=np.float64)
    return LabelTable(keys, {n: arr[:, j] for j, n in enumerate(names)}, space=space.name)


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
