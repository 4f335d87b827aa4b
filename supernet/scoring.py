"""Score many architectures of a space with zero-cost proxies into a resumable label table.

Each architecture is built freshly with ``torch.manual_seed(seed)`` (so its initial weights do
not depend on the order or the shard), scored by :func:`supernet.proxies.score_with_notes`, and
written as one row ``key, zc_<proxy>..., note`` through :class:`spaces.labels.LabelWriter`, in
chunks: a killed run loses at most one chunk, and a rerun with the same output path skips the
keys already written. Architectures with the same canonical key are scored once, built from the
canonical representative where the space has ``canonical()`` (so unreachable ops never count).

Sharding: shard ``i/n`` takes the unique keys at positions ``i, i + n, i + 2n, ...`` of the
given order. Each shard writes its **own file** (two processes appending to one CSV could
interleave lines); read them all with :func:`read_shards`.

Command line::

    python -m nasrank.supernet.scoring --space nb201 --archs archs.txt --dataset fashion-mnist \
        --root ../shared/data/fashion-mnist --proxies synflow nwot --out zc.csv --shard 0/4
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nasrank.errors import NasrankError
from nasrank.spaces.labels import LabelTable, LabelWriter

from .proxies import (ProxyError, ProxySettings, available_proxies, first_batch,
                      score_with_notes)


def parse_shard(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/n"`` (or ``(i, n)``) -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(v) for v in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise ProxyError(f"shard must look like 'i/n' (e.g. '0/4'), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ProxyError(f"shard must satisfy 0 <= i < n, got {text!r}")
    return i, n


def score_space(
    space: Any, archs: Sequence[Any], data: Any, proxies: Sequence[str], out_path: str | os.PathLike,
    *, device: str | torch.device = "cpu", seed: int = 0,
    shard: str | tuple[int, int] = (0, 1), chunk_size: int = 64, num_classes: int = 10,
    build_kwargs: dict[str, Any] | None = None, input_shape: Sequence[int] | None = None,
    settings: ProxySettings | None = None, progress: bool = True,
) -> LabelTable:
    """Write proxies of this shard's unique ``archs`` to ``out_path`` and return its table.

    ``data``: ``(inputs, targets)`` tensors, an iterable of them (its first batch is used), or
    ``None`` when every proxy is data-free (then ``input_shape`` is required). Non-finite
    results are written as ``nan``/``inf`` with the reason in the ``note`` column.
    """
    names = list(proxies)
    if not names:
        raise ProxyError("no proxies requested; expected a non-empty list of names")
    unknown = [p for p in names if p not in available_proxies()]
    if unknown:
        raise ProxyError(f"unknown proxies {unknown}; expected names from {available_proxies()}")
    i_shard, n_shard = parse_shard(shard)
    batch = None if data is None else first_batch(data)
    device = torch.device(device)
    if batch is not None:
        batch = (batch[0].to(device), batch[1].to(device))
    unique: dict[str, Any] = {}
    canonical = getattr(space, "canonical", None)  # build the representative of the key
    for arch in archs:
        unique.setdefault(space.key(arch), canonical(arch) if canonical else arch)
    mine = list(unique.items())[i_shard::n_shard]
    columns = [f"zc_{p}" for p in names]
    with LabelWriter(out_path, columns, space=space.name, chunk_size=chunk_size) as writer:
        todo = [(k, a) for k, a in mine if k not in writer.done]
        for key, arch in tqdm(todo, desc=f"proxies {i_shard}/{n_shard}", disable=not progress):
            torch.manual_seed(seed)
            net = space.build(arch, num_classes, **(build_kwargs or {}))
            values, notes = score_with_notes(net, batch, names, device, seed, settings=settings,
                                             input_shape=input_shape)
            note = "; ".join(f"zc_{n}: {why}" for n, why in notes.items())
            writer.add(key, {f"zc_{n}": v for n, v in values.items()}, note)
        return writer.table()


def read_shards(paths: Sequence[str | os.PathLike], *, space: str | None = None) -> LabelTable:
    """One table from the files of several shards (same columns; keys must not repeat)."""
    if not paths:
        raise ProxyError("read_shards needs at least one file")
    tables = [LabelTable.read_csv(p, space=space) for p in paths]
    names = tables[0].names
    for p, t in zip(paths, tables):
        if t.names != names:
            raise ProxyError(f"shard {str(p)!r} has columns {t.names}, expected {names}")
    return LabelTable(
        [k for t in tables for k in t.keys],
        {n: np.concatenate([t.column(n) for t in tables]) for n in names},
        space=tables[0].space, notes=[s for t in tables for s in t.notes])


def main(argv: Sequence[str] | None = None) -> None:
    from nasrank.spaces import get_space

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--archs", required=True,
                    help="text file with one architecture string per line")
    ap.add_argument("--dataset", help="digits | fashion-mnist | cifar10 | cifar100 "
                    "(omit for data-free proxies)")
    ap.add_argument("--root", help="folder of the dataset files")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--proxies", nargs="+", default=available_proxies())
    ap.add_argument("--out", required=True)
    ap.add_argument("--shard", default="0/1", help="i/n: score every n-th unique key from i")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    space = get_space(args.space)
    path = Path(args.archs)
    if not path.is_file():
        raise NasrankError(f"architecture list {str(path)!r} does not exist")
    archs = [space.parse(line.strip()) for line in path.read_text().splitlines() if line.strip()]
    data, num_classes, shape = None, 10, (3, args.image_size, args.image_size)
    if args.dataset:
        from .datasets import load_dataset

        splits = load_dataset(args.dataset, args.root, seed=args.seed, image_size=args.image_size,
                              channels=3)
        g = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(splits.train), generator=g)[:args.batch_size]
        xs, ys = zip(*(splits.train[int(i)] for i in idx))
        data, num_classes = (torch.stack(xs), torch.as_tensor(ys)), splits.num_classes
        shape = splits.input_shape
    score_space(space, archs, data, args.proxies, args.out, device=args.device, seed=args.seed,
                shard=args.shard, num_classes=num_classes, input_shape=None if data else shape)


if __name__ == "__main__":
    try:
        main()
    except NasrankError as err:  # one line for the user, not a traceback
        raise SystemExit(f"error: {err}") from None
