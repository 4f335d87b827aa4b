"""DGCNN graph encoder (Zhang et al., AAAI 2018) adapted to architecture DAGs, plus heads.

Graph convolutions -> concatenated layer outputs -> sort pooling (PyG ``SortAggregation``) ->
1-D convolutions -> an embedding. Architecture DAGs are directed: each layer runs one GCN over the
forward edges and one over the reversed edges and sums them, so a node hears both its inputs and
its consumers, each through its own weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.aggr import SortAggregation


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype):
    """GCN normalisation (self loops, symmetric degree scaling) of the forward and the reversed
    edges, computed once per batch and shared by every layer (``GCNConv`` would redo it in each
    of its 2 x num_layers calls)."""
    fwd = gcn_norm(edge_index, None, num_nodes, add_self_loops=True, dtype=dtype)
    bwd = gcn_norm(edge_index.flip(0), None, num_nodes, add_self_loops=True, dtype=dtype)
    return fwd, bwd


class DirectedGCNLayer(nn.Module):
    """``tanh(GCN_fwd(x, E) + GCN_bwd(x, E^T))``: message passing that respects edge direction.

    Takes the pre-normalised ``(edge_index, edge_weight)`` pairs of
    :func:`normalized_adjacency`."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fwd = GCNConv(in_dim, out_dim, add_self_loops=False, normalize=False)
        self.bwd = GCNConv(in_dim, out_dim, add_self_loops=False, normalize=False)

    def forward(self, x: torch.Tensor, fwd: tuple, bwd: tuple) -> torch.Tensor:
        return torch.tanh(self.fwd(x, fwd[0], fwd[1]) + self.bwd(x, bwd[0], bwd[1]))


class DGCNNEncoder(nn.Module):
    """Graph batch -> one embedding per graph.

    Preconditions: ``x`` is ``[num_nodes, node_dim]``, ``batch`` assigns nodes to graphs in
    ascending order, and no graph has more than ``k`` nodes worth keeping (sort pooling keeps the
    ``k`` nodes with the largest last channel and zero-pads smaller graphs).
    """

    def __init__(
        self, node_dim: int, k: int, *, hidden: int = 128, num_layers: int = 4,
        conv1d_channels: tuple[int, int] = (16, 32), embedding_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"sort-pool k must be >= 1, got {k}")
        self.k = k
        dims = [node_dim] + [hidden] * num_layers
        self.convs = nn.ModuleList(DirectedGCNLayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        total = hidden * num_layers
        self.sort_pool = SortAggregation(k=k)
        c1, c2 = conv1d_channels
        # First 1-D conv reads one sorted node per step (kernel = stride = node width).
        self.conv1 = nn.Conv1d(1, c1, kernel_size=total, stride=total)
        pooled = k // 2 if k >= 2 else 1
        self.pool = nn.MaxPool1d(2, 2) if k >= 2 else nn.Identity()
        kernel2 = max(1, min(5, pooled))
        self.conv2 = nn.Conv1d(c1, c2, kernel_size=kernel2, stride=1)
        flat = c2 * (pooled - kernel2 + 1)
        self.embed = nn.Sequential(nn.Linear(flat, embedding_dim), nn.ReLU(), nn.Dropout(dropout))
        self.embedding_dim = embedding_dim

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor, num_graphs: int,
    ) -> torch.Tensor:
        outs = []
        h = x
        fwd, bwd = normalized_adjacency(edge_index, x.shape[0], x.dtype)
        for conv in self.convs:
            h = conv(h, fwd, bwd)
            outs.append(h)
        h = torch.cat(outs, dim=-1)
        h = self.sort_pool(h, batch, dim_size=num_graphs)  # [B, k * total]
        h = torch.relu(self.conv1(h.unsqueeze(1)))
        h = self.pool(h)
        h = torch.relu(self.conv2(h))
        return self.embed(h.flatten(1))


class PredictorNet(nn.Module):
    """Encoder + hyper-parameter features + heads.

    ``aux_head`` (one output per pretraining label) is the multi-task regression head;
    ``rank_head`` outputs the ranking score used by ``fit`` / ``predict``.
    """

    def __init__(
        self, node_dim: int, k: int, hparam_dim: int, num_tasks: int, *, hidden: int = 128,
        num_layers: int = 4, embedding_dim: int = 128, head_hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = DGCNNEncoder(node_dim, k, hidden=hidden, num_layers=num_layers,
                                    embedding_dim=embedding_dim, dropout=dropout)
        feat = embedding_dim + hparam_dim
        self.num_tasks = num_tasks
        self.aux_head = (
            nn.Sequential(nn.Linear(feat, head_hidden), nn.ReLU(), nn.Linear(head_hidden, num_tasks))
            if num_tasks > 0 else None
        )
        self.rank_head = nn.Sequential(nn.Linear(feat, head_hidden), nn.ReLU(),
                                       nn.Linear(head_hidden, 1))

    def features(self, x, edge_index, batch, num_graphs, hparams) -> torch.Tensor:
        z = self.encoder(x, edge_index, batch, num_graphs)
        if hparams is not None and hparams.shape[-1] > 0:
            z = torch.cat([z, hparams], dim=-1)
        return z

    def forward(self, x, edge_index, batch, num_graphs, hparams=None) -> torch.Tensor:
        """Ranking score, ``[num_graphs]``."""
        return self.rank_head(self.features(x, edge_index, batch, num_graphs, hparams)).squeeze(-1)

    def forward_aux(self, x, edge_index, batch, num_graphs, hparams=None) -> torch.Tensor:
        """Pretraining outputs, ``[num_graphs, num_tasks]``."""
        if self.aux_head is None:
            raise RuntimeError("this network was built without pretraining heads")
        return self.aux_head(self.features(x, edge_index, batch, num_graphs, hparams))
