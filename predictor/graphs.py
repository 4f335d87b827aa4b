"""Graph conversion cache and fast batching for the predictor.

Converting an architecture to a graph (``space.to_graph``) costs far more than running the
network on it, and the same architectures are seen every epoch, so graphs are cached per
canonical key. Batching concatenates the cached tensors directly: every cached graph has only
``x`` and ``edge_index``, so this skips ``Batch.from_data_list``'s generic attribute handling
(hand-written for speed; the result is the same x / edge_index / batch triple).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasrank.spaces.base import SearchSpace
from nasrank.errors import InvalidArchitectureError, NasrankError


@dataclass
class GraphBatch:
    """A disjoint union of graphs: the inputs of :class:`~predictor.encoder.PredictorNet`."""

    x: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    hparams: torch.Tensor | None

    def to(self, device: torch.device) -> GraphBatch:
        nb = device.type == "cuda"
        return GraphBatch(
            self.x.to(device, non_blocking=nb), self.edge_index.to(device, non_blocking=nb),
            self.batch.to(device, non_blocking=nb), self.num_graphs,
            None if self.hparams is None else self.hparams.to(device, non_blocking=nb),
        )


class GraphCache:
    """Per-key cache of ``(x, edge_index, hparams)`` for one space."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._graphs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._key_of: dict[Any, str] = {}  # arch value or string -> canonical key (memo)

    def as_arch(self, arch: Any) -> Any:
        return self.space.parse(arch) if isinstance(arch, str) else arch

    def keys(self, archs: Sequence[Any]) -> list[str]:
        """Canonical keys of ``archs`` (strings are parsed first); converts unseen ones."""
        out = []
        for arch in archs:
            k = self._key_of.get(arch)
            if k is None:
                a = self.as_arch(arch)
                k = self.space.key(a)
                if k not in self._graphs:
                    self._graphs[k] = self._convert(a, k)
                self._key_of[arch] = k
            out.append(k)
        return out

    def _convert(self, arch: Any, key: str):
        g = self.space.to_graph(arch)
        x = g.x.float()
        if x.dim() != 2 or x.shape[1] != self.space.node_feature_dim:
            raise InvalidArchitectureError(
                f"graph of {key!r} has node features of shape {tuple(x.shape)}, expected "
                f"[n, {self.space.node_feature_dim}] (space {self.space.name!r})"
            )
        if x.shape[0] > self.space.max_nodes:
            raise InvalidArchitectureError(
                f"graph of {key!r} has {x.shape[0]} nodes, more than the space's max_nodes "
                f"{self.space.max_nodes}"
            )
        hp = self.space.hparams(arch).float().reshape(-1)
        if hp.numel() != self.space.hparam_dim:
            raise NasrankError(
                f"hparams of {key!r} have {hp.numel()} values, expected space.hparam_dim = "
                f"{self.space.hparam_dim}"
            )
        return x, g.edge_index.long(), hp

    def batch(self, keys: Sequence[str]) -> GraphBatch:
        """Collate the cached graphs of ``keys`` (all must have been seen by :meth:`keys`)."""
        xs, eis, sizes, hps = [], [], [], []
        offset = 0
        for k in keys:
            x, ei, hp = self._graphs[k]
            xs.append(x)
            eis.append(ei + offset)
            sizes.append(x.shape[0])
            hps.append(hp)
            offset += x.shape[0]
        batch = torch.repeat_interleave(torch.arange(len(keys)), torch.tensor(sizes))
        hparams = torch.stack(hps) if self.space.hparam_dim > 0 else None
        return GraphBatch(torch.cat(xs), torch.cat(eis, dim=1), batch, len(keys), hparams)
