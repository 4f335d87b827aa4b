"""The MBConv chain network (:mod:`nasrank.spaces.mbconv`; structure in its docstring)."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from nasrank.errors import ConfigError, InvalidArchitectureError

from ..mbconv import SKIP, LayerSpec, MBConvArch, MBConvSpace, op_shape


class MBConv(nn.Module):
    """MobileNetV2 inverted residual block (module docstring): ``expand``, ``depthwise``,
    ``project``; adds the input when stride is 1 and width is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.expand = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden,
                      bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


def make_layer_op(op: str, spec: LayerSpec) -> nn.Module:
    """The module of ``op`` (an MBConv op or ``"skip"``) at layer ``spec``."""
    if op == SKIP:
        if not spec.skippable:
            raise InvalidArchitectureError(
                f"layer {spec.index + 1} of stage {spec.stage + 1} is not skippable")
        return nn.Identity()
    kernel, expansion = op_shape(op)
    return MBConv(spec.c_in, spec.c_out, kernel, expansion, spec.stride)


def add_skeleton(net: nn.Module, space: MBConvSpace, *, num_classes: int, in_channels: int) -> None:
    """Give ``net`` the stem, head, pooling and classifier of ``space``'s network. Shared by
    the stand-alone network and the supernet so both keep identical names and shapes."""
    for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigError(f"mbconv network {name} must be an int >= 1, got {v!r}")
    num_classes, in_channels = int(num_classes), int(in_channels)
    net.stem = nn.Sequential(
        nn.Conv2d(in_channels, space.stem, 3, padding=1, bias=False),
        nn.BatchNorm2d(space.stem), nn.ReLU())
    last = space.widths[-1]
    net.head = nn.Sequential(
        nn.Conv2d(last, space.head, 1, bias=False), nn.BatchNorm2d(space.head), nn.ReLU())
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(space.head, num_classes)


class MBConvNetwork(nn.Module):
    """The stand-alone network of one architecture (structure in the module docstring)."""

    def __init__(self, space: MBConvSpace, arch: MBConvArch, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.arch = space.check(arch)
        add_skeleton(self, space, num_classes=num_classes, in_channels=in_channels)
        self.blocks = nn.ModuleList(
            make_layer_op(op, spec) for op, spec in zip(self.arch.layers, space.layer_plan()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(torch.flatten(self.pool(self.head(x)), 1))
