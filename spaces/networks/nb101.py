"""The NAS-Bench-101 network (:mod:`nasrank.spaces.nb101`): cells and macro skeleton."""

from __future__ import annotations

import torch
from torch import nn

from ..nb101 import CONV1X1, CONV3X3, NB101Arch, prune, vertex_channels


class ConvBNReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )


class NB101Cell(nn.Module):
    """One cell of a pruned spec: ``vertex t = op_t(sum of truncated predecessors + 1x1
    projections of the cell input)``; the output concatenates the interior vertices feeding it
    and adds a projection of the input when input->output is an edge."""

    def __init__(self, arch: NB101Arch, c_in: int, c_out: int) -> None:
        super().__init__()
        self.matrix = arch.matrix
        n = arch.num_vertices
        self.channels = vertex_channels(c_in, c_out, arch.matrix)
        self.ops = nn.ModuleList()
        self.proj = nn.ModuleDict()  # str(t) -> 1x1 projection of the cell input into vertex t
        for t in range(1, n):
            if arch.matrix[0][t]:
                self.proj[str(t)] = ConvBNReLU(c_in, self.channels[t], 1)
        for t in range(1, n - 1):
            c = self.channels[t]
            op = arch.ops[t]
            self.ops.append(
                ConvBNReLU(c, c, 3) if op == CONV3X3 else ConvBNReLU(c, c, 1) if op == CONV1X1
                else nn.MaxPool2d(3, stride=1, padding=1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.matrix)
        m = self.matrix
        values: list[torch.Tensor] = [x]
        for t in range(1, n - 1):
            c = self.channels[t]
            # predecessors have >= c channels (at most 1 more): keep the first c, as TF does
            inputs = [values[s][:, :c] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                inputs.append(self.proj[str(t)](x))
            values.append(self.ops[t - 1](sum(inputs[1:], inputs[0])))
        concat = [values[t] for t in range(1, n - 1) if m[t][n - 1]]
        if not concat:
            return self.proj[str(n - 1)](x)
        out = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)
        if m[0][n - 1]:
            out = out + self.proj[str(n - 1)](x)
        return out


class NB101Network(nn.Module):
    """The NB101 macro skeleton: ``stem`` (conv3x3 + BN + ReLU), ``stacks[s]`` (a max pool
    before every stack but the first, then ``num_cells`` cells), global average ``pool``,
    ``classifier``."""

    def __init__(
        self, arch: NB101Arch, num_classes: int = 10, *, stem_channels: int = 128,
        num_stacks: int = 3, num_cells: int = 3, in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.arch = arch = prune(arch)
        self.stem = ConvBNReLU(in_channels, stem_channels, 3)
        stacks = []
        c_in = c = stem_channels
        for s in range(num_stacks):
            layers: list[nn.Module] = []
            if s > 0:
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))  # TF 'same' pooling
                c *= 2
            for _ in range(num_cells):
                layers.append(NB101Cell(arch, c_in, c))
                c_in = c
            stacks.append(nn.Sequential(*layers))
        self.stacks = nn.Sequential(*stacks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stacks(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))
