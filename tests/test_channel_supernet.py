"""CVPR 2021 ResNet-20 channel supernet: a sampled path computes what the stand-alone network of
the space's builder computes (eval and train mode, every sharing scheme); a gradient step touches
only what the path used; hand-computed parameter counts per scheme; samplers and trainer drive
it; bad input is refused."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.spaces import NasrankError
from nasrank.spaces.cvpr2021 import CHOICES, CVPR2021Arch, CVPR2021ResNet, CVPR2021Space, block_plan
from nasrank.supernet.base import StrictFairSampler, UniformSampler
from nasrank.supernet.channel import (
    SHARING_SCHEMES,
    ChannelSupernet,
    SharingError,
    SlimBatchNorm2d,
    SlimConv2d,
    SlimLinear,
)

# A narrowed space (every width of it is a published choice, the widest choice included) keeps
# the independent scheme small; one test also runs the full space.
SMALL = [c[::3] if len(c) > 4 else (c[0], c[-1]) for c in CHOICES]
MIXED = {"conv": "full", "bn": "independent", "fc": "full"}
SCHEMES = [*SHARING_SCHEMES, MIXED, {"conv": "front", "bn": "full", "fc": "end"}]


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics/affine parameters and biases, so copying them is tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if "num_batches_tracked" in name:
                t.fill_(3)
            elif "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif "running_mean" in name or "bn" in name or "bias" in name:
                t.copy_(torch.rand(t.shape, generator=g) - 0.5)
    return net


def _make(sharing, seed: int = 0, **kw) -> ChannelSupernet:
    torch.manual_seed(seed)
    return _randomise(ChannelSupernet(sharing, **{"num_classes": 10, "choices": SMALL, **kw}),
                      seed)


def _archs(net: ChannelSupernet, n: int, seed: int) -> list[CVPR2021Arch]:
    rng = np.random.default_rng(seed)
    out = [net.arch_from_choices([int(rng.integers(len(d))) for d in net.decisions()])
           for _ in range(n)]
    # the widest and narrowest paths too: every slice boundary and every projection case
    out.append(net.arch_from_choices([len(d) - 1 for d in net.decisions()]))
    out.append(net.arch_from_choices([0] * len(net.decisions())))
    return out


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("sharing", SCHEMES, ids=str)
def test_path_equals_standalone_network_eval_and_train(sharing):
    sup = _make(sharing)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for arch in _archs(sup, 3, seed=2):
        net = sup.subnet(arch)
        assert isinstance(net, CVPR2021ResNet) and net.arch == arch
        # the copy is exactly the stand-alone network: the space's analytic parameter count
        assert sum(p.numel() for p in net.parameters()) == round(sup.cost(arch, (3, 8, 8))[1] * 1e6)
        sup.eval(), net.eval()
        with torch.no_grad():
            assert torch.allclose(sup(x, arch), net(x), atol=1e-5, rtol=0)
        # train mode: batch statistics, the same running-statistics updates, the same gradients
        trained = _make(sharing)
        trained.train(), net.train()
        out_sup, out_net = trained(x, arch), net(x)
        assert torch.allclose(out_sup, out_net, atol=1e-5, rtol=0)
        after = trained.subnet(arch).state_dict()
        for name, value in net.state_dict().items():
            assert torch.allclose(after[name].float(), value.float(), atol=1e-6), name
        assert int(after["stem.1.num_batches_tracked"]) == 4  # 3 set by _randomise, +1
        out_sup.square().sum().backward(), out_net.square().sum().backward()
        # gradients land in the stored tensors, on the slice the path read
        key = trained.blocks[6].conv1.bank.key(arch.widths[12], arch.widths[13])
        stored = trained.blocks[6].conv1.bank.weight[key].grad
        c_in, c_out = arch.widths[12], arch.widths[13]
        assert torch.allclose(stored[:c_out, :c_in], net.blocks[6].conv1.weight.grad, atol=1e-5)
        fc_key = trained.fc.bank.key(arch.widths[18], 10)
        assert torch.allclose(trained.fc.bank.weight[fc_key].grad[:, :arch.widths[18]],
                              net.fc.weight.grad, atol=1e-5)


def test_full_space_path_equals_standalone():
    torch.manual_seed(0)
    sup = _randomise(ChannelSupernet(MIXED, num_classes=100, in_channels=3), 0)
    space = CVPR2021Space()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    sup.eval()
    for arch in [space.sample(np.random.default_rng(s)) for s in range(3)] + [space.largest()]:
        net = sup.subnet(arch).eval()
        with torch.no_grad():
            assert torch.allclose(sup(x, arch), net(x), atol=1e-5, rtol=0)


def test_subnet_is_a_copy():
    sup = _make("full")
    arch = _archs(sup, 1, seed=0)[0]
    net = sup.subnet(arch)
    with torch.no_grad():
        net.fc.weight.add_(1.0)
    assert not torch.equal(net.fc.weight, sup.subnet(arch).fc.weight)


# ----------------------------------------------------------------------------- gradient locality
def _used_regions(sup: ChannelSupernet, arch: CVPR2021Arch) -> dict[str, tuple]:
    """Hand-derived from the scheme definitions: stored tensor name -> the index region the path
    reads (rows = output channels, cols = input channels)."""
    scheme = sup.sharing
    regions: dict[str, tuple] = {}

    def conv(prefix: str, c_in: int, c_out: int, kind: str) -> None:
        s = scheme[kind]
        key = {"full": "full", "front": f"in{c_in}", "end": f"out{c_out}",
               "independent": f"in{c_in}_out{c_out}"}[s]
        regions[f"{prefix}.bank.weight.{key}"] = (slice(0, c_out), slice(0, c_in))
        regions[f"{prefix}.bank.bias.{key}"] = (slice(0, c_out),)

    def bn(prefix: str, c_in: int, c: int) -> None:
        # NCS: a BN is keyed like the conv before it, on that conv's input width c_in (front),
        # its output width c (end), both (independent) or nothing (full); sliced to [:c]
        key = {"full": "full", "front": f"in{c_in}", "end": f"out{c}",
               "independent": f"in{c_in}_out{c}"}[scheme["bn"]]
        for part in ("weight", "bias"):
            regions[f"{prefix}.{part}.{key}"] = (slice(0, c),)

    w = arch.widths
    conv("stem_conv", 3, w[0], "conv")
    bn("stem_bn", 3, w[0])
    for b, spec in enumerate(block_plan(arch)):
        conv(f"blocks.{b}.conv1", spec.c_in, spec.c_mid, "conv")
        bn(f"blocks.{b}.bn1", spec.c_in, spec.c_mid)
        conv(f"blocks.{b}.conv2", spec.c_mid, spec.c_out, "conv")
        bn(f"blocks.{b}.bn2", spec.c_mid, spec.c_out)
        if spec.projection:
            conv(f"blocks.{b}.shortcut_conv", spec.c_in, spec.c_out, "conv")
            bn(f"blocks.{b}.shortcut_bn", spec.c_in, spec.c_out)
    conv("fc", w[18], 10, "fc")
    return regions


@pytest.mark.parametrize("sharing", [*SHARING_SCHEMES, *(
    {"conv": "full", "bn": s, "fc": "full"} for s in SHARING_SCHEMES[1:])], ids=str)
def test_gradient_step_changes_only_what_the_path_used(sharing):
    sup = _make(sharing, seed=5)
    arch = _archs(sup, 1, seed=7)[0]
    assert 0 < sum(a != b for a, b in zip(arch.widths, [max(c) for c in SMALL]))  # not widest
    before = {k: v.detach().clone() for k, v in sup.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in sup.named_buffers()}
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(8))
    y = torch.tensor([0, 3, 5, 9])
    sup.train()
    opt = torch.optim.SGD(sup.parameters(), lr=0.5)
    nn.functional.cross_entropy(sup(x, arch), y).backward()
    opt.step()
    regions = _used_regions(sup, arch)
    params = dict(sup.named_parameters())
    # every tensor the definitions name exists (convs other than fc have no bias)
    assert {n for n in regions if "bank.bias" not in n or n.startswith("fc.")} <= set(params)
    for name, p in params.items():
        changed = p.detach() != before[name]
        region = regions.get(name)
        if region is None:
            assert not changed.any(), f"{name} is not on the path but changed"
            continue
        inside = torch.zeros_like(changed)
        inside[region] = True
        assert not (changed & ~inside).any(), f"{name} changed outside {region}"
        assert changed[region].any(), f"{name} did not learn inside {region}"
    # running statistics: only the path's BatchNorms, only their first c entries
    for name, buf in sup.named_buffers():
        moved = buf != buffers[name]
        module, part = name.rsplit(".", 1)
        stat = next(p for p in ("running_mean", "running_var", "num_batches_tracked")
                    if part.startswith(p + "_"))
        key = part[len(stat) + 1:]
        region = regions.get(f"{module}.weight.{key}")
        if region is None:
            assert not moved.any(), f"{name} is not on the path but moved"
        elif stat != "num_batches_tracked":
            outside = torch.ones_like(moved)
            outside[region] = False
            assert moved[region].all() and not (moved & outside).any(), name
    if sharing == "independent":  # nothing shared: the widest path's tensors never moved
        widest = _used_regions(
            sup, sup.arch_from_choices([len(d) - 1 for d in sup.decisions()]))
        untouched = (set(widest) - set(regions)) & set(params)
        assert untouched
        for name in untouched:
            assert torch.equal(params[name], before[name])


# ----------------------------------------------------------------------------- parameter counts
def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("sharing, conv_k3, conv_k3_bias, linear_bias, bn, bn_one_in", [
    # conv in {2,4} -> out {3,5}, 3x3: full 5*4*9; front (5*2+5*4)*9; end (3+5)*4*9;
    # independent (2+4)*(3+5)*9. Biases add 5 / 2*5 / 3+5 / 2*(3+5).
    # linear in {2,4} -> out {3,5}: the same counts without the 9.
    # BN over {3,5} after a conv with inputs {2,4} (weight + bias per channel): full one BN of
    # 5 -> 2*5; front one BN of 5 per input width -> 2*2*5; end one BN per output width ->
    # 2*(3+5); independent one per (input, output) pair -> 2*2*(3+5). With a single input
    # width: front = full (10), independent = end (16).
    ("full", 180, 185, 25, 10, 10),
    ("front", 270, 280, 40, 20, 10),
    ("end", 288, 296, 40, 16, 16),
    ("independent", 432, 448, 64, 32, 16),
])
def test_slim_layer_parameter_counts_by_hand(sharing, conv_k3, conv_k3_bias, linear_bias, bn,
                                             bn_one_in):
    assert _count(SlimConv2d([2, 4], [3, 5], 3, sharing=sharing)) == conv_k3
    assert _count(SlimConv2d([4, 2], [5, 3], 3, bias=True, sharing=sharing)) == conv_k3_bias
    assert _count(SlimLinear([2, 4], [3, 5], sharing=sharing)) == linear_bias
    assert _count(SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing=sharing)) == bn
    assert _count(SlimBatchNorm2d([5, 3], in_choices=[7], sharing=sharing)) == bn_one_in
    assert _count(SlimBatchNorm2d([3, 5], sharing=sharing)) == bn_one_in
    # running statistics follow the same keys: 2 float buffers per channel + 1 counter per BN
    stats = SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing=sharing)
    floats = sum(b.numel() for n, b in stats.named_buffers() if "num_batches" not in n)
    counters = sum(1 for n, _ in stats.named_buffers() if "num_batches" in n)
    assert floats == bn and counters == {"full": 1, "front": 2, "end": 2, "independent": 4}[sharing]


@pytest.mark.parametrize("sharing, shared_with_other_input, shared_with_other_output", [
    # NCS: front shares among choices with the same input width of the conv before the BN,
    # end among those with the same output width, full among all, independent among none.
    ("full", True, True),
    ("front", False, True),
    ("end", True, False),
    ("independent", False, False),
])
def test_bn_sharing_follows_the_input_and_output_widths(
        sharing, shared_with_other_input, shared_with_other_output):
    """Two paths through conv(in {2,4} -> out {3,5}) + BN: does a gradient step of one move
    the BN affine parameters (and running statistics) the other one reads?"""
    def touched(c_in: int, c_out: int) -> dict[str, torch.Tensor]:
        bn = SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing=sharing)
        x = torch.randn(6, c_out, 2, 2, generator=torch.Generator().manual_seed(0))
        bn.train()
        (bn(x, c_in=c_in) * torch.arange(1.0, c_out + 1).view(1, -1, 1, 1)).sum().backward()
        grads = {}
        for name, p in bn.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0:
                grads[name] = p.grad.abs() > 0
        return grads

    def reads(c_in: int, c_out: int) -> set[str]:  # the stored tensors this path trains
        return set(touched(c_in, c_out))

    base = reads(2, 3)
    assert base, "the path trains some BN parameters"
    assert bool(base & reads(4, 3)) is shared_with_other_input
    assert bool(base & reads(2, 5)) is shared_with_other_output
    assert bool(base & reads(4, 5)) is (shared_with_other_input and shared_with_other_output)
    # the path's region is the first 3 channels of the tensor it reads
    for name, mask in touched(2, 3).items():
        assert mask[:3].all() and not mask[3:].any(), name
    # without the conv's input width the key is undefined when there are several
    bn = SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing=sharing)
    if sharing in ("front", "independent"):
        with pytest.raises(NasrankError, match="input width"):
            bn(torch.randn(2, 3, 2, 2))
        with pytest.raises(NasrankError, match="input width 3"):
            bn(torch.randn(2, 3, 2, 2), c_in=3)


def test_old_per_width_bn_checkpoints():
    """The old layout (one BN per width, keys "w{c}") is today's 'end': it loads there, with
    the same values; 'front'/'independent' refuse it by name."""
    bn = SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing="end")
    old = {"weight.w3": torch.full((3,), 2.0), "weight.w5": torch.full((5,), 3.0),
           "bias.w3": torch.zeros(3), "bias.w5": torch.ones(5),
           "running_mean_w3": torch.zeros(3), "running_var_w3": torch.ones(3),
           "num_batches_tracked_w3": torch.tensor(7), "running_mean_w5": torch.zeros(5),
           "running_var_w5": torch.ones(5), "num_batches_tracked_w5": torch.tensor(0)}
    bn.load_state_dict(dict(old))
    assert torch.equal(bn.export(5)["weight"], torch.full((5,), 3.0))
    assert int(bn.export(3)["num_batches_tracked"]) == 7
    for mode in ("front", "independent"):
        with pytest.raises(SharingError, match=r"'weight\.w3'.*'%s'" % mode):
            SlimBatchNorm2d([3, 5], in_choices=[2, 4], sharing=mode).load_state_dict(dict(old))


def test_bn_parameter_counts_of_the_full_space_by_hand():
    """BN parameters (weight + bias) of the CVPR 2021 ResNet-20 supernet, conv and fc full.

    Widths: positions 1-7 {4..16} (4 choices, max 16, sum 40), 8-13 {4..32} (8, 32, 144),
    14-20 {4..64} (16, 64, 544). Every block projects (several widths). A BN after a conv with
    input choices I and output choices O holds 2*max(O) (full), 2*|I|*max(O) (front),
    2*sum(O) (end), 2*|I|*sum(O) (independent). The 28 BNs as (I, O) groups:
    stem (3 -> G4) x1; (G4, G4) x9 (blocks 1-3: bn1, bn2, shortcut); block 4: bn1 and
    shortcut (G4, G8), bn2 (G8, G8); blocks 5-6 (G8, G8) x6; block 7: bn1 and shortcut
    (G8, G16), bn2 (G16, G16); blocks 8-9 (G16, G16) x6. So (1,G4) 1, (G4,G4) 9, (G4,G8) 2,
    (G8,G8) 7, (G8,G16) 2, (G16,G16) 7.
    """
    full = 2 * (16 * 10 + 32 * 9 + 64 * 9)                                      # 2048
    front = 2 * (16 + 9 * 4 * 16 + 2 * 4 * 32 + 7 * 8 * 32 + 2 * 8 * 64 + 7 * 16 * 64)
    end = 2 * (40 * 10 + 144 * 9 + 544 * 9)                                     # 13184
    independent = 2 * (40 + 9 * 4 * 40 + 2 * 4 * 144 + 7 * 8 * 144 + 2 * 8 * 544
                       + 7 * 16 * 544)
    expected = {"full": full, "front": front, "end": end, "independent": independent}
    assert expected == {"full": 2048, "front": 21664, "end": 13184, "independent": 160656}
    for mode, n in expected.items():
        sup = ChannelSupernet({"conv": "full", "bn": mode, "fc": "full"}, num_classes=100)
        assert sum(_count(m) for m in sup.bn_modules()) == n, mode
        assert len(sup.bn_modules()) == 28


TINY = [(4, 8)] * 20  # every position {4, 8}; 10 classes, 3 input channels
# Hand count (see the scheme table in supernet/channel.py):
#   stem conv 3->{4,8} 3x3: full/front 8*3*9 = 216, end/independent 12*3*9 = 324
#   BN over {4,8} (2 per channel): full 2*8 = 16; front 2*8 per input width of the conv
#   before it (stem: one input width, 16; blocks: two, 32); end 2*(4+8) = 24; independent
#   24 per input width (stem 24, blocks 48). Stem + 3 per block, all 9 blocks project.
#   block conv {4,8}->{4,8} 3x3: full 576, front/end (8*4 + 8*8)*9 = 864, independent 144*9 = 1296
#   shortcut 1x1: full 64, front/end 96, independent 144
#   fc {4,8}->10 with bias: full/end 10*8 + 10 = 90, front/independent 50 + 90 = 140
TINY_COUNTS = {
    "full": 216 + 16 + 9 * (2 * 576 + 64 + 3 * 16) + 90,            # 11698
    "front": 216 + 16 + 9 * (2 * 864 + 96 + 3 * 32) + 140,          # 17652
    "end": 324 + 24 + 9 * (2 * 864 + 96 + 3 * 24) + 90,             # 17502
    "independent": 324 + 24 + 9 * (2 * 1296 + 144 + 3 * 48) + 140,  # 26408
}


def test_supernet_parameter_counts_by_hand():
    assert TINY_COUNTS == {"full": 11698, "front": 17652, "end": 17502, "independent": 26408}
    for sharing, expected in TINY_COUNTS.items():
        assert _count(ChannelSupernet(sharing, num_classes=10, choices=TINY)) == expected
    # conv full, BN independent, fc full: 216 + 24 + 9 * (1152 + 64 + 3 * 48) + 90
    assert _count(ChannelSupernet(MIXED, num_classes=10, choices=TINY)) == 12570
    # BN front vs end differ (they were one scheme before): 216 + 16 + 9 * (1216 + 96) + 90
    assert _count(ChannelSupernet({"bn": "front"}, num_classes=10, choices=TINY)) == 12130
    # a single width everywhere: every scheme is the stand-alone network (the space's count)
    one = [(c[1],) for c in CHOICES]
    arch = CVPR2021Arch(tuple(c[0] for c in one))
    params = round(CVPR2021Space().cost(arch, (3, 8, 8), num_classes=10)[1] * 1e6)
    for sharing in SHARING_SCHEMES:
        assert _count(ChannelSupernet(sharing, num_classes=10, choices=one)) == params


# ----------------------------------------------------------------------------- samplers, trainer
def test_decisions_and_choice_encoding():
    sup = ChannelSupernet("full", num_classes=10)
    assert sup.decisions() == [list(c) for c in CHOICES]
    arch = CVPR2021Space().parse("4-8-12-16-4-8-12-32-28-24-4-8-12-64-60-4-8-12-16-20")
    idx = sup.choices_of(arch)
    assert idx == [0, 1, 2, 3, 0, 1, 2, 7, 6, 5, 0, 1, 2, 15, 14, 0, 1, 2, 3, 4]
    assert sup.arch_from_choices(idx) == arch
    assert sup.config()["sharing"] == {"conv": "full", "bn": "full", "fc": "full"}


def test_strict_fair_sampler_uses_every_width_equally():
    sup = ChannelSupernet("full", num_classes=10)
    archs = StrictFairSampler(sup).sample(np.random.default_rng(0))
    assert len(archs) == 16
    for i, choices in enumerate(CHOICES):  # 16 picks: 4, 2 or 1 uses of each width
        counts = Counter(a.widths[i] for a in archs)
        assert sorted(counts) == list(choices)
        assert set(counts.values()) == {16 // len(choices)}


# Hand counts for an architecture batch of n = 18 on the channel space: positions 1-7 have 4
# widths (18 = 4*4 + 2: two widths used 5 times, two used 4 times), positions 8-13 have 8
# widths (18 = 8*2 + 2: two used 3 times, six used twice), positions 14-20 have 16 widths
# (18 = 16 + 2: two used twice, fourteen once).
HAND_18 = {4: [4, 4, 5, 5], 8: [2] * 6 + [3] * 2, 16: [1] * 14 + [2] * 2}


def test_strict_fair_sampler_arch_batch_18_hand_counts():
    sup = ChannelSupernet("full", num_classes=10)
    sampler = StrictFairSampler(sup, arch_batch=18)
    rng = np.random.default_rng(1)
    for _ in range(5):
        archs = sampler.sample(rng)
        assert len(archs) == 18
        for i, choices in enumerate(CHOICES):
            counts = Counter(a.widths[i] for a in archs)
            assert sorted(counts) == list(choices)
            assert sorted(counts.values()) == HAND_18[len(choices)]


@pytest.mark.parametrize("n", [1, 4, 9])
def test_strict_fair_sampler_small_arch_batches(n):
    """n below a position's choice count: n distinct widths (each used at most once); else
    floor/ceil(n / k) uses of every width."""
    sup = ChannelSupernet("full", num_classes=10)
    rng = np.random.default_rng(n)
    for _ in range(5):
        archs = StrictFairSampler(sup, arch_batch=n).sample(rng)
        assert len(archs) == n
        for i, choices in enumerate(CHOICES):
            counts = Counter(a.widths[i] for a in archs)
            k = len(choices)
            if n <= k:  # hand count: n different widths, once each
                assert len(counts) == n and set(counts.values()) == {1}
            elif k == 4:  # n = 9 = 4*2 + 1: one width thrice, three twice
                assert n == 9 and sorted(counts.values()) == [2, 2, 2, 3]
            else:  # n = 9 = 8 + 1: one width twice, seven once
                assert (n, k) == (9, 8) and sorted(counts.values()) == [1] * 7 + [2]


def test_strict_fair_sampler_arch_batch_checked_and_default_unchanged():
    sup = ChannelSupernet("full", num_classes=10)
    for bad in (0, -3, 2.5, "x", True):
        with pytest.raises(NasrankError, match="arch_batch"):
            StrictFairSampler(sup, arch_batch=bad)
    # default = the largest choice count; same draws as an explicit n = 16
    a = StrictFairSampler(sup).sample(np.random.default_rng(3))
    b = StrictFairSampler(sup, arch_batch=16).sample(np.random.default_rng(3))
    assert a == b and len(a) == 16


def test_sampler_registry_entries():
    """The registered configs (used directly: reading the registry imports every supernet
    module, slow on a loaded machine); the decorator set their registry name and kind."""
    from nasrank.errors import ConfigError
    from nasrank.supernet.base import FairSamplerConfig, UniformSamplerConfig

    assert (FairSamplerConfig.name, FairSamplerConfig.kind) == ("fair", "sampler")
    assert (UniformSamplerConfig.name, UniformSamplerConfig.kind) == ("uniform", "sampler")
    sup = ChannelSupernet("full", num_classes=10)
    fair = FairSamplerConfig(arch_batch="18").build(sup)  # coerced as from a CLI flag
    assert isinstance(fair, StrictFairSampler) and len(fair.sample(np.random.default_rng(0))) == 18
    assert len(FairSamplerConfig().build(sup).sample(np.random.default_rng(0))) == 16
    uni = UniformSamplerConfig(archs_per_step=2).build(sup)
    assert isinstance(uni, UniformSampler) and uni.archs_per_step == 2
    with pytest.raises(ConfigError, match="arch_batch = 0"):
        FairSamplerConfig(arch_batch=0)
    with pytest.raises(ConfigError, match="archs_per_step = 0"):
        UniformSamplerConfig(archs_per_step=0)


def test_trainer_drives_the_channel_supernet():
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.trainer import train_supernet

    data = load_dataset("digits", seed=0, subset=64, channels=3)
    for sampler_cls in (UniformSampler, StrictFairSampler):
        sup = _make({"conv": "front", "bn": "independent", "fc": "end"}, seed=1,
                    choices=[c[:2] for c in SMALL])
        before = {k: v.detach().clone() for k, v in sup.named_parameters()}
        stats = train_supernet(sup, data, sampler_cls(sup), epochs=1, batch_size=24, lr=0.05,
                               seed=3, progress=False)
        assert stats.steps == 2 and np.isfinite(stats.last_loss)
        paths = 1 if sampler_cls is UniformSampler else 2
        assert stats.path_images == 2 * 24 * paths
        moved = {k for k, v in sup.named_parameters() if not torch.equal(v, before[k])}
        assert "fc.bank.weight.out10" in moved and "stem_conv.bank.weight.in3" in moved
        if sampler_cls is StrictFairSampler:  # both widths of every position run each step
            # BN independent: one BN per (input, output) pair of widths. Hand count of the
            # tensors: stem (1 input x 2 outputs) + 9 blocks x 2 BNs x (2 x 2) pairs, x2
            # (weight and bias); every output width of every BN trains each step.
            main_bns = {k for k in before if ".bn1." in k or ".bn2." in k or "stem_bn" in k}
            assert len(main_bns) == 2 * (2 + 9 * 2 * 4)
            for layer in {k.rsplit(".", 2)[0] for k in main_bns}:
                outs = {k.rsplit("_out", 1)[1] for k in moved & main_bns
                        if k.startswith(layer + ".")}
                assert len(outs) == 2, layer
        arch = _archs(sup, 1, seed=0)[0]
        sup.eval()
        x = data.valid.tensors[0][:4]
        with torch.no_grad():
            assert torch.allclose(sup(x, arch), sup.subnet(arch).eval()(x), atol=1e-5)


def test_weak_labels_recalibrate_like_the_standalone_network(tmp_path):
    """BN recalibration (reset, cumulative average) reaches the Slim BatchNorms: the weak label
    equals the accuracy/loss of the stand-alone network recalibrated by hand with
    ``nn.BatchNorm2d`` on the same batches; the supernet's own statistics are restored."""
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.train import epoch_order
    from nasrank.supernet.weak_labels import generate_weak_labels

    data = load_dataset("digits", seed=0, subset=64, channels=3)
    sup = _make(MIXED, seed=2)
    archs = _archs(sup, 1, seed=4)[:2]
    buffers = {k: v.clone() for k, v in sup.named_buffers()}
    table = generate_weak_labels(sup, archs, data, tmp_path / "ws.csv", bn_batches=2,
                                 batch_size=16, seed=0, progress=False)
    assert all(torch.equal(v, buffers[k]) for k, v in sup.named_buffers())
    x_train = data.train.tensors[0][epoch_order(len(data.train), 0, 0)]
    x_valid, y_valid = data.valid.tensors
    for arch in archs:
        net = sup.subnet(arch)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        net.train()
        with torch.no_grad():
            net(x_train[:16]), net(x_train[16:32])
            logits = net.eval()(x_valid)
        row = table.row(str(arch))
        assert row["ws_acc"] == pytest.approx(float((logits.argmax(1) == y_valid).float().mean()))
        loss = float(nn.functional.cross_entropy(logits, y_valid))
        assert row["ws_neg_loss"] == pytest.approx(-loss, rel=1e-5)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_the_bad_value_named():
    sup = _make("full")
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(NasrankError, match="none~0"):
        sup(x, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")  # an NB201 cell
    with pytest.raises(NasrankError):
        sup.subnet(("nor_conv_3x3",) * 6)
    narrowed = "-".join(["8"] * 20)  # a valid space member, but 8 is not in SMALL[0]
    with pytest.raises(NasrankError, match=r"position 1 has width 8"):
        sup(x, narrowed)
    with pytest.raises(NasrankError, match=r"width 20"):
        sup(x, "20" + "-4" * 19)  # not a width of the space at all
    with pytest.raises(NasrankError, match="out of range"):
        sup.arch_from_choices([5] + [0] * 19)
    with pytest.raises(SharingError, match="'partial'"):
        ChannelSupernet("partial")
    with pytest.raises(SharingError, match="'linear'"):
        ChannelSupernet({"conv": "full", "linear": "full"})
    with pytest.raises(SharingError, match="'sliced'"):
        ChannelSupernet({"bn": "sliced"})
    with pytest.raises(SharingError, match=r"\[6\]"):
        ChannelSupernet("full", choices=[(4, 6)] + [(4,)] * 19)
    with pytest.raises(NasrankError, match="width 6"):
        SlimConv2d([4, 8], [4, 8], 3)(torch.randn(1, 6, 4, 4), 4)
    with pytest.raises(NasrankError, match="width 12"):
        SlimBatchNorm2d([4, 8])(torch.randn(2, 12, 4, 4))
    with pytest.raises(NasrankError, match=r"\(2, 4, 8, 8\)"):
        sup(torch.randn(2, 4, 8, 8), _archs(sup, 1, seed=0)[0])
