"""Label tables: architecture keys plus named float columns, stored as CSV.

One on-disk format for every producer (supernet weak labels, proxies, benchmarks) and consumer
(predictor, search): a plain CSV with the header ``key,<col>...,note`` (``pandas.read_csv`` and
spreadsheets read it as is) and a JSON sidecar ``<file>.meta.json`` holding the metadata (the
space, the columns, the format version). Files of the first format, whose first line was
``# nasrank label table; space=...``, are still read (and resumed). ``note`` holds the reason for
any non-finite value, so nothing is turned silently into a number. Proxy columns are named
canonically (:mod:`nasrank.proxy_names`): a table written with an alias (``zc_jacob_cov``) reads
as ``zc_jacov``, and :meth:`LabelTable.column` accepts either spelling. :class:`LabelWriter` appends
rows in chunks: a killed job loses at most one chunk and a rerun skips the keys already written;
a torn last line is repaired only after the rest of the file was checked to be a label table of
ours, and never through a symbolic link.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import LabelTableError, SpaceMismatchError, UnsafePathError
from nasrank.proxy_names import canonical_column
from nasrank.safeio import disk_full_guard, open_append, refuse_symlink

HEADER_PREFIX = "# nasrank label table; space="  # first line of the old format (still read)
NOTE = "note"
ARCH = "arch"  # optional text column: the formatted architecture of the row
META_SUFFIX = ".meta.json"
FORMAT = "nasrank label table"
FORMAT_VERSION = 2


def meta_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of the label table at ``path`` (``<file>.meta.json``)."""
    p = Path(path)
    return p.with_name(p.name + META_SUFFIX)


def write_meta(path: str | os.PathLike, space: str, columns: Sequence[str]) -> None:
    """Write the sidecar of ``path`` atomically (temporary file, then rename)."""
    meta = meta_path(path)
    refuse_symlink(meta, "label table metadata")
    tmp = meta.with_name(meta.name + ".tmp")
    with disk_full_guard(meta):
        tmp.write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "space": space,
                                   "columns": list(columns)}, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, meta)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of ``path`` as a dict (``{}`` when there is none)."""
    meta = meta_path(path)
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelTableError(f"label table metadata {str(meta)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LabelTableError(
            f"{str(meta)!r} is not the metadata of a nasrank label table (expected a JSON object "
            f"with \"format\": \"{FORMAT}\")")
    if not isinstance(data.get("space", ""), str):
        raise LabelTableError(f"{str(meta)!r}: 'space' must be a string, got {data['space']!r}")
    return data


class LabelTable:
    """Keys (canonical architecture strings) and named float64 columns of equal length."""

    def __init__(
        self, keys: Sequence[str], columns: Mapping[str, Any], *, space: str = "",
        notes: Sequence[str] | None = None, archs: Sequence[str] | None = None,
    ) -> None:
        self.keys: list[str] = [str(k) for k in keys]
        for i, k in enumerate(self.keys):
            if k == "" or k.lower() == "nan":
                raise LabelTableError(f"row {i}: empty or NaN key {k!r}")
        self.space = space
        self.columns: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            name = canonical_column(str(name))  # zc_jacob_cov -> zc_jacov
            if name in self.columns:
                raise LabelTableError(f"column {name!r} is given twice (under two spellings?)")
            if name in ("key", NOTE, ARCH):
                raise LabelTableError(f"column name {name!r} is reserved")
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != (len(self.keys),):
                raise LabelTableError(
                    f"column {name!r} has shape {arr.shape}, expected ({len(self.keys)},)"
                )
            self.columns[name] = arr
        self.notes: list[str] = list(notes) if notes is not None else [""] * len(self.keys)
        #: the formatted architecture of each row (column ``arch``), or None for tables without
        #: it: keys need not parse back (NB101's are hashes), these strings do
        self.arch_texts: list[str] | None = None if archs is None else [str(a) for a in archs]
        if self.arch_texts is not None and len(self.arch_texts) != len(self.keys):
            raise LabelTableError(f"{len(self.arch_texts)} architectures for {len(self.keys)} keys")
        self._index = {k: i for i, k in enumerate(self.keys)}
        if len(self._index) != len(self.keys):
            dup = next(k for i, k in enumerate(self.keys) if self._index[k] != i)
            raise LabelTableError(f"duplicate key {dup!r} in label table")

    # -- access
    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index(self, key: str) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise LabelTableError(f"key {key!r} is not in the label table") from None

    def column(self, name: str) -> np.ndarray:
        """The values of column ``name`` (a proxy alias such as ``zc_jacob_cov`` is accepted)."""
        try:
            return self.columns[canonical_column(name)]
        except KeyError:
            raise LabelTableError(
                f"unknown label column {name!r}; available: {sorted(self.columns)}"
            ) from None

    def row(self, key: str) -> dict[str, float]:
        i = self.index(key)
        return {n: float(c[i]) for n, c in self.columns.items()}

    def select(self, keys: Iterable[str]) -> LabelTable:
        """The rows of ``keys`` in that order (every key must be present)."""
        idx = [self.index(k) for k in keys]
        return LabelTable(
            [self.keys[i] for i in idx], {n: c[idx] for n, c in self.columns.items()},
            space=self.space, notes=[self.notes[i] for i in idx],
            archs=None if self.arch_texts is None else [self.arch_texts[i] for i in idx],
        )

    def with_columns(self, names: Sequence[str]) -> LabelTable:
        return LabelTable(self.keys, {n: self.column(n) for n in names}, space=self.space,
                          notes=self.notes, archs=self.arch_texts)

    def architectures(self, space: Any) -> list[Any]:
        """The architecture of every row: the ``arch`` column parsed by ``space`` when the table
        has one, else the keys parsed (tables written before the column existed; a space whose
        keys are hashes, NB101, cannot be read that way and ``space.parse`` says so)."""
        return [space.parse(t) for t in (self.arch_texts if self.arch_texts is not None
                                         else self.keys)]

    def require_finite(self, names: Sequence[str] | None = None) -> None:
        """Raise naming the first key whose value in one of ``names`` is NaN or infinite."""
        for name in names if names is not None else self.names:
            col = self.column(name)
            bad = np.flatnonzero(~np.isfinite(col))
            if bad.size:
                i = int(bad[0])
                raise LabelTableError(
                    f"column {name!r} has {bad.size} non-finite values, first at key "
                    f"{self.keys[i]!r} ({col[i]}){': ' + self.notes[i] if self.notes[i] else ''}"
                )

    def check_space(self, space_name: str) -> None:
        if self.space and self.space != space_name:
            raise SpaceMismatchError(
                f"label table is for space {self.space!r}, expected {space_name!r}"
            )

    # -- files
    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the table as plain CSV plus its ``.meta.json`` sidecar (both atomically)."""
        path = Path(path)
        refuse_symlink(path, "label table")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with disk_full_guard(path):
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                arch = [ARCH] if self.arch_texts is not None else []
                w.writerow(["key", *arch, *self.names, NOTE])
                for i, k in enumerate(self.keys):
                    a = [self.arch_texts[i]] if self.arch_texts is not None else []
                    w.writerow([k, *a, *(_fmt(self.columns[n][i]) for n in self.names),
                                self.notes[i]])
            write_meta(path, self.space, self.names)
            os.replace(tmp, path)  # atomic: a crash never leaves half a file

    @classmethod
    def read_csv(
        cls, path: str | os.PathLike, *, space: str | None = None,
        required: Sequence[str] = (),
    ) -> LabelTable:
        """Read a table written by :meth:`to_csv` / :class:`LabelWriter` (or any CSV with a
        ``key`` column and numeric columns). ``space`` checks the recorded space."""
        path = Path(path)
        if not path.is_file():
            raise LabelTableError(f"label table file {str(path)!r} does not exist")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise LabelTableError(
                f"label table {str(path)!r} is not a UTF-8 text file (byte {err.start}); "
                f"expected a CSV with a 'key' column") from None
        return cls._parse(text, path, space=space, required=required)

    @classmethod
    def _parse(cls, text: str, path: Path, *, space: str | None,
               required: Sequence[str] = ()) -> LabelTable:
        if "\x00" in text:
            raise LabelTableError(
                f"label table {str(path)!r} contains NUL bytes: a binary file, not a CSV")
        meta = read_meta(path)
        file_space = meta.get("space", "")
        f = io.StringIO(text, newline="")
        first = f.readline()
        skipped = 0
        if first.startswith(HEADER_PREFIX):
            file_space = first[len(HEADER_PREFIX):].strip()
            skipped = 1
        else:
            f.seek(0)
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if not header:
                raise LabelTableError(f"label table {str(path)!r} is empty (no header line)")
            if "key" not in header:
                raise LabelTableError(
                    f"label table {str(path)!r} has no 'key' column; header is {header}"
                )
            kcol = header.index("key")
            ncol = header.index(NOTE) if NOTE in header else None
            acol = header.index(ARCH) if ARCH in header else None
            names = [canonical_column(h) for j, h in enumerate(header)
                     if j not in (kcol, ncol, acol)]
            for name in required:
                if canonical_column(name) not in names:
                    raise LabelTableError(
                        f"label table {str(path)!r} lacks required column {name!r}; has {names}"
                    )
            keys, notes, rows, archs = [], [], [], []
            for rec in reader:
                lineno = reader.line_num + skipped
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise LabelTableError(
                        f"{str(path)!r} line {lineno}: {len(rec)} fields, expected {len(header)}"
                    )
                key = rec[kcol].strip()
                if key == "" or key.lower() == "nan":
                    raise LabelTableError(f"{str(path)!r} line {lineno}: empty or NaN key {key!r}")
                vals = []
                for j, h in enumerate(header):
                    if j in (kcol, ncol, acol):
                        continue
                    vals.append(_parse_float(rec[j], path, lineno, h))
                if acol is not None:
                    archs.append(rec[acol].strip())
                keys.append(key)
                notes.append(rec[ncol] if ncol is not None else "")
                rows.append(vals)
        except csv.Error as err:
            raise LabelTableError(
                f"label table {str(path)!r} line {reader.line_num + skipped} is not valid CSV: "
                f"{err}") from None
        if space is not None and file_space and file_space != space:
            raise SpaceMismatchError(
                f"label table {str(path)!r} is for space {file_space!r}, expected {space!r}"
            )
        data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
        return cls(keys, {n: data[:, j] for j, n in enumerate(names)},
                   space=file_space or (space or ""), notes=notes,
                   archs=archs if acol is not None else None)


def table_with_column(tables: Sequence[LabelTable], column: str) -> LabelTable:
    """The one table among ``tables`` that has ``column`` (an alias is accepted); none, or two
    (which one is meant?), is an error."""
    column = canonical_column(str(column))
    have = [t for t in tables if column in t.columns]
    if not have:
        raise LabelTableError(f"no label table has column {column!r}; available: "
                              f"{sorted({n for t in tables for n in t.columns})}")
    if len(have) > 1:
        raise LabelTableError(f"column {column!r} is in {len(have)} of the label tables; "
                              f"give it in one only")
    return have[0]


def rank_average(tables: Sequence[LabelTable], columns: Sequence[str]) -> LabelTable:
    """One weak label from several: the mean of each column's rank (larger value = better),
    over the keys present in every table, in the first table's order.

    Each column is read from the one table that has it (a column in two tables is an error:
    which one is meant?). Ranks are taken among the shared keys only, so the result does not
    depend on rows that cannot be fused; ties share their average rank; a NaN value ranks
    worst and is named in the row's note. The column is called ``"+".join(columns)``. On the
    NB201 Fashion-MNIST table, a SPOS supernet's ``ws_acc`` rank-averaged with jacov ranked
    better than either, and better than RD-NAS (BENCHMARKS.md, issue 13)."""
    from scipy.stats import rankdata

    if not tables:
        raise LabelTableError("rank_average needs at least one label table")
    columns = [canonical_column(str(c)) for c in columns]
    if len(columns) < 2:
        raise LabelTableError(f"rank_average needs at least two columns, got {columns}")
    if len(set(columns)) != len(columns):
        raise LabelTableError(f"columns {columns} name one column twice")
    spaces = sorted({t.space for t in tables if t.space})
    if len(spaces) > 1:
        raise SpaceMismatchError(f"the label tables are for different spaces: {spaces}")
    owner = {c: table_with_column(tables, c) for c in columns}
    keys = [k for k in tables[0].keys if all(k in t for t in tables[1:])]
    if not keys:
        raise LabelTableError(f"the {len(tables)} label tables share no key")
    total = np.zeros(len(keys))
    nan_cols: list[list[str]] = [[] for _ in keys]
    for c in columns:
        t = owner[c]
        v = t.column(c)[[t.index(k) for k in keys]]
        for i in np.flatnonzero(np.isnan(v)):
            nan_cols[i].append(c)
        total += rankdata(np.where(np.isnan(v), -np.inf, v))  # NaN: worst
    notes = [f"NaN ranked worst: {', '.join(n)}" if n else "" for n in nan_cols]
    first = tables[0]
    archs = None if first.arch_texts is None else [first.arch_texts[first.index(k)] for k in keys]
    return LabelTable(keys, {"+".join(columns): total / len(columns)}, space=spaces[0] if spaces
                      else "", notes=notes, archs=archs)


def _fmt(v: float) -> str:
    return repr(float(v))  # round-trips exactly; 'nan' / 'inf' stay readable


def _parse_float(text: str, path: Path, lineno: int, column: str) -> float:
    text = text.strip()
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise LabelTableError(
            f"{str(path)!r} line {lineno}: column {column!r} has non-numeric value {text!r}"
        ) from None


class LabelWriter:
    """Append rows to a CSV label table in chunks; a rerun resumes after the written keys.

    Use as a context manager; ``done`` holds the keys already on disk. Non-finite values are
    written as ``nan``/``inf`` with the reason in the ``note`` column. ``with_arch``: a new file
    gets the ``arch`` column (``add(..., arch=space.format(a))``); resuming a file follows its
    header (an old file without the column stays without it).
    """

    def __init__(
        self, path: str | os.PathLike, columns: Sequence[str], *, space: str,
        chunk_size: int = 64, with_arch: bool = False,
    ) -> None:
        if chunk_size < 1:
            raise LabelTableError(f"chunk_size must be >= 1, got {chunk_size}")
        self.path = Path(path)
        self.columns = [canonical_column(c) for c in columns]
        self.space = space
        self.chunk_size = chunk_size
        self._pending: list[list[str]] = []
        self.done: set[str] = set()
        refuse_symlink(self.path, "label table")
        refuse_symlink(meta_path(self.path), "label table metadata")
        if self.path.exists() and self.path.stat().st_size > 0:
            existing = self._validate_and_repair()
            if existing.names != self.columns:
                raise LabelTableError(
                    f"{str(self.path)!r} has columns {existing.names}, this job writes "
                    f"{self.columns}: use another output path"
                )
            self.done = set(existing.keys)
            self.with_arch = existing.arch_texts is not None
        else:
            self.with_arch = bool(with_arch)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_meta(self.path, space, self.columns)
            self._write_rows([["key", *([ARCH] if self.with_arch else []), *self.columns, NOTE]])

    def _validate_and_repair(self) -> LabelTable:
        """Check the whole file is a label table of ours, then drop a torn last line.

        A kill in the middle of a write leaves a partial last line (no newline); anything else
        wrong (a binary file, a foreign CSV, a bad row in the middle) is refused and nothing is
        cut.
        """
        data = self.path.read_bytes()
        cut = data.rfind(b"\n") + 1 if not data.endswith(b"\n") else len(data)
        try:
            body, tail = data[:cut].decode("utf-8"), data[cut:].decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafePathError(
                f"{str(self.path)!r} is not a UTF-8 text file, so not a nasrank label table; "
                f"refusing to modify it: move it away or use another output path") from None
        if "\x00" in body + tail or (cut == 0 and tail):
            raise UnsafePathError(
                f"{str(self.path)!r} is not a nasrank label table (binary data or no complete "
                f"header line); refusing to modify it: move it away or use another output path")
        try:
            existing = LabelTable._parse(body, self.path, space=self.space)
        except SpaceMismatchError:
            raise
        except LabelTableError as err:
            raise UnsafePathError(
                f"{err}; refusing to modify {str(self.path)!r}: fix or move it away") from None
        lines = body.splitlines()
        header = lines[1] if lines[0].startswith(HEADER_PREFIX) and len(lines) > 1 else lines[0]
        if next(csv.reader([header]), [None])[:1] != ["key"] or not header.endswith(NOTE):
            raise UnsafePathError(
                f"{str(self.path)!r} has header {header!r}, not one written by nasrank "
                f"('key,<columns>,note'); refusing to modify it: use another output path")
        if tail:
            fields = next(csv.reader([tail]), [])
            if len(fields) > len(existing.names) + 2 + (existing.arch_texts is not None):
                raise UnsafePathError(
                    f"{str(self.path)!r}: its unfinished last line {tail[:60]!r} is not a torn "
                    f"row of this table; refusing to modify it")
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.ftruncate(fd, cut)
            finally:
                os.close(fd)
        return existing

    def _write_rows(self, rows: list[list[str]]) -> None:
        with disk_full_guard(self.path):
            with open_append(self.path, "label table") as f:
                csv.writer(f).writerows(rows)
                f.flush()
                os.fsync(f.fileno())

    def add(self, key: str, values: Mapping[str, float], note: str = "",
            arch: str | None = None) -> None:
        values = {canonical_column(c): v for c, v in values.items()}
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise LabelTableError(f"row {key!r} lacks values for columns {missing}")
        extra = [c for c in values if c not in self.columns]
        if extra:
            raise LabelTableError(f"row {key!r} has unknown columns {extra}; table has {self.columns}")
        if key in self.done:
            raise LabelTableError(f"key {key!r} is already in {str(self.path)!r}")
        vals = [float(values[c]) for c in self.columns]
        bad = [c for c, v in zip(self.columns, vals) if not math.isfinite(v)]
        if bad and not note:
            note = f"non-finite: {', '.join(bad)}"
        if self.with_arch and not arch:
            raise LabelTableError(f"row {key!r} lacks its architecture (the table has an "
                                  f"'{ARCH}' column)")
        a = [str(arch)] if self.with_arch else []
        self._pending.append([key, *a, *(_fmt(v) for v in vals), note])
        self.done.add(key)
        if len(self._pending) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self._write_rows(self._pending)
        self._pending.clear()

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def table(self) -> LabelTable:
        self.flush()
        return LabelTable.read_csv(self.path, space=self.space)
