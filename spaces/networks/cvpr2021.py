"""The CVPR 2021 track-1 ResNet-20 (:mod:`nasrank.spaces.cvpr2021`; structure in its docstring)."""

from __future__ import annotations

import torch
from torch import nn

from ..cvpr2021 import NUM_POSITIONS, BlockSpec, CVPR2021Arch, block_plan


class BasicBlock(nn.Module):
    """ResNet basic block; attribute names are part of the public structure (module docstring)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.conv1 = nn.Conv2d(spec.c_in, spec.c_mid, 3, stride=spec.stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.c_mid)
        self.conv2 = nn.Conv2d(spec.c_mid, spec.c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(spec.c_out)
        self.shortcut: nn.Module = (
            nn.Sequential(
                nn.Conv2d(spec.c_in, spec.c_out, 1, stride=spec.stride, bias=False),
                nn.BatchNorm2d(spec.c_out),
            )
            if spec.projection else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CVPR2021ResNet(nn.Module):
    """CIFAR ResNet-20 with the widths of ``arch`` (structure in the module docstring)."""

    def __init__(self, arch: CVPR2021Arch, num_classes: int = 100, in_channels: int = 3) -> None:
        super().__init__()
        self.arch = arch
        c1 = arch.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU()
        )
        self.blocks = nn.ModuleList(BasicBlock(spec) for spec in block_plan(arch))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(arch.widths[NUM_POSITIONS - 2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(torch.flatten(self.pool(x), 1))
