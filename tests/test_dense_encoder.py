"""Dense batched DGCNN path (predictor/dense.py) against the sparse message-passing path.

References: PyG's own ``gcn_norm`` / ``GCNConv`` / ``SortAggregation`` (the sparse path), and
propagation matrices computed by hand for a 3-node chain.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn.aggr import SortAggregation

from nasrank.predictor import RankingPredictor
from nasrank.predictor.dense import (
    DENSE_MAX_NODES, DenseGraphBatch, dense_batch, dense_pool_readout, incoming_counts,
    normalized_pair,
)
from nasrank.predictor.encoder import DGCNNEncoder, PredictorNet
from nasrank.predictor.graphs import GraphBatch, GraphCache
from nasrank.spaces.nb101 import NB101Space
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


def random_graphs(n_graphs: int, max_nodes: int, node_dim: int, seed: int) -> list[Data]:
    """Random directed graphs of 1..max_nodes nodes with duplicate edges and self loops."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_graphs):
        n = int(torch.randint(1, max_nodes + 1, (1,), generator=g))
        e = int(torch.randint(0, 3 * n, (1,), generator=g))
        ei = torch.randint(0, n, (2, e), generator=g)
        if e >= 2:
            ei[:, 1] = ei[:, 0]  # a duplicate edge
        out.append(Data(x=torch.randn(n, node_dim, generator=g), edge_index=ei, num_nodes=n))
    return out


def both_batches(graphs: list[Data], max_nodes: int, hparams: torch.Tensor | None):
    sparse = Batch.from_data_list(graphs)
    sb = GraphBatch(sparse.x, sparse.edge_index, sparse.batch, len(graphs), hparams)
    sizes = torch.tensor([d.num_nodes for d in graphs])
    x = torch.zeros(len(graphs), max_nodes, graphs[0].x.shape[1])
    for i, d in enumerate(graphs):
        x[i, : d.num_nodes] = d.x
    counts = incoming_counts(sparse.edge_index, max_nodes, sparse.batch, len(graphs))
    return sb, dense_batch(x, counts, sizes, hparams)


def run(net: PredictorNet, gb, aux: bool = True):
    net.zero_grad(set_to_none=True)
    out = net.forward_aux(*gb.inputs()) if aux else net(*gb.inputs())
    (out.square().sum() + out.sum()).backward()
    return out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def assert_same(net: PredictorNet, sb, db, aux: bool = True) -> None:
    out_s, grad_s = run(net, sb, aux)
    out_d, grad_d = run(net, db, aux)
    assert (out_s - out_d).abs().max().item() <= 1e-5
    assert grad_s.keys() == grad_d.keys()
    assert all(f"encoder.{n}" in grad_s for n, _ in net.encoder.named_parameters())
    for name in grad_s:
        torch.testing.assert_close(grad_d[name], grad_s[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_equals_sparse_on_random_graphs_with_padding(seed):
    max_nodes, node_dim = 9, 5
    graphs = random_graphs(13, max_nodes, node_dim, seed)
    hp = torch.randn(13, 3, generator=torch.Generator().manual_seed(seed))
    sb, db = both_batches(graphs, max_nodes, hp)
    assert db.mask is not None and not bool(db.mask.all())
    torch.manual_seed(seed)
    net = PredictorNet(node_dim, max_nodes, 3, 4, **SMALL)
    assert_same(net, sb, db)
    assert_same(net, sb, db, aux=False)


@pytest.mark.parametrize("k", [1, 3, 12])
def test_dense_equals_sparse_when_k_differs_from_node_count(k):
    graphs = random_graphs(7, 6, 4, seed=k)
    sb, db = both_batches(graphs, 6, None)
    torch.manual_seed(0)
    net = PredictorNet(4, k, 0, 2, hidden=8, embedding_dim=8, head_hidden=8, num_layers=2)
    assert_same(net, sb, db)


def test_dense_equals_sparse_on_nb201_and_nb101_cells():
    for space in (NB201Space(), NB101Space()):
        rng = np.random.default_rng(3)
        archs = [space.sample(rng) for _ in range(24)]
        cache = GraphCache(space, dense=True)
        keys = cache.keys(archs)
        db = cache.batch(keys)
        assert isinstance(db, DenseGraphBatch) and db.x.shape[1] == space.max_nodes
        torch.manual_seed(1)
        net = PredictorNet(space.node_feature_dim, space.max_nodes, 0, 3, **SMALL)
        assert_same(net, cache.sparse_batch(keys), db)


def test_normalized_pair_by_hand_on_a_chain():
    # 0 -> 1 -> 2 plus padding node 3. Forward in-degrees (+1 self loop) 1, 2, 2; reversed 2, 2, 1.
    counts = incoming_counts(torch.tensor([[0, 1], [1, 2]]), 4)
    assert counts[0, 1, 0] == 1 and counts[0, 2, 1] == 1 and int(counts.sum()) == 2
    mask = torch.tensor([[True, True, True, False]])
    adj = normalized_pair(counts, mask, torch.float64)[0]
    fwd, bwd = adj[0::2], adj[1::2]
    r2 = 1 / math.sqrt(2)
    exp_fwd = torch.tensor([[1, 0, 0, 0], [r2, .5, 0, 0], [0, .5, .5, 0], [0, 0, 0, 0]], dtype=torch.float64)
    exp_bwd = torch.tensor([[.5, .5, 0, 0], [0, .5, r2, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.float64)
    torch.testing.assert_close(fwd, exp_fwd)
    torch.testing.assert_close(bwd, exp_bwd)


def test_self_loops_and_parallel_edges_follow_gcn_norm():
    # a self loop is kept once (add_remaining_self_loops), a parallel edge counts twice
    counts = incoming_counts(torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]]), 2)
    assert counts.tolist() == [[[0, 0], [2, 0]]]
    adj = normalized_pair(counts, None, torch.float64)[0]
    # forward: node 1 has in-degree 2 + 1 loop = 3; node 0 has 1
    torch.testing.assert_close(adj[0::2], torch.tensor([[1, 0], [2 / math.sqrt(3), 1 / 3]], dtype=torch.float64))


def test_dense_sort_pool_matches_pyg_sort_aggregation():
    """The dense sort pooling + conv head against PyG's ``SortAggregation`` followed by the
    encoder's own Conv1d head, on padded graphs, for k below, at and above the node count."""
    g = torch.Generator().manual_seed(0)
    sizes = torch.tensor([3, 5, 1, 5])
    rows = torch.randn(int(sizes.sum()), 4, generator=g)
    index = torch.repeat_interleave(torch.arange(4), sizes)
    padded = torch.zeros(4, 5, 4)
    for i, (s, e) in enumerate(zip((torch.cumsum(sizes, 0) - sizes).tolist(), torch.cumsum(sizes, 0).tolist())):
        padded[i, : e - s] = rows[s:e]
    mask = torch.arange(5).unsqueeze(0) < sizes.unsqueeze(1)
    for k in (2, 5, 7):
        torch.manual_seed(k)
        enc = DGCNNEncoder(3, k, hidden=2, num_layers=2, embedding_dim=6)  # node width 2 * 2 = 4
        pooled = SortAggregation(k)(rows, index, dim_size=4)
        z = enc.pool(torch.relu(enc.conv1(pooled.unsqueeze(1))))
        ref = enc.embed(torch.relu(enc.conv2(z)).flatten(1))
        torch.testing.assert_close(dense_pool_readout(enc, padded, mask), ref, rtol=1e-5, atol=1e-6)


def test_cache_picks_dense_for_small_spaces_and_batches_without_python_per_graph():
    space = NB201Space()
    assert space.max_nodes <= DENSE_MAX_NODES
    cache = GraphCache(space)
    assert cache.dense
    rng = np.random.default_rng(0)
    keys = cache.keys([space.sample(rng) for _ in range(40)])
    gb = cache.batch(keys[:5])
    assert isinstance(gb, DenseGraphBatch) and gb.mask is None  # NB201 graphs are never padded
    assert gb.adj.shape == (5, 16, 8)

    class Big(NB201Space):
        max_nodes = DENSE_MAX_NODES + 1

    assert not GraphCache(Big()).dense
    sparse = GraphCache(space, dense=False)
    sparse.keys(keys)
    sparse.dense = True  # switching later builds the rows of graphs already converted
    torch.testing.assert_close(sparse.batch(keys[3:9]).adj, cache.batch(keys[3:9]).adj)


def test_refused_architecture_keeps_the_cache_consistent():
    space = NB201Space()
    cache = GraphCache(space, dense=True)
    good = space.sample(np.random.default_rng(0))
    with pytest.raises(Exception):
        cache.keys([good, "not an architecture"])
    key = cache.keys([good])[0]
    assert cache.batch([key]).x.shape == (1, 8, space.node_feature_dim)


def test_predictor_same_predictions_either_path_and_checkpoints_interchange(tmp_path):
    space = NB201Space()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(40)]
    y = np.array([space.cost(a)[1] for a in archs])  # params (M): an exact label
    dense = RankingPredictor(space, seed=3, **SMALL)
    sparse = RankingPredictor(space, seed=3, dense=False, **SMALL)
    assert dense._graphs.dense and not sparse._graphs.dense
    labels = {"params": y, "flops": np.array([space.cost(a)[0] for a in archs])}
    for p in (dense, sparse):
        p.pretrain(archs, labels, epochs=2, batch_size=8)
        p.fit(archs[:20], y[:20], epochs=2)
    np.testing.assert_allclose(dense.predict(archs), sparse.predict(archs), atol=1e-4)
    path = tmp_path / "p.pt"
    sparse.save(path)  # written by the sparse path: the format has no trace of the layout
    loaded = RankingPredictor.load(path, space=space)
    assert loaded._graphs.dense
    np.testing.assert_allclose(loaded.predict(archs), sparse.predict(archs), atol=1e-5)


def test_take_gives_the_batch_of_those_graphs():
    graphs = random_graphs(12, 6, 3, seed=5)  # 1..6 nodes: padded rows and a mask
    hp = torch.randn(12, 2, generator=torch.Generator().manual_seed(5))
    _, full = both_batches(graphs, 6, hp)
    assert full.mask is not None
    idx = torch.tensor([7, 2, 11, 2, 0])
    _, ref = both_batches([graphs[i] for i in idx.tolist()], 6, hp[idx])
    sub = full.take(idx)
    assert sub.num_graphs == 5
    for a, b in ((sub.x, ref.x), (sub.adj, ref.adj), (sub.hparams, ref.hparams)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = ref.mask if ref.mask is not None else torch.ones(5, 6, dtype=torch.bool)
    assert torch.equal(sub.mask, expected)
