"""NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG on 4 nodes; each of the 6 edges i->j (i < j) carries one of 5 operations. The
official string lists, for node j = 1..3, its input edges from nodes 0..j-1:
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

Canonical key: an operation on an edge that lies on no input->output path of non-``none`` edges
cannot affect the output, so it is replaced by ``none``. This maps the 15,625 cells onto 9,445
distinct functions (the cells that NAS-Bench-Suite-Zero scored). Strictly, a conv on an edge out of
a node that receives nothing still adds its BatchNorm's beta, a constant; like NB201 and
NAS-Bench-Suite-Zero we count such cells as the same function.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrank.errors import InvalidArchitectureError

from nasrank.lazy import lazy_exports

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from .networks.nb201 import NB201Network

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edges (src, dst) in the order of the official string.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_NODES = 4
# Graph node types: input, output, then one per operation.
NODE_TYPES: tuple[str, ...] = ("input", "output") + OPS


@dataclass(frozen=True)
class NB201Arch:
    """One NB201 cell: ``ops[e]`` is the operation on ``EDGES[e]``."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise InvalidArchitectureError(
                f"an NB201 cell has {len(EDGES)} edges, got {len(self.ops)} ops: {self.ops!r}"
            )
        for op in self.ops:
            if op not in OPS:
                raise InvalidArchitectureError(f"unknown NB201 op {op!r}; expected one of {OPS}")

    def __str__(self) -> str:
        return format_arch(self)


def format_arch(arch: NB201Arch) -> str:
    """The official NB201 string of ``arch``."""
    groups, e = [], 0
    for j in range(1, NUM_NODES):
        parts = []
        for i in range(j):
            parts.append(f"{arch.ops[e]}~{i}")
            e += 1
        groups.append("|" + "|".join(parts) + "|")
    return "+".join(groups)


def parse_arch(text: str) -> NB201Arch:
    """Parse the official string; every error names the offending token."""
    if not isinstance(text, str):
        raise InvalidArchitectureError(f"an NB201 architecture must be a string, got {text!r}")
    groups = text.strip().split("+")
    if len(groups) != NUM_NODES - 1:
        raise InvalidArchitectureError(
            f"NB201 string {text!r} has {len(groups)} node groups separated by '+', expected 3"
        )
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise InvalidArchitectureError(
                f"node group {group!r} of {text!r} must look like |op~0|op~1|"
            )
        tokens = group[1:-1].split("|")
        if len(tokens) != j:
            raise InvalidArchitectureError(
                f"node {j} group {group!r} of {text!r} has {len(tokens)} edges, expected {j}"
            )
        for i, tok in enumerate(tokens):
            op, sep, src = tok.partition("~")
            if not sep or src != str(i):
                raise InvalidArchitectureError(
                    f"edge token {tok!r} in {text!r}: expected '<op>~{i}'"
                )
            if op not in OPS:
                raise InvalidArchitectureError(
                    f"unknown op {op!r} in token {tok!r} of {text!r}; expected one of {OPS}"
                )
            ops.append(op)
    return NB201Arch(tuple(ops))


def canonicalize(arch: NB201Arch) -> NB201Arch:
    """Replace ops on edges that lie on no input->output path by ``none``."""
    active = [op != "none" for op in arch.ops]
    fwd = {0}
    for j in range(1, NUM_NODES):  # edges only go forward, so one pass in node order suffices
        if any(active[e] and s in fwd for e, (s, d) in enumerate(EDGES) if d == j):
            fwd.add(j)
    bwd = {NUM_NODES - 1}
    for i in range(NUM_NODES - 2, -1, -1):
        if any(active[e] and d in bwd for e, (s, d) in enumerate(EDGES) if s == i):
            bwd.add(i)
    ops = tuple(
        op if active[e] and s in fwd and d in bwd else "none"
        for e, ((s, d), op) in enumerate(zip(EDGES, arch.ops))
    )
    return NB201Arch(ops)


# ----------------------------------------------------------------------------- network
# the torch modules live in spaces/networks/ (imported when a network is built); the old
# names stay importable from here
__getattr__ = lazy_exports(globals(), dict.fromkeys((
    "ReLUConvBN", "Zero", "make_op", "NB201Cell", "ResidualReduction", "add_macro_skeleton",
    "NB201Network"), "networks.nb201"))


# ----------------------------------------------------------------------------- space
class NB201Space:
    """The NAS-Bench-201 cell space (see module docstring)."""

    name = "nb201"
    node_feature_dim = len(NODE_TYPES)
    max_nodes = len(EDGES) + 2
    hparam_dim = 0
    size = len(OPS) ** len(EDGES)

    # -- strings and keys
    def parse(self, text: str) -> NB201Arch:
        return parse_arch(text)

    def format(self, arch: NB201Arch) -> str:
        return format_arch(self._check(arch))

    def key(self, arch: NB201Arch) -> str:
        """Canonical key: the official string of the canonical representative."""
        return format_arch(canonicalize(self._check(arch)))

    def canonical(self, arch: NB201Arch) -> NB201Arch:
        return canonicalize(self._check(arch))

    def _check(self, arch: Any) -> NB201Arch:
        if isinstance(arch, str):
            return parse_arch(arch)
        if not isinstance(arch, NB201Arch):
            raise InvalidArchitectureError(
                f"expected an NB201 architecture (NB201Arch or its string), got {arch!r}"
            )
        return arch

    # -- sampling and variation
    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return NB201Arch(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))

    def mutate(self, arch: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Change one edge's op so that the canonical key changes (retries up to 100 draws,
        then accepts a raw change; every cell has a neighbour with another key)."""
        arch = self._check(arch)
        old_key = self.key(arch)
        child = arch
        for _ in range(100):
            e = int(rng.integers(len(EDGES)))
            choices = [op for op in OPS if op != arch.ops[e]]
            ops = list(arch.ops)
            ops[e] = choices[int(rng.integers(len(choices)))]
            child = NB201Arch(tuple(ops))
            if self.key(child) != old_key:
                return child
        return child

    def crossover(self, a: NB201Arch, b: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Uniform crossover: each edge's op from ``a`` or ``b`` with probability 1/2."""
        a, b = self._check(a), self._check(b)
        pick = rng.random(len(EDGES)) < 0.5
        return NB201Arch(tuple(x if p else y for x, y, p in zip(a.ops, b.ops, pick)))

    def neighbours(self, arch: NB201Arch) -> list[NB201Arch]:
        """All 24 cells that differ from ``arch`` on exactly one edge."""
        arch = self._check(arch)
        out = []
        for e in range(len(EDGES)):
            for op in OPS:
                if op != arch.ops[e]:
                    ops = list(arch.ops)
                    ops[e] = op
                    out.append(NB201Arch(tuple(ops)))
        return out

    def enumerate(self) -> Iterator[NB201Arch]:
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield NB201Arch(ops)

    # -- Optuna-style categorical choices
    def choices(self) -> dict[str, list[Any]]:
        return {f"edge_{s}_{d}": list(OPS) for s, d in EDGES}

    def to_choices(self, arch: NB201Arch) -> dict[str, Any]:
        arch = self._check(arch)
        return {f"edge_{s}_{d}": op for (s, d), op in zip(EDGES, arch.ops)}

    def from_choices(self, params: dict[str, Any]) -> NB201Arch:
        try:
            return NB201Arch(tuple(params[f"edge_{s}_{d}"] for s, d in EDGES))
        except KeyError as err:
            raise InvalidArchitectureError(
                f"missing NB201 choice {err.args[0]!r} in {params!r}"
            ) from None

    # -- predictor features
    def to_graph(self, arch: NB201Arch) -> Data:
        """Ops-on-nodes DAG of the canonical cell: node 0 = input, nodes 1..6 = the edges' ops
        (in official order), node 7 = output; one-hot node types. ``none`` nodes stay (so every
        graph has 8 nodes) but carry no edges."""
        import torch
        from torch_geometric.data import Data

        arch = canonicalize(self._check(arch))
        n = len(EDGES) + 2
        x = torch.zeros(n, len(NODE_TYPES))
        x[0, NODE_TYPES.index("input")] = 1
        x[n - 1, NODE_TYPES.index("output")] = 1
        src, dst = [], []
        for e, ((s, d), op) in enumerate(zip(EDGES, arch.ops)):
            x[e + 1, NODE_TYPES.index(op)] = 1
            if op == "none":
                continue
            if s == 0:
                src.append(0), dst.append(e + 1)
            for e2, ((s2, d2), op2) in enumerate(zip(EDGES, arch.ops)):
                if d2 == s and op2 != "none":
                    src.append(e2 + 1), dst.append(e + 1)
            if d == NUM_NODES - 1:
                src.append(e + 1), dst.append(n - 1)
        edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
        return Data(x=x, edge_index=edge_index, num_nodes=n)

    def hparams(self, arch: NB201Arch) -> torch.Tensor:
        import torch

        return torch.zeros(0)

    # -- networks and cost
    def build(
        self, arch: NB201Arch, num_classes: int = 10, *, C: int = 16, N: int = 5,
        in_channels: int = 3, **_: Any,
    ) -> NB201Network:
        from .networks.nb201 import NB201Network

        return NB201Network(self._check(arch), num_classes, C=C, N=N, in_channels=in_channels)

    def cost(
        self, arch: NB201Arch, input_shape: Sequence[int] = (3, 32, 32), *,
        num_classes: int = 10, C: int = 16, N: int = 5,
    ) -> tuple[float, float]:
        """Exact (FLOPs, params) of :class:`NB201Network`, both in millions.

        Convention: FLOPs = multiply-accumulates of every convolution and linear layer for one
        input (BatchNorm, ReLU, pooling and additions not counted). Params = every parameter,
        BatchNorm affine and classifier bias included (NB201's own ``params`` convention).
        """
        arch = self._check(arch)
        c_in, h, w = (int(v) for v in input_shape)
        params = c_in * C * 9 + 2 * C
        flops = h * w * c_in * C * 9
        width = C
        for stage in range(3):
            if stage > 0:
                new = 2 * width
                h2, w2 = (h + 1) // 2, (w + 1) // 2
                params += width * new * 9 + 2 * new + new * new * 9 + 2 * new + width * new
                flops += h2 * w2 * (width * new * 9 + new * new * 9 + width * new)
                width, h, w = new, h2, w2
            for op in arch.ops:
                if op in ("nor_conv_1x1", "nor_conv_3x3"):
                    k = 1 if op == "nor_conv_1x1" else 9
                    params += N * (width * width * k + 2 * width)
                    flops += N * h * w * width * width * k
        params += 2 * width + width * num_classes + num_classes
        flops += width * num_classes
        return flops / 1e6, params / 1e6


# ----------------------------------------------------------------------------- registry entry
from nasrank.registry import Config  # noqa: E402  (entry below; the space above stays first)
from nasrank.spaces.registry import SPACES  # noqa: E402


@SPACES.register("nb201")
@dataclass(frozen=True)
class NB201Config(Config):
    """NAS-Bench-201 cell: 6 edges x 5 ops (15,625 cells, 9,445 distinct functions)."""

    def build(self) -> NB201Space:
        return NB201Space()
