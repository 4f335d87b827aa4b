"""Hand-written double backwards of conv2d and batch norm (GraSP's Hessian-vector product) against
torch's own generic double backward, in float64 (issue 16)."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasrank.supernet.double_backward import FastDoubleBackward

D = torch.float64


def _hvp(fn, params, fast: bool):
    """Gradient and Hessian-vector product of a non-quadratic loss of fn() in params."""
    with FastDoubleBackward() if fast else contextlib.nullcontext():
        out = fn()
    loss = (out ** 2).sum() + torch.sin(out).sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(7)
    v = [torch.randn(g.shape, generator=gen, dtype=D) for g in grads]
    z = sum((g * u).sum() for g, u in zip(grads, v))
    return grads, torch.autograd.grad(z, params)


def _close(a, b):
    for u, w in zip(a, b):
        assert torch.allclose(u, w, rtol=1e-10, atol=1e-10), (u - w).abs().max().item()


@pytest.mark.parametrize("stride,padding,dilation,groups,bias", [
    (1, 1, 1, 1, True), (2, 1, 1, 1, False), (1, 0, 1, 1, True), (1, 2, 2, 1, False),
    (2, (1, 0), 1, 2, True), (1, 1, 1, 4, False), ((2, 1), 1, (1, 2), 1, True),
])
def test_conv_double_backward_matches_torch(stride, padding, dilation, groups, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 8, generator=g, dtype=D, requires_grad=True)
    w = torch.randn(8, 4 // groups, 3, 3, generator=g, dtype=D, requires_grad=True)
    b = torch.randn(8, generator=g, dtype=D, requires_grad=True) if bias else None
    w2 = torch.randn(2, 8, 1, 1, generator=g, dtype=D, requires_grad=True)
    params = [p for p in (x, w, b, w2) if p is not None]

    def fn():
        return F.conv2d(torch.tanh(F.conv2d(x, w, b, stride, padding, dilation, groups)), w2)

    g_torch, h_torch = _hvp(fn, params, fast=False)
    g_fast, h_fast = _hvp(fn, params, fast=True)
    _close(g_torch, g_fast)
    _close(h_torch, h_fast)


@pytest.mark.parametrize("affine,running", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dims", [2, 4])
def test_batch_norm_double_backward_matches_torch(affine, running, dims):
    g = torch.Generator().manual_seed(1)
    shape = (6, 5) if dims == 2 else (4, 5, 3, 3)
    x = torch.randn(*shape, generator=g, dtype=D, requires_grad=True)
    gamma = torch.randn(5, generator=g, dtype=D, requires_grad=True) if affine else None
    beta = torch.randn(5, generator=g, dtype=D, requires_grad=True) if affine else None
    scale = torch.randn(*shape[1:], generator=g, dtype=D)
    params = [p for p in (x, gamma, beta) if p is not None]
    stats = {}

    def fn(key):
        rm = torch.zeros(5, dtype=D) if running else None
        rv = torch.ones(5, dtype=D) if running else None
        out = F.batch_norm(torch.sin(x) * 2, rm, rv, gamma, beta, True, 0.3, 1e-3)
        stats[key] = (rm, rv)
        return torch.tanh(out) * scale

    g_torch, h_torch = _hvp(lambda: fn("torch"), params, fast=False)
    g_fast, h_fast = _hvp(lambda: fn("fast"), params, fast=True)
    _close(g_torch, g_fast)
    _close(h_torch, h_fast)
    if running:  # running statistics updated as torch updates them (unbiased variance)
        _close(stats["torch"], stats["fast"])


def test_batch_norm_statistics_by_hand():
    """Forward and first backward against the textbook formulas, not against torch."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, 2, 2, generator=g, dtype=D, requires_grad=True)
    gamma = torch.tensor([1.5, -0.5, 2.0], dtype=D, requires_grad=True)
    with FastDoubleBackward():
        out = F.batch_norm(x, None, None, gamma, None, True, 0.1, 0.0)
    mean = x.detach().mean((0, 2, 3), keepdim=True)
    var = ((x.detach() - mean) ** 2).mean((0, 2, 3), keepdim=True)
    xh = (x.detach() - mean) / var.sqrt()
    assert torch.allclose(out, xh * gamma.detach().view(1, 3, 1, 1), atol=1e-12)
    gy = torch.randn(out.shape, generator=g, dtype=D)
    gx, = torch.autograd.grad(out, x, gy)
    m = gy.mean((0, 2, 3), keepdim=True)
    mx = (gy * xh).mean((0, 2, 3), keepdim=True)
    want = gamma.detach().view(1, 3, 1, 1) / var.sqrt() * (gy - m - xh * mx)
    assert torch.allclose(gx, want, atol=1e-12)


def test_the_mode_routes_only_what_it_handles():
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
    same = nn.Conv2d(3, 4, 3, padding="same")
    with FastDoubleBackward():
        assert type(conv(x).grad_fn).__name__ == "_Conv2dBackward"
        assert type(bn(conv(x)).grad_fn).__name__ == "_BatchNormBackward"
        assert "Convolution" in type(same(x).grad_fn).__name__  # string padding: torch's
        bn.eval()
        assert "_BatchNorm" not in type(bn(conv(x)).grad_fn).__name__  # running statistics
        assert torch.allclose(F.relu(x), x.clamp_min(0))  # anything else: unchanged


def test_third_derivatives_are_refused():
    x = torch.randn(2, 3, 5, 5, dtype=D, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=D, requires_grad=True)
    with FastDoubleBackward():
        out = F.conv2d(x, w)
    gw, = torch.autograd.grad((out ** 2).sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivative"):
        torch.autograd.grad((gw ** 2).sum(), w, create_graph=True)
    hw, = torch.autograd.grad((gw ** 2).sum(), w)  # second order: fine
    assert torch.isfinite(hw).all()


def test_grasp_in_float64_unchanged_by_the_fast_path():
    """score()'s grasp runs under the mode; in float64 it equals torch's generic Hg."""
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.proxies import score

    space = NB201Space()
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|"
                       "nor_conv_3x3~1|nor_conv_3x3~2|")
    torch.manual_seed(0)
    net = space.build(arch).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, 16, 16, generator=g, dtype=D)
    y = torch.randint(0, 10, (8,), generator=g)
    got = score(net, (x, y), ["grasp"], seed=0)["grasp"]
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.train()
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights, create_graph=True)
    z = sum((gr * gr.detach()).sum() for gr in grads)
    hg = torch.autograd.grad(z, weights)
    want = float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg)))
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_double_backwards_on_cuda_match_torch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 4, 9, 9, generator=g, dtype=D).cuda().requires_grad_()
    w = torch.randn(6, 4, 3, 3, generator=g, dtype=D).cuda().requires_grad_()
    gamma = torch.randn(6, generator=g, dtype=D).cuda().requires_grad_()
    w2 = torch.randn(2, 6, 1, 1, generator=g, dtype=D).cuda()

    def fn():
        h = F.batch_norm(F.conv2d(x, w, None, 2, 1), None, None, gamma, None, True)
        return F.conv2d(torch.tanh(h), w2)

    def hvp(fast: bool):
        with FastDoubleBackward() if fast else contextlib.nullcontext():
            out = fn()
        grads = torch.autograd.grad((out ** 2).sum() + torch.sin(out).sum(), [x, w, gamma],
                                    create_graph=True)
        z = sum((gr * torch.ones_like(gr)).sum() for gr in grads)
        return torch.autograd.grad(z, [x, w, gamma])

    _close(hvp(False), hvp(True))
