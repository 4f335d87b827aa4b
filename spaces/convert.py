"""Build nasrank's NB201 tables from the public files a user downloads (``nasrank convert``).

Sources (all optional, any combination; nothing is downloaded):

- **NATS-Bench** topology set (``NATS-tss-v1_0-3ffb9.pickle.pbz2`` or its ``-simple`` / ``-full``
  folder) through its PyPI API ``nats_bench`` (``pip install nats-bench``), or the original
  **NAS-Bench-201** file (``NAS-Bench-201-v1_1-096897.pth``) through ``nas_201_api``
  (``pip install nas-bench-201``): the accuracies of every cell, in official index order
  (:data:`NB201_ACCURACIES`: each value the mean over the published training seeds).
- **NAS-Bench-Suite-Zero** (``zc_nasbench201.json``): the 13 zero-cost proxies of each cell.
- **HW-NAS-Bench** (``HW-NAS-Bench-v1_0.pickle``): latency and energy on six devices,
  ``{"nasbench201": {dataset: {metric: [value per official index], "config": [...]}}}``.

With an accuracy source, :func:`build_nb201_benchmark` writes the layout of the shared
``nb201.csv`` (``index, arch_str``, accuracies, ``zc_*``, ``hw_*``; values as published) that
:func:`~nasrank.spaces.benchmarks.load_nb201` reads, and loads it back: the published failure
sentinels (-1e8 proxies, -1 Edge TPU latency) become NaN with a note there, in one place.
Without one, :func:`build_label_table` writes a label table of the proxy and hardware columns
(sentinels NaN with a note) keyed by cell. The NATS-Bench, NAS-Bench-201 and HW-NAS-Bench
files are Python pickles: convert only files from their official sources.
"""

from __future__ import annotations

import csv
import importlib
import logging
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import ConfigError, LabelTableError
from nasrank.safeio import disk_full_guard, refuse_symlink

from .benchmarks import Benchmark, clear_sentinels, load_nb201, read_nbsuite_zero
from .labels import LabelTable
from .nb201 import NB201Space

logger = logging.getLogger(__name__)

__all__ = ["NB201_ACCURACIES", "HW_METRICS", "open_nats_bench", "open_nas_bench_201",
           "api_accuracies", "read_hw_nas_bench", "build_nb201_benchmark", "build_label_table"]

#: column -> (API dataset, hp, key of ``get_more_info``): the accuracy columns of ``nb201.csv``.
#: ``cifar10-valid`` trains on the CIFAR-10 train split and validates on the held-out one;
#: ``cifar10`` trains on train+valid and tests on the test set; ``cifar100`` tests on its
#: ``x-test`` half. ``hp="12"``: the 12-epoch schedule (a cheap real low-fidelity label).
NB201_ACCURACIES: dict[str, tuple[str, str, str]] = {
    "cifar10_test": ("cifar10", "200", "test-accuracy"),
    "cifar100_test": ("cifar100", "200", "test-accuracy"),
    "cifar10_valid": ("cifar10-valid", "200", "valid-accuracy"),
    "cifar10_valid_12ep": ("cifar10-valid", "12", "valid-accuracy"),
    "cifar10_test_12ep": ("cifar10", "12", "test-accuracy"),
    "cifar100_valid_12ep": ("cifar100", "12", "valid-accuracy"),
    "cifar100_test_12ep": ("cifar100", "12", "test-accuracy"),
}

#: HW-NAS-Bench's NB201 metrics, in its API's order (latency in ms, energy in mJ)
HW_METRICS = ("edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency",
              "pixel3_latency", "eyeriss_latency", "eyeriss_energy",
              "eyeriss_arithmetic_intensity", "fpga_latency", "fpga_energy")

HW_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")


# ----------------------------------------------------------------------------- accuracy APIs
def _import_api(module: str, package: str, what: str) -> Any:
    """Import an optional API package, or say which pip package provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"reading {what} needs the {module!r} module: pip install {package} (or pip install "
            f"'nasrank[convert]')") from None


def open_nats_bench(path: str | os.PathLike) -> Any:
    """The NATS-Bench topology API (``nats_bench.create(..., "tss")``) over a benchmark file
    (``NATS-tss-v1_0-3ffb9.pickle.pbz2``) or folder (``NATS-tss-v1_0-3ffb9-simple``: read in
    the API's fast mode, one file per cell)."""
    nats_bench = _import_api("nats_bench", "nats-bench", "NATS-Bench")
    p = Path(path)
    if not p.exists() and not Path(str(p) + ".pbz2").exists():
        raise LabelTableError(f"NATS-Bench file or folder {str(p)!r} does not exist")
    try:
        return nats_bench.create(str(p), "tss", fast_mode=p.is_dir(), verbose=False)
    except Exception as err:  # the API raises ValueError, AssertionError, pickle errors...
        raise LabelTableError(f"{str(p)!r} is not a NATS-Bench topology benchmark: "
                              f"{type(err).__name__}: {err}") from None


def open_nas_bench_201(path: str | os.PathLike) -> Any:
    """The NAS-Bench-201 API (``nas_201_api.NASBench201API``) over the original ``.pth`` file.

    The file is a pickle written with ``torch.save`` by an older torch: it is read with
    ``weights_only=False`` (the API's own behaviour before torch 2.6) and handed to the API."""
    api = _import_api("nas_201_api", "nas-bench-201", "NAS-Bench-201")
    import torch

    p = Path(path)
    if not p.is_file():
        raise LabelTableError(f"NAS-Bench-201 file {str(p)!r} does not exist")
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=False)
        return api.NASBench201API(data, verbose=False)
    except Exception as err:
        raise LabelTableError(f"{str(p)!r} is not a NAS-Bench-201 benchmark file: "
                              f"{type(err).__name__}: {err}") from None


def api_accuracies(api: Any, *, progress: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """The architecture string of every index of a NATS-Bench topology / NAS-Bench-201 API
    object, and the :data:`NB201_ACCURACIES` columns (the mean over the published seeds, via
    ``get_more_info(index, dataset, hp=..., is_random=False)``); NaN where the API holds no
    record for that dataset and schedule."""
    from tqdm import tqdm

    n = len(api)
    archs = [str(api[i]) for i in range(n)]
    cols = {c: np.full(n, np.nan) for c in NB201_ACCURACIES}
    missing: dict[str, int] = {}
    for i in tqdm(range(n), desc="accuracies", disable=not progress, unit="cell"):
        infos: dict[tuple[str, str], dict[str, Any] | None] = {}
        for col, (dataset, hp, key) in NB201_ACCURACIES.items():
            if (dataset, hp) not in infos:
                try:
                    infos[dataset, hp] = api.get_more_info(i, dataset, hp=hp, is_random=False)
                except (KeyError, ValueError):  # no record of this dataset / schedule
                    infos[dataset, hp] = None
            info = infos[dataset, hp]
            value = None if info is None else info.get(key)
            if value is None:
                missing[col] = missing.get(col, 0) + 1
            else:
                cols[col][i] = float(value)
        if getattr(api, "fast_mode", False):  # NATS-Bench folder: read each cell's file once,
            api.arch2infos_dict.pop(i, None)  # then let it go (memory stays flat over 15,625)
            api.evaluated_indexes.discard(i)
    for col, k in missing.items():
        logger.warning("%s: no record for %d of %d cells (NaN)", col, k, n)
    return archs, cols


# ----------------------------------------------------------------------------- HW-NAS-Bench
def read_hw_nas_bench(path: str | os.PathLike, *, dataset: str = "cifar10",
                      ) -> tuple[list[str] | None, dict[str, np.ndarray]]:
    """HW-NAS-Bench's NB201 part for ``dataset``: the architecture string of each official
    index (from its ``config`` list; ``None`` when the file has none) and the raw columns
    ``hw_<metric>`` (published sentinels kept)."""
    p = Path(path)
    if not p.is_file():
        raise LabelTableError(f"HW-NAS-Bench file {str(p)!r} does not exist")
    if dataset not in HW_DATASETS:
        raise ConfigError(f"HW-NAS-Bench dataset {dataset!r}: expected one of {HW_DATASETS}")
    try:
        with open(p, "rb") as f:
            data = pickle.load(f)
    except Exception as err:
        raise LabelTableError(f"{str(p)!r} is not an HW-NAS-Bench pickle: "
                              f"{type(err).__name__}: {err}") from None
    space = data.get("nasbench201") if isinstance(data, Mapping) else None
    if not isinstance(space, Mapping):
        have = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise LabelTableError(f"{str(p)!r} has no 'nasbench201' part (HW-NAS-Bench layout "
                              f"{{'nasbench201': {{dataset: {{metric: [...]}}}}}}); it has {have}")
    if dataset not in space:
        raise LabelTableError(f"{str(p)!r} has no dataset {dataset!r} under 'nasbench201'; it "
                              f"has {sorted(map(str, space))}")
    part = space[dataset]
    metrics = [m for m in HW_METRICS if m in part]
    if not metrics:
        raise LabelTableError(f"{str(p)!r}: {dataset!r} holds none of the metrics {HW_METRICS}")
    cols: dict[str, np.ndarray] = {}
    for m in metrics:
        try:
            cols[f"hw_{m}"] = np.asarray(part[m], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise LabelTableError(f"{str(p)!r}: {dataset}/{m} is not a list of numbers: "
                                  f"{err}") from None
    sizes = {c: len(v) for c, v in cols.items()}
    if len(set(sizes.values())) != 1:
        raise LabelTableError(f"{str(p)!r}: the metrics of {dataset!r} differ in length: {sizes}")
    n = next(iter(sizes.values()))
    archs = None
    if "config" in part:
        config = list(part["config"])
        if len(config) != n:
            raise LabelTableError(f"{str(p)!r}: {len(config)} configs for {n} measurements")
        try:
            archs = [str(c["arch_str"]) for c in config]
        except (TypeError, KeyError):
            raise LabelTableError(f"{str(p)!r}: a config of {dataset!r} lacks 'arch_str'") from None
    return archs, cols


# ----------------------------------------------------------------------------- writers
def _fmt(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def _check_aligned(archs: Sequence[str], other: Sequence[str], what: str) -> None:
    """Two per-index architecture lists must name the same cell at every index."""
    space = NB201Space()
    if len(other) != len(archs):
        raise LabelTableError(f"{what} lists {len(other)} architectures, the accuracy source "
                              f"{len(archs)}; expected one per official NB201 index")
    for i, (a, b) in enumerate(zip(archs, other)):
        if space.format(space.parse(a)) != space.format(space.parse(b)):
            raise LabelTableError(f"{what}: index {i} is {b!r}, the accuracy source has {a!r} "
                                  f"(not the official index order?)")


def build_nb201_benchmark(
    out: str | os.PathLike, *, nats_bench: str | os.PathLike | None = None,
    nas_bench_201: str | os.PathLike | None = None,
    nbsuite_zero: str | os.PathLike | None = None, hw_nas_bench: str | os.PathLike | None = None,
    dataset: str = "cifar10", progress: bool = False,
) -> Benchmark:
    """Write the NB201 benchmark CSV (the layout of ``nb201.csv``) at ``out`` from an accuracy
    source (``nats_bench`` or ``nas_bench_201``, exactly one) plus, optionally, the proxies
    of NAS-Bench-Suite-Zero and the hardware costs of HW-NAS-Bench on ``dataset``; return it
    as loaded by :func:`~nasrank.spaces.benchmarks.load_nb201`.

    Rows follow the API's official index order; a Suite-Zero value joins the row of the very
    cell it was measured on (NaN for cells the json does not list); HW-NAS-Bench joins by
    index (checked against its ``config`` architectures when present). Suite-Zero's own
    ``val_accuracy`` is left out: the API's ``cifar10_valid`` is that measurement."""
    if (nats_bench is None) == (nas_bench_201 is None):
        raise ConfigError("the NB201 benchmark needs exactly one accuracy source: a NATS-Bench "
                          "topology file/folder or a NAS-Bench-201 .pth file")
    api = open_nats_bench(nats_bench) if nats_bench is not None else \
        open_nas_bench_201(nas_bench_201)  # type: ignore[arg-type]
    archs, columns = api_accuracies(api, progress=progress)
    space = NB201Space()
    cells = [space.format(space.parse(a)) for a in archs]
    if nbsuite_zero is not None:
        zc_archs, zc = read_nbsuite_zero(nbsuite_zero, dataset=dataset, space=space)
        row = {c: i for i, c in enumerate(cells)}
        where = [row.get(space.format(a), -1) for a in zc_archs]
        unknown = [space.format(a) for a, i in zip(zc_archs, where) if i < 0]
        if unknown:
            raise LabelTableError(f"NAS-Bench-Suite-Zero cell {unknown[0]!r} is not in the "
                                  f"accuracy source ({len(unknown)} such cells)")
        for name, values in zc.items():
            if name == "val_accuracy":
                continue
            col = np.full(len(cells), np.nan)
            col[where] = values
            columns[name] = col
        logger.info("NAS-Bench-Suite-Zero: %d proxies for %d of %d cells",
                    len(zc) - 1, len(zc_archs), len(cells))
    if hw_nas_bench is not None:
        hw_archs, hw = read_hw_nas_bench(hw_nas_bench, dataset=dataset)
        n_hw = len(next(iter(hw.values())))
        if hw_archs is not None:
            _check_aligned(archs, hw_archs, f"HW-NAS-Bench {str(hw_nas_bench)!r}")
        elif n_hw != len(archs):
            raise LabelTableError(f"HW-NAS-Bench {str(hw_nas_bench)!r} has {n_hw} values per "
                                  f"metric, the accuracy source {len(archs)} cells")
        columns.update(hw)
    _write_benchmark_csv(Path(out), archs, columns)
    return load_nb201(out)


def _write_benchmark_csv(out: Path, archs: Sequence[str], columns: Mapping[str, np.ndarray],
                         ) -> None:
    """``index,arch_str,<columns>`` atomically (a temporary file, then rename)."""
    refuse_symlink(out, "benchmark file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    names = list(columns)
    with disk_full_guard(out):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["index", "arch_str", *names])
            for i, a in enumerate(archs):
                w.writerow([i, a, *(_fmt(columns[n][i]) for n in names)])
        os.replace(tmp, out)


def build_label_table(
    out: str | os.PathLike, *, nbsuite_zero: str | os.PathLike | None = None,
    hw_nas_bench: str | os.PathLike | None = None, dataset: str = "cifar10",
) -> LabelTable:
    """Write a label table (plain CSV + ``.meta.json``) of the NAS-Bench-Suite-Zero columns
    (``val_accuracy``, ``zc_*``) and/or the HW-NAS-Bench columns (``hw_*``, which need the
    file's ``config`` architectures) on ``dataset``, one row per cell (keyed by its official
    string; the union of the cells of both files, NaN with a note where one file lacks a
    cell); the published failure sentinels become NaN with a note."""
    if nbsuite_zero is None and hw_nas_bench is None:
        raise ConfigError("nothing to convert: give NAS-Bench-Suite-Zero json and/or an "
                          "HW-NAS-Bench pickle (or an accuracy source for the benchmark CSV)")
    space = NB201Space()
    parts: list[tuple[str, list[str], dict[str, np.ndarray]]] = []
    if nbsuite_zero is not None:
        zc_archs, zc = read_nbsuite_zero(nbsuite_zero, dataset=dataset, space=space)
        parts.append(("NAS-Bench-Suite-Zero", [space.format(a) for a in zc_archs], zc))
    if hw_nas_bench is not None:
        hw_archs, hw = read_hw_nas_bench(hw_nas_bench, dataset=dataset)
        if hw_archs is None:
            raise LabelTableError(
                f"HW-NAS-Bench {str(hw_nas_bench)!r} has no 'config' list, so the cell of each "
                f"index is unknown: give an accuracy source (--nats-bench / --nas-bench-201) to "
                f"align it by index")
        parts.append(("HW-NAS-Bench", [space.format(space.parse(a)) for a in hw_archs], hw))
    keys = list(dict.fromkeys(k for _, cells, _ in parts for k in cells))
    row = {k: i for i, k in enumerate(keys)}
    names = [n for _, _, cols in parts for n in cols]
    data = np.full((len(keys), len(names)), np.nan)
    absent: list[list[str]] = [[] for _ in keys]
    j = 0
    for what, cells, cols in parts:
        idx = np.array([row[c] for c in cells], dtype=np.int64)
        for values in cols.values():
            data[idx, j] = values
            j += 1
        present = np.zeros(len(keys), dtype=bool)
        present[idx] = True
        for i in np.flatnonzero(~present):
            absent[i].append(f"not in {what}")
    rows = [[float(v) for v in r] for r in data]
    sentinel_notes = [clear_sentinels(names, r) for r in rows]  # NaN in place, with the reason
    notes = ["; ".join(([s] if s else []) + a) for s, a in zip(sentinel_notes, absent)]
    data = np.asarray(rows, dtype=np.float64).reshape(len(keys), len(names))
    table = LabelTable(keys, {n: data[:, j] for j, n in enumerate(names)},
                       space=space.name, notes=notes, archs=keys)
    table.to_csv(out)
    return table
