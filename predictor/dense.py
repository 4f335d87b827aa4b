"""Dense batched path of the DGCNN encoder, for spaces with few nodes per graph.

At small batches (AceNAS trains with 20 graphs per step) the sparse message-passing path is
bound by per-operation overhead: two ``gcn_norm`` calls, eight ``GCNConv`` propagations with
gathers and scatters, and ``to_dense_batch`` inside sort pooling. When every graph has at most
``max_nodes`` nodes (NB201: 8, NB101: 7, the CVPR 2021 channel space: 19, MBConv: layers + 2),
the same network is a handful of batched matmuls on padded tensors:

* node features ``x`` ``[B, N, F]`` (zero rows for padding) and a ``mask`` ``[B, N]`` of real
  nodes (``None`` when no graph of the batch is padded: NB201 and MBConv graphs never are);
* one adjacency ``adj`` ``[B, 2N, N]`` holding both GCN-normalised propagation matrices
  interleaved by row (row ``2i``: forward edges into node ``i``, row ``2i + 1``: reversed
  edges), so that ``bmm(adj, h).view(B, N, 2F)`` is ``[A_fwd h | A_bwd h]`` per node and one
  ``linear`` with the two GCN weights side by side finishes a :class:`DirectedGCNLayer`.

It reads the parameters of the sparse modules (``DirectedGCNLayer.fwd/bwd``, ``conv1``...),
so the state dict, and every checkpoint, is the same for both paths; outputs agree to float
rounding (``A (x W)`` is computed as ``(A x) W``). Normalisation follows PyG's ``gcn_norm``
with ``add_self_loops=True``: ``D^-1/2 (A + I) D^-1/2`` with in-degrees of the forward and
of the reversed graph, duplicate edges counted, an existing self loop kept once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import to_dense_adj

#: graphs of at most this many nodes take the dense path by default (``N^2`` adjacency
#: entries per graph stay cheap next to the per-operation overhead of sparse message passing).
DENSE_MAX_NODES = 32


@dataclass
class DenseGraphBatch:
    """A padded batch: the dense inputs of :class:`~predictor.encoder.PredictorNet`.

    ``inputs()`` gives the positional arguments of ``PredictorNet.forward`` /
    ``forward_aux`` / ``features``: ``(x [B, N, F], adj [B, 2N, N], mask [B, N] or None, B,
    hparams)``; the encoder tells the two paths apart by ``x.dim() == 3``.
    """

    x: torch.Tensor
    adj: torch.Tensor
    mask: torch.Tensor | None
    num_graphs: int
    hparams: torch.Tensor | None

    def inputs(self) -> tuple:
        return self.x, self.adj, self.mask, self.num_graphs, self.hparams

    def take(self, idx: torch.Tensor) -> DenseGraphBatch:
        """The sub-batch of graphs ``idx`` (a long tensor on this batch's device). Its mask is
        this batch's rows even when none of them is padded: an all-True mask gives the same
        outputs as ``None`` (checking would cost a device sync per step)."""
        pick = lambda t: None if t is None else t.index_select(0, idx)  # noqa: E731
        return DenseGraphBatch(pick(self.x), pick(self.adj), pick(self.mask), int(idx.shape[0]),
                               pick(self.hparams))

    def to(self, device: torch.device) -> DenseGraphBatch:
        nb = device.type == "cuda"
        return DenseGraphBatch(
            self.x.to(device, non_blocking=nb), self.adj.to(device, non_blocking=nb),
            None if self.mask is None else self.mask.to(device, non_blocking=nb), self.num_graphs,
            None if self.hparams is None else self.hparams.to(device, non_blocking=nb),
        )


def incoming_counts(
    edge_index: torch.Tensor, max_nodes: int, batch: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``[B, max_nodes, max_nodes]`` uint8 matrices ``M[b, dst, src]`` = number of edges
    src -> dst of graph ``b`` (PyG ``to_dense_adj`` of the reversed edges; ``edge_index`` and
    ``batch`` as in a PyG ``Batch``), self loops dropped: normalisation adds one per real node,
    as ``gcn_norm``'s ``add_remaining_self_loops`` does."""
    b = 1 if batch is None and batch_size is None else batch_size
    if edge_index.numel() == 0:
        return torch.zeros(b or int(batch.max()) + 1, max_nodes, max_nodes, dtype=torch.uint8)
    counts = to_dense_adj(edge_index.flip(0), batch, max_num_nodes=max_nodes, batch_size=b)
    counts.diagonal(dim1=1, dim2=2).zero_()
    if counts.numel() and counts.max() > 255:
        raise ValueError(f"a node pair has {int(counts.max())} parallel edges; at most 255 fit")
    return counts.to(torch.uint8)


def normalized_pair(
    counts: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype,
) -> torch.Tensor:
    """GCN-normalised forward and reversed propagation matrices of a batch, interleaved by row:
    ``[B, N, N]`` incoming edge counts + ``[B, N]`` node mask (``None``: no padding) ->
    ``[B, 2N, N]``. Padded nodes get zero rows and columns."""
    b, n, _ = counts.shape
    loops = (torch.ones(b, n, dtype=dtype, device=counts.device) if mask is None
             else mask.to(dtype))
    m = counts.to(dtype) + torch.diag_embed(loops)  # one self loop per real node
    inv_f = m.sum(-1).pow_(-0.5)  # in-degree (+1) of the forward graph
    inv_b = m.sum(-2).pow_(-0.5)  # ... of the reversed graph
    if mask is not None:  # 0 ** -0.5 = inf on padded nodes; gcn_norm zeroes it the same way
        inv_f.masked_fill_(~mask, 0.0), inv_b.masked_fill_(~mask, 0.0)
    a_f = inv_f.unsqueeze(-1) * m * inv_f.unsqueeze(-2)
    a_b = inv_b.unsqueeze(-1) * m.transpose(1, 2) * inv_b.unsqueeze(-2)
    return torch.stack([a_f, a_b], dim=2).reshape(b, 2 * n, n)


def summed_pair(counts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The unnormalised counterpart of :func:`normalized_pair` for sum aggregation (GIN):
    incoming and outgoing edge counts interleaved by row, ``[B, N, N]`` -> ``[B, 2N, N]``, so
    that ``bmm(adj, h).view(B, N, 2F)`` is ``[sum over in-neighbours | sum over
    out-neighbours]`` per node. No self loops (the node's own features enter separately);
    padded nodes have no edges, so their rows and columns are zero."""
    b, n, _ = counts.shape
    m = counts.to(dtype)
    return torch.stack([m, m.transpose(1, 2)], dim=2).reshape(b, 2 * n, n)


#: how each encoder aggregates neighbours (the adjacency :func:`dense_batch` builds)
AGGREGATIONS = ("gcn", "sum")


def dense_batch(
    x: torch.Tensor, counts: torch.Tensor, num_nodes: torch.Tensor, hparams: torch.Tensor | None,
    aggregation: str = "gcn",
) -> DenseGraphBatch:
    """Padded features ``[B, N, F]``, incoming edge counts ``[B, N, N]`` and node counts ``[B]``
    (as stored by :class:`~predictor.graphs.GraphCache`) -> a :class:`DenseGraphBatch` whose
    adjacency is GCN-normalised (``"gcn"``, DGCNN) or raw edge counts (``"sum"``, GIN)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    n = x.shape[1]
    mask = None
    if bool((num_nodes < n).any()):
        mask = torch.arange(n, device=x.device).unsqueeze(0) < num_nodes.unsqueeze(1)
    adj = (normalized_pair(counts, mask, x.dtype) if aggregation == "gcn"
           else summed_pair(counts, x.dtype))
    return DenseGraphBatch(x, adj, mask, x.shape[0], hparams)


def dense_gcn_stack(convs: Sequence[nn.Module], x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """The concatenated outputs ``[B, N, L * H]`` of the :class:`DirectedGCNLayer` stack
    ``convs`` on a padded batch (padded rows come out as ``tanh(bias)``; they never reach a real
    node, since their adjacency columns are zero, and sort pooling drops them)."""
    b, n, _ = x.shape
    h, outs = x, []
    for conv in convs:
        y = torch.bmm(adj, h).view(b, n, 2 * h.shape[-1])  # [A_fwd h | A_bwd h]
        weight = torch.cat([conv.fwd.lin.weight, conv.bwd.lin.weight], dim=1)
        bias = _sum_bias(conv.fwd.bias, conv.bwd.bias)
        h = torch.tanh(F.linear(y, weight, bias))
        outs.append(h)
    return torch.cat(outs, dim=-1)


def _sum_bias(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _windows(z: torch.Tensor, kernel: int) -> torch.Tensor:
    """Sliding windows of ``kernel`` nodes over ``z`` ``[B, P, C]`` -> ``[B, L, C * kernel]``
    in ``Conv1d``'s (channel-major) order. Eager: ``unfold``. Under ``torch.compile``: the same
    values as a stack of shifted slices, because torch 2.13's inductor wrote out of bounds in
    the multi-threaded CPU backward of ``unfold`` (heap corruption under
    ``pretrain(compile=True)`` on two threads); eager, ``unfold`` is ~100 us per step faster."""
    if not torch.compiler.is_compiling():
        return z.unfold(1, kernel, 1).flatten(2)
    length = z.shape[1] - kernel + 1
    return torch.stack([z[:, j: j + length] for j in range(kernel)], dim=-1).flatten(2)


def dense_pool_readout(encoder: nn.Module, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sort pooling (as PyG ``SortAggregation``: each graph's real nodes in descending order of
    the last channel, stable for ties, the first ``k`` kept, missing ones as zero rows) and the
    1-D convolution head of :class:`~predictor.encoder.DGCNNEncoder`, with its own weights, on
    the GCN stack's padded output ``h`` ``[B, N, D]`` -> the embedding ``[B, E]``.

    ``conv1`` (kernel = stride = ``D``) is one linear map per sorted node, so it commutes with
    the sort: it runs on every node first and only its ``C1``-wide outputs (16) are gathered,
    not the ``D``-wide rows (512), which makes the gather and its backward ~30x smaller. A
    padded or missing node, a zero row in sort pooling, becomes ``relu(conv1.bias)``.
    ``MaxPool1d(2, 2)`` is a max over node pairs and ``conv2`` a linear map of unfolded windows:
    the same function as ``conv1 -> relu -> pool -> conv2 -> relu -> embed``, without
    ``conv1d``'s per-call overhead at tiny sizes."""
    b, n, _ = h.shape
    k, c1, c2 = encoder.k, encoder.conv1, encoder.conv2
    key = h[..., -1].detach()
    if mask is not None:
        key = key.masked_fill(~mask, float("-inf"))  # padding sorts last
    perm = key.argsort(dim=-1, descending=True, stable=True)[:, :k]
    z = torch.relu(F.linear(h, c1.weight.flatten(1), c1.bias))  # [B, N, C1], every node
    rows = perm + torch.arange(b, device=h.device).unsqueeze(1) * n
    z = z.reshape(b * n, -1).index_select(0, rows.reshape(-1)).view(b, perm.shape[1], -1)
    empty = None
    if mask is not None or n < k:
        empty = torch.relu(c1.bias) if c1.bias is not None else z.new_zeros(z.shape[-1])
    if mask is not None:
        z = torch.where(mask.gather(1, perm).unsqueeze(-1), z, empty)
    if n < k:
        z = torch.cat([z, empty.expand(b, k - n, -1)], dim=1)  # [B, k, C1]
    if k >= 2:  # MaxPool1d(2, 2) over nodes; an odd last node is dropped, as there
        p = k // 2
        z = z[:, : 2 * p].reshape(b, p, 2, z.shape[-1]).max(dim=2).values  # [B, P, C1]
    win = _windows(z, c2.kernel_size[0])  # [B, L, C1 * kernel] in conv2's order
    z = torch.relu(F.linear(win, c2.weight.flatten(1), c2.bias))  # [B, L, C2]
    return encoder.embed(z.transpose(1, 2).flatten(1))


__all__ = [
    "AGGREGATIONS", "DENSE_MAX_NODES", "DenseGraphBatch", "dense_batch", "dense_gcn_stack",
    "dense_pool_readout", "incoming_counts", "normalized_pair", "summed_pair",
]
