"""NB201 space: published facts (9,445 functions, zc_params, zc_flops), round trips, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from nasrank.spaces import InvalidArchitectureError, NasrankError
from nasrank.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Space

SPACE = NB201Space()
ops_strategy = st.tuples(*[st.sampled_from(OPS)] * len(EDGES)).map(NB201Arch)


def test_canonical_keys_are_the_9445_published_cells(nb201_bench):
    keys = {SPACE.key(a) for a in SPACE.enumerate()}
    assert SPACE.size == 15625 == sum(1 for _ in SPACE.enumerate())
    assert len(keys) == 9445
    published = {k for k, v in zip(nb201_bench.table.keys, nb201_bench.table.column("zc_params"))
                 if math.isfinite(v)}
    assert keys == published


def test_params_equal_published_zc_params_for_all_9445(nb201_bench):
    t = nb201_bench.table
    published = t.column("zc_params")
    n = 0
    for key, p in zip(t.keys, published):
        if not math.isfinite(p):
            continue
        _, ours = SPACE.cost(nb201_bench.archs[key])
        # the csv prints 6 significant digits
        assert float(f"{ours:.6g}") == pytest.approx(p, rel=0, abs=1e-12), key
        n += 1
    assert n == 9445


def test_flops_rank_like_published_zc_flops(nb201_bench):
    t = nb201_bench.table
    pub = t.column("zc_flops")
    mask = np.isfinite(pub)
    ours = [SPACE.cost(nb201_bench.archs[k])[0] for k, m in zip(t.keys, mask) if m]
    assert spearmanr(ours, pub[mask]).statistic >= 0.99


def test_any_classes_and_input_size():
    arch = SPACE.parse("|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|")
    net = SPACE.build(arch, num_classes=7, C=4, N=1, in_channels=1)
    assert net(torch.randn(2, 1, 15, 15)).shape == (2, 7)


def test_canonical_key_hand_case():
    # node 2 only feeds from node 1, which gets nothing from the input: ops into/out of node 1 are dead
    a = SPACE.parse("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    assert SPACE.key(a) == "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    dead = SPACE.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    assert SPACE.key(dead) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@given(ops_strategy, st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_mutate_changes_function_and_stays_in_space(arch, seed):
    child = SPACE.mutate(arch, np.random.default_rng(seed))
    assert isinstance(child, NB201Arch) and child != arch
    assert SPACE.key(child) != SPACE.key(arch)
    assert sum(a != b for a, b in zip(child.ops, arch.ops)) == 1


def test_sampling_reproducible_and_covers_ops():
    a = [SPACE.sample(np.random.default_rng(3)) for _ in range(5)]
    b = [SPACE.sample(np.random.default_rng(3)) for _ in range(5)]
    assert a == b
    rng = np.random.default_rng(0)
    seen = {(e, op) for _ in range(300) for e, op in enumerate(SPACE.sample(rng).ops)}
    assert seen == {(e, op) for e in range(6) for op in OPS}


def test_crossover_takes_each_edge_from_a_parent():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        c = SPACE.crossover(a, b, rng)
        assert all(x in (y, z) for x, y, z in zip(c.ops, a.ops, b.ops))


def test_neighbours_are_the_24_one_edge_changes():
    a = SPACE.sample(np.random.default_rng(2))
    nb = SPACE.neighbours(a)
    assert len(nb) == len(set(nb)) == 24
    assert all(sum(x != y for x, y in zip(n.ops, a.ops)) == 1 for n in nb)


def test_graph_encoding():
    a = SPACE.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
    g = SPACE.to_graph(a)
    assert g.num_nodes == 8 and g.x.shape == (8, SPACE.node_feature_dim)
    assert torch.all(g.x.sum(1) == 1)
    edges = set(map(tuple, g.edge_index.t().tolist()))
    # op nodes: 1=(0->1) conv3, 2=(0->2) skip, 3=(1->2) none, 4=(0->3) pool, 5=(1->3) conv1, 6=(2->3) skip
    assert edges == {(0, 1), (0, 2), (0, 4), (1, 5), (2, 6), (4, 7), (5, 7), (6, 7)}
    # equivalent cells share one graph
    b = SPACE.parse("|none~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    c = SPACE.parse("|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|")
    assert torch.equal(SPACE.to_graph(b).x, SPACE.to_graph(c).x)


@pytest.mark.parametrize("bad, needle", [
    ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_5x5"),
    ("|none~0|+|none~0|none~1|", "2 node groups"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "expected 2"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "none~1"),
    ("garbage", "garbage"),
    ("", "''"),
])
def test_malformed_strings_name_the_bad_token(bad, needle):
    with pytest.raises(InvalidArchitectureError, match=None) as exc:
        SPACE.parse(bad)
    assert needle in str(exc.value)
    assert isinstance(exc.value, NasrankError)


def test_bad_arch_values():
    with pytest.raises(InvalidArchitectureError, match="5 ops"):
        NB201Arch(("none",) * 5)
    with pytest.raises(InvalidArchitectureError, match="'maxpool'"):
        NB201Arch(("none",) * 5 + ("maxpool",))
    with pytest.raises(InvalidArchitectureError, match="edge_0_2"):
        SPACE.from_choices({"edge_0_1": "none"})
