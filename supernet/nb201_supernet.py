"""Weight-sharing supernet of the NAS-Bench-201 cell space.

Same macro skeleton as :class:`~nasrank.spaces.networks.nb201.NB201Network` (stem, 3 stages of
``N`` cells of widths C, 2C, 4C joined by residual reduction blocks, BN+ReLU, pooling,
classifier), but every cell edge holds all five operations; ``forward(x, arch)`` runs one
operation per edge. The module names mirror ``NB201Network`` so :meth:`NB201Supernet.subnet`
only drops the unchosen ops from the state dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasrank.errors import InvalidArchitectureError
from nasrank.spaces.nb201 import EDGES, NUM_NODES, OPS, NB201Arch, NB201Space
from nasrank.spaces.networks.nb201 import NB201Network, add_macro_skeleton, make_op

from .base import Supernet

_OP_INDEX = {op: i for i, op in enumerate(OPS)}


class MixedEdge(nn.Module):
    """All five NB201 operations of one edge; ``ops[i]`` is ``OPS[i]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(op, channels) for op in OPS)


class SuperCell(nn.Module):
    """A cell whose edges run the ops of the given architecture (same sum order as
    :class:`~nasrank.spaces.networks.nb201.NB201Cell`, so the results are bitwise identical)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(channels) for _ in EDGES)

    def forward(self, x: torch.Tensor, arch: NB201Arch) -> torch.Tensor:
        nodes = [x]
        e = 0
        for j in range(1, NUM_NODES):
            acc = None
            for i in range(j):
                out = self.edges[e].ops[_OP_INDEX[arch.ops[e]]](nodes[i])
                acc = out if acc is None else acc + out
                e += 1
            nodes.append(acc)
        return nodes[-1]


class NB201Supernet(Supernet):
    """Supernet over all 15,625 NB201 cells (arguments as :class:`NB201Network`)."""

    def __init__(
        self, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3
    ) -> None:
        super().__init__()
        for name, v in (("num_classes", num_classes), ("C", C), ("N", N),
                        ("in_channels", in_channels)):
            if int(v) < 1:
                raise InvalidArchitectureError(f"NB201Supernet {name} must be >= 1, got {v!r}")
        self.space = NB201Space()
        self.num_classes, self.C, self.N, self.in_channels = num_classes, C, N, in_channels
        self.cells = nn.ModuleList(add_macro_skeleton(
            self, SuperCell, num_classes=num_classes, C=C, N=N, in_channels=in_channels))

    # -- interface
    def config(self) -> dict[str, Any]:
        return {"space": self.space.name, "class": type(self).__name__,
                "num_classes": self.num_classes, "C": self.C, "N": self.N,
                "in_channels": self.in_channels}

    def decisions(self) -> list[list[Any]]:
        return [list(OPS) for _ in EDGES]

    def arch_from_choices(self, indices: Sequence[int]) -> NB201Arch:
        return NB201Arch(tuple(OPS[i] for i in self.check_choices(indices)))

    def choices_of(self, arch: NB201Arch) -> list[int]:
        return [_OP_INDEX[op] for op in self.check_arch(arch).ops]

    def check_arch(self, arch: Any) -> NB201Arch:
        return self.space._check(arch)

    def largest_arch(self) -> NB201Arch:
        """``nor_conv_3x3`` on every edge: the unique cell of maximal parameters and FLOPs (every
        other op has fewer of both), the "largest" NB201 network PicoNAS's sandwich trainer
        uses as teacher. NB201 widths are fixed, so this is "largest" by cost only."""
        return NB201Arch(("nor_conv_3x3",) * len(EDGES))

    def smallest_arch(self) -> NB201Arch:
        """Refused: the cells of least cost are not one network. ``none``, ``skip_connect``
        and ``avg_pool_3x3`` all have no parameters, and all-``none`` cells compute a
        constant, so "the smallest architecture" of the sandwich rule is undefined here."""
        raise InvalidArchitectureError(
            "NB201 has no smallest architecture: cells made of none/skip_connect/avg_pool_3x3 "
            "all have zero cell parameters (all-none computes a constant); the sandwich rule "
            "needs a space with widths, e.g. the CVPR 2021 channel space")

    def forward(self, x: torch.Tensor, arch: NB201Arch) -> torch.Tensor:
        if not isinstance(arch, NB201Arch):
            arch = self.check_arch(arch)
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, arch) if isinstance(layer, SuperCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def cost(self, arch: NB201Arch, input_shape: Sequence[int]) -> tuple[float, float]:
        return self.space.cost(self.check_arch(arch), input_shape,
                               num_classes=self.num_classes, C=self.C, N=self.N)

    def subnet(self, arch: NB201Arch) -> NB201Network:
        """An :class:`NB201Network` of ``arch`` with copies of the shared weights and BN
        statistics (loaded with ``strict=True``: every tensor of the network is accounted for)."""
        arch = self.check_arch(arch)
        net = NB201Network(arch, self.num_classes, C=self.C, N=self.N,
                           in_channels=self.in_channels)
        chosen = [_OP_INDEX[op] for op in arch.ops]
        state = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            # cells.<k>.edges.<e>.ops.<o>.<rest>  ->  cells.<k>.edges.<e>.<rest> for o chosen
            if len(parts) > 5 and parts[0] == "cells" and parts[2] == "edges" and parts[4] == "ops":
                if int(parts[5]) != chosen[int(parts[3])]:
                    continue
                key = ".".join(parts[:4] + parts[6:])
            state[key] = value.detach().clone()
        net.load_state_dict(state, strict=True)
        return net.to(next(self.parameters()).device)


# ----------------------------------------------------------------------------- registry entry
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import NB201SupernetConfig  # noqa: E402, F401
