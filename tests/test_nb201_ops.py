"""NB201's avg_pool_3x3 written as a box-sum convolution (issue 16) against torch's own
``nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import nasrank.spaces.networks.nb201 as nb201_net
from nasrank.spaces.base import sample_unique
from nasrank.spaces.networks.nb201 import AvgPool3x3
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.weak_labels import generate_weak_labels


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 8, 16, 16), (1, 2, 1, 1), (3, 1, 2, 3), (2, 4, 1, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_sum_pool_equals_torch_avg_pool(shape, dtype):
    ref_pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(*shape, generator=g, dtype=dtype)
    pool = AvgPool3x3()
    out, ref = pool(x), ref_pool(x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    grad, = torch.autograd.grad((out * w).sum(), x)
    grad_ref, = torch.autograd.grad((ref * w).sum(), x)
    torch.testing.assert_close(grad, grad_ref, rtol=tol, atol=tol)
    assert pool(x).shape == ref.shape  # cached constants reused
    assert dict(pool.state_dict()) == {} and list(pool.buffers()) == []


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 3)])
def test_box_sum_pool_second_derivatives(shape):
    # GraSP differentiates the gradient again: numeric check of the double backward, and the
    # Hessian-vector product through a pool inside a nonlinearity equals torch's AvgPool2d's
    g = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
    torch.autograd.gradcheck(AvgPool3x3(), (x,), check_forward_ad=True)  # jvp too (torch.func)
    torch.autograd.gradgradcheck(AvgPool3x3(), (x,))
    v = torch.randn(*shape, generator=g, dtype=torch.float64)
    ref_pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    stacked = torch.stack([x.detach(), v])  # torch.func.vmap over a leading dimension
    torch.testing.assert_close(torch.func.vmap(AvgPool3x3())(stacked), ref_pool(stacked.flatten(0, 1)).view_as(stacked))
    hv = []
    for pool in (AvgPool3x3(), ref_pool):
        (gx,) = torch.autograd.grad(torch.tanh(pool(x ** 2)).sum(), x, create_graph=True)
        hv.append(torch.autograd.grad((gx * v).sum(), x)[0])
    torch.testing.assert_close(hv[0], hv[1], rtol=1e-12, atol=1e-12)


def test_corner_edge_and_inner_windows_by_hand():
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    out = AvgPool3x3()(x)[0, 0]
    assert out[0, 0] == (0 + 1 + 3 + 4) / 4  # corner: 4 real pixels
    assert out[0, 1] == (0 + 1 + 2 + 3 + 4 + 5) / 6  # edge: 6
    assert out[1, 1] == 36 / 9  # inside: 9


def test_nb201_weak_labels_unchanged_by_the_faster_pool(monkeypatch, tmp_path):
    data = load_dataset("digits", seed=0, subset=192, channels=3, image_size=8)
    torch.manual_seed(0)
    net = NB201Supernet(10, C=4, N=1)
    archs = [a for a in sample_unique(net.space, 40, np.random.default_rng(1))
             if "avg_pool_3x3" in a.ops][:4]
    assert len(archs) == 4
    fast = generate_weak_labels(net, archs, data, tmp_path / "fast.csv", bn_batches=2,
                                batch_size=32, progress=False)
    torch.manual_seed(0)
    monkeypatch.setattr(nb201_net, "AvgPool3x3",
                        lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False))
    slow_net = NB201Supernet(10, C=4, N=1)
    assert any(isinstance(m, nn.AvgPool2d) for m in slow_net.modules())
    slow_net.load_state_dict(net.state_dict())
    slow = generate_weak_labels(slow_net, archs, data, tmp_path / "slow.csv", bn_batches=2,
                                batch_size=32, progress=False)
    for key in fast.keys:
        for col in ("ws_acc", "ws_neg_loss"):
            assert abs(fast.row(key)[col] - slow.row(key)[col]) <= 1e-6
