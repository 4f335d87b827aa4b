"""The NAS-Bench-201 network (:mod:`nasrank.spaces.nb201`): cell, macro skeleton, edge ops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasrank.errors import InvalidArchitectureError

from ..nb201 import NUM_NODES, OPS, NB201Arch


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class _BoxSum3x3(torch.autograd.Function):
    """Depthwise 3x3 box sum with zero padding 1: ``conv2d(x, ones, padding=1, groups=C)``.

    The box sum is its own adjoint (symmetric kernel, same padding), so the backward pass is
    the same op on the gradient, called through ``apply`` and hence differentiable again.
    Written as a Function because torch's double backward of a grouped convolution loops over
    the groups (one convolution per channel): GraSP's Hessian-vector product through NB201's
    average pools took ~560 convolutions per network (BENCHMARKS.md, issue 16 (c))."""

    generate_vmap_rule = True  # torch.func.vmap: forward is plain torch ops

    @staticmethod
    def forward(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, padding=1, groups=x.shape[-3])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[1])  # torch.func transforms need this split from forward
        ctx.save_for_forward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (kernel,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: stay differentiable
            return _BoxSum3x3.apply(grad, kernel), None
        # first order: the box sum straight, no graph (as fast as, or faster than, torch's
        # grouped-convolution backward on the CPU; torch.nn.grad.conv2d_input was 1.3-2.4x slower)
        return _BoxSum3x3.forward(grad, kernel), None

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, kernel_tangent: Any) -> torch.Tensor:
        # forward-mode AD (torch.func.jvp): the op is linear in x, the kernel is a constant
        (kernel,) = ctx.saved_tensors
        return _BoxSum3x3.apply(x_tangent, kernel)


class AvgPool3x3(nn.Module):
    """NB201's ``avg_pool_3x3``, ``nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)``,
    as a depthwise 3x3 box sum (``conv2d`` with a ones kernel) divided by the number of real
    pixels under each window. Same function (tests compare outputs and gradients); written out
    because torch's CPU ``avg_pool2d`` was 3.5-6x slower forward + backward at NB201's sizes and
    took ~40% of a supernet forward pass (BENCHMARKS.md, issue 16). No parameters or buffers, so
    state dicts are those of ``nn.AvgPool2d``."""

    def __init__(self) -> None:
        super().__init__()
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape[-3:]
        key = (c, h, w, x.device, x.dtype)
        if key not in self._constants:
            kernel = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
            ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
            counts = F.conv2d(ones, kernel[:1], padding=1)  # real pixels per window: 4, 6 or 9
            self._constants[key] = (kernel, counts)
        kernel, counts = self._constants[key]
        return _BoxSum3x3.apply(x, kernel) / counts


def make_op(op: str, channels: int) -> nn.Module:
    """The stride-1, width-preserving module of one NB201 edge operation."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if op == "avg_pool_3x3":
        return AvgPool3x3()
    raise InvalidArchitectureError(f"unknown NB201 op {op!r}; expected one of {OPS}")


class NB201Cell(nn.Module):
    """Node j = sum over i < j of op_{i->j}(node i); the cell outputs node 3."""

    def __init__(self, arch: NB201Arch, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for op in arch.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        e = 0
        for j in range(1, NUM_NODES):
            acc = None
            for i in range(j):
                out = self.edges[e](nodes[i])
                acc = out if acc is None else acc + out
                e += 1
            nodes.append(acc)
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NB201's reduction block: a stride-2 ResNet basic block with an avgpool+1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        # ceil_mode keeps the shortcut's size equal to the stride-2 conv's for odd inputs
        # (identical to the official AvgPool2d(2, 2) for even sizes such as 32x32).
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def add_macro_skeleton(
    net: nn.Module, make_cell: Callable[[int], nn.Module], *, num_classes: int, C: int, N: int,
    in_channels: int,
) -> list[nn.Module]:
    """Give ``net`` the NB201 stem, last activation, pooling and classifier, and return the
    body: 3 stages of N cells (``make_cell(width)``, widths C, 2C, 4C) joined by residual
    reduction blocks. Shared by the stand-alone network and the weight-sharing supernet, so the
    two keep identical parameter names and shapes."""
    net.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
    layers: list[nn.Module] = []
    width = C
    for stage in range(3):
        if stage > 0:
            layers.append(ResidualReduction(width, width * 2))
            width *= 2
        layers.extend(make_cell(width) for _ in range(N))
    net.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(width, num_classes)
    return layers


class NB201Network(nn.Module):
    """The NB201 macro skeleton: stem, 3 stages of N cells (widths C, 2C, 4C) joined by
    residual reduction blocks, BN+ReLU, global average pooling, linear classifier."""

    def __init__(
        self, arch: NB201Arch, num_classes: int = 10, C: int = 16, N: int = 5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.cells = nn.Sequential(*add_macro_skeleton(
            self, lambda width: NB201Cell(arch, width), num_classes=num_classes, C=C, N=N,
            in_channels=in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
