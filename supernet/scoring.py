"""Score architectures with zero-cost proxies into a resumable label table, and the one way a
network is initialised for proxies.

:func:`proxy_network` is shared by ``nasrank proxies`` (:func:`score_space`) and the proxies of
``nasrank weak-labels`` (:mod:`nasrank.supernet.weak_labels`): the network of the architecture's
**canonical representative** (where the space has ``canonical()``, so unreachable ops never
count), re-initialised from a seed derived from ``(seed, canonical key)`` under
``torch.random.fork_rng`` (the caller's global RNG is left as it was; the weights depend neither
on the order nor the shard nor on how the network was built: fresh or a supernet's subnet).
Same arch, seed and batch -> identical ``zc_*`` values on both paths.

:func:`score_space` writes one row ``key, arch, zc_<proxy>..., note`` per unique canonical key
through :class:`nasrank.spaces.labels.LabelWriter`, in chunks: a killed run loses at most one
chunk, and a rerun with the same output path skips the keys already written.

Sharding: shard ``i/n`` (:func:`parse_shard`, the one shard parser of the CLI and the library)
takes the unique keys at positions ``i, i + n, i + 2n, ...`` of the given order. Each shard
writes its **own file** (two processes appending to one CSV could interleave lines); read them
all with :func:`read_shards`. The command line is ``nasrank proxies`` (``--shard i/n``).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nasrank.proxy_names import PROXY_ALIASES, canonical_proxy
from nasrank.spaces.labels import LabelTable, LabelWriter

from .proxies import (ProxyError, ProxySettings, available_proxies, first_batch,
                      score_with_notes)

__all__ = ["parse_shard", "canonical_arch", "proxy_seed", "proxy_network", "score_space",
           "read_shards"]


def parse_shard(text: str | Sequence[int]) -> tuple[int, int]:
    """``"i/n"`` (or ``(i, n)``) -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(v) for v in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise ProxyError(f"shard must look like 'i/n' (e.g. '0/4'), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ProxyError(f"shard must satisfy 0 <= i < n, got {text!r}")
    return i, n


def canonical_arch(space: Any, arch: Any) -> Any:
    """The canonical representative of ``arch`` (``arch`` itself where the space has none)."""
    canonical = getattr(space, "canonical", None)
    return canonical(arch) if canonical is not None else arch


def proxy_seed(seed: int, key: str) -> int:
    """The initialisation seed of the architecture with canonical key ``key``: a 63-bit draw of
    ``SeedSequence(seed, spawn_key=(crc32(key),))`` (independent of order and shard)."""
    seq = np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(str(key).encode()),))
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def proxy_network(space: Any, arch: Any, make: Callable[[Any], nn.Module], *,
                  seed: int) -> nn.Module:
    """The network proxies score for ``arch``: ``make(canonical arch)`` on the CPU, every
    module re-initialised by its ``reset_parameters()`` from :func:`proxy_seed` inside
    ``fork_rng`` (on the CPU, so a seed gives the same weights on every device). ``make`` may
    build a fresh network or extract a supernet's subnet: the weights do not depend on it."""
    arch = canonical_arch(space, arch)
    with torch.random.fork_rng(devices=[]):  # building may draw default inits: not the caller's RNG
        net = make(arch).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(proxy_seed(seed, space.key(arch)))
        for m in net.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return net


def score_space(
    space: Any, archs: Sequence[Any], data: Any, proxies: Sequence[str], out_path: str | os.PathLike,
    *, device: str | torch.device = "cpu", seed: int = 0,
    shard: str | tuple[int, int] = (0, 1), chunk_size: int = 64, num_classes: int = 10,
    build_kwargs: dict[str, Any] | None = None, input_shape: Sequence[int] | None = None,
    settings: ProxySettings | None = None, progress: bool = True,
) -> LabelTable:
    """Write proxies of this shard's unique ``archs`` to ``out_path`` and return its table.
    Each network is :func:`proxy_network` of the arch (``space.build(arch, num_classes,
    **build_kwargs)`` re-initialised from ``(seed, key)``); the proxies' own draws use ``seed``.

    ``data``: ``(inputs, targets)`` tensors, an iterable of them (its first batch is used), or
    ``None`` when every proxy is data-free (then ``input_shape`` is required). Non-finite
    results are written as ``nan``/``inf`` with the reason in the ``note`` column.
    """
    if isinstance(proxies, str):
        raise ProxyError(f"proxies must be a list of names, got the string {proxies!r}")
    # one column per proxy, named canonically (an alias such as jacob_cov writes zc_jacov)
    names = list(dict.fromkeys(canonical_proxy(p) for p in proxies))
    if not names:
        raise ProxyError("no proxies requested; expected a non-empty list of names")
    unknown = [p for p in proxies if canonical_proxy(p) not in available_proxies()]
    if unknown:
        raise ProxyError(f"unknown proxies {unknown}; expected names from {available_proxies()} "
                         f"(aliases: {PROXY_ALIASES})")
    i_shard, n_shard = parse_shard(shard)
    batch = None if data is None else first_batch(data)
    device = torch.device(device)
    if batch is not None:
        batch = (batch[0].to(device), batch[1].to(device))
    unique: dict[str, Any] = {}
    for arch in archs:  # the canonical representative of each key
        arch = canonical_arch(space, arch)
        unique.setdefault(space.key(arch), arch)
    mine = list(unique.items())[i_shard::n_shard]
    columns = [f"zc_{p}" for p in names]
    kw = build_kwargs or {}
    with LabelWriter(out_path, columns, space=space.name, chunk_size=chunk_size,
                     with_arch=True) as writer:
        todo = [(k, a) for k, a in mine if k not in writer.done]
        for key, arch in tqdm(todo, desc=f"proxies {i_shard}/{n_shard}", disable=not progress):
            net = proxy_network(space, arch, lambda a: space.build(a, num_classes, **kw),
                                seed=seed)
            values, notes = score_with_notes(net, batch, names, device, seed, settings=settings,
                                             input_shape=input_shape)
            note = "; ".join(f"zc_{n}: {why}" for n, why in notes.items())
            writer.add(key, {f"zc_{n}": v for n, v in values.items()}, note,
                       arch=space.format(arch))
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
        space=tables[0].space, notes=[s for t in tables for s in t.notes],
        archs=(None if any(t.arch_texts is None for t in tables)
               else [a for t in tables for a in t.arch_texts]))
