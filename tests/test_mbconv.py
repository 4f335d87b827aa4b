"""MBConv chain space and its supernet: hand-counted costs, canonical keys checked against
brute force and against the networks themselves, parse errors, the bitwise supernet/subnet
equality (like the NB201 supernet), and weak labels and proxies through the generic paths.

The checks every space shares (round trips, graph shapes, cost == counted network...) live in
tests/test_space_conformance.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.errors import ConfigError, InvalidArchitectureError, NasrankError, SpaceMismatchError
from nasrank.spaces.mbconv import MBConv, MBConvArch, MBConvNetwork, MBConvSpace, OPS, SKIP
from nasrank.spaces.nb201 import NB201Space
from nasrank.spaces.registry import SPACES
from nasrank.supernet.base import StrictFairSampler
from nasrank.supernet.mbconv_supernet import MBConvSupernet
from nasrank.supernet.registry import SUPERNETS

# one stage of 2 layers, stride 2, tiny widths: every count below is done by hand
HAND = MBConvSpace(stem=2, widths=(4,), depths=(2,), strides=(2,), head=8)
# two stages, small enough to enumerate (6 * (1 + 6) * 6 * (1 + 6 + 36) = 10,836 canonical)
TINY = MBConvSpace(stem=4, widths=(4, 8), depths=(2, 3), strides=(1, 2), head=16)


def _macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of every Conv2d/Linear on one input, counted from the outputs."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(hook) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.randn(1, *shape))
    for h in hooks:
        h.remove()
    return total


# ----------------------------------------------------------------------------- space
@pytest.mark.parametrize("text, params, macs", [
    # stem 1->2 3x3 on 5x5: 18 + 4 BN params, 25*2*9 = 450 MACs; layer 1 (c_in 2, hidden 6,
    # k3, stride 2 -> 3x3): 12+12 + 54+12 + 24+8 = 122 params, 300 + 9*6*9 + 9*6*4 = 1002 MACs;
    # skip: 0; head 4->8 on 3x3: 32+16 params, 288 MACs; classifier 8->3: 27 params, 24 MACs
    ("k3e3-skip", 22 + 122 + 48 + 27, 450 + 1002 + 288 + 24),
    # layer 1 (hidden 12, k5): 24+24 + 300+24 + 48+8 = 428 params, 600 + 9*12*25 + 9*12*4 = 3732
    # layer 2 (c_in 4, hidden 12, k7, 3x3, residual): 48+24 + 588+24 + 48+8 = 740 params,
    # 9*4*12 + 9*12*49 + 9*12*4 = 6156 MACs
    ("k5e6-k7e3", 22 + 428 + 740 + 48 + 27, 450 + 3732 + 6156 + 288 + 24),
])
def test_cost_hand_counted(text, params, macs):
    arch = HAND.parse(text)
    flops, p = HAND.cost(arch, (1, 5, 5), num_classes=3)
    assert (round(p * 1e6), round(flops * 1e6)) == (params, macs)
    net = HAND.build(arch, 3, in_channels=1)
    assert sum(t.numel() for t in net.parameters()) == params
    assert _macs(net, (1, 5, 5)) == macs


def test_structure_residuals_and_any_input():
    space = MBConvSpace()
    arch = space.parse("k3e6-k5e3|k7e6-skip-k3e3|k5e6-k5e6-skip|k3e3-k7e3")
    net = space.build(arch, num_classes=7, in_channels=1)
    kinds = [type(b).__name__ for b in net.blocks]
    assert kinds == ["MBConv"] * 3 + ["Identity"] + ["MBConv"] * 3 + ["Identity"] + ["MBConv"] * 2
    # residual exactly where width and resolution are kept: stage 1 (16 -> 16, stride 1) both
    # layers; later stages all but their first layer
    assert [b.residual for b in net.blocks if isinstance(b, MBConv)] == \
        [True, True, False, True, False, True, False, True]
    assert net.blocks[2].depthwise[0].kernel_size == (7, 7)
    assert net.blocks[2].expand[0].out_channels == 16 * 6
    for hw in (7, 8, 19):  # odd sizes: stride-2 layers give ceil(h / 2)
        assert net(torch.randn(2, 1, hw, hw)).shape == (2, 7)
        flops, params = space.cost(arch, (1, hw, hw), num_classes=7)
        assert _macs(net, (1, hw, hw)) == round(flops * 1e6)


def test_canonical_key_moves_skips_to_the_end_of_their_stage():
    a = TINY.parse("k3e3-skip|k5e6-skip-k7e3")
    b = TINY.parse("k3e3-skip|k5e6-k7e3-skip")
    assert TINY.key(a) == TINY.key(b) == "k3e3-skip|k5e6-k7e3-skip"
    assert TINY.canonical(a) == b and TINY.key(b) != TINY.key("k3e3-skip|k7e3-k5e6-skip")
    # independent check that they compute the same function: the two networks hold the same
    # modules in the same order, so b's network with a's weights gives a's outputs
    net_a, net_b = TINY.build(a), TINY.build(b)
    def leaves(net):
        return [m for m in net.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]

    mods_a, mods_b = leaves(net_a), leaves(net_b)
    assert [type(m) for m in mods_a] == [type(m) for m in mods_b]
    for ma, mb in zip(mods_a, mods_b):
        mb.load_state_dict(ma.state_dict())
    x = torch.randn(3, 3, 8, 8)
    net_a.eval(), net_b.eval()
    with torch.no_grad():
        assert torch.equal(net_a(x), net_b(x))
    assert torch.equal(TINY.to_graph(a).x, TINY.to_graph(b).x)


def test_size_equals_brute_force_count_of_distinct_keys():
    raw = [TINY._from_layers(layers)
           for layers in itertools.product(*(spec.choices for spec in TINY.layer_plan()))]
    assert len(raw) == TINY.raw_size == (6 * 7) * (6 * 7 * 7)
    keys = {TINY.key(a) for a in raw}
    enumerated = list(TINY.enumerate())
    assert len(keys) == TINY.size == len(enumerated) == 6 * 7 * 6 * 43
    assert {TINY.format(a) for a in enumerated} == keys  # each canonical arch once
    # defaults: stages of 2, 3, 3, 2 layers -> 42 * 258 * 258 * 42 canonical, 42*294*294*42 raw
    assert MBConvSpace().size == 117_418_896 and MBConvSpace().raw_size == 152_473_104


def test_largest_and_smallest_by_brute_force():
    costs = {TINY.format(a): TINY.cost(a, (3, 8, 8)) for a in TINY.enumerate()}
    assert max(costs, key=lambda k: costs[k][1]) == TINY.format(TINY.largest()) == \
        "k7e6-k7e6|k7e6-k7e6-k7e6"
    assert min(costs, key=lambda k: costs[k][1]) == TINY.format(TINY.smallest()) == \
        "k3e3-skip|k3e3-skip-skip"
    assert max(costs.values())[0] == TINY.cost(TINY.largest(), (3, 8, 8))[0]
    assert min(costs.values())[0] == TINY.cost(TINY.smallest(), (3, 8, 8))[0]
    net = MBConvSupernet(TINY)
    assert (net.largest_arch(), net.smallest_arch()) == (TINY.largest(), TINY.smallest())


def test_mutation_changes_exactly_one_layer_and_the_key():
    rng = np.random.default_rng(0)
    for _ in range(300):
        a = TINY.sample(rng)
        c = TINY.mutate(a, rng)
        assert sum(x != y for x, y in zip(a.layers, c.layers)) == 1
        assert TINY.key(c) != TINY.key(a)


def test_sampling_covers_every_choice_of_every_layer_and_crossover_mixes_parents():
    rng = np.random.default_rng(1)
    archs = [TINY.sample(rng) for _ in range(400)]
    for i, spec in enumerate(TINY.layer_plan()):
        assert {a.layers[i] for a in archs} == set(spec.choices)
        assert (SKIP in spec.choices) == (spec.index > 0)
    for a, b in zip(archs[::2], archs[1::2]):
        c = TINY.crossover(a, b, rng)
        assert all(x in (y, z) for x, y, z in zip(c.layers, a.layers, b.layers))


def test_graph_hand_case():
    g = TINY.to_graph("k7e6-skip|k3e3-skip-k5e3")  # canonical: k7e6-skip|k3e3-k5e3-skip
    assert g.num_nodes == 7 == TINY.max_nodes
    assert g.edge_index.tolist() == [[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]
    types = ["input", "output", *OPS, SKIP]
    hot = [types[i] for i in g.x[:, :len(types)].argmax(1).tolist()]
    assert hot == ["input", "k7e6", "skip", "k3e3", "k5e3", "skip", "output"]
    assert g.x[:, len(types):].tolist() == [[0, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 0]]


@pytest.mark.parametrize("bad, needles", [
    ("k3e3-k9e3|k3e3-k3e3-k3e3", ["'k9e3'", "stage 1 layer 2"]),
    ("k3e3-skip|skip-k3e3-k3e3", ["stage 2 layer 1", "never skippable"]),
    ("k3e3-skip", ["[2]", "[2, 3]"]),
    ("k3e3-skip|k3e3-k3e3", ["[2, 2]", "[2, 3]"]),
    ("k3e3-skip|k3e3--k3e3", ["stage 2 layer 2", "''"]),
    ("", ["''"]),
])
def test_malformed_strings_name_the_bad_token(bad, needles):
    with pytest.raises(InvalidArchitectureError) as err:
        TINY.parse(bad)
    assert all(n in str(err.value) for n in needles), str(err.value)


def test_bad_values_and_choices():
    with pytest.raises(InvalidArchitectureError, match="'conv'"):
        MBConvArch((("k3e3", "conv"),))
    with pytest.raises(InvalidArchitectureError, match="non-empty"):
        MBConvArch(((),))
    with pytest.raises(InvalidArchitectureError, match="NB201Arch|mbconv"):
        TINY.key(NB201Space().sample(np.random.default_rng(0)))
    with pytest.raises(InvalidArchitectureError, match="stage2_layer3"):
        TINY.from_choices({"stage1_layer1": "k3e3", "stage1_layer2": "skip",
                           "stage2_layer1": "k3e3", "stage2_layer2": "skip"})
    with pytest.raises(InvalidArchitectureError, match="never skippable"):
        TINY.from_choices({**TINY.to_choices("k3e3-skip|k3e3-skip-skip"), "stage2_layer1": "skip"})
    assert TINY.choices()["stage1_layer1"] == list(OPS)
    assert TINY.choices()["stage2_layer3"] == [*OPS, SKIP]


def test_registered_config_and_its_errors():
    assert "mbconv" in SPACES.names()
    space = SPACES.make("mbconv", {"stem": "4", "widths": "4, 8", "depths": "2,3",
                                   "strides": "1,2", "head": 16}).build()
    assert space.config() == TINY.config()
    assert SPACES.make("mbconv").build().config() == MBConvSpace().config()
    for values, needle in [({"depths": (2, 3)}, "one entry per stage"),
                           ({"strides": (1, 3, 2, 2)}, "3"), ({"stem": 0}, "stem = 0")]:
        with pytest.raises(ConfigError, match=needle):
            SPACES.make("mbconv", values)
    with pytest.raises(ConfigError, match="strides"):
        MBConvSpace(strides=(1, 2, 2, 4))
    with pytest.raises(ConfigError, match=r"unknown options \['C'\]"):
        TINY.build(TINY.parse("k3e3-skip|k3e3-skip-skip"), C=4)
    with pytest.raises(ConfigError, match="num_classes"):
        TINY.build(TINY.parse("k3e3-skip|k3e3-skip-skip"), 0)


# ----------------------------------------------------------------------------- supernet
ARCHS = ["k3e3-skip|k5e6-skip-k7e3", "k7e6-k5e3|k3e6-k7e6-k5e6", "k5e3-skip|k3e3-skip-skip"]


@pytest.fixture(scope="module")
def supernet():
    net = SUPERNETS.make("mbconv").build(TINY, num_classes=5, in_channels=2, seed=3)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        g = torch.Generator().manual_seed(0)
        for m in net.bn_modules():
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return net


@pytest.mark.parametrize("text", ARCHS)
def test_path_equals_standalone_network_bitwise(supernet, text):
    arch = TINY.parse(text)
    net = supernet.subnet(arch)
    assert isinstance(net, MBConvNetwork) and net.arch == arch
    _, params = supernet.cost(arch, (2, 9, 9))
    assert sum(p.numel() for p in net.parameters()) == round(params * 1e6)
    x = torch.randn(4, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    supernet.eval(), net.eval()
    with torch.no_grad():
        assert torch.equal(supernet(x, arch), net(x))
    # train mode: batch statistics, the same running-statistics updates, the same gradients
    sup = MBConvSupernet(TINY, num_classes=5, in_channels=2)
    sup.load_state_dict(supernet.state_dict())
    sup.train(), net.train()
    out_sup, out_net = sup(x, arch), net(x)
    assert torch.equal(out_sup, out_net)
    assert all(torch.equal(a, b) for a, b in
               zip(sup.subnet(arch).state_dict().values(), net.state_dict().values()))
    out_sup.square().sum().backward(), out_net.square().sum().backward()
    sub_grads = dict(net.named_parameters())
    chosen = sup.choices_of(arch)
    for name, p in sup.named_parameters():
        parts = name.split(".")
        if parts[0] == "blocks":
            if int(parts[3]) != chosen[int(parts[1])]:
                assert p.grad is None  # unchosen candidates are untouched
                continue
            name = ".".join(parts[:2] + parts[4:])
        assert torch.equal(p.grad, sub_grads[name].grad), name


def test_choice_encoding_and_refusals(supernet):
    assert supernet.decisions() == [list(OPS)] + [[*OPS, SKIP]] + [list(OPS)] + [[*OPS, SKIP]] * 2
    arch = TINY.parse(ARCHS[0])
    idx = supernet.choices_of(arch)
    assert idx == [0, 6, 3, 6, 4]  # OPS order: k3e3 k3e6 k5e3 k5e6 k7e3 k7e6, then skip
    assert supernet.arch_from_choices(idx) == arch
    with pytest.raises(NasrankError, match="out of range"):
        supernet.arch_from_choices([6, 0, 0, 0, 0])  # layer 1 is not skippable
    with pytest.raises(NasrankError, match="4-8-12"):
        supernet(torch.randn(2, 2, 8, 8), "4-8-12")
    with pytest.raises(SpaceMismatchError, match="nb201"):
        MBConvSupernet(NB201Space())
    assert supernet.choice_modules(3, 6) == [supernet.blocks[3].ops[6]]
    assert isinstance(supernet.blocks[3].ops[6], nn.Identity)
    with pytest.raises(NasrankError, match="out of range"):
        supernet.choice_modules(0, 6)
    # strict fairness: 7 paths per step; a 6-choice layer uses one op twice
    archs = StrictFairSampler(supernet).sample(np.random.default_rng(0))
    assert len(archs) == 7 and {a.layers[1] for a in archs} == {*OPS, SKIP}
    assert supernet.config() == {"space": "mbconv", "class": "MBConvSupernet", "num_classes": 5,
                                 "in_channels": 2, **TINY.config()}


def test_seeded_build_leaves_the_global_rng_alone():
    cfg = SUPERNETS.make("mbconv")
    state = torch.random.get_rng_state()
    a = cfg.build(TINY, num_classes=3, in_channels=1, seed=5)
    b = cfg.build(TINY, num_classes=3, in_channels=1, seed=5)
    c = cfg.build(TINY, num_classes=3, in_channels=1, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_weak_labels_and_proxies_through_the_generic_paths(tmp_path):
    from nasrank.spaces.base import sample_unique
    from nasrank.supernet.base import UniformSampler
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.proxies import score
    from nasrank.supernet.trainer import train_supernet
    from nasrank.supernet.weak_labels import generate_weak_labels

    data = load_dataset("digits", seed=0, subset=128, channels=1)
    net = SUPERNETS.make("mbconv").build(TINY, num_classes=10, in_channels=1, seed=0)
    train_supernet(net, data, UniformSampler(net), epochs=1, batch_size=32, lr=0.05,
                   progress=False)
    archs = sample_unique(TINY, 4, np.random.default_rng(0))
    table = generate_weak_labels(net, archs, data, tmp_path / "wl.csv", bn_batches=1,
                                 eval_batches=1, batch_size=32, proxies=["flops", "params", "nwot"],
                                 progress=False)
    assert table.space == "mbconv" and len(table) == 4
    assert sorted(table.keys) == sorted(TINY.key(a) for a in archs)
    # the proxies count the built network (hooks, parameters): they agree with the space's cost
    assert np.allclose(table.column("zc_flops"), table.column("flops"), rtol=0, atol=1e-12)
    assert np.allclose(table.column("zc_params"), table.column("params"), rtol=0, atol=1e-12)
    assert np.all((table.column("ws_acc") >= 0) & (table.column("ws_acc") <= 1))
    assert np.isfinite(table.column("zc_nwot")).all()
    # every proxy of the library runs on a stand-alone mbconv network
    x, y = data.train.tensors
    values = score(TINY.build(archs[0], 10, in_channels=1), (x[:16], y[:16]), seed=0)
    assert np.isfinite([v for k, v in values.items() if k != "jacov"]).all(), values
