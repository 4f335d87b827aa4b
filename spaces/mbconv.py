"""MBConv chain space (ProxylessNAS / SPOS style, the space EnNAS searches).

The network is a chain: a stem, ``L = sum(depths)`` searchable layers grouped in stages, a head.

* ``net.stem``: ``Sequential(Conv2d(in, stem, 3, stride 1, pad 1, no bias), BatchNorm2d, ReLU)``;
* ``net.blocks[i]`` for layer i = 0..L-1: an :class:`MBConv` (MobileNetV2 inverted residual:
  1x1 expand conv to ``e * c_in`` + BN + ReLU, ``k x k`` depthwise conv + BN + ReLU, 1x1
  project conv + BN; a residual sum when the layer keeps width and resolution), or
  ``nn.Identity()`` for a skipped layer;
* ``net.head``: ``Sequential(Conv2d(widths[-1], head, 1, no bias), BatchNorm2d, ReLU)``, then
  ``net.pool`` (global average pooling) and ``net.classifier``: ``Linear(head, num_classes)``.

Stage ``s`` has ``depths[s]`` layers of output width ``widths[s]``; its first layer has stride
``strides[s]`` and takes the previous stage's width (the stem's for stage 0). Every layer picks
one of the six MBConv ops ``k{3,5,7}e{3,6}`` (kernel x expansion ratio); every layer except the
first of its stage may instead be ``skip`` (identity). The first layer of a stage is never
skippable (ProxylessNAS): it usually changes width or resolution, and it keeps every stage
non-empty. ReLU rather than ReLU6, so the ReLU-based zero-cost proxies see every activation.

Default sizes (small enough for the CPU): stem 16, widths 16/24/32/64, depths 2/3/3/2
(10 layers), strides 1/2/2/2, head 128. Any input size (stride-2 layers give ``ceil(h / 2)``),
input channels and class count.

String format: the stages separated by ``|``, the layers of a stage by ``-``::

    k3e6-k5e3|k7e6-skip-k3e3|k5e6-k5e6-skip|k3e3-k7e3

Canonical key: a skipped layer is the identity, so only the order of a stage's *active* layers
matters: ``k3e3-skip-k5e6`` and ``k3e3-k5e6-skip`` build the same network (same modules in the
same order). The canonical architecture moves every skip to the end of its stage (the
"depth" view of OFA); the key is its string. Hence the number of distinct canonical
architectures (:attr:`MBConvSpace.size`) is ``prod_s 6 * (6^d_s - 1) / 5`` (a first op, then
0..d_s-1 active ops), 117,418,896 for the defaults, against ``prod_s 6 * 7^(d_s - 1)`` =
152,473,104 raw layer assignments (:attr:`MBConvSpace.raw_size`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrank.errors import ConfigError, InvalidArchitectureError

from nasrank.lazy import lazy_exports

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from .networks.mbconv import MBConvNetwork
from nasrank.registry import Config, option

from .registry import SPACES

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)
#: The six MBConv ops, ``k<kernel>e<expansion>``, kernel-major.
OPS: tuple[str, ...] = tuple(f"k{k}e{e}" for k in KERNELS for e in EXPANSIONS)
SKIP = "skip"
#: Node types of the graph encoding (one-hot order), see :meth:`MBConvSpace.to_graph`.
NODE_TYPES: tuple[str, ...] = ("input", "output", *OPS, SKIP)

DEFAULT_STEM = 16
DEFAULT_WIDTHS = (16, 24, 32, 64)
DEFAULT_DEPTHS = (2, 3, 3, 2)
DEFAULT_STRIDES = (1, 2, 2, 2)
DEFAULT_HEAD = 128


def op_shape(op: str) -> tuple[int, int]:
    """``(kernel, expansion)`` of an MBConv op name such as ``"k5e6"``."""
    if op not in OPS:
        raise InvalidArchitectureError(f"unknown MBConv op {op!r}; expected one of {OPS}")
    return int(op[1]), int(op[3])


@dataclass(frozen=True)
class MBConvArch:
    """One architecture: ``stages[s][j]`` is the op (or ``"skip"``) of layer j of stage s.

    The value checks its tokens; the number of stages and layers is checked by the space
    (:meth:`MBConvSpace.check`), since it depends on the space's sizes.
    """

    stages: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple) or not self.stages:
            raise InvalidArchitectureError(
                f"an mbconv architecture is a non-empty tuple of stages, got {self.stages!r}")
        for s, stage in enumerate(self.stages, start=1):
            if not isinstance(stage, tuple) or not stage:
                raise InvalidArchitectureError(
                    f"mbconv stage {s} must be a non-empty tuple of ops, got {stage!r}")
            for j, tok in enumerate(stage, start=1):
                if tok == SKIP and j == 1:
                    raise InvalidArchitectureError(
                        f"mbconv stage {s} layer 1 is {SKIP!r}, but the first layer of a stage "
                        f"is never skippable; expected one of {OPS}")
                if tok != SKIP and tok not in OPS:
                    raise InvalidArchitectureError(
                        f"unknown mbconv op {tok!r} at stage {s} layer {j}; expected one of "
                        f"{OPS + (SKIP,)}")

    @property
    def layers(self) -> tuple[str, ...]:
        """The ops of all layers in forward order."""
        return tuple(tok for stage in self.stages for tok in stage)

    def __str__(self) -> str:
        return format_arch(self)


def format_arch(arch: MBConvArch) -> str:
    """``op-op|op-op-op|...``: stages separated by ``|``, layers by ``-``."""
    return "|".join("-".join(stage) for stage in arch.stages)


def parse_arch(text: str) -> MBConvArch:
    """Parse :func:`format_arch`'s string; errors name the bad token and its position."""
    if not isinstance(text, str):
        raise InvalidArchitectureError(f"an mbconv architecture must be a string, got {text!r}")
    stages = []
    for s, group in enumerate(text.strip().split("|"), start=1):
        tokens = tuple(t.strip() for t in group.split("-"))
        for j, tok in enumerate(tokens, start=1):
            if tok != SKIP and tok not in OPS:
                raise InvalidArchitectureError(
                    f"mbconv string {text!r}: stage {s} layer {j} is {tok!r}, expected one of "
                    f"{OPS + (SKIP,)} (layers separated by '-', stages by '|')")
        stages.append(tokens)
    try:
        return MBConvArch(tuple(stages))
    except InvalidArchitectureError as err:
        raise InvalidArchitectureError(f"mbconv string {text!r}: {err}") from None


def canonicalize(arch: MBConvArch) -> MBConvArch:
    """Move the skips of every stage behind its active layers (see module docstring)."""
    return MBConvArch(tuple(
        tuple(t for t in stage if t != SKIP) + tuple(t for t in stage if t == SKIP)
        for stage in arch.stages))


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer: stage, index in the stage, widths, stride, whether it may skip."""

    stage: int
    index: int
    c_in: int
    c_out: int
    stride: int

    @property
    def skippable(self) -> bool:
        return self.index > 0

    @property
    def choices(self) -> tuple[str, ...]:
        return OPS + (SKIP,) if self.skippable else OPS


# ----------------------------------------------------------------------------- network
# the torch modules live in spaces/networks/ (imported when a network is built); the old
# names stay importable from here
__getattr__ = lazy_exports(globals(), dict.fromkeys(
    ("MBConv", "make_layer_op", "add_skeleton", "MBConvNetwork"), "networks.mbconv"))


# ----------------------------------------------------------------------------- space
class MBConvSpace:
    """The MBConv chain space with the given sizes (see module docstring)."""

    name = "mbconv"
    hparam_dim = 0

    def __init__(
        self, stem: int = DEFAULT_STEM, widths: Sequence[int] = DEFAULT_WIDTHS,
        depths: Sequence[int] = DEFAULT_DEPTHS, strides: Sequence[int] = DEFAULT_STRIDES,
        head: int = DEFAULT_HEAD,
    ) -> None:
        def ints(name: str, values: Any) -> tuple[int, ...]:
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise ConfigError(f"mbconv {name} must be a non-empty list of ints, got {values!r}")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                    raise ConfigError(f"mbconv {name} = {list(values)!r}: {v!r} is not an int >= 1")
            return tuple(int(v) for v in values)

        for name, v in (("stem", stem), ("head", head)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"mbconv {name} must be an int >= 1, got {v!r}")
        self.stem, self.head = int(stem), int(head)
        self.widths = ints("widths", widths)
        self.depths = ints("depths", depths)
        self.strides = ints("strides", strides)
        if not len(self.widths) == len(self.depths) == len(self.strides):
            raise ConfigError(
                f"mbconv widths {list(self.widths)}, depths {list(self.depths)} and strides "
                f"{list(self.strides)} must have one entry per stage (equal lengths)")
        bad = [s for s in self.strides if s not in (1, 2)]
        if bad:
            raise ConfigError(f"mbconv strides {list(self.strides)}: {bad[0]} is not 1 or 2")
        self.num_layers = sum(self.depths)
        self.node_feature_dim = len(NODE_TYPES) + len(self.depths)
        self.max_nodes = self.num_layers + 2
        #: number of distinct canonical architectures (= distinct keys = ``len(enumerate())``)
        self.size: int | None = math.prod(6 * (6 ** d - 1) // 5 for d in self.depths)
        #: number of raw layer assignments (``sample`` draws from these uniformly)
        self.raw_size = math.prod(6 * 7 ** (d - 1) for d in self.depths)
        self._plan = self._make_plan()

    def config(self) -> dict[str, Any]:
        """The sizes (JSON-able), as the ``mbconv`` space config takes them."""
        return {"stem": self.stem, "widths": list(self.widths), "depths": list(self.depths),
                "strides": list(self.strides), "head": self.head}

    def __repr__(self) -> str:
        return f"MBConvSpace({', '.join(f'{k}={v}' for k, v in self.config().items())})"

    def _make_plan(self) -> tuple[LayerSpec, ...]:
        plan, c_in = [], self.stem
        for s, (w, d, stride) in enumerate(zip(self.widths, self.depths, self.strides)):
            for j in range(d):
                plan.append(LayerSpec(s, j, c_in, w, stride if j == 0 else 1))
                c_in = w
        return tuple(plan)

    def layer_plan(self) -> tuple[LayerSpec, ...]:
        """Every searchable layer in forward order."""
        return self._plan

    # -- strings and keys
    def check(self, arch: Any) -> MBConvArch:
        """``arch`` (a value or its string) as an architecture of this space's sizes."""
        if isinstance(arch, str):
            arch = parse_arch(arch)
        if not isinstance(arch, MBConvArch):
            raise InvalidArchitectureError(
                f"expected an mbconv architecture (MBConvArch or its string), got {arch!r}")
        got = tuple(len(s) for s in arch.stages)
        if got != self.depths:
            raise InvalidArchitectureError(
                f"mbconv architecture {format_arch(arch)!r} has layers per stage {list(got)}, "
                f"this space expects {list(self.depths)}")
        return arch

    def parse(self, text: str) -> MBConvArch:
        return self.check(parse_arch(text))

    def format(self, arch: MBConvArch) -> str:
        return format_arch(self.check(arch))

    def canonical(self, arch: MBConvArch) -> MBConvArch:
        return canonicalize(self.check(arch))

    def key(self, arch: MBConvArch) -> str:
        """The string of the canonical architecture (skips at the end of each stage)."""
        return format_arch(canonicalize(self.check(arch)))

    def _from_layers(self, layers: Sequence[str]) -> MBConvArch:
        it = iter(layers)
        return MBConvArch(tuple(tuple(next(it) for _ in range(d)) for d in self.depths))

    def largest(self) -> MBConvArch:
        """Every layer ``k7e6``: the most parameters and FLOPs."""
        return self._from_layers([OPS[-1]] * self.num_layers)

    def smallest(self) -> MBConvArch:
        """``k3e3`` for each stage's first layer, every other layer skipped: the fewest
        parameters and FLOPs."""
        return self._from_layers([OPS[0] if spec.index == 0 else SKIP for spec in self._plan])

    # -- sampling and variation
    def sample(self, rng: np.random.Generator) -> MBConvArch:
        """Every layer uniform over its choices (uniform over the raw assignments)."""
        return self._from_layers([spec.choices[int(rng.integers(len(spec.choices)))]
                                  for spec in self._plan])

    def mutate(self, arch: MBConvArch, rng: np.random.Generator) -> MBConvArch:
        """Change one layer (uniform) to another of its choices (uniform). Any such change
        changes the canonical key: op -> op changes the stage's sequence of active ops, and
        op <-> skip changes its length."""
        arch = self.check(arch)
        layers = list(arch.layers)
        i = int(rng.integers(self.num_layers))
        others = [c for c in self._plan[i].choices if c != layers[i]]
        layers[i] = others[int(rng.integers(len(others)))]
        return self._from_layers(layers)

    def crossover(self, a: MBConvArch, b: MBConvArch, rng: np.random.Generator) -> MBConvArch:
        """Uniform crossover: each layer from ``a`` or ``b`` with probability 1/2."""
        a, b = self.check(a), self.check(b)
        pick = rng.random(self.num_layers) < 0.5
        return self._from_layers([x if p else y for x, y, p in zip(a.layers, b.layers, pick)])

    def enumerate(self) -> Iterator[MBConvArch]:
        """Every canonical architecture once (lazily; :attr:`size` of them)."""
        per_stage = []
        for d in self.depths:
            options = []
            for first in OPS:
                for active in range(d):
                    for rest in itertools.product(OPS, repeat=active):
                        options.append((first, *rest) + (SKIP,) * (d - 1 - active))
            per_stage.append(options)
        for stages in itertools.product(*per_stage):
            yield MBConvArch(stages)

    # -- Optuna-style categorical choices
    def _choice_name(self, spec: LayerSpec) -> str:
        return f"stage{spec.stage + 1}_layer{spec.index + 1}"

    def choices(self) -> dict[str, list[Any]]:
        return {self._choice_name(spec): list(spec.choices) for spec in self._plan}

    def to_choices(self, arch: MBConvArch) -> dict[str, Any]:
        arch = self.check(arch)
        return {self._choice_name(spec): op for spec, op in zip(self._plan, arch.layers)}

    def from_choices(self, params: dict[str, Any]) -> MBConvArch:
        try:
            layers = [params[self._choice_name(spec)] for spec in self._plan]
        except KeyError as err:
            raise InvalidArchitectureError(
                f"missing mbconv choice {err.args[0]!r} in {params!r}") from None
        return self.check(self._from_layers(layers))

    # -- predictor features
    def to_graph(self, arch: MBConvArch) -> Data:
        """Chain DAG of the canonical architecture: node 0 = input, node i = layer i (forward
        order), node L+1 = output; edges i -> i+1. Features: one-hot node type
        (:data:`NODE_TYPES`: input, output, the six ops, skip), then a one-hot of the layer's
        stage (zero for input and output). Every graph has :attr:`max_nodes` nodes."""
        import torch
        from torch_geometric.data import Data

        arch = canonicalize(self.check(arch))
        n = self.max_nodes
        x = torch.zeros(n, self.node_feature_dim)
        x[0, NODE_TYPES.index("input")] = 1.0
        x[n - 1, NODE_TYPES.index("output")] = 1.0
        for i, (spec, op) in enumerate(zip(self._plan, arch.layers), start=1):
            x[i, NODE_TYPES.index(op)] = 1.0
            x[i, len(NODE_TYPES) + spec.stage] = 1.0
        edge_index = torch.tensor([list(range(n - 1)), list(range(1, n))], dtype=torch.long)
        return Data(x=x, edge_index=edge_index, num_nodes=n)

    def hparams(self, arch: MBConvArch) -> torch.Tensor:
        import torch

        return torch.zeros(0)

    # -- networks and cost
    def build(self, arch: MBConvArch, num_classes: int = 10, *, in_channels: int = 3,
              **options: Any) -> MBConvNetwork:
        """The stand-alone network of ``arch``; the sizes are the space's own, so any other
        keyword option is refused."""
        if options:
            raise ConfigError(
                f"mbconv build got unknown options {sorted(options)}; the network sizes are "
                f"set on the space ({self!r}), build takes num_classes and in_channels")
        from .networks.mbconv import MBConvNetwork

        return MBConvNetwork(self, self.check(arch), num_classes, in_channels=in_channels)

    def cost(self, arch: MBConvArch, input_shape: Sequence[int] = (3, 32, 32), *,
             num_classes: int = 10) -> tuple[float, float]:
        """Exact (FLOPs, params) of :class:`MBConvNetwork`, both in millions.

        FLOPs = multiply-accumulates of every convolution (a depthwise conv: ``k*k`` per output
        element) and the classifier for one input (BN, ReLU, pooling and additions not counted);
        params = every parameter, BatchNorm affine and classifier bias included (the NB201
        convention).
        """
        arch = self.check(arch)
        c_in, h, w = (int(v) for v in input_shape)
        params = c_in * self.stem * 9 + 2 * self.stem
        flops = h * w * c_in * self.stem * 9
        for spec, op in zip(self._plan, arch.layers):
            if op == SKIP:
                continue
            k, e = op_shape(op)
            hid = spec.c_in * e
            h2, w2 = -(-h // spec.stride), -(-w // spec.stride)
            params += spec.c_in * hid + hid * k * k + hid * spec.c_out + 4 * hid + 2 * spec.c_out
            flops += h * w * spec.c_in * hid + h2 * w2 * (hid * k * k + hid * spec.c_out)
            h, w = h2, w2
        last = self.widths[-1]
        params += last * self.head + 2 * self.head + self.head * num_classes + num_classes
        flops += h * w * last * self.head + self.head * num_classes
        return flops / 1e6, params / 1e6


# ----------------------------------------------------------------------------- registry
@SPACES.register("mbconv")
@dataclass(frozen=True)
class MBConvConfig(Config):
    """MBConv chain (ProxylessNAS/SPOS): kernel 3/5/7 x expansion 3/6 per layer, skippable
    layers after each stage's first."""

    stem: int = option(DEFAULT_STEM, "width of the stem's 3x3 conv", low=1)
    widths: tuple[int, ...] = option(DEFAULT_WIDTHS, "output width of each stage", low=1)
    depths: tuple[int, ...] = option(DEFAULT_DEPTHS, "searchable layers of each stage", low=1)
    strides: tuple[int, ...] = option(DEFAULT_STRIDES, "stride of each stage's first layer",
                                      choices=(1, 2))
    head: int = option(DEFAULT_HEAD, "width of the head's 1x1 conv", low=1)

    def check(self) -> None:
        if not len(self.widths) == len(self.depths) == len(self.strides) >= 1:
            raise ConfigError(
                f"search space 'mbconv': widths {list(self.widths)}, depths "
                f"{list(self.depths)} and strides {list(self.strides)} need one entry per "
                f"stage (equal, non-zero lengths)")

    def build(self) -> MBConvSpace:
        return MBConvSpace(self.stem, self.widths, self.depths, self.strides, self.head)
