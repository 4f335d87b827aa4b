"""One conformance suite run over every registered search space (``SPACES``): what the rest of
nasrank relies on.

Each space is checked on sampled architectures and their mutations and crossovers: string round
trip, canonical key idempotent, mutation stays in the space and changes the key, crossover stays
in the space, graph shapes, Optuna choices round trip, seeded sampling, ``enumerate``/``size``,
and the analytic cost equal to the built network's own counts (parameters exactly; FLOPs =
multiply-accumulates of every Conv2d and Linear, counted by forward hooks, on a small input).
Facts of one space (published counts, hand cases, error messages) stay in that space's own test
file. A newly registered space is picked up with its default options.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.spaces import SearchSpace
from nasrank.spaces.registry import SPACES

#: Config values (``SPACES.make(name, values)``) that keep the networks tiny; the networks are
#: then built with the config's ``network_kwargs()`` where it has one.
SMALL: dict[str, dict[str, Any]] = {
    "nb101": {"stem_channels": 8, "num_stacks": 2, "num_cells": 1},
    "mbconv": {"stem": 4, "widths": (4, 8), "depths": (2, 3), "strides": (1, 2), "head": 8},
}
#: ``build``/``cost`` options of spaces whose config does not size the networks (NB201: its
#: supernet config does).
NETWORK: dict[str, dict[str, Any]] = {"nb201": {"C": 4, "N": 1}}
INPUT_SHAPE = (2, 8, 8)
NUM_CLASSES = 5
N_ARCHS = 20
ENUMERATE_LIMIT = 20_000  # count ``enumerate()`` against ``size`` up to this size


@pytest.fixture(scope="module", params=SPACES.names())
def case(request):
    name = request.param
    cfg = SPACES.make(name, SMALL.get(name, {}))
    options = cfg.network_kwargs() if hasattr(cfg, "network_kwargs") else NETWORK.get(name, {})
    space = cfg.build()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(N_ARCHS)]
    return name, space, archs, options


def _canonical(space: SearchSpace, arch: Any) -> Any:
    return space.canonical(arch) if hasattr(space, "canonical") else arch


def _count(net: nn.Module, shape: tuple[int, ...]) -> tuple[int, int]:
    """(MACs of every Conv2d/Linear on one input from forward hooks, sum of p.numel())."""
    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs += out[0].numel() * (m.in_channels // m.groups) * k
        else:
            macs += m.in_features * m.out_features

    hooks = [m.register_forward_hook(hook) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.randn(1, *shape, generator=torch.Generator().manual_seed(0)))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == (1, NUM_CLASSES)
    return macs, sum(p.numel() for p in net.parameters())


def test_protocol_and_name(case):
    name, space, archs, _ = case
    assert isinstance(space, SearchSpace) and space.name == name
    assert space.hparam_dim >= 0 and space.node_feature_dim >= 1 and space.max_nodes >= 1
    for arch in archs:
        assert hash(arch) == hash(space.parse(space.format(arch)))  # hashable value
        assert space.hparams(arch).shape == (space.hparam_dim,)


def test_sampling_is_seeded(case):
    _, space, archs, _ = case
    rng = np.random.default_rng(0)
    assert [space.sample(rng) for _ in range(N_ARCHS)] == archs
    assert len({space.key(a) for a in archs}) > 1


def test_parse_format_round_trip(case):
    _, space, archs, _ = case
    for arch in archs:
        text = space.format(arch)
        assert isinstance(text, str) and space.parse(text) == arch
        assert space.format(space.parse(text)) == text


def test_canonical_key_idempotent(case):
    _, space, archs, _ = case
    for arch in archs:
        key, canon = space.key(arch), _canonical(space, arch)
        assert isinstance(key, str) and key
        assert _canonical(space, canon) == canon
        assert space.key(canon) == key == space.key(space.parse(space.format(arch)))


def test_mutation_stays_in_space_and_changes_the_key(case):
    _, space, archs, _ = case
    rng = np.random.default_rng(1)
    for arch in archs:
        for _ in range(3):
            child = space.mutate(arch, rng)
            assert space.parse(space.format(child)) == child
            assert space.key(child) != space.key(arch)


def test_crossover_stays_in_space(case):
    _, space, archs, _ = case
    rng = np.random.default_rng(2)
    for a, b in zip(archs, archs[1:] + archs[:1]):
        child = space.crossover(a, b, rng)
        assert space.parse(space.format(child)) == child
        space.key(child)


def test_graph_shapes(case):
    _, space, archs, _ = case
    rng = np.random.default_rng(3)
    for arch in archs + [space.mutate(a, rng) for a in archs]:
        g = space.to_graph(arch)
        n = g.num_nodes
        assert 1 <= n <= space.max_nodes
        assert g.x.shape == (n, space.node_feature_dim) and g.x.is_floating_point()
        assert torch.isfinite(g.x).all()
        ei = g.edge_index
        assert ei.dtype == torch.long and ei.dim() == 2 and ei.shape[0] == 2
        assert ei.numel() == 0 or (ei.min() >= 0 and ei.max() < n)
        assert torch.equal(space.to_graph(space.parse(space.format(arch))).x, g.x)


def test_choices_round_trip(case):
    _, space, archs, _ = case
    choices = space.choices()
    for arch in archs:
        params = space.to_choices(arch)
        assert set(params) == set(choices)
        assert all(params[k] in choices[k] for k in params)
        back = space.from_choices(params)
        assert space.key(back) == space.key(arch) and space.to_choices(back) == params


def test_enumerate_matches_size(case):
    _, space, _, _ = case
    if space.size is None:
        pytest.skip(f"space {space.name!r} is not enumerable (size None)")
    assert isinstance(space.size, int) and space.size >= 1
    first = []
    for i, arch in enumerate(space.enumerate()):
        if i > ENUMERATE_LIMIT:
            break
        if i < 5:
            first.append(arch)
    else:  # exhausted: exactly ``size`` architectures
        assert i + 1 == space.size
    assert all(space.parse(space.format(a)) == a for a in first)


def test_cost_equals_built_network_counts(case):
    _, space, archs, options = case
    for arch in archs[:4]:
        net = space.build(arch, NUM_CLASSES, in_channels=INPUT_SHAPE[0], **options)
        macs, n_params = _count(net, INPUT_SHAPE)
        flops, params = space.cost(arch, INPUT_SHAPE, num_classes=NUM_CLASSES, **options)
        assert n_params == round(params * 1e6), space.format(arch)
        assert macs == round(flops * 1e6), space.format(arch)
