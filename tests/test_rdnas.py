"""RD-NAS: teacher scores and groups from a hand-made zero-cost table, margin pair sampling,
the margin ranking loss against hand-computed values, bitwise resume with a cached teacher."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.errors import LabelTableError, NasrankError, SpaceMismatchError
from nasrank.spaces.labels import LabelTable
from nasrank.supernet.base import UniformSampler
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.rdnas import (
    MarginPairSampler,
    RankingDistillStrategy,
    ZeroCostTeacher,
    pair_ranking_loss,
)
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES
from nasrank.supernet.trainer import train_supernet

# zc_a: distinct values, archs 0..9 ranked 9 > 8 > ... > 0; zc_b: reversed order except arch 5,
# whose value is NaN (= worst)
ZC_A = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
ZC_B = [9.0, 8.0, 7.0, 6.0, 5.0, float("nan"), 3.0, 2.0, 1.0, 0.0]


def _net(seed: int = 0) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(10, C=4, N=1)


def _archs(net):
    """Ten NB201 cells with distinct canonical keys (all edges conv except one choice)."""
    out, keys = [], set()
    for idx in itertools.product(range(5), repeat=6):
        a = net.arch_from_choices([3, 3, 3, idx[3], idx[4], idx[5]])
        k = net.space.key(a)
        if k not in keys:
            keys.add(k)
            out.append(a)
        if len(out) == 10:
            return out
    raise AssertionError


@pytest.fixture
def table(tmp_path):
    net = _net()
    archs = _archs(net)
    path = tmp_path / "zc.csv"
    LabelTable([net.space.key(a) for a in archs], {"zc_a": ZC_A, "zc_b": ZC_B},
               space="nb201").to_csv(path)
    return path, archs


def test_teacher_scores_and_groups_by_hand(table):
    path, archs = table
    net = _net()
    t = ZeroCostTeacher(net, proxies=("a",), table=str(path))
    # one proxy: percentile (#below + 1/2) / 10
    assert [t.score(a) for a in archs] == pytest.approx([(i + 0.5) / 10 for i in range(10)])
    # 5 groups of 2 by rank: archs 9, 8 -> group 0; 7, 6 -> 1; ...; 1, 0 -> 4
    assert [t.group(a, 5) for a in archs] == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    groups = t.pool_groups(5)
    assert groups[0] == [net.space.key(archs[8]), net.space.key(archs[9])]
    # two proxies: the rank average; NaN counts as the worst value of zc_b
    t2 = ZeroCostTeacher(net, proxies=("a", "b"), table=str(path))
    pct_b = {0: 9.5, 1: 8.5, 2: 7.5, 3: 6.5, 4: 5.5, 5: 0.5, 6: 4.5, 7: 3.5, 8: 2.5, 9: 1.5}
    for i, a in enumerate(archs):
        assert t2.score(a) == pytest.approx(((i + 0.5) + pct_b[i]) / 20)
    # means (x 20): archs 0-4 -> 10, arch 5 -> 6, archs 6-9 -> 11; tied archs share a group:
    # 6-9 have nobody above (group 0), 0-4 have 4/10 above (floor(0.4 * 5) = 2), 5 has 9/10 (4)
    assert [t2.group(a, 5) for a in archs] == [2, 2, 2, 2, 2, 4, 0, 0, 0, 0]
    assert [len(g) for g in t2.pool_groups(5)] == [4, 0, 5, 0, 1]


def test_margin_sampler_pairs_come_from_different_groups(table):
    path, archs = table
    net = _net()
    sampler = SAMPLERS.make("rdnas", {"proxies": ["a"], "table": str(path), "groups": 5,
                                      "pairs": 2}).build(net)
    assert isinstance(sampler, MarginPairSampler)
    group_of = {net.space.key(a): i // 2 for i, a in enumerate(archs)}  # rank groups reversed
    group_of = {k: 4 - g for k, g in group_of.items()}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        drawn = sampler.sample(rng)
        assert len(drawn) == 4
        for a, b in zip(drawn[::2], drawn[1::2]):
            ga, gb = group_of[net.space.key(a)], group_of[net.space.key(b)]
            assert ga != gb
            seen.add((ga, gb))
    assert seen == {(i, j) for i in range(5) for j in range(5) if i != j}
    again = sampler.sample(np.random.default_rng(0))
    assert again == sampler.sample(np.random.default_rng(0))  # same rng -> same archs
    # the strategy's margin grows with the group distance
    strategy = STEP_STRATEGIES.make("rdnas", {"proxies": ["a"], "table": str(path),
                                              "margin": 0.1, "weight": 2.0}).build(net)
    assert strategy.teacher is sampler.teacher  # one teacher per supernet and settings
    t = strategy.teacher
    assert 0.1 * abs(t.group(archs[9], 5) - t.group(archs[0], 5)) == pytest.approx(0.4)


def test_pair_ranking_loss_by_hand():
    s_a = torch.tensor([0.5, 0.5, 0.5, 0.2], requires_grad=True)
    s_b = torch.tensor([0.1, 0.1, 0.1, 0.9], requires_grad=True)
    # pair 0: order matches with margin 0.3 -> 0; pair 1: margin 0.5 -> 0.5 - 0.4 = 0.1;
    # pair 2: teacher prefers b -> 0.3 + 0.4 = 0.7; pair 3: teacher tie -> 0
    loss = pair_ranking_loss(s_a, s_b, [0.9, 0.9, 0.1, 0.5], [0.2, 0.2, 0.8, 0.5],
                             [0.3, 0.5, 0.3, 0.3])
    assert float(loss.detach()) == pytest.approx((0 + 0.1 + 0.7 + 0) / 4)
    loss.backward()
    assert s_a.grad.tolist() == pytest.approx([0, -0.25, 0.25, 0])
    assert s_b.grad.tolist() == pytest.approx([0, 0.25, -0.25, 0])
    zero = pair_ranking_loss(torch.tensor([0.5]), torch.tensor([0.1]), [1.0], [0.0], [0.4])
    assert float(zero) == 0.0


def test_strategy_loss_is_ce_plus_weighted_margin_ranking(table):
    path, archs = table
    net = _net()
    strategy = RankingDistillStrategy(net, ZeroCostTeacher(net, proxies=("a",),
                                                          table=str(path)),
                                      groups=5, margin=0.05, weight=3.0)
    data = load_dataset("digits", seed=0, subset=64, channels=3)
    x, y = data.train.tensors
    a, b = archs[0], archs[9]  # teacher: b (group 0) better than a (group 4): margin 0.2
    net.train()
    assert strategy.paths([a, b]) == [a, b]
    assert strategy.loss(net, x, y, a, 0) is None
    got = strategy.loss(net, x, y, b, 1)
    with torch.no_grad():
        ce_a = float(nn.functional.cross_entropy(net(x, a), y))
        ce_b = float(nn.functional.cross_entropy(net(x, b), y))
    # s = -ce; teacher sign(t_a - t_b) = -1: max(0, 0.2 + (s_a - s_b))
    expected = ce_a + ce_b + 3.0 * max(0.0, 0.2 + (-ce_a + ce_b))
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    got.backward()  # both paths receive gradients from the one loss
    grads = {n for n, p in net.named_parameters() if p.grad is not None}
    assert any(".ops.0." not in n for n in grads)
    with pytest.raises(NasrankError, match="pairs of paths"):
        strategy.paths([a])


def test_decaying_lambda_by_hand(table):
    """decay_epochs = 4: lambda 3 * (1, 3/4, 1/2, 1/4, 0, 0) in epochs 0..5; at 0 the loss is
    the two cross-entropies alone."""
    path, archs = table
    net = _net()
    teacher = ZeroCostTeacher(net, proxies=("a",), table=str(path))
    strategy = RankingDistillStrategy(net, teacher, groups=5, margin=0.05, weight=3.0,
                                      decay_epochs=4)
    data = load_dataset("digits", seed=0, subset=64, channels=3)
    x, y = data.train.tensors
    a, b = archs[0], archs[9]
    net.train()
    with torch.no_grad():
        ce_a = float(nn.functional.cross_entropy(net(x, a), y))
        ce_b = float(nn.functional.cross_entropy(net(x, b), y))
    hinge = max(0.0, 0.2 + (-ce_a + ce_b))
    assert hinge > 0.1  # lambda shows in the loss
    for epoch, lam in enumerate([3.0, 2.25, 1.5, 0.75, 0.0, 0.0]):
        strategy.begin_epoch(net, epoch)
        assert strategy.current_weight() == pytest.approx(lam)
        strategy.loss(net, x, y, a, 0)
        got = float(strategy.loss(net, x, y, b, 1).detach())
        assert got == pytest.approx(ce_a + ce_b + lam * hinge, rel=1e-5), epoch
    assert strategy.config()["decay_epochs"] == 4
    constant = RankingDistillStrategy(net, teacher, weight=3.0)
    constant.begin_epoch(net, 50)
    assert constant.current_weight() == 3.0 and "decay_epochs" not in constant.config()
    for bad in (-1, 1.5, True):
        with pytest.raises(NasrankError, match="decay_epochs"):
            RankingDistillStrategy(net, teacher, decay_epochs=bad)


def test_table_errors(table, tmp_path):
    path, _ = table
    net = _net()
    with pytest.raises(LabelTableError, match="zc_nope"):
        ZeroCostTeacher(net, proxies=("nope",), table=str(path)).score(net.largest_arch())
    with pytest.raises(NasrankError, match="not in the teacher table"):
        ZeroCostTeacher(net, proxies=("a",), table=str(path)).score(
            net.space.parse("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|"
                            "skip_connect~1|skip_connect~2|"))
    bad = tmp_path / "bad.csv"
    LabelTable(["not-an-arch", "x"], {"zc_a": [1, 2]}, space="nb201").to_csv(bad)
    with pytest.raises(LabelTableError, match="not-an-arch"):
        ZeroCostTeacher(net, proxies=("a",), table=str(bad)).score(net.largest_arch())
    other = tmp_path / "other.csv"
    LabelTable(["4-4"], {"zc_a": [1.0]}, space="cvpr2021").to_csv(other)
    with pytest.raises(SpaceMismatchError):
        ZeroCostTeacher(net, proxies=("a",), table=str(other)).score(net.largest_arch())
    with pytest.raises(NasrankError, match="unknown zero-cost"):
        ZeroCostTeacher(net, proxies=("nope",))


def test_on_the_fly_teacher_caches_and_resumes_bitwise(tmp_path, monkeypatch):
    data = load_dataset("digits", seed=0, subset=64, channels=3)
    opts = {"proxies": ["params", "nwot"], "pool_size": 10, "image_size": 8, "groups": 3}
    kw = dict(epochs=2, batch_size=16, lr=0.05, seed=3, progress=False)

    def run(net, where, **extra):
        sampler = SAMPLERS.make("rdnas", opts).build(net)
        strategy = STEP_STRATEGIES.make("rdnas", {**opts, "weight": 1.0}).build(net)
        train_supernet(net, data, sampler, strategy=strategy, checkpoint_dir=tmp_path / where,
                       **kw, **extra)
        return sampler

    class Kill(Exception):
        pass

    def kill(epoch):
        raise Kill

    full = _net()
    sampler = run(full, "a")
    teacher = sampler.teacher
    assert len(teacher.pool_keys) == 10
    calls = []
    original = ZeroCostTeacher._compute
    monkeypatch.setattr(ZeroCostTeacher, "_compute",
                        lambda self, arch: calls.append(arch) or original(self, arch))
    outside = next(a for a in (full.arch_from_choices([i % 5] * 6) for i in range(5))
                   if full.space.key(a) not in teacher._index)
    first = teacher.score(outside)
    assert teacher.score(outside) == first and len(calls) == 1  # computed once, then cached
    monkeypatch.setattr(ZeroCostTeacher, "_compute", original)

    killed = _net()
    with pytest.raises(Kill):
        run(killed, "b", on_epoch_end=kill)

    def refuse(self, arch):
        raise AssertionError("the resumed run must use the checkpointed teacher")

    monkeypatch.setattr(ZeroCostTeacher, "_compute", refuse)
    resumed = _net(seed=7)
    run(resumed, "b")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_rdnas_needs_pairs_on_one_batch(table):
    path, _ = table
    net = _net()
    data = load_dataset("digits", seed=0, subset=64, channels=3)
    strategy = STEP_STRATEGIES.make("rdnas", {"proxies": ["a"], "table": str(path)}).build(net)
    with pytest.raises(NasrankError, match="same_batch=True"):
        train_supernet(net, data, UniformSampler(net, archs_per_step=2), epochs=1,
                       batch_size=16, lr=0.05, strategy=strategy, same_batch=False,
                       progress=False)


def test_rdnas_preset_builds_one_teacher(table):
    from nasrank.supernet.distill import get_preset

    path, archs = table
    net = _net()
    preset = get_preset("rdnas")
    opts = {"proxies": ["a"], "table": str(path)}
    sampler, strategy = preset.build(net, sampler_options=opts, strategy_options=opts)
    assert isinstance(sampler, MarginPairSampler) and isinstance(strategy, RankingDistillStrategy)
    assert sampler.teacher is strategy.teacher and preset.same_batch


def test_uniform_paths_before_the_pairs_by_hand(table):
    """uniform_paths = 1: the sampler draws one uniform path (the rng's first integers, one per
    decision point) before its pair; the strategy gives it cross-entropy alone and the pair
    CE_a + CE_b + weight * hinge, or weight * hinge alone with pair_ce=False."""
    path, archs = table
    net = _net()
    opts = {"proxies": ["a"], "table": str(path), "groups": 5}
    sampler = SAMPLERS.make("rdnas", {**opts, "uniform_paths": 1}).build(net)
    rng = np.random.default_rng(7)
    drawn = sampler.sample(rng)
    expect = np.random.default_rng(7).integers(5, size=6)  # NB201: six edges of five ops
    assert len(drawn) == 3 and net.choices_of(drawn[0]) == [int(c) for c in expect]
    pair_keys = {net.space.key(a) for a in archs}
    assert {net.space.key(a) for a in drawn[1:]} <= pair_keys
    assert sampler.config()["uniform_paths"] == 1
    assert "uniform_paths" not in SAMPLERS.make("rdnas", opts).build(net).config()

    data = load_dataset("digits", seed=0, subset=64, channels=3)
    x, y = data.train.tensors
    u, a, b = net.arch_from_choices([0, 1, 2, 3, 4, 1]), archs[0], archs[9]  # margin 0.2
    net.train()
    with torch.no_grad():
        ce = {k: float(nn.functional.cross_entropy(net(x, arch), y))
              for k, arch in (("u", u), ("a", a), ("b", b))}
    hinge = max(0.0, 0.2 + (-ce["a"] + ce["b"]))
    assert hinge > 0.1
    for pair_ce, expected in ((True, ce["a"] + ce["b"] + 3.0 * hinge), (False, 3.0 * hinge)):
        strategy = STEP_STRATEGIES.make("rdnas", {**opts, "uniform_paths": 1, "margin": 0.05,
                                                  "weight": 3.0, "pair_ce": pair_ce}).build(net)
        assert strategy.paths([u, a, b]) == [u, a, b]
        assert float(strategy.loss(net, x, y, u, 0).detach()) == pytest.approx(ce["u"], rel=1e-5)
        assert strategy.loss(net, x, y, a, 1) is None
        assert float(strategy.loss(net, x, y, b, 2).detach()) == pytest.approx(expected, rel=1e-5)
        assert strategy.config()["uniform_paths"] == 1
        assert ("pair_ce" in strategy.config()) is (not pair_ce)
        with pytest.raises(NasrankError, match="pairs of paths"):
            strategy.paths([a, b])  # the uniform path takes one: an odd number is left
    teacher = ZeroCostTeacher(net, proxies=("a",), table=str(path))
    with pytest.raises(NasrankError, match="pair_ce=False with weight 0"):
        RankingDistillStrategy(net, teacher, weight=0.0, pair_ce=False)
    for bad in (-1, 0.5, True):
        with pytest.raises(NasrankError, match="uniform_paths"):
            RankingDistillStrategy(net, teacher, uniform_paths=bad)
        with pytest.raises(NasrankError, match="uniform_paths"):
            MarginPairSampler(net, teacher, uniform_paths=bad)
    with pytest.raises(NasrankError, match="pair_ce"):
        RankingDistillStrategy(net, teacher, pair_ce="no")
