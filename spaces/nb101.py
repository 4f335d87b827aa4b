"""NAS-Bench-101 cell space (Ying et al., ICML 2019).

A cell is a DAG on at most 7 vertices given by an upper-triangular 0/1 adjacency matrix and one
operation per vertex: the first is ``input``, the last ``output``, the others
``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3``. As in the official ``ModelSpec``,
vertices that lie on no input->output path are pruned first; the pruned cell must connect input
to output and have at most 9 edges (a raw cell may carry more edges, on dead vertices).

Key: the official NB101 graph hash of the pruned cell (:func:`graph_hash`), so cells that differ
only in dead vertices or in vertex numbering share one key.

String format (:func:`format_arch`): the adjacency rows as 0/1 digits separated by ``/``, a
``|``, then the operations separated by ``,``::

    0110000/0001000/0001000/0000001/0000000/0000000/0000000|input,conv3x3-bn-relu,...,output

Network (:class:`NB101Network`, the official macro skeleton): stem conv3x3 (128) + BN + ReLU;
3 stacks of 3 cells, a 2x2/stride-2 max pool and a doubling of channels between stacks; global
average pooling; dense layer. Inside a cell the output vertex concatenates its interior inputs,
whose channels split the cell's output channels (the official ``compute_vertex_channels``), and
adds a 1x1 projection of the cell input when input->output is an edge.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasrank.errors import InvalidArchitectureError, LabelTableError, NasrankError

from nasrank.lazy import lazy_exports

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from .benchmarks import Benchmark
    from .networks.nb101 import NB101Network

INPUT, OUTPUT = "input", "output"
CONV3X3, CONV1X1, MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
#: Interior operations, in the order of the official labels 0, 1, 2.
OPS: tuple[str, ...] = (CONV3X3, CONV1X1, MAXPOOL3X3)
#: Graph node types (one-hot order of :meth:`NB101Space.to_graph`).
NODE_TYPES: tuple[str, ...] = (INPUT, CONV3X3, CONV1X1, MAXPOOL3X3, OUTPUT)
MAX_VERTICES = 7
MAX_EDGES = 9
#: Official integer labels: -1 input, -2 output, 0/1/2 the interior ops (-3 pads in the json).
LABELS: dict[int, str] = {-1: INPUT, -2: OUTPUT, 0: CONV3X3, 1: CONV1X1, 2: MAXPOOL3X3}
PAD_LABEL = -3


@dataclass(frozen=True)
class NB101Arch:
    """One NB101 cell as given (possibly with dead vertices); :func:`prune` gives the cell
    the network actually computes."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        matrix = _check_matrix(self.matrix)
        ops = _check_ops(self.ops, len(matrix))
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "ops", ops)
        live = _live_vertices(matrix)
        if 0 not in live:
            raise InvalidArchitectureError(
                f"NB101 cell {format_arch(self)!r}: no path from the input to the output vertex"
            )
        edges = sum(matrix[i][j] for i in live for j in live)
        if edges > MAX_EDGES:
            raise InvalidArchitectureError(
                f"NB101 cell {format_arch(self)!r} has {edges} edges after pruning, expected at "
                f"most {MAX_EDGES}"
            )

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    def __str__(self) -> str:
        return format_arch(self)


def _check_matrix(matrix: Any) -> tuple[tuple[int, ...], ...]:
    try:
        rows = [list(r) for r in matrix]
    except TypeError:
        raise InvalidArchitectureError(
            f"NB101 adjacency must be a square matrix of 0/1, got {matrix!r}"
        ) from None
    n = len(rows)
    if not 2 <= n <= MAX_VERTICES:
        raise InvalidArchitectureError(
            f"NB101 adjacency has {n} vertices, expected 2 to {MAX_VERTICES}"
        )
    out = []
    for i, row in enumerate(rows):
        if len(row) != n:
            raise InvalidArchitectureError(
                f"NB101 adjacency row {i} has {len(row)} entries, expected {n} (square matrix)"
            )
        clean = []
        for j, v in enumerate(row):
            if isinstance(v, bool) or v not in (0, 1):
                raise InvalidArchitectureError(
                    f"NB101 adjacency entry ({i}, {j}) is {v!r}, expected 0 or 1"
                )
            if v and j <= i:
                raise InvalidArchitectureError(
                    f"NB101 adjacency entry ({i}, {j}) is 1 but the matrix must be strictly upper "
                    f"triangular (edges go from lower to higher vertex)"
                )
            clean.append(int(v))
        out.append(tuple(clean))
    return tuple(out)


def _check_ops(ops: Any, n: int) -> tuple[str, ...]:
    if isinstance(ops, str) or not isinstance(ops, Sequence):
        raise InvalidArchitectureError(f"NB101 ops must be a sequence of names, got {ops!r}")
    ops = tuple(ops)
    if len(ops) != n:
        raise InvalidArchitectureError(
            f"NB101 cell has {n} vertices but {len(ops)} ops {ops!r}"
        )
    if ops[0] != INPUT:
        raise InvalidArchitectureError(f"NB101 vertex 0 must be {INPUT!r}, got {ops[0]!r}")
    if ops[-1] != OUTPUT:
        raise InvalidArchitectureError(f"NB101 vertex {n - 1} must be {OUTPUT!r}, got {ops[-1]!r}")
    for v, op in enumerate(ops[1:-1], start=1):
        if op not in OPS:
            raise InvalidArchitectureError(
                f"unknown NB101 op {op!r} at vertex {v}; expected one of {OPS}"
            )
    return ops


def _live_vertices(matrix: Sequence[Sequence[int]]) -> set[int]:
    """Vertices on some input->output path (those reachable from 0 that reach n - 1)."""
    n = len(matrix)
    fwd = {0}
    for j in range(1, n):  # edges go forward only: one pass in vertex order suffices
        if any(matrix[i][j] and i in fwd for i in range(j)):
            fwd.add(j)
    bwd = {n - 1}
    for i in range(n - 2, -1, -1):
        if any(matrix[i][j] and j in bwd for j in range(i + 1, n)):
            bwd.add(i)
    return fwd & bwd


def _all_live(mats: np.ndarray) -> np.ndarray:
    """For a batch of upper-triangular matrices ``[b, n, n]``: whether every vertex lies on an
    input->output path (vectorised :func:`_live_vertices`)."""
    b, n, _ = mats.shape
    m = mats.astype(bool)
    fwd = np.zeros((b, n), dtype=bool)
    fwd[:, 0] = True
    for j in range(1, n):
        fwd[:, j] = (m[:, :j, j] & fwd[:, :j]).any(axis=1)
    bwd = np.zeros((b, n), dtype=bool)
    bwd[:, n - 1] = True
    for i in range(n - 2, -1, -1):
        bwd[:, i] = (m[:, i, i + 1:] & bwd[:, i + 1:]).any(axis=1)
    return (fwd & bwd).all(axis=1)


def prune(arch: NB101Arch) -> NB101Arch:
    """Drop the vertices on no input->output path (the official ``ModelSpec`` pruning)."""
    keep = sorted(_live_vertices(arch.matrix))
    if len(keep) == arch.num_vertices:
        return arch
    matrix = tuple(tuple(arch.matrix[i][j] for j in keep) for i in keep)
    return NB101Arch(matrix, tuple(arch.ops[i] for i in keep))


def graph_hash(matrix: Sequence[Sequence[int]], labels: Sequence[int]) -> str:
    """The official NB101 hash of a (pruned) cell, from its published description.

    Each vertex starts from the md5 of the text of ``(out_degree, in_degree, label)``; then, as
    many rounds as there are vertices, every vertex's hash becomes the md5 of its sorted
    in-neighbour hashes, ``|``, its sorted out-neighbour hashes, ``|``, its own hash (each list
    concatenated). The fingerprint is the md5 of the text of the sorted final hashes. This is
    invariant to vertex numbering. Hand-written because the official code is a TF-era package.
    """
    n = len(matrix)

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()

    out_deg = [sum(int(matrix[v][w]) for w in range(n)) for v in range(n)]
    in_deg = [sum(int(matrix[w][v]) for w in range(n)) for v in range(n)]
    hashes = [md5(str((out_deg[v], in_deg[v], int(labels[v])))) for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                "".join(sorted(hashes[w] for w in range(n) if matrix[w][v])) + "|"
                + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w])) + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return md5(str(sorted(hashes)))


def arch_labels(arch: NB101Arch) -> list[int]:
    """Official integer labels of the vertices (-1 input, -2 output, 0/1/2 the ops)."""
    inv = {op: lab for lab, op in LABELS.items()}
    return [inv[op] for op in arch.ops]


def format_arch(arch: NB101Arch) -> str:
    """``rows|ops``: adjacency rows of 0/1 digits joined by ``/``, ops joined by ``,``."""
    rows = "/".join("".join(str(v) for v in row) for row in arch.matrix)
    return f"{rows}|{','.join(arch.ops)}"


def parse_arch(text: str) -> NB101Arch:
    """Parse :func:`format_arch`'s string; errors name the offending part."""
    if not isinstance(text, str):
        raise InvalidArchitectureError(f"an NB101 architecture must be a string, got {text!r}")
    parts = text.strip().split("|")
    if len(parts) != 2:
        raise InvalidArchitectureError(
            f"NB101 string {text!r} must be '<rows of 0/1 joined by />|<ops joined by ,>'"
        )
    row_texts, ops_text = parts
    matrix = []
    for i, row in enumerate(row_texts.split("/")):
        row = row.strip()
        if not row or any(ch not in "01" for ch in row):
            raise InvalidArchitectureError(
                f"NB101 string {text!r}: adjacency row {i} is {row!r}, expected digits 0/1"
            )
        matrix.append(tuple(int(ch) for ch in row))
    ops = tuple(op.strip() for op in ops_text.split(","))
    return NB101Arch(tuple(matrix), ops)


def from_labels(matrix: Sequence[Sequence[Any]], labels: Sequence[int]) -> NB101Arch:
    """A cell from an adjacency matrix and official integer labels; padding vertices (label
    -3, as in the published json) are dropped and must carry no edges."""
    try:
        labels = [int(v) for v in labels]
        rows = [[int(v) if float(v) == int(v) else v for v in row] for row in matrix]
    except (TypeError, ValueError) as err:
        raise InvalidArchitectureError(
            f"NB101 cell needs numeric adjacency and integer labels ({err}): {matrix!r}, "
            f"{labels!r}"
        ) from None
    if len(rows) != len(labels):
        raise InvalidArchitectureError(
            f"NB101 adjacency has {len(rows)} rows but there are {len(labels)} labels {labels}"
        )
    keep = [i for i, lab in enumerate(labels) if lab != PAD_LABEL]
    for i, lab in enumerate(labels):
        if lab == PAD_LABEL:
            if any(rows[i]) or any(r[i] for r in rows):
                raise InvalidArchitectureError(
                    f"NB101 padding vertex {i} (label -3) has edges: {rows}"
                )
        elif lab not in LABELS:
            raise InvalidArchitectureError(
                f"unknown NB101 label {lab} at vertex {i}; expected one of {sorted(LABELS)} or -3"
            )
    return NB101Arch(
        tuple(tuple(rows[i][j] for j in keep) for i in keep),
        tuple(LABELS[labels[i]] for i in keep),
    )


def pad_to_max(arch: NB101Arch, fill_ops: Sequence[str] | None = None) -> NB101Arch:
    """The same cell on exactly 7 vertices: isolated interior vertices (ops ``fill_ops``,
    default conv3x3) are inserted before the output; they are dead, so the key is unchanged."""
    n = arch.num_vertices
    extra = MAX_VERTICES - n
    fill = list(fill_ops) if fill_ops is not None else [CONV3X3] * extra
    if len(fill) != extra:
        raise NasrankError(f"pad_to_max needs {extra} fill ops, got {len(fill)}")
    index = list(range(n - 1)) + [MAX_VERTICES - 1]  # old vertex -> new vertex
    m = [[0] * MAX_VERTICES for _ in range(MAX_VERTICES)]
    for i in range(n):
        for j in range(n):
            m[index[i]][index[j]] = arch.matrix[i][j]
    ops = list(arch.ops[:-1]) + fill + [OUTPUT]
    return NB101Arch(tuple(tuple(r) for r in m), tuple(ops))


# ----------------------------------------------------------------------------- network
def vertex_channels(c_in: int, c_out: int, matrix: Sequence[Sequence[int]]) -> list[int]:
    """Channels of every vertex of a pruned cell (the official rule): the output's channels
    are split as evenly as possible over the interior vertices feeding it (the first ones get
    the remainder); other interior vertices take the largest width of their successors."""
    n = len(matrix)
    ch = [0] * n
    ch[0], ch[n - 1] = c_in, c_out
    if n == 2:
        return ch
    feeding = [v for v in range(1, n - 1) if matrix[v][n - 1]]
    base, extra = divmod(c_out, len(feeding))
    for k, v in enumerate(feeding):
        ch[v] = base + (1 if k < extra else 0)
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            ch[v] = max(ch[w] for w in range(v + 1, n - 1) if matrix[v][w])
    return ch


# the torch modules live in spaces/networks/ (imported when a network is built); the old
# names stay importable from here
__getattr__ = lazy_exports(globals(), dict.fromkeys(
    ("ConvBNReLU", "NB101Cell", "NB101Network"), "networks.nb101"))


def cell_cost(arch: NB101Arch, c_in: int, c_out: int, hw: int) -> tuple[int, int]:
    """(MACs, params) of one :class:`NB101Cell` of a pruned cell on ``hw`` pixels."""
    ch = vertex_channels(c_in, c_out, arch.matrix)
    n = arch.num_vertices
    macs = params = 0
    for t in range(1, n):
        if arch.matrix[0][t]:  # a 1x1 projection of the cell input (the 2-vertex cell too)
            macs += hw * c_in * ch[t]
            params += c_in * ch[t] + 2 * ch[t]
        if t < n - 1 and arch.ops[t] != MAXPOOL3X3:
            k = 9 if arch.ops[t] == CONV3X3 else 1
            macs += hw * ch[t] * ch[t] * k
            params += ch[t] * ch[t] * k + 2 * ch[t]
    return macs, params


# ----------------------------------------------------------------------------- space
def _sampling_weights() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """For n = 2..7 vertices: P(n) proportional to the number of (matrix with <= 9 edges, ops)
    candidates, and P(k edges | n) proportional to C(n(n-1)/2, k)."""
    sizes, counts = [], {}
    for n in range(2, MAX_VERTICES + 1):
        slots = n * (n - 1) // 2
        c = np.array([math.comb(slots, k) for k in range(min(slots, MAX_EDGES) + 1)], float)
        counts[n] = c / c.sum()
        sizes.append(c.sum() * len(OPS) ** (n - 2))
    w = np.array(sizes)
    return w / w.sum(), counts


_SIZE_WEIGHTS, _EDGE_COUNT_WEIGHTS = _sampling_weights()


class NB101Space:
    """The NAS-Bench-101 cell space (see module docstring)."""

    name = "nb101"
    node_feature_dim = len(NODE_TYPES)
    max_nodes = MAX_VERTICES
    hparam_dim = 0
    size = None  # 423,624 distinct cells, not enumerated here

    # -- strings and keys
    def parse(self, text: str) -> NB101Arch:
        return parse_arch(text)

    def format(self, arch: NB101Arch) -> str:
        return format_arch(self._check(arch))

    def key(self, arch: NB101Arch) -> str:
        """The official NB101 hash of the pruned cell."""
        p = prune(self._check(arch))
        return graph_hash(p.matrix, arch_labels(p))

    def canonical(self, arch: NB101Arch) -> NB101Arch:
        return prune(self._check(arch))

    def _check(self, arch: Any) -> NB101Arch:
        if isinstance(arch, str):
            return parse_arch(arch)
        if not isinstance(arch, NB101Arch):
            raise InvalidArchitectureError(
                f"expected an NB101 architecture (NB101Arch or its string), got {arch!r}"
            )
        return arch

    # -- sampling and variation
    @staticmethod
    def _try(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> NB101Arch | None:
        try:
            return NB101Arch(tuple(tuple(int(v) for v in r) for r in matrix), tuple(ops))
        except InvalidArchitectureError:
            return None

    def sample(self, rng: np.random.Generator) -> NB101Arch:
        """A cell drawn uniformly from the valid *labelled* cells: 2 to 7 vertices, all on an
        input->output path, at most 9 edges, any ops. By rejection: draw the vertex count in
        proportion to the number of candidate (matrix with <= 9 edges, ops) pairs of that size,
        then such a pair uniformly, and keep it when no vertex is dead. (A hash class comes up in
        proportion to its number of vertex numberings; drawing raw 7x7 matrices instead, as
        NB101's example does, would almost never give 7 live vertices.)"""
        batch = 128  # proposals are drawn in vectorised batches; the first valid one wins
        for _ in range(1000):
            sizes = rng.choice(len(_SIZE_WEIGHTS), size=batch, p=_SIZE_WEIGHTS) + 2
            best: tuple[int, np.ndarray] | None = None
            for n in np.unique(sizes):
                idx = np.flatnonzero(sizes == n)
                rows, cols = np.triu_indices(n, k=1)
                ks = rng.choice(len(_EDGE_COUNT_WEIGHTS[n]), size=idx.size, p=_EDGE_COUNT_WEIGHTS[n])
                # a uniform k-subset of the slots: those whose random rank is below k
                ranks = np.argsort(np.argsort(rng.random((idx.size, rows.size)), axis=1), axis=1)
                mats = np.zeros((idx.size, n, n), dtype=np.int64)
                mats[:, rows, cols] = ranks < ks[:, None]
                ok = np.flatnonzero(_all_live(mats))
                if ok.size and (best is None or idx[ok[0]] < best[0]):
                    best = (int(idx[ok[0]]), mats[ok[0]])
            if best is not None:
                m = best[1]
                ops = [INPUT] + [OPS[i] for i in rng.integers(0, len(OPS), len(m) - 2)] + [OUTPUT]
                return NB101Arch(tuple(map(tuple, m.tolist())), tuple(ops))
        raise NasrankError("nb101: no valid cell in 128,000 draws")

    def _variants(self, arch: NB101Arch, rng: np.random.Generator, changes: int) -> NB101Arch:
        """``arch`` on 7 vertices (dead fill vertices with random ops) with ``changes`` random
        edits, each an edge flip or an interior op change."""
        live = prune(arch)
        fill = [OPS[i] for i in rng.integers(0, len(OPS), MAX_VERTICES - live.num_vertices)]
        base = pad_to_max(live, fill)
        m = [list(r) for r in base.matrix]
        ops = list(base.ops)
        pairs = [(i, j) for i in range(MAX_VERTICES) for j in range(i + 1, MAX_VERTICES)]
        for _ in range(changes):
            k = int(rng.integers(len(pairs) + MAX_VERTICES - 2))
            if k < len(pairs):
                i, j = pairs[k]
                m[i][j] = 1 - m[i][j]
            else:
                v = k - len(pairs) + 1
                others = [op for op in OPS if op != ops[v]]
                ops[v] = others[int(rng.integers(len(others)))]
        return self._try(m, ops)  # type: ignore[return-value]

    def mutate(self, arch: NB101Arch, rng: np.random.Generator) -> NB101Arch:
        """One edge flip or op change (two when one never changes the key, e.g. the bare
        input->output cell) on the 7-vertex padded cell, redrawn until the result is valid and
        its key differs; returned pruned."""
        arch = self._check(arch)
        old = self.key(arch)
        for attempt in range(2000):
            child = self._variants(arch, rng, 1 if attempt < 200 else 2)
            if child is not None and self.key(child) != old:
                return prune(child)
        raise NasrankError(f"nb101: found no valid mutation of {format_arch(arch)!r}")

    def crossover(self, a: NB101Arch, b: NB101Arch, rng: np.random.Generator) -> NB101Arch:
        """Uniform crossover of the 7-vertex padded cells (each edge bit and interior op from
        ``a`` or ``b``), redrawn until valid; after 100 invalid draws, the pruned ``a``."""
        pa, pb = (pad_to_max(prune(self._check(x))) for x in (a, b))
        for _ in range(100):
            pick_e = rng.random((MAX_VERTICES, MAX_VERTICES)) < 0.5
            pick_o = rng.random(MAX_VERTICES) < 0.5
            m = [[pa.matrix[i][j] if pick_e[i, j] else pb.matrix[i][j] for j in range(MAX_VERTICES)]
                 for i in range(MAX_VERTICES)]
            ops = [x if p else y for x, y, p in zip(pa.ops, pb.ops, pick_o)]
            child = self._try(m, ops)
            if child is not None:
                return prune(child)
        return prune(pa)

    def enumerate(self) -> Iterator[NB101Arch]:
        raise NasrankError(
            "search space 'nb101' is not enumerable here (423,624 distinct cells); sample it "
            "or load the NB101 benchmark instead"
        )

    # -- Optuna-style categorical choices (a 7-vertex cell; invalid combinations raise)
    def choices(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            f"edge_{i}_{j}": [0, 1]
            for i in range(MAX_VERTICES) for j in range(i + 1, MAX_VERTICES)
        }
        out.update({f"op_{v}": list(OPS) for v in range(1, MAX_VERTICES - 1)})
        return out

    def to_choices(self, arch: NB101Arch) -> dict[str, Any]:
        """Choices of the pruned cell padded to 7 vertices (dead conv3x3 fill vertices)."""
        p = pad_to_max(prune(self._check(arch)))
        out: dict[str, Any] = {
            f"edge_{i}_{j}": p.matrix[i][j]
            for i in range(MAX_VERTICES) for j in range(i + 1, MAX_VERTICES)
        }
        out.update({f"op_{v}": p.ops[v] for v in range(1, MAX_VERTICES - 1)})
        return out

    def from_choices(self, params: dict[str, Any]) -> NB101Arch:
        """The 7-vertex cell of ``params``; raises :class:`InvalidArchitectureError` when it
        is not a valid cell (disconnected, more than 9 live edges) so a search can prune it."""
        try:
            m = [[0] * MAX_VERTICES for _ in range(MAX_VERTICES)]
            for i in range(MAX_VERTICES):
                for j in range(i + 1, MAX_VERTICES):
                    m[i][j] = params[f"edge_{i}_{j}"]
            ops = [INPUT] + [params[f"op_{v}"] for v in range(1, MAX_VERTICES - 1)] + [OUTPUT]
        except KeyError as err:
            raise InvalidArchitectureError(
                f"missing NB101 choice {err.args[0]!r} in {params!r}"
            ) from None
        return NB101Arch(tuple(tuple(r) for r in m), tuple(ops))

    # -- predictor features
    def to_graph(self, arch: NB101Arch) -> Data:
        """The pruned cell as a DAG: one node per vertex with a one-hot of its type
        (:data:`NODE_TYPES`), one edge per adjacency entry."""
        import torch
        from torch_geometric.data import Data

        p = prune(self._check(arch))
        n = p.num_vertices
        x = torch.zeros(n, len(NODE_TYPES))
        for v, op in enumerate(p.ops):
            x[v, NODE_TYPES.index(op)] = 1.0
        src, dst = zip(*[(i, j) for i in range(n) for j in range(n) if p.matrix[i][j]])
        return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long), num_nodes=n)

    def hparams(self, arch: NB101Arch) -> torch.Tensor:
        import torch

        return torch.zeros(0)

    # -- networks and cost
    def build(
        self, arch: NB101Arch, num_classes: int = 10, *, stem_channels: int = 128,
        num_stacks: int = 3, num_cells: int = 3, in_channels: int = 3, **_: Any,
    ) -> NB101Network:
        from .networks.nb101 import NB101Network

        return NB101Network(
            self._check(arch), num_classes, stem_channels=stem_channels, num_stacks=num_stacks,
            num_cells=num_cells, in_channels=in_channels,
        )

    def cost(
        self, arch: NB101Arch, input_shape: Sequence[int] = (3, 32, 32), *,
        num_classes: int = 10, stem_channels: int = 128, num_stacks: int = 3, num_cells: int = 3,
    ) -> tuple[float, float]:
        """Exact (FLOPs, params) of :class:`NB101Network`, both in millions.

        FLOPs = multiply-accumulates of every convolution and the dense layer for one input;
        params = every parameter (conv weights, BN gamma and beta, dense weight and bias), which
        equals NB101's published ``trainable_parameters``.
        """
        p = prune(self._check(arch))
        c_in, h, w = (int(v) for v in input_shape)
        c = stem_channels
        macs = h * w * c_in * c * 9
        params = c_in * c * 9 + 2 * c
        cell_in = c
        for s in range(num_stacks):
            if s > 0:
                h, w, c = (h + 1) // 2, (w + 1) // 2, 2 * c
            for _ in range(num_cells):
                m_, p_ = cell_cost(p, cell_in, c, h * w)
                macs, params, cell_in = macs + m_, params + p_, c
        macs += c * num_classes
        params += c * num_classes + num_classes
        return macs / 1e6, params / 1e6


# ----------------------------------------------------------------------------- benchmark
NB101_ACCURACIES = tuple(f"{e}_final_validation_accuracy" for e in (4, 12, 36, 108))


def load_nb101_json(path: str | os.PathLike) -> Benchmark:
    """The NB101 sample in the column layout of ``nb101_1k.json`` (``adjacency``,
    ``operations``, ``trainable_parameters``, ``key`` and :data:`NB101_ACCURACIES`) as a
    :class:`~spaces.benchmarks.Benchmark` keyed by the official hash (the file's ``key``, which
    must equal the hash of its cell), columns the four accuracies and ``params``, metric
    ``108_final_validation_accuracy``.

    ``path`` is the json or a folder holding ``nb101_1k.json`` or ``nb101/nb101_1k.json``.
    """
    from .benchmarks import Benchmark, _resolve
    from .labels import LabelTable

    file = _resolve(path, ("nb101_1k.json", "nb101/nb101_1k.json"), "NB101")
    try:
        with open(file) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise LabelTableError(f"{str(file)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise LabelTableError(
            f"{str(file)!r} must hold a dict of columns, got {type(data).__name__}"
        )
    needed = ("adjacency", "operations", "trainable_parameters", "key", *NB101_ACCURACIES)
    for col in needed:
        if col not in data or not isinstance(data[col], list):
            raise LabelTableError(
                f"NB101 file {str(file)!r} lacks column {col!r} (a list); has {sorted(data)}"
            )
    n = len(data["key"])
    for col in needed:
        if len(data[col]) != n:
            raise LabelTableError(
                f"NB101 file {str(file)!r}: column {col!r} has {len(data[col])} rows, 'key' {n}"
            )
    space = NB101Space()
    keys: list[str] = []
    archs: dict[str, NB101Arch] = {}
    rows: list[list[float]] = []
    for r in range(n):
        try:
            arch = from_labels(data["adjacency"][r], data["operations"][r])
        except (InvalidArchitectureError, TypeError, ValueError) as err:
            raise LabelTableError(f"{str(file)!r} row {r}: bad cell: {err}") from None
        key = space.key(arch)
        if str(data["key"][r]) != key:
            raise LabelTableError(
                f"{str(file)!r} row {r}: key {data['key'][r]!r} is not the NB101 hash {key!r} "
                f"of its cell {format_arch(arch)!r}"
            )
        if key in archs:
            raise LabelTableError(f"{str(file)!r} row {r}: duplicate key {key!r}")
        vals = []
        for col in (*NB101_ACCURACIES, "trainable_parameters"):
            v = data[col][r]
            try:
                vals.append(math.nan if v is None else float(v))
            except (TypeError, ValueError):
                raise LabelTableError(
                    f"{str(file)!r} row {r}: column {col!r} has non-numeric value {v!r}"
                ) from None
        keys.append(key)
        archs[key] = arch
        rows.append(vals)
    if not keys:
        raise LabelTableError(f"NB101 file {str(file)!r} has no rows")
    arr = np.asarray(rows, dtype=np.float64)
    names = (*NB101_ACCURACIES, "params")
    table = LabelTable(keys, {c: arr[:, j] for j, c in enumerate(names)}, space=space.name)
    return Benchmark("nb101", space, table, archs, ("108_final_validation_accuracy",))


# ----------------------------------------------------------------------------- registry entry
from nasrank.registry import Config, option  # noqa: E402  (entry below; the space stays first)
from nasrank.spaces.registry import SPACES  # noqa: E402


@SPACES.register("nb101")
@dataclass(frozen=True)
class NB101Config(Config):
    """NAS-Bench-101 cell: up to 7 nodes and 9 edges, 3 ops (423,624 unique cells).

    No supernet serves this space: ``nasrank run --space nb101`` weak-labels it with zero-cost
    proxies and FLOPs/params. The fields size the stand-alone networks that are trained (paper:
    128 stem channels, 3 stacks of 3 cells; the defaults are small enough for the CPU).
    """

    stem_channels: int = option(16, "stem channels of the stand-alone network (paper: 128)",
                                low=1)
    num_stacks: int = option(1, "stacks of cells (paper: 3)", low=1)
    num_cells: int = option(1, "cells per stack (paper: 3)", low=1)

    def build(self) -> NB101Space:
        return NB101Space()

    def network_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``NB101Space.build`` for the stand-alone networks."""
        return {"stem_channels": self.stem_channels, "num_stacks": self.num_stacks,
                "num_cells": self.num_cells}
