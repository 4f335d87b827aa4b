"""Weak labels from a trained supernet: one label-table row per architecture.

For each architecture the BatchNorm statistics of the supernet are recalibrated on its own path
(running statistics reset, ``momentum=None`` = cumulative average over ``bn_batches`` training
batches, the same batches for every architecture), then the path is evaluated on the validation
split. Columns: ``ws_acc`` (accuracy, fraction), ``ws_neg_loss`` (minus the mean cross-entropy:
larger is better, like accuracy), ``flops`` and ``params`` (millions, from the space's exact
cost), and ``zc_<name>`` for each requested zero-cost proxy (from ``supernet/proxies.py``,
computed on :func:`nasrank.supernet.scoring.proxy_network` of the path, the same freshly
initialised network ``nasrank proxies`` scores, since proxies score networks at
initialisation). Every row describes the canonical representative of its key (written in the
``arch`` column). Rows go through :class:`spaces.labels.LabelWriter`: a rerun with the same
``out_path`` skips the keys already written. ``shard=(i, n)`` takes every n-th architecture
starting at i; give each shard its own ``out_path``. The supernet's weights, BatchNorm
statistics and train/eval mode are restored afterwards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from nasrank.errors import NasrankError
from nasrank.proxy_names import canonical_proxy
from nasrank.spaces.labels import LabelTable, LabelWriter

from .base import Supernet
from .datasets import DatasetSplits
from .scoring import canonical_arch, parse_shard, proxy_network
from .train import epoch_order, evaluate_batches, get_batch, iterate_batches

BASE_COLUMNS = ("ws_acc", "ws_neg_loss", "flops", "params")


@torch.no_grad()
def recalibrate_bn(
    supernet: Supernet, arch: Any, data: DatasetSplits, *, batches: int, batch_size: int,
    device: str | torch.device = "cpu", seed: int = 0,
) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them as the cumulative average
    over the first ``batches`` batches (seeded order) of the training split on ``arch``'s path."""
    _recalibrate_on(supernet, arch, _bn_inputs(data, batches, batch_size, device, seed))


def _bn_inputs(data: DatasetSplits, batches: int, batch_size: int, device: Any, seed: int):
    """The input batches of :func:`recalibrate_bn`, on ``device`` (the same for every arch)."""
    if int(batches) < 1:
        raise NasrankError(f"bn_batches must be >= 1, got {batches!r}")
    order = epoch_order(len(data.train), seed, 0)  # type: ignore[arg-type]
    return [get_batch(data.train, idx, device)[0]
            for idx in iterate_batches(data.train, batch_size, order=order, max_batches=batches)]


@torch.no_grad()
def _recalibrate_on(supernet: Supernet, arch: Any, inputs: Sequence[torch.Tensor]) -> None:
    for bn in supernet.bn_modules():
        bn.reset_running_stats()
        bn.momentum = None
    supernet.train()
    for x in inputs:
        supernet(x, arch)


#: The evaluation batches of weak labels are kept on the device up to this size; above it (a
#: large validation split) they are gathered again for each architecture.
RESIDENT_DATA_BYTES = 2 * 2**30


def _check_data(supernet: Supernet, data: DatasetSplits) -> None:
    cfg = supernet.config()
    if "in_channels" in cfg and cfg["in_channels"] != data.input_shape[0]:
        raise NasrankError(
            f"supernet expects {cfg['in_channels']} input channels, dataset {data.name!r} has "
            f"input shape {data.input_shape}")
    if "num_classes" in cfg and cfg["num_classes"] != data.num_classes:
        raise NasrankError(
            f"supernet has {cfg['num_classes']} classes, dataset {data.name!r} has "
            f"{data.num_classes}")


def generate_weak_labels(
    supernet: Supernet, archs: Sequence[Any], data: DatasetSplits,
    out_path: str | os.PathLike, *, bn_batches: int = 8, eval_batches: int | None = None,
    batch_size: int = 128, device: str | torch.device = "cpu", seed: int = 0,
    proxies: Sequence[str] | None = None, shard: tuple[int, int] = (0, 1), chunk_size: int = 16,
    progress: bool = True,
) -> LabelTable:
    """Write weak labels of ``archs`` to ``out_path`` (see module docstring) and return the
    table of that file. Architectures with the same canonical key are evaluated once (the first
    one given); ``eval_batches=None`` evaluates the whole validation split."""
    i_shard, n_shard = parse_shard(shard)
    _check_data(supernet, data)
    unique: dict[str, Any] = {}
    for arch in archs:
        arch = canonical_arch(supernet.space, supernet.check_arch(arch))
        unique.setdefault(supernet.space.key(arch), arch)
    mine = list(unique.items())[i_shard::n_shard]
    proxy_names = list(dict.fromkeys(canonical_proxy(p) for p in proxies or []))  # canonical
    score = None
    if proxy_names:
        try:
            from .proxies import score
        except ImportError as err:
            raise NasrankError(
                f"zero-cost proxies {proxy_names} were asked for but supernet.proxies cannot "
                f"be imported ({err})") from None
    columns = [*BASE_COLUMNS, *(f"zc_{p}" for p in proxy_names)]
    device = torch.device(device)
    supernet.to(device)

    saved_buffers = {k: v.detach().clone() for k, v in supernet.named_buffers()}
    saved_momenta = [bn.momentum for bn in supernet.bn_modules()]
    was_training = supernet.training
    # The BN and evaluation batches are the same for every architecture: gathered once, on the
    # device (no per-architecture host indexing, copies or syncs per batch).
    bn_inputs = _bn_inputs(data, bn_batches, batch_size, device, seed)
    proxy_batch = None
    if score is not None:
        idx = epoch_order(len(data.train), seed, 0)[:batch_size]  # type: ignore[arg-type]
        proxy_batch = get_batch(data.train, idx, device)
    try:
        with LabelWriter(out_path, columns, space=supernet.space.name,
                         chunk_size=chunk_size, with_arch=True) as writer:
            todo = [(k, a) for k, a in mine if k not in writer.done]

            def valid_batches():
                return (get_batch(data.valid, idx, device) for idx in iterate_batches(
                    data.valid, batch_size, max_batches=eval_batches))

            n_eval = len(data.valid) if eval_batches is None else min(
                len(data.valid), int(eval_batches) * batch_size)
            resident = None  # above the limit, each architecture gathers the batches again
            if todo and n_eval * 4 * math.prod(data.input_shape) <= RESIDENT_DATA_BYTES:
                resident = list(valid_batches())
            for key, arch in tqdm(todo, desc="weak labels", disable=not progress):
                _recalibrate_on(supernet, arch, bn_inputs)
                supernet.eval()
                acc, loss = evaluate_batches(lambda x, a=arch: supernet(x, a),
                                             resident if resident is not None else valid_batches())
                flops, params = supernet.cost(arch, data.input_shape)
                row = {"ws_acc": acc, "ws_neg_loss": -loss, "flops": flops, "params": params}
                if score is not None:
                    row.update({f"zc_{k}": v for k, v in
                                _proxy_scores(score, supernet, arch, proxy_batch, proxy_names,
                                              device, seed).items()})
                writer.add(key, row, arch=supernet.space.format(arch))
            return writer.table()
    finally:
        with torch.no_grad():
            for k, v in supernet.named_buffers():
                v.copy_(saved_buffers[k])
        for bn, m in zip(supernet.bn_modules(), saved_momenta):
            bn.momentum = m
        supernet.train(was_training)


def _proxy_scores(
    score: Any, supernet: Supernet, arch: Any, batch: Any, names: list[str],
    device: torch.device, seed: int,
) -> dict[str, float]:
    """Proxies of :func:`~nasrank.supernet.scoring.proxy_network` of ``arch`` (a copy of its
    path, re-initialised from ``(seed, key)`` on the CPU); the supernet's own weights are
    never touched."""
    net = proxy_network(supernet.space, arch, supernet.subnet, seed=seed)
    out = score(net, batch, names, device, seed)
    missing = [n for n in names if n not in out]
    if missing:
        raise NasrankError(f"supernet.proxies.score returned no value for {missing}")
    return {n: float(out[n]) for n in names}
