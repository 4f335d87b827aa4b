"""The search-space protocol shared by every space (see docs/architecture.md, "Core types").

A space owns everything that depends on what an architecture *is*: parsing, canonical keys,
random sampling and variation, the graph seen by the predictor, the network built for training,
and its cost. Spaces know nothing about predictors or search.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # annotations only: importing the protocol imports no torch
    import torch
    from torch import nn
    from torch_geometric.data import Data

Arch = Hashable  # every space's architecture type is an immutable, hashable value


@runtime_checkable
class SearchSpace(Protocol):
    """What nasrank needs from a search space.

    Attributes:
        name: short identifier stored in label tables and checkpoints (``"nb201"``...).
        node_feature_dim: width of ``to_graph(arch).x``.
        max_nodes: largest number of graph nodes of any architecture (sets DGCNN's sort-pool k).
        hparam_dim: width of ``hparams(arch)`` (0 when the space has none).
        size: number of architectures, or ``None`` when not enumerable.
    """

    name: str
    node_feature_dim: int
    max_nodes: int
    hparam_dim: int
    size: int | None

    def sample(self, rng: np.random.Generator) -> Arch: ...
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch: ...
    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch: ...
    def parse(self, text: str) -> Arch: ...
    def format(self, arch: Arch) -> str: ...
    def key(self, arch: Arch) -> str: ...
    def to_graph(self, arch: Arch) -> Data: ...
    def hparams(self, arch: Arch) -> torch.Tensor: ...
    def build(self, arch: Arch, num_classes: int = 10, **kwargs: Any) -> nn.Module: ...
    def cost(self, arch: Arch, input_shape: Sequence[int] = (3, 32, 32)) -> tuple[float, float]: ...
    def enumerate(self) -> Iterator[Arch]: ...
    def choices(self) -> dict[str, list[Any]]: ...
    def to_choices(self, arch: Arch) -> dict[str, Any]: ...
    def from_choices(self, params: dict[str, Any]) -> Arch: ...


def sample_unique(
    space: SearchSpace, n: int, rng: np.random.Generator, *, exclude: set[str] | None = None,
    max_tries_factor: int = 50,
) -> list[Arch]:
    """Sample ``n`` architectures with distinct canonical keys (and not in ``exclude``).

    Raises :class:`~nasrank.errors.NasrankError` when the space cannot supply that many.
    """
    from nasrank.errors import NasrankError

    seen = set(exclude or ())
    out: list[Arch] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > max_tries_factor * max(n, 1) + 1000:
            raise NasrankError(
                f"could only sample {len(out)} distinct architectures of the {n} asked for "
                f"from space {space.name!r}"
            )
        arch = space.sample(rng)
        k = space.key(arch)
        if k in seen:
            continue
        seen.add(k)
        out.append(arch)
    return out
