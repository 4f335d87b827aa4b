"""Graph encoders of architecture DAGs (DGCNN, Zhang et al., AAAI 2018; GIN, Xu et al., ICLR
2019; a graph transformer, Shi et al., IJCAI 2021), plus heads.

DGCNN (the default, AceNAS's encoder): graph convolutions -> concatenated layer outputs -> sort
pooling (PyG ``SortAggregation``) -> 1-D convolutions -> an embedding. Architecture DAGs are
directed: each layer runs one GCN over the forward edges and one over the reversed edges and sums
them, so a node hears both its inputs and its consumers, each through its own weights.

GIN (``encoder="gin"``) and a graph transformer (``encoder="transformer"``, PyG
``TransformerConv``), issue 15's comparison: aggregation over in- and out-neighbours (sums,
attention), and a sum over nodes of every layer's output as the readout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv, TransformerConv, global_add_pool
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.aggr import SortAggregation
from torch_geometric.utils import remove_self_loops, scatter

from nasrank.errors import NasrankError

from .dense import dense_gcn_stack, dense_pool_readout


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
        """Sparse inputs (``x`` ``[num_nodes, F]``, ``edge_index``, ``batch``), or the dense
        inputs of a :class:`~predictor.dense.DenseGraphBatch` in the same places (``x``
        ``[B, N, F]``, ``adj`` ``[B, 2N, N]``, ``mask`` ``[B, N]``): same weights, same result."""
        if x.dim() == 3:
            return dense_pool_readout(self, dense_gcn_stack(self.convs, x, edge_index), batch)
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


#: negative slope of the GIN layers' LeakyReLU (see :class:`DirectedGINLayer`)
GIN_SLOPE = 0.01


class DirectedGINLayer(nn.Module):
    """A GIN layer (Xu et al., ICLR 2019: sum aggregation, MLP update) for DAGs:
    ``h' = act(W2 act(W1 [h | sum of in-neighbours | sum of out-neighbours]))``.

    GIN sums ``(1 + eps) h`` and the neighbour sum before its MLP; here the node's own
    features and the two directions' sums are concatenated instead, so the first linear map
    weighs each on its own (it contains GIN's form) and edge direction counts. Sums, unlike
    GCN's degree-normalised means, keep the in- and out-degree of every node in its features.

    ``act`` is LeakyReLU (slope 0.01), not GIN's ReLU: with ReLU, Adam with L2 weight decay
    drove the weights of dead units towards 0 through float32's subnormal range, where the
    CPU's arithmetic is slow; NB201 pretraining epochs went from 1.3 s to 10 s by epoch 26.
    A leaky unit keeps a gradient, and its weights stay normal numbers (1.4 s per epoch
    throughout, same loss)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3 * in_dim, out_dim)
        self.lin2 = nn.Linear(out_dim, out_dim)

    def update(self, h: torch.Tensor, in_sum: torch.Tensor, out_sum: torch.Tensor) -> torch.Tensor:
        z = F.leaky_relu(self.lin1(torch.cat([h, in_sum, out_sum], -1)), GIN_SLOPE)
        return F.leaky_relu(self.lin2(z), GIN_SLOPE)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Sparse: ``h`` ``[num_nodes, F]``, ``edge_index`` without self loops."""
        src, dst = edge_index
        in_sum = scatter(h.index_select(0, src), dst, dim=0, dim_size=h.shape[0], reduce="sum")
        out_sum = scatter(h.index_select(0, dst), src, dim=0, dim_size=h.shape[0], reduce="sum")
        return self.update(h, in_sum, out_sum)


def _sparse_sum_readout(encoder: nn.Module, x: torch.Tensor, edge_index: torch.Tensor,
                        batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """``encoder.convs`` in turn on a sparse batch, every layer's output concatenated per node,
    summed per graph, then ``encoder.embed`` (the readout of GIN and the transformer)."""
    h, outs = x, []
    for conv in encoder.convs:
        h = conv(h, edge_index)
        outs.append(h)
    return encoder.embed(global_add_pool(torch.cat(outs, dim=-1), batch, size=num_graphs))


class GINEncoder(nn.Module):
    """Graph batch -> one embedding per graph: ``num_layers`` :class:`DirectedGINLayer` s, the
    outputs of every layer concatenated per node (jumping knowledge, as GIN's readout), summed
    over each graph's real nodes, then ``Linear -> ReLU -> Dropout`` to the embedding.

    Takes the same inputs as :class:`DGCNNEncoder`: sparse (``x``, ``edge_index``, ``batch``)
    or the dense inputs of a :class:`~predictor.dense.DenseGraphBatch` built with sum
    aggregation (``adj`` of raw edge counts); same weights, same result."""

    def __init__(self, node_dim: int, *, hidden: int = 128, num_layers: int = 4,
                 embedding_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [node_dim] + [hidden] * num_layers
        self.convs = nn.ModuleList(DirectedGINLayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.embed = nn.Sequential(nn.Linear(hidden * num_layers, embedding_dim), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.embedding_dim = embedding_dim

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor | None,
        num_graphs: int,
    ) -> torch.Tensor:
        if x.dim() == 3:  # dense: edge_index is adj [B, 2N, N] of counts, batch the mask
            b, n, _ = x.shape
            h, outs = x, []
            for conv in self.convs:
                y = torch.bmm(edge_index, h).view(b, n, 2, h.shape[-1])
                h = conv.update(h, y[:, :, 0], y[:, :, 1])
                outs.append(h)
            hs = torch.cat(outs, dim=-1)
            if batch is not None:  # padded nodes are not summed (their rows are MLP(0) != 0)
                hs = hs * batch.unsqueeze(-1).to(hs.dtype)
            return self.embed(hs.sum(1))
        edge_index, _ = remove_self_loops(edge_index)  # as the dense counts drop them
        return _sparse_sum_readout(self, x, edge_index, batch, num_graphs)


class DirectedTransformerLayer(nn.Module):
    """A graph-transformer layer (PyG ``TransformerConv``: Shi et al., IJCAI 2021) for DAGs:
    ``h' = act(T_in(h, E) + T_out(h, E^T))``, where each ``T`` is multi-head dot-product
    attention of a node over its in- (or out-) neighbours plus a skip projection of the node
    itself; as in a transformer, the ``heads`` heads split the width (``out_dim / heads``
    each) and are concatenated. Each direction has its own weights, as in
    :class:`DirectedGCNLayer`. ``act`` is LeakyReLU (see :class:`DirectedGINLayer`)."""

    def __init__(self, in_dim: int, out_dim: int, heads: int = 4) -> None:
        super().__init__()
        if out_dim % heads:
            raise NasrankError(f"the transformer's width ({out_dim}) must be a multiple of its "
                               f"{heads} heads")
        self.fwd = TransformerConv(in_dim, out_dim // heads, heads=heads, concat=True)
        self.bwd = TransformerConv(in_dim, out_dim // heads, heads=heads, concat=True)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.fwd(h, edge_index) + self.bwd(h, edge_index.flip(0)), GIN_SLOPE)


class TransformerEncoder(nn.Module):
    """Graph batch -> one embedding per graph: ``num_layers`` :class:`DirectedTransformerLayer`
    s, every layer's output concatenated per node, summed over each graph's nodes, then
    ``Linear -> ReLU -> Dropout``. Sparse inputs only (``x``, ``edge_index``, ``batch``);
    a parallel edge or a self loop is one more attention target, as in PyG."""

    def __init__(self, node_dim: int, *, hidden: int = 128, num_layers: int = 4,
                 embedding_dim: int = 128, dropout: float = 0.0, heads: int = 4) -> None:
        super().__init__()
        dims = [node_dim] + [hidden] * num_layers
        self.convs = nn.ModuleList(DirectedTransformerLayer(a, b, heads)
                                   for a, b in zip(dims[:-1], dims[1:]))
        self.embed = nn.Sequential(nn.Linear(hidden * num_layers, embedding_dim), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor,
                num_graphs: int) -> torch.Tensor:
        if x.dim() == 3:
            raise NasrankError("the transformer encoder has no dense path: build the predictor "
                               "with dense=False (RankingPredictor does so for this encoder)")
        return _sparse_sum_readout(self, x, edge_index, batch, num_graphs)


#: the graph encoders :class:`PredictorNet` can use (``encoder=``); DGCNN is AceNAS's
ENCODERS = ("dgcnn", "gin", "transformer")


#: Dropout of AceNAS's regression heads (Zhang et al. 2021; the released code's head is
#: Linear -> ReLU -> Dropout(0.5) -> Linear for its GCN predictor, on the pretraining heads and
#: the ranking head alike): the AceNAS preset's ``head_dropout``.
ACENAS_HEAD_DROPOUT = 0.5
#: PredictorNet / RankingPredictor keyword arguments of the AceNAS preset (what differs from
#: this package's defaults).
ACENAS_PRESET: dict[str, float] = {"head_dropout": ACENAS_HEAD_DROPOUT}


class SeededDropout(nn.Module):
    """``nn.Dropout(p)`` drawing its masks from its own ``torch.Generator`` (one per device,
    seeded by ``seed``; :meth:`reseed` restarts it), so training with dropout is reproducible
    without touching torch's global RNG. No parameters or buffers: a network's state dict is
    the same with or without it."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise NasrankError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p, self.seed = float(p), int(seed)
        self._gens: dict[str, torch.Generator] = {}

    def reseed(self, seed: int) -> None:
        self.seed, self._gens = int(seed), {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        key = str(x.device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=x.device).manual_seed(self.seed)
        keep = torch.rand(x.shape, generator=self._gens[key], device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, seed={self.seed}"


class PredictorNet(nn.Module):
    """Encoder (``encoder``: ``"dgcnn"``, the default and AceNAS's, ``"gin"`` or
    ``"transformer"``) +
    hyper-parameter features + heads.

    ``aux_head`` (one output per pretraining label) is the multi-task regression head;
    ``rank_head`` outputs the ranking score used by ``fit`` / ``predict``. Each head is
    ``Linear -> activation -> Linear``; ``head_dropout > 0`` (AceNAS: 0.5,
    :data:`ACENAS_HEAD_DROPOUT`) makes the activation slot ``ReLU -> Dropout`` (a
    :class:`SeededDropout` seeded from torch's RNG after the weights are drawn, so the weights
    equal those of ``head_dropout=0`` under the same seed). The slot has no parameters, so the
    state dict keys do not depend on ``head_dropout``; ``0`` is the behaviour before the option.
    """

    def __init__(
        self, node_dim: int, k: int, hparam_dim: int, num_tasks: int, *, hidden: int = 128,
        num_layers: int = 4, embedding_dim: int = 128, head_hidden: int = 128,
        dropout: float = 0.0, head_dropout: float = 0.0, hybrid_labels: int = 0,
        encoder: str = "dgcnn",
    ) -> None:
        super().__init__()
        if isinstance(head_dropout, bool) or not isinstance(head_dropout, (int, float)) or not (
                0.0 <= head_dropout < 1.0):
            raise NasrankError(f"head_dropout must be a number in [0, 1), got {head_dropout!r}")
        if encoder not in ENCODERS:
            raise NasrankError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        if encoder == "gin":
            self.encoder = GINEncoder(node_dim, hidden=hidden, num_layers=num_layers,
                                      embedding_dim=embedding_dim, dropout=dropout)
        elif encoder == "transformer":
            self.encoder = TransformerEncoder(node_dim, hidden=hidden, num_layers=num_layers,
                                              embedding_dim=embedding_dim, dropout=dropout)
        else:
            self.encoder = DGCNNEncoder(node_dim, k, hidden=hidden, num_layers=num_layers,
                                        embedding_dim=embedding_dim, dropout=dropout)
        feat = embedding_dim + hparam_dim
        self.num_tasks = num_tasks
        self.head_dropout = float(head_dropout)
        self.aux_head = (
            nn.Sequential(nn.Linear(feat, head_hidden), nn.ReLU(), nn.Linear(head_hidden, num_tasks))
            if num_tasks > 0 else None
        )
        self.rank_head = nn.Sequential(nn.Linear(feat, head_hidden), nn.ReLU(),
                                       nn.Linear(head_hidden, 1))
        if self.head_dropout > 0:
            seed = int(torch.randint(0, 2**62, ()).item())  # after the weights: they are unchanged
            for i, head in enumerate((self.rank_head, self.aux_head)):
                if head is not None:
                    head[1] = nn.Sequential(nn.ReLU(), SeededDropout(self.head_dropout, seed + i))
        # Hybrid head (issue 15): the ranking head also reads the architecture's weak-label
        # vector, into its hidden layer and straight into the score. Built last and zeroed, so
        # the other weights are those of ``hybrid_labels=0`` under the same seed and a fresh
        # hybrid head scores exactly like the plain one.
        self.hybrid_labels = int(hybrid_labels)
        if self.hybrid_labels > 0:
            self.label_in = nn.Linear(self.hybrid_labels, head_hidden, bias=False)
            self.label_skip = nn.Linear(self.hybrid_labels, 1, bias=False)
            with torch.no_grad():
                self.label_in.weight.zero_()
                self.label_skip.weight.zero_()

    def reseed_dropout(self, seed: int) -> None:
        """Restart the dropout masks of the heads from ``seed`` (a no-op without dropout):
        the trainer calls it at the start of each fit, so a fit is reproducible."""
        for i, m in enumerate(m for m in self.modules() if isinstance(m, SeededDropout)):
            m.reseed(int(seed) + i)

    def features(self, x, edge_index, batch, num_graphs, hparams) -> torch.Tensor:
        z = self.encoder(x, edge_index, batch, num_graphs)
        if hparams is not None and hparams.shape[-1] > 0:
            z = torch.cat([z, hparams], dim=-1)
        return z

    def forward(self, x, edge_index, batch, num_graphs, hparams=None) -> torch.Tensor:
        """Ranking score, ``[num_graphs]`` (a hybrid head: see :meth:`forward_hybrid`)."""
        if self.hybrid_labels > 0:
            raise RuntimeError("a hybrid head needs the weak-label vectors: call forward_hybrid")
        return self.rank_head(self.features(x, edge_index, batch, num_graphs, hparams)).squeeze(-1)

    def forward_hybrid(self, x, edge_index, batch, num_graphs, hparams=None, *,
                       labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Ranking score of the hybrid head, ``[num_graphs]``: the head reads the graph
        features and a weak-label vector per graph (z-normalised, ``[num_graphs, T]``), the
        measured one where ``known`` (``[num_graphs]`` bool) is True, else the pretraining
        heads' prediction of it (no gradient flows into that stand-in)."""
        if self.hybrid_labels <= 0 or self.aux_head is None:
            raise RuntimeError("this network has no hybrid head (hybrid_labels=0 or no pretraining heads)")
        f = self.features(x, edge_index, batch, num_graphs, hparams)
        z = torch.where(known[:, None], labels, self.aux_head(f).detach())
        h = self.rank_head[1](self.rank_head[0](f) + self.label_in(z))
        return (self.rank_head[2](h) + self.label_skip(z)).squeeze(-1)

    def forward_aux(self, x, edge_index, batch, num_graphs, hparams=None) -> torch.Tensor:
        """Pretraining outputs, ``[num_graphs, num_tasks]``."""
        if self.aux_head is None:
            raise RuntimeError("this network was built without pretraining heads")
        return self.aux_head(self.features(x, edge_index, batch, num_graphs, hparams))
