"""CVPR 2021 Lightweight NAS challenge (track 1) ResNet-20 channel space.

An architecture is 20 channel numbers ``c1-c2-...-c20``. Positions 1-7 choose from {4,8,12,16},
8-13 from {4,...,32} and 14-20 from {4,...,64} (steps of 4), so the space holds
4^7 * 8^6 * 16^7 (about 1.15e18) architectures.

The network (:class:`CVPR2021ResNet`) is CIFAR ResNet-20 with the chosen widths:

* ``net.stem``: ``Sequential(Conv2d(in, c1, 3, pad 1, no bias), BatchNorm2d(c1), ReLU)``;
* ``net.blocks[b]`` for b = 0..8 (stage ``b // 3``), a :class:`BasicBlock` with
  ``conv1`` (3x3, width ``c[2 + 2b]``, stride 2 when b is 3 or 6), ``bn1``, ``conv2`` (3x3, width
  ``c[3 + 2b]``), ``bn2`` and ``shortcut``: ``nn.Identity()`` when the block keeps width and
  resolution, else ``Sequential(Conv2d(c_in, c_out, 1, stride, no bias), BatchNorm2d(c_out))``;
  ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``;
* ``net.pool`` (global average pooling) and ``net.fc``: ``Linear(c19, num_classes)``.

Number 20 has no layer (the official model reads ``len_list[-2]`` for the classifier); it stays part
of the architecture and its key, as in the published data. :func:`block_plan` lists every block's
(c_in, c_mid, c_out, stride), which is all a weight-sharing supernet needs to slice the largest
network (:meth:`CVPR2021Space.largest`) down to any architecture.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrank.errors import InvalidArchitectureError, LabelTableError

from nasrank.lazy import lazy_exports

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from .benchmarks import Benchmark
    from .networks.cvpr2021 import CVPR2021ResNet

NUM_POSITIONS = 20
NUM_BLOCKS = 9
BLOCKS_PER_STAGE = 3
#: CHOICES[i] = the allowed widths of position i + 1.
CHOICES: tuple[tuple[int, ...], ...] = (
    (tuple(range(4, 17, 4)),) * 7 + (tuple(range(4, 33, 4)),) * 6 + (tuple(range(4, 65, 4)),) * 7
)
MAX_WIDTH = 64
#: Graph node features (see :meth:`CVPR2021Space.to_graph`).
NODE_FEATURES: tuple[str, ...] = (
    "width/64", "width/max_choice", "stem", "stage1", "stage2", "stage3", "position/18",
    "stride2", "projection_shortcut",
)


@dataclass(frozen=True)
class CVPR2021Arch:
    """One ResNet-20 channel configuration: ``widths[i]`` is number ``c{i+1}``."""

    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.widths, tuple) or len(self.widths) != NUM_POSITIONS:
            raise InvalidArchitectureError(
                f"a cvpr2021 architecture has {NUM_POSITIONS} channel numbers (a tuple), got "
                f"{len(self.widths) if isinstance(self.widths, tuple) else 'a non-tuple'}: "
                f"{self.widths!r}"
            )
        for i, w in enumerate(self.widths):
            if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w not in CHOICES[i]:
                raise InvalidArchitectureError(
                    f"cvpr2021 position {i + 1} has width {w!r}; expected one of {CHOICES[i]}"
                )
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    def __str__(self) -> str:
        return format_arch(self)


def format_arch(arch: CVPR2021Arch) -> str:
    """The published string ``c1-c2-...-c20``."""
    return "-".join(str(w) for w in arch.widths)


def parse_arch(text: str) -> CVPR2021Arch:
    """Parse ``c1-c2-...-c20``; errors name the bad position and value."""
    if not isinstance(text, str):
        raise InvalidArchitectureError(f"a cvpr2021 architecture must be a string, got {text!r}")
    tokens = text.strip().split("-")
    if len(tokens) != NUM_POSITIONS:
        raise InvalidArchitectureError(
            f"cvpr2021 string {text!r} has {len(tokens)} '-'-separated numbers, expected "
            f"{NUM_POSITIONS}"
        )
    widths = []
    for i, tok in enumerate(tokens):
        tok = tok.strip()
        if not (tok.isascii() and tok.isdigit()):  # rejects '', signs, decimals, letters
            raise InvalidArchitectureError(
                f"cvpr2021 string {text!r}: position {i + 1} is {tok!r}, expected an integer "
                f"from {CHOICES[i]}"
            )
        widths.append(int(tok))
    return CVPR2021Arch(tuple(widths))


@dataclass(frozen=True)
class BlockSpec:
    """One basic block: input width, first-conv width, output width, stride."""

    c_in: int
    c_mid: int
    c_out: int
    stride: int

    @property
    def projection(self) -> bool:
        """Whether the residual goes through a 1x1 conv + BN (width or resolution change)."""
        return self.c_in != self.c_out or self.stride != 1


def block_plan(arch: CVPR2021Arch) -> list[BlockSpec]:
    """The 9 basic blocks of ``arch`` in forward order."""
    w = arch.widths
    plan, c_in = [], w[0]
    for b in range(NUM_BLOCKS):
        stride = 2 if b in (BLOCKS_PER_STAGE, 2 * BLOCKS_PER_STAGE) else 1
        plan.append(BlockSpec(c_in, w[1 + 2 * b], w[2 + 2 * b], stride))
        c_in = w[2 + 2 * b]
    return plan


# ----------------------------------------------------------------------------- network
# the torch modules live in spaces/networks/ (imported when a network is built); the old
# names stay importable from here
__getattr__ = lazy_exports(globals(), dict.fromkeys(
    ("BasicBlock", "CVPR2021ResNet"), "networks.cvpr2021"))


# ----------------------------------------------------------------------------- space
class CVPR2021Space:
    """The CVPR 2021 track-1 ResNet-20 channel space (see module docstring)."""

    name = "cvpr2021"
    node_feature_dim = len(NODE_FEATURES)
    max_nodes = NUM_POSITIONS - 1  # one node per layer; number 20 has none
    hparam_dim = 0
    size = math.prod(len(c) for c in CHOICES)

    # -- strings and keys
    def parse(self, text: str) -> CVPR2021Arch:
        return parse_arch(text)

    def format(self, arch: CVPR2021Arch) -> str:
        return format_arch(self._check(arch))

    def key(self, arch: CVPR2021Arch) -> str:
        """The published string (all 20 numbers, number 20 included)."""
        return format_arch(self._check(arch))

    def _check(self, arch: Any) -> CVPR2021Arch:
        if isinstance(arch, str):
            return parse_arch(arch)
        if not isinstance(arch, CVPR2021Arch):
            raise InvalidArchitectureError(
                f"expected a cvpr2021 architecture (CVPR2021Arch or its string), got {arch!r}"
            )
        return arch

    def largest(self) -> CVPR2021Arch:
        """Every position at its widest choice (the supernet's shape)."""
        return CVPR2021Arch(tuple(max(c) for c in CHOICES))

    # -- sampling and variation
    def sample(self, rng: np.random.Generator) -> CVPR2021Arch:
        return CVPR2021Arch(tuple(c[int(rng.integers(len(c)))] for c in CHOICES))

    def sample_width_stratified(self, n: int, rng: np.random.Generator) -> list[CVPR2021Arch]:
        """``n`` distinct architectures spread from narrow to wide (for ground-truth tables).

        A uniform sample concentrates every network near the middle width (each position is
        an independent draw), so on a small dataset its accuracies differ by less than the seed
        noise of a short training. Here architecture ``k`` gets a width multiplier
        ``m_k = 16 ** t_k`` with ``t_k`` drawn in the ``k``-th of ``n`` equal strata of [0, 1]
        (log-uniform from 1x to 16x the narrowest width, 16 = 64 / 4 in the last stage), i.e.
        the width level ``p_k = (m_k - 1) / 15``; each position's choice index is then
        ``Binomial(len(choices) - 1, p_k)``. Level 0 is the narrowest network, 1 the widest, the
        median 0.2 (4x), and at each level the positions still vary. Duplicate keys are redrawn
        in their stratum.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        out: list[CVPR2021Arch] = []
        seen: set[CVPR2021Arch] = set()
        for k in range(n):
            for _ in range(1000):
                level = (16.0 ** ((k + rng.random()) / n) - 1.0) / 15.0
                arch = CVPR2021Arch(tuple(
                    c[int(rng.binomial(len(c) - 1, level))] for c in CHOICES))
                if arch not in seen:
                    break
            else:  # pragma: no cover - needs n far beyond the space's size per stratum
                raise ValueError(f"could not draw a new architecture in stratum {k} of {n}")
            seen.add(arch)
            out.append(arch)
        return out

    def mutate(self, arch: CVPR2021Arch, rng: np.random.Generator) -> CVPR2021Arch:
        """Change one position (uniform) to another of its widths (uniform)."""
        arch = self._check(arch)
        i = int(rng.integers(NUM_POSITIONS))
        others = [w for w in CHOICES[i] if w != arch.widths[i]]
        widths = list(arch.widths)
        widths[i] = others[int(rng.integers(len(others)))]
        return CVPR2021Arch(tuple(widths))

    def crossover(self, a: CVPR2021Arch, b: CVPR2021Arch, rng: np.random.Generator) -> CVPR2021Arch:
        """Uniform crossover: each position from ``a`` or ``b`` with probability 1/2."""
        a, b = self._check(a), self._check(b)
        pick = rng.random(NUM_POSITIONS) < 0.5
        return CVPR2021Arch(tuple(x if p else y for x, y, p in zip(a.widths, b.widths, pick)))

    def enumerate(self) -> Iterator[CVPR2021Arch]:
        """Lazily, in lexicographic order; the space has :attr:`size` (~1.15e18) members, so
        only ever take a prefix."""
        for widths in itertools.product(*CHOICES):
            yield CVPR2021Arch(widths)

    # -- Optuna-style categorical choices
    def choices(self) -> dict[str, list[Any]]:
        return {f"c{i + 1}": list(c) for i, c in enumerate(CHOICES)}

    def to_choices(self, arch: CVPR2021Arch) -> dict[str, Any]:
        arch = self._check(arch)
        return {f"c{i + 1}": w for i, w in enumerate(arch.widths)}

    def from_choices(self, params: dict[str, Any]) -> CVPR2021Arch:
        try:
            return CVPR2021Arch(tuple(params[f"c{i + 1}"] for i in range(NUM_POSITIONS)))
        except KeyError as err:
            raise InvalidArchitectureError(
                f"missing cvpr2021 choice {err.args[0]!r} in {params!r}"
            ) from None

    # -- predictor features
    def to_graph(self, arch: CVPR2021Arch) -> Data:
        """One node per conv layer of the network (19: the stem, then the 18 block convs in
        order; number 20 has no layer and no node). Features, in :data:`NODE_FEATURES` order:
        width/64, width / widest choice of that position, one-hot stage (stem, 1, 2, 3),
        position/18, 1 if the conv has stride 2, 1 on a block's second conv when its residual
        needs a 1x1 projection. Edges: the forward chain i -> i+1 plus one residual edge per
        block, from the block's input node (stem or previous block's second conv) to its
        second conv."""
        import torch
        from torch_geometric.data import Data

        arch = self._check(arch)
        n = NUM_POSITIONS - 1
        x = torch.zeros(n, len(NODE_FEATURES))
        plan = block_plan(arch)
        for i in range(n):
            w = arch.widths[i]
            x[i, 0] = w / MAX_WIDTH
            x[i, 1] = w / max(CHOICES[i])
            stage = 0 if i == 0 else 1 + (i - 1) // (2 * BLOCKS_PER_STAGE)
            x[i, 2 + stage] = 1.0
            x[i, 6] = i / (n - 1)
        src, dst = list(range(n - 1)), list(range(1, n))
        for b, spec in enumerate(plan):
            conv1, conv2 = 1 + 2 * b, 2 + 2 * b
            x[conv1, 7] = float(spec.stride == 2)
            x[conv2, 8] = float(spec.projection)
            src.append(2 * b), dst.append(conv2)
        return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long), num_nodes=n)

    def hparams(self, arch: CVPR2021Arch) -> torch.Tensor:
        import torch

        return torch.zeros(0)

    # -- networks and cost
    def build(
        self, arch: CVPR2021Arch, num_classes: int = 100, *, in_channels: int = 3, **_: Any,
    ) -> CVPR2021ResNet:
        from .networks.cvpr2021 import CVPR2021ResNet

        return CVPR2021ResNet(self._check(arch), num_classes, in_channels=in_channels)

    def cost(
        self, arch: CVPR2021Arch, input_shape: Sequence[int] = (3, 32, 32), *,
        num_classes: int = 100,
    ) -> tuple[float, float]:
        """Exact (FLOPs, params) of :class:`CVPR2021ResNet`, both in millions.

        FLOPs = multiply-accumulates of every convolution and the linear layer for one input
        (BN, ReLU, pooling and additions not counted); params = every parameter, BatchNorm
        affine and classifier bias included.
        """
        arch = self._check(arch)
        c_in, h, w = (int(v) for v in input_shape)
        c1 = arch.widths[0]
        params = c_in * c1 * 9 + 2 * c1
        flops = h * w * c_in * c1 * 9
        for spec in block_plan(arch):
            if spec.stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2  # 3x3/pad 1 and 1x1/pad 0 convs: ceil(h / 2)
            conv = spec.c_in * spec.c_mid * 9 + spec.c_mid * spec.c_out * 9
            params += conv + 2 * spec.c_mid + 2 * spec.c_out
            flops += h * w * conv
            if spec.projection:
                params += spec.c_in * spec.c_out + 2 * spec.c_out
                flops += h * w * spec.c_in * spec.c_out
        c_last = arch.widths[NUM_POSITIONS - 2]
        params += c_last * num_classes + num_classes
        flops += c_last * num_classes
        return flops / 1e6, params / 1e6


# ----------------------------------------------------------------------------- benchmark
CVPR2021_COLUMNS = ("supernet_acc_run1", "supernet_acc_run2", "gt_acc")


def load_cvpr2021_csv(path: str | os.PathLike) -> Benchmark:
    """The CVPR 2021 track-1 table (``archs.csv``: ``arch`` plus the columns of
    :data:`CVPR2021_COLUMNS`; empty cells become NaN) as a
    :class:`~spaces.benchmarks.Benchmark` keyed by the arch string, metric ``gt_acc``.

    ``path`` is the CSV or a folder holding ``archs.csv`` or ``cvpr2021_track1/archs.csv``.
    """
    from .benchmarks import Benchmark, _resolve
    from .labels import LabelTable

    file = _resolve(path, ("archs.csv", "cvpr2021_track1/archs.csv"), "CVPR 2021 track-1")
    space = CVPR2021Space()
    keys: list[str] = []
    archs: dict[str, CVPR2021Arch] = {}
    rows: list[list[float]] = []
    try:  # decoded up front: a binary or non-UTF-8 file is a clear error, not a traceback
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise LabelTableError(
            f"CVPR 2021 file {str(file)!r} is not UTF-8 text (byte {err.start}); expected a CSV"
        ) from None
    if "\x00" in text:
        raise LabelTableError(f"CVPR 2021 file {str(file)!r} holds NUL bytes; expected a CSV")
    import io

    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in ("arch", *CVPR2021_COLUMNS):
            if col not in header:
                raise LabelTableError(
                    f"CVPR 2021 file {str(file)!r} lacks column {col!r}; header is {header}"
                )
        for lineno, rec in enumerate(reader, start=2):
            if None in rec or any(rec[c] is None for c in header):
                raise LabelTableError(
                    f"{str(file)!r} line {lineno}: expected {len(header)} fields, got "
                    f"{sum(v is not None for v in rec.values())}"
                )
            try:
                arch = parse_arch(rec["arch"])
            except InvalidArchitectureError as err:
                raise LabelTableError(f"{str(file)!r} line {lineno}: {err}") from None
            vals = []
            for col in CVPR2021_COLUMNS:
                text = rec[col].strip()
                try:
                    vals.append(float(text) if text else math.nan)
                except ValueError:
                    raise LabelTableError(
                        f"{str(file)!r} line {lineno}: column {col!r} has non-numeric value "
                        f"{text!r}"
                    ) from None
            key = format_arch(arch)
            if key in archs:
                raise LabelTableError(f"{str(file)!r} line {lineno}: duplicate arch {key!r}")
            keys.append(key)
            archs[key] = arch
            rows.append(vals)
    if not keys:
        raise LabelTableError(f"CVPR 2021 file {str(file)!r} has no rows")
    data = np.asarray(rows, dtype=np.float64)
    table = LabelTable(
        keys, {c: data[:, j] for j, c in enumerate(CVPR2021_COLUMNS)}, space=space.name
    )
    return Benchmark("cvpr2021", space, table, archs, ("gt_acc",))


# ----------------------------------------------------------------------------- registry entry
from nasrank.registry import Config  # noqa: E402  (entry below; the space above stays first)
from nasrank.spaces.registry import SPACES  # noqa: E402


@SPACES.register("cvpr2021")
@dataclass(frozen=True)
class CVPR2021Config(Config):
    """CVPR 2021 NAS track 1: ResNet-20 channel widths at 20 positions."""

    def build(self) -> CVPR2021Space:
        return CVPR2021Space()
