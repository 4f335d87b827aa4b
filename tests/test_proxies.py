"""Zero-cost proxies against hand/independent computations on tiny networks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasrank.errors import NasrankError
from nasrank.spaces.nb201 import NB201Space
from nasrank.supernet.proxies import (ProxyError, ProxySettings, available_proxies, first_batch, score,
                              score_with_notes)

ALL = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacov", "nwot", "epe_nas", "zen",
       "ntk", "linear_regions", "l2_norm", "plain", "flops", "params"]


def mlp(seed: int = 0, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5, bias=bias), nn.ReLU(), nn.Linear(5, 3, bias=bias))


def batch(n: int = 8, d: int = 4, classes: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_registry_has_all_fifteen():
    assert set(ALL) <= set(available_proxies())


# ----------------------------------------------------------------------------- gradient proxies
def reference_grads(net, x, y):
    ref = copy.deepcopy(net)
    F.cross_entropy(ref(x), y).backward()
    return [(m.weight.detach(), m.weight.grad) for m in ref if isinstance(m, nn.Linear)]


def test_grad_norm_snip_plain_equal_torch_gradients():
    net, (x, y) = mlp(), batch()
    wg = reference_grads(net, x, y)
    out = score(net, (x, y), ["grad_norm", "snip", "plain"])
    assert out["grad_norm"] == pytest.approx(sum(float(g.norm()) for _, g in wg), rel=1e-5)
    assert out["snip"] == pytest.approx(sum(float((w * g).abs().sum()) for w, g in wg), rel=1e-5)
    assert out["plain"] == pytest.approx(sum(float((w * g).sum()) for w, g in wg), rel=1e-4,
                                         abs=1e-7)


def test_grasp_equals_full_hessian_reference():
    net, (x, y) = mlp(), batch()
    (w1, b1), (w2, b2) = [(m.weight.detach(), m.bias.detach()) for m in (net[0], net[2])]
    sizes = [w1.numel(), w2.numel()]

    def loss(theta):
        a, b = theta[:sizes[0]].view_as(w1), theta[sizes[0]:].view_as(w2)
        return F.cross_entropy(torch.relu(x @ a.T + b1) @ b.T + b2, y)

    theta = torch.cat([w1.flatten(), w2.flatten()]).double().requires_grad_(False)
    theta = theta.float()
    g = torch.autograd.functional.jacobian(loss, theta)
    h = torch.autograd.functional.hessian(loss, theta)
    expected = float(-(theta * (h @ g)).sum())
    assert score(net, (x, y), ["grasp"])["grasp"] == pytest.approx(expected, rel=1e-4, abs=1e-8)


def test_fisher_equals_activation_gradient_reference():
    net, (x, y) = mlp(), batch()
    a1 = net[0](x)
    a2 = net[2](torch.relu(a1))
    a1.retain_grad(), a2.retain_grad()
    F.cross_entropy(a2, y).backward()
    # zero-cost-nas gives each output channel's value to its fan_in weights before summing
    fan_in = (net[0].in_features, net[2].in_features)
    expected = sum(n * float((0.5 * (a.detach() * a.grad).pow(2).mean(0)).sum())
                   for n, a in zip(fan_in, (a1, a2)))
    net.zero_grad(set_to_none=True)
    assert score(net, (x, y), ["fisher"])["fisher"] == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------- data-free
def test_synflow_of_linear_chain_by_hand():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False))
    w1 = np.abs(net[0].weight.detach().numpy().astype(np.float64))
    w2 = np.abs(net[1].weight.detach().numpy().astype(np.float64))
    # R = 1^T |W2| |W1| 1; each layer's sum of |w dR/dw| equals R (R is linear in each layer)
    r = float((w2 @ w1 @ np.ones(3))[0])
    out = score(net, None, ["synflow"], input_shape=(3,))
    assert out["synflow"] == pytest.approx(math.log(2 * r), rel=1e-12)
    # scalar chain: the product of absolute weights
    chain = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in range(3)))
    ws = [-0.5, 2.0, 3.0]
    with torch.no_grad():
        for m, w in zip(chain, ws):
            m.weight.fill_(w)
    assert score(chain, None, ["synflow"], input_shape=(1,))["synflow"] == pytest.approx(
        math.log(3 * 0.5 * 2.0 * 3.0))
    assert [float(m.weight.detach()) for m in chain] == ws  # signs restored
    assert all(m.weight.dtype == torch.float32 for m in chain)


def test_synflow_bypasses_batchnorm():
    torch.manual_seed(0)
    plain_net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False))
    with_bn = nn.Sequential(plain_net[0], nn.BatchNorm1d(2), plain_net[1])
    a = score(plain_net, None, ["synflow"], input_shape=(3,))["synflow"]
    b = score(with_bn, None, ["synflow"], input_shape=(3,))["synflow"]
    assert a == pytest.approx(b)


def test_params_flops_l2_norm_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 6, 1, groups=2, bias=False), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(6, 2))
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 0, 1])
    out = score(net, (x, y), ["params", "flops", "l2_norm"])
    assert out["params"] * 1e6 == pytest.approx(3 * 4 * 9 + 4 + 8 + 6 * 2 + 6 * 2 + 2)
    assert out["flops"] * 1e6 == pytest.approx(64 * 4 * 3 * 9 + 64 * 6 * 2 + 6 * 2)
    layers = [net[0], net[3], net[6]]
    assert out["l2_norm"] == pytest.approx(sum(float(m.weight.norm()) for m in layers), rel=1e-6)


def test_zen_is_log_linear_in_the_perturbation_for_a_linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 3, bias=False))
    z1 = score(net, None, ["zen"], input_shape=(4,), settings=ProxySettings(zen_mixup=0.01))
    z2 = score(net, None, ["zen"], input_shape=(4,), settings=ProxySettings(zen_mixup=0.02))
    assert z2["zen"] - z1["zen"] == pytest.approx(math.log(2.0), abs=1e-4)


def test_linear_regions_counts_hinge_intervals():
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.copy_(torch.tensor([0.5, 0.0, -0.5]))  # hinges at x = -0.5, 0, 0.5
        net[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        net[2].bias.fill_(-0.25)  # second ReLU input relu(x + 0.5) - 0.25 > 0 iff x > -0.25
    # 256 Gaussian inputs hit every interval (the smallest, (-0.5, -0.25), has mass ~0.09).
    # Per layer (default): 4 patterns in the first ReLU, 2 in the second -> log 4 + log 2.
    lr = score(net, None, ["linear_regions"], input_shape=(1,))["linear_regions"]
    assert lr == pytest.approx(math.log(4) + math.log(2))
    # Whole network (TE-NAS's count): hinges -0.5, -0.25, 0, 0.5 -> 5 regions.
    whole = ProxySettings(lr_count="network")
    assert score(net, None, ["linear_regions"], input_shape=(1,),
                 settings=whole)["linear_regions"] == 5.0
    with pytest.raises(ProxyError, match="'regions'"):
        score(net, None, ["linear_regions"], input_shape=(1,),
              settings=ProxySettings(lr_count="regions"))


def test_linear_regions_defaults_separate_nb201_cells():
    """Issue 18: with the old defaults (whole-network patterns of 256 inputs of 3x3) every
    NB201 cell scored 256. Per-layer counting on 2x2 inputs separates cells."""
    space = NB201Space()
    cells = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
             "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|"]
    values = []
    for text in cells:
        torch.manual_seed(0)
        net = space.build(space.parse(text), 10, C=4, N=1)
        values.append(score(net, None, ["linear_regions"], input_shape=(3, 32, 32))["linear_regions"])
    assert len(set(values)) == 3, values
    assert values[0] > values[1]  # more ReLU layers, each with its own patterns


# ----------------------------------------------------------------------------- batch proxies
def test_nwot_equals_numpy_log_det():
    net, (x, y) = mlp(), batch()
    pre = net[0](x).detach().numpy()
    c = (pre > 0).astype(np.float64)
    k = c @ c.T + (1 - c) @ (1 - c).T
    expected = np.linalg.slogdet(k)[1]
    out, notes = score_with_notes(net, (x, y), ["nwot"])
    if np.linalg.slogdet(k)[0] == 0:
        assert out["nwot"] == -math.inf and "singular" in notes["nwot"]
    else:
        assert out["nwot"] == pytest.approx(expected, rel=1e-9)


def input_jacobians(net, x):
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2 = net[2].weight.detach().numpy()
    xs = x.numpy()
    # d sum(out_i) / d x_i = W1^T diag(1[pre_i > 0]) W2^T 1
    return np.stack([w1.T @ (((w1 @ xi + b1) > 0) * (w2.T @ np.ones(w2.shape[0]))) for xi in xs])


def test_jacov_equals_numpy_reference():
    net, (x, y) = mlp(), batch()
    v = np.linalg.eigvalsh(np.corrcoef(input_jacobians(net, x).astype(np.float64)))
    expected = -np.sum(np.log(v + 1e-5) + 1 / (v + 1e-5))
    assert score(net, (x, y), ["jacov"])["jacov"] == pytest.approx(expected, rel=1e-4)


def test_epe_nas_equals_numpy_reference():
    # the EPE-NAS authors' scoring (also NAS-Bench-Suite-Zero's): up to 100 classes, the sum of
    # |s_c| over the classes of the batch, s_c = sum log(|corr of class c's input gradients| + k)
    net, (x, y) = mlp(), batch(n=12, seed=4)
    j = input_jacobians(net, x).astype(np.float64)
    labels = y.numpy()
    s = {}
    for c in sorted(set(labels.tolist())):
        corr = np.atleast_2d(np.corrcoef(j[labels == c]))
        s[c] = np.sum(np.log(np.abs(corr) + 1e-5))
    expected = sum(abs(v) for v in s.values())
    assert score(net, (x, y), ["epe_nas"])["epe_nas"] == pytest.approx(expected, rel=1e-4)


def test_epe_nas_over_100_classes_uses_the_pairwise_spread():
    # more than 100 outputs: s_c divided by class c's example count, then sum_{c,c'} |s_c -
    # s_c'| / #classes; a class with a single example is left out (the authors' code skips it)
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 101))
    g = torch.Generator().manual_seed(7)
    x = torch.randn(13, 4, generator=g)
    y = torch.tensor([3] * 4 + [50] * 5 + [100] * 3 + [7])  # class 7: one example
    j = input_jacobians(net, x).astype(np.float64)
    labels = y.numpy()
    s = {}
    for c in (3, 50, 100):
        rows = j[labels == c]
        s[c] = np.sum(np.log(np.abs(np.corrcoef(rows)) + 1e-5)) / len(rows)
    expected = sum(abs(s[a] - s[b]) for a in s for b in s) / len(s)
    assert score(net, (x, y), ["epe_nas"])["epe_nas"] == pytest.approx(expected, rel=1e-4)


def test_ntk_equals_per_example_gradient_loop():
    net, (x, y) = mlp(), batch()
    k = 6
    rows = []
    for i in range(k):
        ref = copy.deepcopy(net)
        ref(x[:k])[i].sum().backward()
        rows.append(torch.cat([ref[0].weight.grad.flatten(), ref[2].weight.grad.flatten()]))
    j = torch.stack(rows).double().numpy()
    ev = np.linalg.eigvalsh(j @ j.T)
    out = score(net, (x, y), ["ntk"], settings=ProxySettings(ntk_samples=k))
    assert out["ntk"] == pytest.approx(-ev[-1] / ev[0], rel=1e-3)


# ----------------------------------------------------------------------------- contracts
def small_nb201(seed: int = 0):
    space = NB201Space()
    arch = space.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+"
                       "|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    torch.manual_seed(seed)
    return space, arch, space.build(arch, C=4, N=1)


def nb201_batch(n: int = 6, size: int = 8):
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_all_proxies_deterministic_and_state_unchanged():
    space, arch, net = small_nb201()
    # non-default running statistics, mixed modes and an existing gradient must all survive
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    net.eval()
    net.cells.train()
    net.classifier.weight.grad = torch.ones_like(net.classifier.weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    b = nb201_batch()
    settings = ProxySettings(ntk_samples=4, lr_samples=32)
    out1, notes = score_with_notes(net, b, ALL, seed=7, settings=settings)
    out2 = score(net, b, ALL, seed=7, settings=settings)
    assert set(out1) == set(ALL)
    assert all(math.isfinite(v) for v in out1.values()), notes
    assert out1 == out2
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype
               for k in before)
    assert [m.training for m in net.modules()] == modes
    assert torch.equal(net.classifier.weight.grad, torch.ones_like(net.classifier.weight))
    assert all(p.grad is None for n, p in net.named_parameters() if n != "classifier.weight")
    # one call for all == each proxy alone (shared passes change nothing)
    alone = {p: score(net, b, [p], seed=7, settings=settings)[p] for p in ALL}
    for p in ALL:
        assert out1[p] == pytest.approx(alone[p], rel=1e-5, abs=1e-9), p
    flops, params = space.cost(arch, (3, 8, 8), C=4, N=1)
    assert out1["flops"] == pytest.approx(flops) and out1["params"] == pytest.approx(params)


def test_seed_changes_data_free_random_proxies():
    _, _, net = small_nb201()
    b = nb201_batch()
    assert score(net, b, ["zen"], seed=0)["zen"] != score(net, b, ["zen"], seed=1)["zen"]


def test_first_batch_accepts_pairs_and_iterables():
    x, y = nb201_batch()
    assert first_batch((x, y))[0] is x
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    assert first_batch(loader)[0].shape == (4, 3, 8, 8)
    with pytest.raises(ProxyError, match="empty"):
        first_batch([])


def test_bad_input_raises_clear_errors():
    _, _, net = small_nb201()
    x, y = nb201_batch()
    with pytest.raises(ProxyError, match="unknown proxy 'sinflow'"):
        score(net, (x, y), ["sinflow"])
    with pytest.raises(ProxyError, match="no parameters"):
        score(nn.Sequential(nn.ReLU()), (x, y), ["snip"])
    with pytest.raises(ProxyError, match=r"rejected inputs of shape \(6, 1, 8, 8\)"):
        score(net, (x[:, :1], y), ["snip"])
    with pytest.raises(ProxyError, match="targets"):
        score(net, (x, y[:3]), ["snip"])
    with pytest.raises(ProxyError, match=r"lie in \[0, 10\)"):
        score(net, (x, y + 10), ["snip"])
    with pytest.raises(ProxyError, match="need a batch"):
        score(net, None, ["snip"])
    with pytest.raises(ProxyError, match="input_shape"):
        score(net, None, ["synflow"])
    assert issubclass(ProxyError, NasrankError)


def test_fisher_gives_each_channel_to_its_weights_like_zero_cost_nas():
    # the published measure: per output channel 0.5 * mean_batch (sum_spatial a * dL/da)^2,
    # broadcast over that channel's weights (grouped conv: in_channels / groups * kh * kw), summed
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 5 * 5, 3))
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(7, 4, 5, 5, generator=g), torch.randint(0, 3, (7,), generator=g)
    a1 = net[0](x)
    a2 = net[3](net[2](torch.relu(a1)))
    a1.retain_grad(), a2.retain_grad()
    F.cross_entropy(a2, y).backward()
    expected = 0.0
    for layer, a in ((net[0], a1), (net[3], a2)):
        prod = a.detach() * a.grad
        per_channel = prod.flatten(2).sum(2) if prod.dim() > 2 else prod
        del_k = 0.5 * per_channel.pow(2).mean(0)
        view = (-1,) + (1,) * (layer.weight.dim() - 1)
        expected += float((torch.ones_like(layer.weight) * del_k.view(view)).sum())
    net.zero_grad(set_to_none=True)
    assert score(net, (x, y), ["fisher"])["fisher"] == pytest.approx(expected, rel=1e-5)
