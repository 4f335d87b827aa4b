"""NB201 supernet: a sampled path computes exactly what the stand-alone network computes;
choice encoding; samplers (strict fairness counted, uniform frequencies, seeds)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.spaces import NasrankError
from nasrank.spaces.nb201 import EDGES, OPS, NB201Network
from nasrank.supernet.base import StrictFairSampler, Supernet, UniformSampler
from nasrank.supernet.nb201_supernet import NB201Supernet

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    net = NB201Supernet(num_classes=7, C=4, N=2, in_channels=3)
    # non-trivial BN statistics and affine parameters, so copying them is really tested
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize("text", ARCHS)
def test_path_equals_standalone_network_eval_and_train(supernet, text):
    arch = supernet.space.parse(text)
    net = supernet.subnet(arch)
    assert isinstance(net, NB201Network) and net.arch == arch
    # the stand-alone network has exactly the analytic parameter count of the space
    _, params = supernet.cost(arch, (3, 9, 9))
    assert sum(p.numel() for p in net.parameters()) == round(params * 1e6)
    x = torch.randn(6, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    supernet.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x, arch), net(x))
    # train mode: batch statistics, and the same running-statistics updates
    sup_copy = NB201Supernet(7, C=4, N=2, in_channels=3)
    sup_copy.load_state_dict(supernet.state_dict())
    sup_copy.train(), net.train()
    out_sup, out_net = sup_copy(x, arch), net(x)
    assert torch.equal(out_sup, out_net)
    assert all(torch.equal(a, b) for a, b in
               zip(sup_copy.subnet(arch).state_dict().values(), net.state_dict().values()))
    # and the same gradients on the path's weights
    out_sup.sum().backward(), out_net.sum().backward()
    assert torch.equal(sup_copy.classifier.weight.grad, net.classifier.weight.grad)
    assert torch.equal(sup_copy.stem[0].weight.grad, net.stem[0].weight.grad)


def test_subnet_is_a_copy(supernet):
    arch = supernet.space.parse(ARCHS[0])
    net = supernet.subnet(arch)
    with torch.no_grad():
        net.classifier.weight.add_(1.0)
    assert not torch.equal(net.classifier.weight, supernet.classifier.weight)


def test_choice_encoding(supernet):
    assert supernet.decisions() == [list(OPS)] * len(EDGES)
    arch = supernet.space.parse(ARCHS[1])
    idx = supernet.choices_of(arch)
    assert idx == [2, 0, 4, 0, 2, 3]  # OPS order: none, skip, conv1x1, conv3x3, avgpool
    assert supernet.arch_from_choices(idx) == arch
    with pytest.raises(NasrankError, match="out of range"):
        supernet.arch_from_choices([0, 0, 0, 0, 0, 5])
    with pytest.raises(NasrankError, match="one per decision point"):
        supernet.arch_from_choices([0, 0])


def test_architecture_of_another_space_is_refused(supernet):
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(NasrankError, match="4-8-12"):
        supernet(x, "4-8-12-16")
    with pytest.raises(NasrankError):
        supernet.subnet((4, 8, 12))
    with pytest.raises(NasrankError):
        NB201Supernet(C=0)


def test_strict_fair_uses_each_op_of_each_edge_once_per_step(supernet):
    sampler = StrictFairSampler(supernet)
    rng = np.random.default_rng(0)
    for _ in range(20):
        archs = sampler.sample(rng)
        assert len(archs) == len(OPS)
        for e in range(len(EDGES)):
            assert sorted(a.ops[e] for a in archs) == sorted(OPS)


class UnequalChoices(Supernet):
    """Decision points with 4, 2, 3 and 1 choices (no weights): only the sampler is tested."""

    counts = (4, 2, 3, 1)

    def decisions(self) -> list[list[Any]]:
        return [list(range(c)) for c in self.counts]

    def arch_from_choices(self, indices):
        return tuple(self.check_choices(indices))

    def choices_of(self, arch):
        return list(arch)

    def forward(self, x, arch):
        return x

    def subnet(self, arch):
        return nn.Identity()

    def config(self):
        return {"space": "toy"}


def test_strict_fair_with_unequal_choice_counts():
    sampler = StrictFairSampler(UnequalChoices())
    rng = np.random.default_rng(5)
    for _ in range(30):
        archs = sampler.sample(rng)
        assert len(archs) == 4  # n = the largest choice count
        for d, k in enumerate(UnequalChoices.counts):
            counts = Counter(a[d] for a in archs)
            assert set(counts) == set(range(k))  # every choice used
            assert {4 // k, -(-4 // k)} >= set(counts.values())  # floor or ceil of n / k


def test_uniform_sampler_frequencies_and_seeds(supernet):
    sampler = UniformSampler(supernet, archs_per_step=3)
    a = sampler.sample(np.random.default_rng(7))
    assert len(a) == 3 and a == sampler.sample(np.random.default_rng(7))
    rng = np.random.default_rng(0)
    counts = Counter(op for _ in range(1000) for arch in sampler.sample(rng) for op in arch.ops)
    expected = 1000 * 3 * len(EDGES) / len(OPS)  # 3600 per op; binomial sd ~ 54
    assert all(abs(counts[op] - expected) < 250 for op in OPS)
    with pytest.raises(NasrankError, match="archs_per_step"):
        UniformSampler(supernet, archs_per_step=0)


def test_fair_sampler_with_a_small_arch_batch_never_repeats_an_op_on_an_edge():
    """arch_batch m <= 5 takes the first m of one permutation per edge: m distinct ops, each op
    in a team with probability m / 5 (the EnNAS 'distinct' teams of BENCHMARKS.md, issue 14)."""
    net = NB201Supernet(10, C=4, N=1)
    sampler = StrictFairSampler(net, arch_batch=3)
    rng = np.random.default_rng(0)
    counts = Counter()
    for _ in range(500):
        team = sampler.sample(rng)
        for e in range(len(EDGES)):
            ops = [a.ops[e] for a in team]
            assert len(set(ops)) == 3, ops
            counts.update(ops)
    # 500 teams x 6 edges x 3/5 = 1800 per op; binomial sd ~ 27
    assert all(abs(counts[o] - 1800) < 150 for o in OPS), counts
