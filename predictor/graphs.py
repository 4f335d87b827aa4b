"""Graph conversion cache and fast batching for the predictor.

Converting an architecture to a graph (``space.to_graph``) costs far more than running the
network on it, and the same architectures are seen every epoch, so graphs are cached per
canonical key. Two batch layouts, chosen once per cache:

* sparse (any space): the cached ``x`` / ``edge_index`` are concatenated directly into the
  x / edge_index / batch triple of a disjoint union (skipping ``Batch.from_data_list``'s generic
  attribute handling);
* dense (spaces with ``max_nodes <= DENSE_MAX_NODES``, the default there): each graph is padded
  once, when first converted, into rows of preallocated tensors (features ``[N, F]``, incoming
  edge counts ``[N, N]``, node count, hparams), so a batch is a few ``index_select`` calls and
  one batched normalisation, with no per-graph Python work (see :mod:`predictor.dense`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasrank.spaces.base import SearchSpace
from nasrank.errors import InvalidArchitectureError, NasrankError

from .dense import AGGREGATIONS, DENSE_MAX_NODES, DenseGraphBatch, dense_batch, incoming_counts


@dataclass
class GraphBatch:
    """A disjoint union of graphs: the sparse inputs of :class:`~predictor.encoder.PredictorNet`."""

    x: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    hparams: torch.Tensor | None

    def inputs(self) -> tuple:
        """Positional arguments of ``PredictorNet.forward`` / ``forward_aux`` / ``features``."""
        return self.x, self.edge_index, self.batch, self.num_graphs, self.hparams

    def to(self, device: torch.device) -> GraphBatch:
        nb = device.type == "cuda"
        return GraphBatch(
            self.x.to(device, non_blocking=nb), self.edge_index.to(device, non_blocking=nb),
            self.batch.to(device, non_blocking=nb), self.num_graphs,
            None if self.hparams is None else self.hparams.to(device, non_blocking=nb),
        )


class _DenseStore:
    """Growable padded rows (capacity doubles, so adding n graphs costs O(n) copies)."""

    def __init__(self, max_nodes: int, node_dim: int, hparam_dim: int) -> None:
        self.max_nodes = n = max_nodes
        self.size = 0
        self.x = torch.zeros(16, n, node_dim)
        self.counts = torch.zeros(16, n, n, dtype=torch.uint8)
        self.num_nodes = torch.zeros(16, dtype=torch.long)
        self.hparams = torch.zeros(16, hparam_dim)

    def extend(self, graphs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> range:
        """Append ``(x, edge_index, hparams)`` graphs (one ``to_dense_adj`` call for all);
        returns their rows."""
        m = len(graphs)
        if m == 0:
            return range(self.size, self.size)
        cap = self.x.shape[0]
        if self.size + m > cap:
            new_cap = max(2 * cap, self.size + m)

            def grow(t: torch.Tensor) -> torch.Tensor:
                return torch.cat([t, t.new_zeros((new_cap - cap, *t.shape[1:]))])

            self.x, self.counts = grow(self.x), grow(self.counts)
            self.num_nodes, self.hparams = grow(self.num_nodes), grow(self.hparams)
        sizes = torch.tensor([x.shape[0] for x, _, _ in graphs])
        offsets = torch.cumsum(sizes, 0) - sizes
        edges = torch.cat([ei + int(o) for (_, ei, _), o in zip(graphs, offsets)], dim=1)
        batch = torch.repeat_interleave(torch.arange(m), sizes)
        rows = range(self.size, self.size + m)
        self.counts[self.size:self.size + m] = incoming_counts(edges, self.max_nodes, batch, m)
        self.num_nodes[self.size:self.size + m] = sizes
        for i, (x, _, hp) in zip(rows, graphs):
            self.x[i, : x.shape[0]] = x
            self.hparams[i] = hp
        self.size += m
        return rows


class GraphCache:
    """Per-key cache of ``(x, edge_index, hparams)`` for one space, plus the padded rows of
    the dense layout when ``dense`` (default: ``space.max_nodes <= DENSE_MAX_NODES``)."""

    def __init__(self, space: SearchSpace, *, dense: bool | None = None,
                 aggregation: str = "gcn") -> None:
        if aggregation not in AGGREGATIONS:
            raise NasrankError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.space = space
        self.aggregation = aggregation  # the dense adjacency's kind (see dense.dense_batch)
        self._graphs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._key_of: dict[Any, str] = {}  # arch value or string -> canonical key (memo)
        self._row: dict[str, int] = {}  # canonical key -> row of the dense store
        self._store: _DenseStore | None = None
        self.dense = space.max_nodes <= DENSE_MAX_NODES if dense is None else bool(dense)

    @property
    def dense(self) -> bool:
        """Whether :meth:`batch` returns padded :class:`DenseGraphBatch` es."""
        return self._dense

    @dense.setter
    def dense(self, value: bool) -> None:
        if value and self._store is None:
            self._store = _DenseStore(self.space.max_nodes, self.space.node_feature_dim,
                                      self.space.hparam_dim)
            self._add_rows(list(self._graphs))  # graphs converted before the switch
        self._dense = bool(value)

    def as_arch(self, arch: Any) -> Any:
        return self.space.parse(arch) if isinstance(arch, str) else arch

    def keys(self, archs: Sequence[Any]) -> list[str]:
        """Canonical keys of ``archs`` (strings are parsed first); converts unseen ones."""
        out, new = [], []
        try:
            for arch in archs:
                k = self._key_of.get(arch)
                if k is None:
                    a = self.as_arch(arch)
                    k = self.space.key(a)
                    if k not in self._graphs:
                        self._graphs[k] = self._convert(a, k)
                        new.append(k)
                    self._key_of[arch] = k
                out.append(k)
        finally:  # rows for every graph cached, even when a later arch is refused
            if self._store is not None:
                self._add_rows(new)
        return out

    def _add_rows(self, keys: list[str]) -> None:
        rows = self._store.extend([self._graphs[k] for k in keys])
        self._row.update(zip(keys, rows))

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

    def batch(self, keys: Sequence[str]) -> GraphBatch | DenseGraphBatch:
        """Collate the cached graphs of ``keys`` (all must have been seen by :meth:`keys`), in
        the cache's layout."""
        return self.dense_batch(keys) if self._dense else self.sparse_batch(keys)

    def sparse_batch(self, keys: Sequence[str]) -> GraphBatch:
        """The disjoint union of the graphs of ``keys`` (any space)."""
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

    def dense_batch(self, keys: Sequence[str]) -> DenseGraphBatch:
        """The padded batch of the graphs of ``keys`` (needs ``dense``)."""
        if self._store is None:
            raise NasrankError("dense_batch needs a GraphCache built with dense=True")
        rows = torch.tensor([self._row[k] for k in keys], dtype=torch.long)
        s = self._store
        hparams = s.hparams.index_select(0, rows) if self.space.hparam_dim > 0 else None
        return dense_batch(s.x.index_select(0, rows), s.counts.index_select(0, rows),
                           s.num_nodes.index_select(0, rows), hparams, self.aggregation)
