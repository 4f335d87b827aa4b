"""Weight-sharing supernet of the MBConv chain space (single path one-shot, one path per layer).

Same skeleton as :class:`~nasrank.spaces.networks.mbconv.MBConvNetwork` (stem, the searchable
layers, head, pooling, classifier; built by the same
:func:`~nasrank.spaces.networks.mbconv.add_skeleton`), but
layer ``i`` holds every candidate: ``blocks[i].ops[o]`` is the module of
``space.layer_plan()[i].choices[o]`` (the six MBConv ops, then ``nn.Identity`` where the layer
may skip). ``forward(x, arch)`` runs one candidate per layer, the same modules in the same order
as the stand-alone network, so :meth:`MBConvSupernet.subnet` only drops the unchosen candidates
from the state dict and the two compute bitwise the same outputs, BatchNorm updates and
gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasrank.errors import InvalidArchitectureError, SpaceMismatchError
from nasrank.spaces.mbconv import LayerSpec, MBConvArch, MBConvSpace
from nasrank.spaces.networks.mbconv import MBConvNetwork, add_skeleton, make_layer_op

from .base import Supernet


class MixedLayer(nn.Module):
    """Every candidate of one layer; ``ops[o]`` is the module of ``spec.choices[o]``."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.ops = nn.ModuleList(make_layer_op(op, spec) for op in spec.choices)


class MBConvSupernet(Supernet):
    """Supernet over every architecture of ``space`` (an :class:`MBConvSpace`)."""

    def __init__(self, space: MBConvSpace | None = None, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        space = MBConvSpace() if space is None else space
        if not isinstance(space, MBConvSpace):
            raise SpaceMismatchError(
                f"MBConvSupernet needs an mbconv space, got {getattr(space, 'name', space)!r}")
        self.space = space
        add_skeleton(self, space, num_classes=num_classes, in_channels=in_channels)
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.blocks = nn.ModuleList(MixedLayer(spec) for spec in space.layer_plan())
        self._index = [{op: o for o, op in enumerate(spec.choices)}
                       for spec in space.layer_plan()]

    # -- interface
    def config(self) -> dict[str, Any]:
        return {"space": self.space.name, "class": type(self).__name__,
                "num_classes": self.num_classes, "in_channels": self.in_channels,
                **self.space.config()}

    def decisions(self) -> list[list[Any]]:
        return [list(spec.choices) for spec in self.space.layer_plan()]

    def arch_from_choices(self, indices: Sequence[int]) -> MBConvArch:
        idx = self.check_choices(indices)
        return self.space._from_layers(
            [spec.choices[i] for spec, i in zip(self.space.layer_plan(), idx)])

    def choices_of(self, arch: MBConvArch) -> list[int]:
        return [index[op] for index, op in zip(self._index, self.check_arch(arch).layers)]

    def check_arch(self, arch: Any) -> MBConvArch:
        return self.space.check(arch)

    def choice_modules(self, decision: int, choice: int) -> list[nn.Module]:
        """The module that runs choice ``choice`` of layer ``decision`` (one position)."""
        if not 0 <= decision < len(self.blocks):
            raise InvalidArchitectureError(
                f"decision point {decision} is out of range 0..{len(self.blocks) - 1}")
        ops = self.blocks[decision].ops
        if not 0 <= choice < len(ops):
            raise InvalidArchitectureError(
                f"choice {choice} at decision point {decision} is out of range 0..{len(ops) - 1}")
        return [ops[choice]]

    def largest_arch(self) -> MBConvArch:
        return self.space.largest()

    def smallest_arch(self) -> MBConvArch:
        return self.space.smallest()

    def forward(self, x: torch.Tensor, arch: MBConvArch) -> torch.Tensor:
        arch = self.check_arch(arch)
        x = self.stem(x)
        for layer, index, op in zip(self.blocks, self._index, arch.layers):
            x = layer.ops[index[op]](x)
        return self.classifier(torch.flatten(self.pool(self.head(x)), 1))

    def cost(self, arch: MBConvArch, input_shape: Sequence[int]) -> tuple[float, float]:
        return self.space.cost(self.check_arch(arch), input_shape, num_classes=self.num_classes)

    def subnet(self, arch: MBConvArch) -> MBConvNetwork:
        """The stand-alone network of ``arch`` with copies of the shared weights and BatchNorm
        statistics (loaded with ``strict=True``: every tensor is accounted for)."""
        arch = self.check_arch(arch)
        net = MBConvNetwork(self.space, arch, self.num_classes, in_channels=self.in_channels)
        chosen = self.choices_of(arch)
        state = {}
        for key, value in self.state_dict().items():
            parts = key.split(".")
            # blocks.<i>.ops.<o>.<rest>  ->  blocks.<i>.<rest> for the chosen o
            if parts[0] == "blocks":
                if int(parts[3]) != chosen[int(parts[1])]:
                    continue
                key = ".".join(parts[:2] + parts[4:])
            state[key] = value.detach().clone()
        net.load_state_dict(state, strict=True)
        return net.to(next(self.parameters()).device)


# ----------------------------------------------------------------------------- registry entry
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import MBConvSupernetConfig  # noqa: E402, F401
