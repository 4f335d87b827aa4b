"""Ground truth for judging a supernet: stand-alone trainings of N architectures x K seeds.

A supernet (or a zero-cost proxy) is judged by how well its cheap scores rank architectures
against their accuracy when each is trained alone. This module produces that reference table:
every architecture of a list (``n`` distinct ones sampled uniformly from the seed, or read from a
file) is trained from scratch with :func:`~nasrank.supernet.train.train_standalone` (the
training oracle's code) once per training seed, under one :class:`Recipe` (dataset, input size,
training-set size, network size, epochs, optimiser).

On disk a table is a CSV, one row per (architecture, seed) with the columns of :data:`COLUMNS`,
plus a JSON sidecar ``<file>.meta.json`` holding the recipe, the architecture list, the seeds
and the shard. Rows are appended (and fsync'ed) as trainings finish, so a killed run loses at
most the training in progress: a rerun with the same arguments repairs a torn last line, skips
the (arch, seed) pairs already written and refuses a file made with another recipe, list or
shard. ``shard=(i, n)`` trains every n-th job starting at job i (jobs in arch-major order); the
shards' files combine with :func:`merge_groundtruth` into the table an unsharded run writes
(same rows, same order; only ``seconds`` differs between runs).

Architectures are trained in their canonical form (the space's key parsed back), so two cells
computing one function are one row group, as in NAS-Bench-201.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import (ConfigError, LabelTableError, NasrankError, OutputLockedError,
                            UnsafePathError)
from nasrank.registry import Config, option
from nasrank.safeio import disk_full_guard, open_append, refuse_symlink
from nasrank.spaces.base import Arch, SearchSpace, sample_unique

logger = logging.getLogger(__name__)

FORMAT = "nasrank ground truth"
FORMAT_VERSION = 1
META_SUFFIX = ".meta.json"
#: the columns of a ground-truth CSV, in order (``index``: position of the arch in the list)
COLUMNS = ("index", "key", "arch", "seed", "valid_acc", "test_acc", "valid_loss", "test_loss",
           "seconds")
METRICS = ("valid_acc", "test_acc", "valid_loss", "test_loss", "seconds")


@dataclass(frozen=True)
class Recipe(Config):
    """How every architecture of a ground-truth table is trained (its identity: a table is only
    resumed or merged under the same recipe). The data folder is not part of it."""

    space: str = option("nb201", "search space of the architectures")
    dataset: str = option("fashion-mnist", "dataset (see nasrank.supernet.datasets)")
    epochs: int = option(3, "training epochs per architecture", low=1)
    batch_size: int = option(64, "training batch size", low=1)
    lr: float = option(0.1, "peak learning rate (SGD, cosine schedule)", low=0.0, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0.0, high=1.0)
    weight_decay: float = option(5e-4, "weight decay", low=0.0)
    image_size: int | None = option(None, "resize images to this side (default: as stored)",
                                    low=1)
    in_channels: int | None = option(None, "image channels fed to the net (1 or 3; default: "
                                     "as stored)", choices=(1, 3))
    train_subset: int | None = option(None, "seeded, stratified training subset size "
                                      "(default: the whole training split)", low=1)
    valid_fraction: float = option(0.1, "fraction of the training images held out for "
                                   "validation", low=0.0, low_open=True, high=0.9)
    test_subset: int | None = option(None, "seeded, stratified test subset size (default: "
                                     "the whole test split)", low=10)
    data_seed: int = option(0, "seed of the data split and subsets (same for every training "
                            "seed)", low=0)
    width: int | None = option(None, "NB201 stem width C (default: the space's)", low=1)
    cells: int | None = option(None, "NB201 cells per stage N (default: the space's)", low=1)

    def check(self) -> None:
        from nasrank.spaces import SPACE_NAMES
        from nasrank.supernet.datasets import DATASET_NAMES

        if self.space not in SPACE_NAMES:
            raise ConfigError(f"unknown search space {self.space!r}; expected one of "
                              f"{list(SPACE_NAMES)}")
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"unknown dataset {self.dataset!r}; expected one of "
                              f"{list(DATASET_NAMES)}")
        if self.space != "nb201" and (self.width is not None or self.cells is not None):
            raise ConfigError(f"width/cells set the NB201 network size; space {self.space!r} "
                              f"fixes its own widths (got width={self.width}, "
                              f"cells={self.cells})")

    def build_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``space.build`` (the network size)."""
        out = {}
        if self.width is not None:
            out["C"] = self.width
        if self.cells is not None:
            out["N"] = self.cells
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------- data, archs
def load_recipe_data(recipe: Recipe, root: str | os.PathLike | None):
    """The dataset splits of ``recipe`` (``root``: the folder of its files; digits needs none)."""
    from sklearn.model_selection import train_test_split
    from torch.utils.data import TensorDataset

    from nasrank.supernet.datasets import load_dataset

    data = load_dataset(recipe.dataset, root, seed=recipe.data_seed,
                        valid_fraction=recipe.valid_fraction, subset=recipe.train_subset,
                        image_size=recipe.image_size, channels=recipe.in_channels)
    if recipe.test_subset is not None:
        x, y = data.test.tensors  # type: ignore[attr-defined]
        if recipe.test_subset > len(y):
            raise ConfigError(f"test_subset = {recipe.test_subset} exceeds the {len(y)} test "
                              f"images of {recipe.dataset!r}")
        if recipe.test_subset < len(y):
            idx, _ = train_test_split(np.arange(len(y)), train_size=recipe.test_subset,
                                      random_state=recipe.data_seed, stratify=y.numpy())
            idx = np.sort(idx)
            data.test = TensorDataset(x[idx], y[idx])
    return data


def read_arch_file(space: SearchSpace, path: str | os.PathLike) -> list[Arch]:
    """Architectures listed in a text file, one per line (blank lines and ``#`` comments
    skipped); a CSV with an ``arch`` or ``key`` column (a ground-truth or label table) works
    too."""
    path = Path(path)
    if not path.is_file():
        raise NasrankError(f"architecture file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise NasrankError(f"architecture file {str(path)!r} is not UTF-8 text (byte "
                           f"{err.start}); expected one architecture string a line") from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and ("," in lines[0]) and any(c in next(csv.reader([lines[0]])) for c in
                                           ("arch", "key")):
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        col = "arch" if "arch" in rows[0] else "key"
        lines = list(dict.fromkeys(r[col] for r in rows))  # one per arch, first-seen order
    archs = []
    for i, line in enumerate(lines):
        try:
            archs.append(space.parse(line))
        except NasrankError as err:
            raise NasrankError(f"{str(path)!r} entry {i + 1}: {err}") from None
    if not archs:
        raise NasrankError(f"architecture file {str(path)!r} lists no architecture")
    return archs


def select_archs(space: SearchSpace, *, n: int | None = None, seed: int = 0,
                 arch_file: str | os.PathLike | None = None,
                 sample: str = "uniform") -> list[Arch]:
    """The canonical architectures of a table: ``n`` distinct ones sampled with
    ``numpy.random.default_rng(seed)``, or those of ``arch_file`` (the first ``n`` when given).
    ``sample``: ``uniform`` (``space.sample``), or ``width`` (narrow to wide, the space's
    ``sample_width_stratified``: a uniform sample of a channel space has near-equal widths).
    Duplicates (same canonical key) are refused."""
    if sample not in ("uniform", "width"):
        raise ConfigError(f"arch sample must be 'uniform' or 'width', got {sample!r}")
    if sample == "width" and arch_file is not None:
        raise ConfigError("arch sample 'width' samples the architectures: give --archs N "
                          "without --arch-file")
    if sample == "width" and not hasattr(space, "sample_width_stratified"):
        raise ConfigError(f"arch sample 'width' needs a channel space (cvpr2021); space "
                          f"{space.name!r} has no widths to stratify")
    if arch_file is not None:
        archs = read_arch_file(space, arch_file)
        if n is not None:
            if n > len(archs):
                raise NasrankError(f"asked for {n} architectures, {str(arch_file)!r} lists "
                                   f"{len(archs)}")
            archs = archs[:n]
    else:
        if n is None or isinstance(n, bool) or int(n) < 1:
            raise NasrankError(f"number of architectures must be a positive int, got {n!r}")
        rng = np.random.default_rng(seed)
        archs = (space.sample_width_stratified(int(n), rng) if sample == "width"
                 else sample_unique(space, int(n), rng))
    canon = [space.parse(space.key(a)) for a in archs]
    seen: dict[str, int] = {}
    for i, a in enumerate(canon):
        k = space.key(a)
        if k in seen:
            raise NasrankError(f"architectures {seen[k] + 1} and {i + 1} share the canonical key "
                               f"{k!r}: list each architecture once")
        seen[k] = i
    return canon


def parse_shard(text: str | Sequence[int] | None) -> tuple[int, int]:
    """``"i/n"`` (or ``(i, n)``) as a checked pair with ``0 <= i < n``."""
    if text is None:
        return (0, 1)
    try:
        if isinstance(text, str):
            a, b = text.split("/")
            i, n = int(a), int(b)
        else:
            i, n = (int(v) for v in text)
    except (ValueError, TypeError):
        raise ConfigError(f"shard must be 'i/n' with 0 <= i < n, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard must be 'i/n' with 0 <= i < n, got {text!r}")
    return i, n


def shard_path(out: str | os.PathLike, shard: tuple[int, int]) -> Path:
    """The file shard ``i/n`` of ``out`` writes (``gt.csv`` -> ``gt.shard1-of-4.csv``)."""
    out = Path(out)
    i, n = shard
    if n == 1:
        return out
    return out.with_name(f"{out.stem}.shard{i}-of-{n}{out.suffix}")


# ----------------------------------------------------------------------------- files
def meta_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + META_SUFFIX)


@dataclass
class GroundTruth:
    """A ground-truth table in memory: the recipe, the arch list and its rows.

    ``rows`` are dicts with the :data:`COLUMNS`; :meth:`matrix` gives one metric as an
    ``(archs, seeds)`` array (NaN where a training is missing).
    """

    space: str
    recipe: dict[str, Any]
    archs: list[str]  # keys, in list order
    seeds: list[int]
    shard: tuple[int, int]
    rows: list[dict[str, Any]]
    path: Path | None = None

    @property
    def keys(self) -> list[str]:
        return list(self.archs)

    def matrix(self, metric: str = "valid_acc") -> np.ndarray:
        if metric not in METRICS:
            raise LabelTableError(f"unknown ground-truth metric {metric!r}; expected one of "
                                  f"{list(METRICS)}")
        out = np.full((len(self.archs), len(self.seeds)), np.nan)
        col = {s: j for j, s in enumerate(self.seeds)}
        for r in self.rows:
            out[int(r["index"]), col[int(r["seed"])]] = float(r[metric])
        return out

    def complete_mask(self) -> np.ndarray:
        """Archs with every seed trained."""
        return np.isfinite(self.matrix("valid_acc")).all(axis=1)

    def mean(self, metric: str = "valid_acc", *, complete_only: bool = True
             ) -> tuple[list[str], np.ndarray]:
        """``(keys, seed-averaged metric)`` over the archs with all seeds (or any seed)."""
        m = self.matrix(metric)
        keep = np.isfinite(m).all(axis=1) if complete_only else np.isfinite(m).any(axis=1)
        return [k for k, ok in zip(self.archs, keep) if ok], np.nanmean(m[keep], axis=1)

    def to_csv_text(self) -> str:
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow(_row_fields(r))
        return buf.getvalue()


def _fmt(v: float) -> str:
    return repr(float(v))


def _row_fields(r: dict[str, Any]) -> list[str]:
    return [str(int(r["index"])), r["key"], r["arch"], str(int(r["seed"])),
            *(_fmt(r[m]) for m in METRICS)]


def _meta(recipe: Recipe | dict[str, Any], archs: list[str], seeds: list[int],
          shard: tuple[int, int], arch_source: dict[str, Any], space: str | None = None
          ) -> dict[str, Any]:
    rec = recipe.to_json() if isinstance(recipe, Recipe) else dict(recipe)
    return {"format": FORMAT, "version": FORMAT_VERSION,
            "space": space if space is not None else rec["space"], "recipe": rec,
            "seeds": list(seeds), "shard": list(shard), "arch_source": arch_source,
            "archs": list(archs)}


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    m = meta_path(path)
    refuse_symlink(m, "ground-truth metadata")
    tmp = m.with_name(m.name + ".tmp")
    with disk_full_guard(m):
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, m)


def _read_meta(path: Path) -> dict[str, Any]:
    m = meta_path(path)
    if not m.is_file():
        raise LabelTableError(f"ground-truth table {str(path)!r} has no metadata file "
                              f"{str(m)!r} (written beside it by nasrank groundtruth)")
    try:
        meta = json.loads(m.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelTableError(f"{str(m)!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LabelTableError(f"{str(m)!r} is not the metadata of a nasrank ground-truth "
                              f"table (expected \"format\": \"{FORMAT}\")")
    for field in ("recipe", "archs", "seeds", "shard", "space"):
        if field not in meta:
            raise LabelTableError(f"{str(m)!r} lacks the field {field!r}")
    return meta


def _parse_rows(text: str, path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return []
    if tuple(header) != COLUMNS:
        raise LabelTableError(f"{str(path)!r} has header {header}, expected {list(COLUMNS)}: "
                              f"not a nasrank ground-truth table")
    archs, seeds = meta["archs"], set(int(s) for s in meta["seeds"])
    rows, seen = [], set()
    for rec in reader:
        line = reader.line_num
        if not rec:
            continue
        if len(rec) != len(COLUMNS):
            raise LabelTableError(f"{str(path)!r} line {line}: {len(rec)} fields, expected "
                                  f"{len(COLUMNS)}")
        try:
            r: dict[str, Any] = {"index": int(rec[0]), "key": rec[1], "arch": rec[2],
                                 "seed": int(rec[3])}
            for m, v in zip(METRICS, rec[4:]):
                r[m] = float(v)
        except ValueError as err:
            raise LabelTableError(f"{str(path)!r} line {line}: {err}") from None
        if not 0 <= r["index"] < len(archs) or archs[r["index"]] != r["key"]:
            raise LabelTableError(
                f"{str(path)!r} line {line}: arch {r['key']!r} at index {r['index']} is not "
                f"the metadata's architecture list entry")
        if r["seed"] not in seeds:
            raise LabelTableError(f"{str(path)!r} line {line}: seed {r['seed']} is not one of "
                                  f"the table's seeds {sorted(seeds)}")
        if (r["index"], r["seed"]) in seen:
            raise LabelTableError(f"{str(path)!r} line {line}: ({r['key']!r}, seed "
                                  f"{r['seed']}) appears twice")
        seen.add((r["index"], r["seed"]))
        rows.append(r)
    return rows


def read_groundtruth(path: str | os.PathLike) -> GroundTruth:
    """Read a table written by :func:`run_groundtruth` or :func:`merge_groundtruth` (a torn
    last line, left by a kill, is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise LabelTableError(f"ground-truth table {str(path)!r} does not exist")
    meta = _read_meta(path)
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LabelTableError(f"{str(path)!r} is not a UTF-8 text file") from None
    rows = _parse_rows(text, path, meta)
    return GroundTruth(meta["space"], meta["recipe"], list(meta["archs"]),
                       [int(s) for s in meta["seeds"]], tuple(meta["shard"]), rows, path)


def _open_table(path: Path, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Create ``path`` (header + sidecar) or check it matches ``meta`` and repair a torn last
    line; return the rows already there."""
    refuse_symlink(path, "ground-truth table")
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_meta(path, meta)
        with disk_full_guard(path), open_append(path, "ground-truth table") as f:
            f.write(",".join(COLUMNS) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return []
    old = _read_meta(path)
    for field in ("recipe", "seeds", "shard", "archs"):
        if old.get(field) != meta[field]:
            if field == "recipe":
                diff = sorted(k for k in set(old["recipe"]) | set(meta["recipe"])
                              if old["recipe"].get(k) != meta["recipe"].get(k))
                what = "; ".join(f"{k}: file {old['recipe'].get(k)!r}, this run "
                                 f"{meta['recipe'].get(k)!r}" for k in diff)
            elif field == "archs":
                what = (f"{len(old['archs'])} archs in the file, {len(meta['archs'])} in this "
                        f"run, or a different list")
            else:
                what = f"file {old.get(field)!r}, this run {meta[field]!r}"
            raise LabelTableError(f"{str(path)!r} was written with other {field} ({what}); use "
                                  f"another output path or the same arguments to resume")
    data = path.read_bytes()
    cut = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
    try:
        body = data[:cut].decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafePathError(f"{str(path)!r} is not a UTF-8 text file, so not a ground-truth "
                              f"table; refusing to modify it") from None
    if cut == 0:
        raise UnsafePathError(f"{str(path)!r} has no complete header line; refusing to modify "
                              f"it: move it away")
    rows = _parse_rows(body, path, meta)
    if cut < len(data):
        tail = data[cut:]
        if b"\n" in tail or tail.count(b",") >= len(COLUMNS):
            raise UnsafePathError(f"{str(path)!r}: its unfinished last line is not a torn row "
                                  f"of this table; refusing to modify it")
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.ftruncate(fd, cut)
        finally:
            os.close(fd)
    return rows


def _append_row(path: Path, row: dict[str, Any]) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerow(_row_fields(row))
    with disk_full_guard(path), open_append(path, "ground-truth table") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- running
def job_list(n_archs: int, seeds: Sequence[int], shard: tuple[int, int] = (0, 1)
             ) -> list[tuple[int, int]]:
    """``(arch index, seed)`` pairs of shard ``i/n``: jobs in arch-major order, every n-th from
    job i."""
    i, n = shard
    jobs = [(a, int(s)) for a in range(n_archs) for s in seeds]
    return jobs[i::n]


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or int(s) < 0:
            raise ConfigError(f"training seeds must be non-negative ints, got {s!r}")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"need at least one training seed, all distinct; got {list(seeds)!r}")
    return out


def run_groundtruth(
    recipe: Recipe, archs: Sequence[Arch], seeds: Sequence[int], out: str | os.PathLike, *,
    data_root: str | os.PathLike | None = None, data: Any = None,
    shard: tuple[int, int] | str = (0, 1), device: str = "cpu", progress: bool | None = None,
    arch_source: dict[str, Any] | None = None, max_jobs: int | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> GroundTruth:
    """Train ``archs`` (canonical, see :func:`select_archs`) once per seed under ``recipe`` and
    append one row per training to ``out`` (resuming what is there).

    ``data``: the splits of :func:`load_recipe_data` (loaded from ``data_root`` when omitted).
    ``shard``: ``(i, n)`` or ``"i/n"``; the shard writes ``out`` as given (see
    :func:`shard_path`). ``progress``: a tqdm bar (default: only when stderr is a terminal).
    ``max_jobs`` stops after that many new trainings (time slicing; rerun to continue).
    Returns the table as on disk.
    """
    from nasrank.spaces import get_space

    if not isinstance(recipe, Recipe):
        raise ConfigError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    shard = parse_shard(shard)
    seeds = _check_seeds(seeds)
    space = get_space(recipe.space)
    keys = [space.key(a) for a in archs]
    if len(set(keys)) != len(keys):
        raise NasrankError("the architecture list has duplicate canonical keys; use "
                           "select_archs to build it")
    if not keys:
        raise NasrankError("the architecture list is empty")
    path = Path(out)
    meta = _meta(recipe, keys, seeds, shard, arch_source or {"given": len(keys)})
    new = not path.exists() or path.stat().st_size == 0
    if new and data is None and job_list(len(keys), seeds, shard) and (max_jobs is None
                                                                      or max_jobs > 0):
        # a new table: load the data first, so a dataset that cannot load leaves no file
        data = load_recipe_data(recipe, data_root)
    with _writer_lock(path):
        return _run_jobs(recipe, space, keys, seeds, shard, path, meta, data=data,
                         data_root=data_root, device=device, progress=progress,
                         max_jobs=max_jobs, on_row=on_row)


@contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """One writer per table file: an exclusive ``flock`` on ``<file>.lock`` (released by the
    kernel when the holder dies); a second writer is refused at once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    refuse_symlink(lock, "ground-truth lock file")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(f"{str(path)!r} is being written by another process (lock "
                                    f"{str(lock)!r}); wait for it or use another output "
                                    f"path") from None
        yield
    finally:
        os.close(fd)


def _run_jobs(recipe: Recipe, space: SearchSpace, keys: list[str], seeds: list[int],
              shard: tuple[int, int], path: Path, meta: dict[str, Any], *, data: Any,
              data_root: Any, device: str, progress: bool | None, max_jobs: int | None,
              on_row: Callable[[dict[str, Any]], None] | None) -> GroundTruth:
    from nasrank.supernet.train import train_standalone

    rows = _open_table(path, meta)
    done = {(r["index"], r["seed"]) for r in rows}
    todo = [j for j in job_list(len(keys), seeds, shard) if j not in done]
    if max_jobs is not None:
        todo = todo[:max(0, int(max_jobs))]
    if todo and data is None:
        data = load_recipe_data(recipe, data_root)
    mine = job_list(len(keys), seeds, shard)
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=len(mine), initial=sum(1 for j in mine if j in done),
               desc=f"groundtruth {path.name}", disable=not progress, unit="train")
    build = recipe.build_kwargs()
    for idx, seed in todo:
        arch = space.parse(keys[idx])
        t0 = time.perf_counter()
        res = train_standalone((space, arch), data, epochs=recipe.epochs,
                               batch_size=recipe.batch_size, lr=recipe.lr,
                               momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                               device=device, seed=seed, build_kwargs=build)
        row = {"index": idx, "key": keys[idx], "arch": space.format(arch), "seed": seed,
               "valid_acc": float(res.valid_acc), "test_acc": float(res.test_acc),
               "valid_loss": float(res.valid_loss), "test_loss": float(res.test_loss),
               "seconds": round(time.perf_counter() - t0, 3)}
        _append_row(path, row)
        logger.info("trained %s seed %d: valid_acc %.4f, test_acc %.4f (%.1f s)", row["arch"],
                    seed, row["valid_acc"], row["test_acc"], row["seconds"])
        rows.append(row)
        bar.update(1)
        if on_row is not None:
            on_row(row)
    bar.close()
    return read_groundtruth(path)


def merge_groundtruth(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                      require_complete: bool = True) -> GroundTruth:
    """Combine shard tables (same recipe, archs and seeds; shards ``0..n-1`` of one ``n``, each
    once) into the table an unsharded run writes: rows in job order, metadata with shard
    ``0/1``. ``require_complete`` refuses shards that have not finished."""
    if not paths:
        raise NasrankError("no shard table to merge")
    tables = [read_groundtruth(p) for p in paths]
    first = tables[0]
    shards = []
    for t in tables:
        for field in ("recipe", "archs", "seeds"):
            if getattr(t, field) != getattr(first, field):
                raise LabelTableError(f"{str(t.path)!r} has other {field} than "
                                      f"{str(first.path)!r}: not shards of one table")
        shards.append(tuple(t.shard))
    n = shards[0][1]
    if any(s[1] != n for s in shards) or sorted(s[0] for s in shards) != list(range(n)):
        raise LabelTableError(f"shards {sorted(shards)} are not each of 0..{n - 1} of {n} "
                              f"exactly once")
    order = {(a, s): j for j, (a, s) in enumerate(job_list(len(first.archs), first.seeds))}
    rows = sorted((r for t in tables for r in t.rows), key=lambda r: order[(r["index"],
                                                                            r["seed"])])
    if require_complete and len(rows) != len(order):
        missing = [(first.archs[a], s) for (a, s) in order
                   if (a, s) not in {(r["index"], r["seed"]) for r in rows}]
        raise LabelTableError(f"the shards hold {len(rows)} of {len(order)} trainings; first "
                              f"missing: {missing[0]!r} (finish the shards first)")
    merged = GroundTruth(first.space, first.recipe, first.archs, first.seeds, (0, 1), rows)
    return write_groundtruth(merged, out, _read_meta(Path(first.path)).get("arch_source", {}))


def write_groundtruth(table: GroundTruth, out: str | os.PathLike,
                      arch_source: dict[str, Any] | None = None) -> GroundTruth:
    """Write ``table`` (CSV and sidecar, atomically) to ``out`` and read it back."""
    out = Path(out)
    refuse_symlink(out, "ground-truth table")
    meta = _meta(table.recipe, table.archs, table.seeds, tuple(table.shard),  # type: ignore[arg-type]
                 arch_source or {"given": len(table.archs)}, table.space)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with disk_full_guard(out):
        tmp.write_text(table.to_csv_text(), encoding="utf-8", newline="")
        _write_meta(out, meta)
        os.replace(tmp, out)
    return read_groundtruth(out)


def noise_ceiling(truth: GroundTruth, metric: str = "valid_acc") -> float:
    """Kendall tau between the training seeds' values over the archs that have every seed (the
    mean over seed pairs with more than two seeds): the best tau any cheap score can expect
    against this table."""
    m = truth.matrix(metric)
    return seed_agreement(m[np.isfinite(m).all(axis=1)])


def seed_agreement(per_seed: np.ndarray) -> float:
    """Mean Kendall tau over the pairs of columns of an ``(archs, seeds)`` array (NaN with
    fewer than 2 seeds or 2 archs)."""
    from nasrank.predictor.metrics import kendall_tau

    per_seed = np.asarray(per_seed, dtype=np.float64)
    if per_seed.ndim != 2 or per_seed.shape[1] < 2 or per_seed.shape[0] < 2:
        return math.nan
    s = per_seed.shape[1]
    return float(np.mean([kendall_tau(per_seed[:, a], per_seed[:, b])
                          for a in range(s) for b in range(a + 1, s)]))


def build_groundtruth(
    recipe: Recipe, out: str | os.PathLike, *, archs: int | None = None, arch_seed: int = 0,
    arch_sample: str = "uniform", arch_file: str | os.PathLike | None = None,
    seeds: int | Sequence[int] = 2,
    data_root: str | os.PathLike | None = None, shard: tuple[int, int] | str | None = None,
    device: str = "cpu", progress: bool | None = None, max_jobs: int | None = None,
) -> GroundTruth:
    """What ``nasrank groundtruth`` does: pick the archs (:func:`select_archs`), train them
    with training seeds ``0..seeds-1`` (or the seeds listed) and write ``out`` (or, for a shard,
    :func:`shard_path` of it). Returns the table on disk."""
    from nasrank.spaces import get_space

    space = get_space(recipe.space)
    chosen = select_archs(space, n=archs, seed=arch_seed, arch_file=arch_file,
                          sample=arch_sample)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if int(seeds) < 1:
            raise ConfigError(f"seeds must be >= 1 training seeds, got {seeds!r}")
        seed_list = list(range(int(seeds)))
    else:
        seed_list = _check_seeds(seeds)  # type: ignore[arg-type]
    sh = parse_shard(shard)
    source: dict[str, Any] = ({"file": Path(arch_file).name, "n": len(chosen)}
                              if arch_file is not None else
                              {"sampled": len(chosen), "arch_seed": int(arch_seed)})
    if arch_sample != "uniform":  # recorded only when set: older tables still resume
        source["sample"] = arch_sample
    return run_groundtruth(recipe, chosen, seed_list, shard_path(out, sh), data_root=data_root,
                           shard=sh, device=device, progress=progress, arch_source=source,
                           max_jobs=max_jobs)
