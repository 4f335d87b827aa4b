"""Few-shot splitting: exact min-cut against brute force, split distance by hand and as a metric,
gradient-matching and proxy similarities on a toy supernet with two identical choices, trees whose
leaves partition NB201, leaf training that resumes bitwise after a kill."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nasrank.errors import NasrankError
from nasrank.supernet.base import Supernet
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.fewshot import (ConstantPolicy, FewShotSupernet, Split, build_tree,
                                      check_allowed, contains, cut_value, edge_similarity,
                                      external_distances, fewshot_weak_labels, internal_distances,
                                      min_cut_partition, set_partitions, split_distance,
                                      train_fewshot)
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.registry import SAMPLERS
from nasrank.supernet.weak_labels import generate_weak_labels


# ----------------------------------------------------------------------------- partitions
@pytest.mark.parametrize("n, b, stirling", [(5, 1, 1), (5, 2, 15), (5, 3, 25), (5, 4, 10),
                                            (5, 5, 1), (4, 2, 7), (3, 2, 3)])
def test_set_partitions_counts_are_stirling_numbers(n, b, stirling):
    parts = list(set_partitions(n, b))
    assert len(parts) == stirling
    assert len({frozenset(map(frozenset, p)) for p in parts}) == stirling  # no duplicates
    for p in parts:
        assert sorted(i for g in p for i in g) == list(range(n)) and all(p)


def _brute_min_cut(sim, b, balanced):
    """Reference: every labelling in b^n, keep surjective (and balanced) ones."""
    n = sim.shape[0]
    best = np.inf
    for labels in itertools.product(range(b), repeat=n):
        sizes = [labels.count(g) for g in range(b)]
        if min(sizes) == 0 or (balanced and max(sizes) - min(sizes) > 1):
            continue
        c = sum(sim[i, j] for i in range(n) for j in range(i + 1, n) if labels[i] != labels[j])
        best = min(best, c)
    return best


@pytest.mark.parametrize("b", [2, 3, 4])
@pytest.mark.parametrize("balanced", [True, False])
def test_min_cut_matches_brute_force(b, balanced):
    rng = np.random.default_rng(b)
    for _ in range(15):
        a = rng.normal(size=(5, 5))
        sim = (a + a.T) / 2
        groups, cut = min_cut_partition(sim, b, balanced=balanced)
        assert cut == pytest.approx(_brute_min_cut(sim, b, balanced), abs=1e-12)
        assert cut == pytest.approx(cut_value(sim, groups), abs=1e-12)
        assert len(groups) == b


def test_min_cut_by_hand():
    # ops {0,1} and {2,3,4} are similar inside, dissimilar across: the cut is the 6 cross pairs
    sim = np.full((5, 5), -1.0)
    sim[np.ix_([0, 1], [0, 1])] = 1.0
    sim[np.ix_([2, 3, 4], [2, 3, 4])] = 1.0
    groups, cut = min_cut_partition(sim, 2)
    assert groups == ((0, 1), (2, 3, 4)) and cut == -6.0
    # unbalanced: positive similarities everywhere -> the cheapest cut isolates one op
    pos = np.ones((5, 5))
    pos[4, :4] = pos[:4, 4] = 0.1
    assert min_cut_partition(pos, 2, balanced=False)[0] == ((0, 1, 2, 3), (4,))
    with pytest.raises(NasrankError, match="symmetric"):
        min_cut_partition(np.arange(4.0).reshape(2, 2), 2)
    with pytest.raises(NasrankError, match="into 3 non-empty"):
        list(set_partitions(2, 3))


# ----------------------------------------------------------------------------- split distance
def test_split_distance_by_hand():
    a = Split(0, ((0, 1), (2, 3, 4)))
    assert split_distance(a, Split(0, ((2, 3, 4), (1, 0)))) == 0  # labels do not matter
    assert split_distance(a, Split(0, ((0, 2), (1, 3, 4)))) == 2  # move 1 and 2
    assert split_distance(a, Split(0, ((0, 1, 2), (3, 4)))) == 1  # move 2
    assert split_distance(a, Split(0, ((0,), (1,), (2, 3, 4)))) == 1  # 1 moves to a new group
    assert split_distance(a, Split(3, ((0, 1), (2, 3, 4)))) == 5  # another decision point
    assert split_distance(Split(0, ((0, 3), (1, 2))), Split(0, ((0, 1), (2, 3)))) == 2
    with pytest.raises(NasrankError, match="disjoint"):
        Split(0, ((0, 1), (1, 2)))


@st.composite
def splits(draw):
    decision = draw(st.integers(0, 1))
    n = draw(st.sampled_from([5, 5, 4]))
    b = draw(st.integers(1, 3))
    labels = draw(st.lists(st.integers(0, b - 1), min_size=n, max_size=n))
    groups = tuple(tuple(i for i in range(n) if labels[i] == g) for g in range(b))
    return Split(decision, tuple(g for g in groups if g))


@settings(max_examples=300, deadline=None)
@given(splits(), splits(), splits())
def test_split_distance_is_a_metric(a, b, c):
    assert (split_distance(a, b) == 0) == (a == b)
    assert split_distance(a, b) == split_distance(b, a)
    assert split_distance(a, c) <= split_distance(a, b) + split_distance(b, c)


# ----------------------------------------------------------------------------- toy supernet
class _ToySupernet(Supernet):
    """x -> shared linear -> choice (0: ReLU, 1: ReLU (same function), 2: tanh, 3: own linear)
    -> shared head; one decision point plus a second one choosing a head scale."""

    def __init__(self) -> None:
        super().__init__()
        self.space = SimpleNamespace(name="toy", key=lambda a: str(tuple(a)),
                                     parse=lambda s: tuple(int(v) for v in s.strip("()").split(",")))
        self.stem = nn.Linear(6, 8)
        self.own = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def decisions(self):
        return [["relu", "relu2", "tanh", "linear"], ["x1", "x2"]]

    def arch_from_choices(self, indices):
        return tuple(self.check_choices(indices))

    def choices_of(self, arch):
        return list(arch)

    def check_arch(self, arch):
        return tuple(arch)

    def forward(self, x, arch):
        h = self.stem(x)
        h = [torch.relu, torch.relu, torch.tanh, self.own][arch[0]](h)
        return self.head(h) * (1.0 + arch[1])

    def subnet(self, arch):
        net = self

        class Path(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem, self.own, self.head = (nn.Linear(6, 8), nn.Linear(8, 8),
                                                  nn.Linear(8, 3))
                self.load_state_dict(net.state_dict())

            def forward(self, x):
                return net.__class__.forward(self, x, arch)

        return Path()

    def config(self):
        return {"space": "toy"}


def _toy_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)


def test_gradient_matching_of_identical_choices_is_one():
    torch.manual_seed(0)
    net = _ToySupernet()
    allowed = check_allowed(net, [[0, 1, 2, 3], [0, 1]])
    sim = edge_similarity(net, allowed, 0, "gm", _toy_batch(), [[0, 0], [0, 1]])
    assert sim.shape == (4, 4)
    assert np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0)
    assert sim[0, 1] == pytest.approx(1.0, abs=1e-9)  # ReLU twice: the same gradient
    assert sim[0, 2] < 1 - 1e-4
    # independent reference for one pair: gradients of the shared stem + head by backward()
    x, y = _toy_batch()
    vec = []
    for c in (0, 2):
        net.zero_grad()
        for base in ([c, 0], [c, 1]):
            nn.functional.cross_entropy(net(x, tuple(base)), y).backward()
        vec.append(torch.cat([p.grad.flatten() for p in (*net.stem.parameters(),
                                                         *net.head.parameters())]).double())
    ref = float(vec[0] @ vec[1] / (vec[0].norm() * vec[1].norm()))
    assert sim[0, 2] == pytest.approx(ref, rel=1e-6)
    groups, _ = min_cut_partition(sim, 2)
    assert any({0, 1} <= set(g) for g in groups)  # the identical pair is never cut apart


def test_proxy_similarity_is_minus_absolute_difference_of_mean_scores():
    from nasrank.supernet.proxies import score

    torch.manual_seed(1)
    net = _ToySupernet()
    allowed = check_allowed(net, [[0, 1, 2, 3], [0, 1]])
    batch = _toy_batch()
    bases = [[0, 0], [0, 1]]
    sim = edge_similarity(net, allowed, 0, "grad_norm", batch, bases)
    means = [np.mean([score(net.subnet((c, b[1])), batch, ["grad_norm"])["grad_norm"]
                      for b in bases]) for c in range(4)]
    ref = -np.abs(np.subtract.outer(means, means))
    assert np.allclose(sim, ref, rtol=1e-9, atol=1e-12)
    assert sim[0, 1] == 0.0  # identical functions and weights: identical scores


# ----------------------------------------------------------------------------- NB201
@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", seed=0, subset=64, channels=3)


def _nb201(seed=0):
    torch.manual_seed(seed)
    return NB201Supernet(10, C=4, N=1)


def test_tree_leaves_partition_nb201_and_distances(digits):
    net = _nb201()
    x, y = digits.train.tensors
    batch = (x[:8], y[:8])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    tree = build_tree(net, ConstantPolicy(2, 2), "grad_norm", batch, paths=1, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    leaves = tree.leaves()
    assert len(leaves) == 4
    root = tree.split
    assert root is not None and sorted(len(g) for g in root.groups) == [2, 3]
    for child in tree.children:  # children split another decision point
        assert child.split is not None and child.split.decision != root.decision
    sizes = [int(np.prod([len(a) for a in lf.allowed])) for lf in leaves]
    assert sum(sizes) == 5 ** 6
    rng = np.random.default_rng(0)
    for _ in range(200):  # every architecture in exactly one leaf
        ch = rng.integers(0, 5, size=6).tolist()
        assert sum(contains(lf.allowed, ch) for lf in leaves) == 1
    assert internal_distances(tree, 0) == []
    d1 = internal_distances(tree, 1)
    assert len(d1) == 1 and 0 <= d1[0] <= 5
    tree2 = build_tree(_nb201(1), ConstantPolicy(1, 2), "grad_norm", batch, paths=1, seed=1)
    assert external_distances([tree, tree2], 0) == [split_distance(tree.split, tree2.split)]


def test_restricted_sampler_registry_entry():
    net = _nb201()
    cfg = SAMPLERS.make("restricted_uniform", {"allowed": "0+2,*,1,*,*,3+4", "archs_per_step": 3})
    sampler = cfg.build(net)
    seen = [set() for _ in range(6)]
    rng = np.random.default_rng(0)
    for _ in range(100):
        archs = sampler.sample(rng)
        assert len(archs) == 3
        for a in archs:
            for d, c in enumerate(net.choices_of(a)):
                seen[d].add(c)
    assert seen == [{0, 2}, set(range(5)), {1}, set(range(5)), set(range(5)), {3, 4}]
    with pytest.raises(NasrankError):
        SAMPLERS.make("restricted_uniform", {"allowed": "0,1"}).build(net)
    with pytest.raises(NasrankError):
        SAMPLERS.make("restricted_uniform", {"allowed": "7,*,*,*,*,*"}).build(net)


def test_train_fewshot_resumes_bitwise_and_labels_from_own_leaf(digits, tmp_path):
    leaves = [((0, 1), *[tuple(range(5))] * 5), ((2, 3, 4), *[tuple(range(5))] * 5)]
    kw = dict(epochs=2, batch_size=32, lr=0.05, seed=3)
    full, cost = train_fewshot(leaves, lambda: NB201Supernet(10, C=4, N=1), digits, **kw)
    assert cost["leaf_epochs"] == 4 and cost["steps"] == 2 * 2 * (len(digits.train) // 32)

    class Kill(Exception):
        pass

    def kill(k, epoch):
        if (k, epoch) == (1, 0):
            raise Kill

    with pytest.raises(Kill):
        train_fewshot(leaves, lambda: NB201Supernet(10, C=4, N=1), digits,
                      checkpoint_dir=tmp_path / "ck", on_epoch_end=kill, **kw)
    resumed, _ = train_fewshot(leaves, lambda: NB201Supernet(10, C=4, N=1), digits,
                               checkpoint_dir=tmp_path / "ck", **kw)
    for a, b in zip(full.supernets, resumed.supernets):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v, w), k
    with pytest.raises(NasrankError, match="other leaves"):
        train_fewshot(leaves[::-1], lambda: NB201Supernet(10, C=4, N=1), digits,
                      checkpoint_dir=tmp_path / "ck", **kw)

    space = full.supernets[0].space
    archs = [space.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|"
                         "none~1|avg_pool_3x3~2|"),
             space.parse("|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|"
                         "nor_conv_3x3~1|avg_pool_3x3~2|")]
    assert [full.leaf_index(a) for a in archs] == [1, 0]
    kw_l = dict(bn_batches=1, eval_batches=1, batch_size=32, progress=False)
    table = fewshot_weak_labels(full, archs, digits, tmp_path / "wl", **kw_l)
    for arch, leaf in zip(archs, (1, 0)):
        own = generate_weak_labels(full.supernets[leaf], [arch], digits,
                                   tmp_path / f"own{leaf}.csv", **kw_l)
        key = space.key(arch)
        assert table.row(key) == own.row(key)
    with pytest.raises(NasrankError, match="one supernet per leaf"):
        FewShotSupernet(leaves, full.supernets[:1])


def test_gm_tree_on_the_mbconv_chain(digits):
    from nasrank.spaces.mbconv import MBConvSpace
    from nasrank.supernet.mbconv_supernet import MBConvSupernet

    torch.manual_seed(0)
    space = MBConvSpace(stem=4, widths=(4, 8), depths=(2, 3), strides=(1, 2), head=16)
    net = MBConvSupernet(space, num_classes=10)
    x, y = digits.train.tensors
    tree = build_tree(net, ConstantPolicy(1, 2), "gm", (x[:8], y[:8]), paths=1, seed=0)
    d = tree.split.decision
    counts = [len(o) for o in net.decisions()]
    assert sorted(i for g in tree.split.groups for i in g) == list(range(counts[d]))
    assert sorted(len(g) for g in tree.split.groups) == [counts[d] // 2, counts[d] - counts[d] // 2]
    assert len(tree.leaves()) == 2


@pytest.mark.slow
def test_fewshot_command_end_to_end_and_resume(tmp_path, capsys):
    import json

    from nasrank.search.cli import main
    from nasrank.spaces.labels import LabelTable

    argv = ["fewshot", "--out", str(tmp_path), "--metric", "synflow", "--depth", "1",
            "--paths", "1", "--epochs", "1", "--batch-size", "256", "--num-archs", "3",
            "--supernet.channels", "4", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    tree = json.loads((tmp_path / "fewshot" / "tree.json").read_text())["tree"]
    assert len(tree["children"]) == 2
    first = LabelTable.read_csv(tmp_path / "fewshot" / "weak_labels.csv")
    assert len(first) == 3
    assert main(argv) == 0  # resumes: nothing retrained, same labels
    again = LabelTable.read_csv(tmp_path / "fewshot" / "weak_labels.csv")
    assert again.keys == first.keys
    assert np.array_equal(again.column("ws_acc"), first.column("ws_acc"))
    bad = [a if a != "synflow" else "snip" for a in argv]
    assert main(bad) == 2  # another metric into the same folder is refused
    assert "other settings" in capsys.readouterr().err


def test_fewshot_command_says_why_a_tree_has_fewer_leaves(tmp_path, capsys):
    """NB201 edges have 5 operations: b = 6 cannot split any, so the tree is its root alone,
    and the command says so instead of silently training one supernet."""
    from nasrank.search.cli import main

    argv = ["fewshot", "--out", str(tmp_path), "--metric", "synflow", "--depth", "1",
            "--branching", "6", "--paths", "1", "--epochs", "1", "--batch-size", "256",
            "--num-archs", "0", "--supernet.channels", "4", "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 leaves; training each" in out
    assert "note: 1 leaves, not 6: a node stays a leaf when no decision point" in out
    other = [a if a != "6" else "2" for a in argv]  # b = 2 into the same folder
    assert main(other) == 2
    assert "other settings" in capsys.readouterr().err
