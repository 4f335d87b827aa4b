"""Few-shot supernets: split the one-shot supernet into sub-supernets, train each leaf alone.

A *sub-supernet* is the supernet restricted through its ``decisions``: ``allowed[d]`` lists the
choice indices decision point ``d`` may take (:class:`RestrictedUniformSampler` samples only
those). A *split* partitions the allowed choices of one decision point into ``b`` groups; each
group becomes a child sub-supernet. A *splitting policy* gives the branching factor of every
node; the paper's *constant* policy (:class:`ConstantPolicy`) splits every node down to depth
``d`` with the same ``b``.

Which choices share a group comes from a pairwise similarity matrix of the choices of a decision
point, computed on the node's sub-supernet (:func:`edge_similarity`):

* ``gm`` (GM-NAS, Hu et al. 2022): the gradient of the cross-entropy with respect to the *shared*
  weights (every parameter that receives a gradient whichever choice is enabled, i.e. all but the
  candidates' own weights) with only choice ``o`` enabled at the decision point; the gradient is
  summed over ``paths`` architectures sampled in the sub-supernet (the same ones for every
  choice) and the given batches; similarity = cosine of two choices' gradients.
* a zero-cost proxy (``grad_norm``, ``snip``, ``grasp``, ``synflow``, ``jacov``, ``ntk``,
  ``linear_regions``, from :mod:`supernet.proxies`): the score of the sub-supernet restricted to
  choice ``o`` is the mean proxy over the same ``paths`` sampled architectures (each scored on a
  stand-alone copy of the path's current shared weights); similarity = ``-|s_i - s_j|``
  (choices with close scores belong together; the min-cut is unchanged by the proxy's scale).
  Non-finite path scores are left out of the mean; a choice with none finite gets the lowest
  similarity of the matrix to every other choice.

The groups are the minimum cut of the similarity matrix into ``b`` parts, found by exact
enumeration of the set partitions (:func:`min_cut_partition`; 5 ops give at most 15 two-way
partitions), by default restricted to *balanced* partitions (group sizes differ by at most one):
without it a cut of positive similarities is always smallest for lopsided groups. At each node
the decision point with the smallest min-cut (where the choices disagree most) is split, among
those not split yet on the way from the root (GM-NAS's edge selection).

:func:`split_distance` is Definition 1 of "Understanding Few-Shot NAS with Zero-Cost Proxies":
the least number of choices that must move to turn split A into split B, group labels matched
optimally (:func:`scipy.optimize.linear_sum_assignment` on the overlap matrix).

Leaves are trained **from scratch** (a freshly initialised supernet each, GM-NAS re-initialises
after splitting) by :func:`train_fewshot`, which checkpoints every leaf through
:func:`supernet.trainer.train_supernet` and resumes after a kill; :func:`fewshot_weak_labels`
labels every architecture with the weights of the one leaf that contains it.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from nasrank.errors import ConfigError, NasrankError
from nasrank.proxy_names import canonical_proxy
from nasrank.spaces.labels import LabelTable

from .base import Arch, ArchSampler, Supernet

PROXY_METRICS = ("grad_norm", "snip", "grasp", "synflow", "jacov", "ntk", "linear_regions")
METRICS = ("gm", *PROXY_METRICS)

Allowed = tuple[tuple[int, ...], ...]


# ----------------------------------------------------------------------------- sub-supernets
def full_allowed(supernet: Supernet) -> Allowed:
    """Every choice of every decision point (the one-shot supernet)."""
    return tuple(tuple(range(len(opts))) for opts in supernet.decisions())


def check_allowed(supernet: Supernet, allowed: Sequence[Sequence[int]]) -> Allowed:
    """``allowed`` as sorted tuples, validated against ``supernet.decisions()``."""
    counts = [len(opts) for opts in supernet.decisions()]
    if len(allowed) != len(counts):
        raise NasrankError(f"allowed has {len(allowed)} entries {list(allowed)!r}, expected one "
                           f"per decision point ({len(counts)})")
    out = []
    for d, (group, k) in enumerate(zip(allowed, counts)):
        g = tuple(sorted({int(i) for i in group}))
        if not g or g[0] < 0 or g[-1] >= k:
            raise NasrankError(f"allowed choices {list(group)!r} of decision point {d} must be a "
                               f"non-empty subset of 0..{k - 1}")
        out.append(g)
    return tuple(out)


def contains(allowed: Allowed, choices: Sequence[int]) -> bool:
    """Whether the architecture with choice indices ``choices`` lies in the sub-supernet."""
    return all(int(c) in a for c, a in zip(choices, allowed))


class RestrictedUniformSampler(ArchSampler):
    """Uniform single-path sampling inside a sub-supernet: decision point ``d`` draws uniformly
    from ``allowed[d]``; ``archs_per_step`` paths per step."""

    def __init__(self, supernet: Supernet, allowed: Sequence[Sequence[int]] | None = None,
                 archs_per_step: int = 1) -> None:
        super().__init__(supernet)
        if isinstance(archs_per_step, bool) or int(archs_per_step) < 1:
            raise NasrankError(f"archs_per_step must be >= 1, got {archs_per_step!r}")
        self.allowed = full_allowed(supernet) if allowed is None else check_allowed(
            supernet, allowed)
        self.archs_per_step = int(archs_per_step)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        return [self.supernet.arch_from_choices([a[int(rng.integers(len(a)))]
                                                 for a in self.allowed])
                for _ in range(self.archs_per_step)]

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "allowed": [list(a) for a in self.allowed],
                "archs_per_step": self.archs_per_step}


def parse_allowed(text: Sequence[str], counts: Sequence[int]) -> list[list[int]] | None:
    """CLI/TOML form of ``allowed``: one string per decision point (``counts[d]`` choices),
    choice indices joined by ``+`` (``"0+2"``); ``"*"`` allows every choice, and an empty list
    the whole supernet (``None``)."""
    if not text:
        return None
    if len(text) != len(counts):
        raise ConfigError(f"allowed has {len(text)} entries {list(text)!r}, expected one per "
                          f"decision point ({len(counts)})")
    out: list[list[int]] = []
    for d, item in enumerate(text):
        if item.strip() == "*":
            out.append(list(range(counts[d])))
            continue
        try:
            out.append([int(v) for v in item.split("+")])
        except ValueError:
            raise ConfigError(f"allowed entry {item!r} of decision point {d} is not choice "
                              f"indices joined by '+' (e.g. '0+2') or '*'") from None
    return out


# ----------------------------------------------------------------------------- partitions
def set_partitions(n: int, b: int) -> Iterator[tuple[tuple[int, ...], ...]]:
    """Every partition of ``0..n-1`` into exactly ``b`` non-empty groups, each once (groups in
    order of their smallest element), by restricted growth strings."""
    if not 1 <= b <= n:
        raise NasrankError(f"cannot partition {n} choices into {b} non-empty groups")

    def grow(labels: list[int], used: int) -> Iterator[list[int]]:
        if len(labels) == n:
            if used == b:
                yield labels
            return
        if used + (n - len(labels)) < b:  # not enough items left to open the missing groups
            return
        for g in range(min(used + 1, b)):
            yield from grow(labels + [g], max(used, g + 1))

    for labels in grow([], 0):
        yield tuple(tuple(i for i in range(n) if labels[i] == g) for g in range(b))


def cut_value(sim: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Sum of ``sim[i, j]`` over the pairs ``i < j`` in different groups."""
    label = {i: g for g, grp in enumerate(groups) for i in grp}
    n = len(label)
    return float(sum(sim[i, j] for i in range(n) for j in range(i + 1, n)
                     if label[i] != label[j]))


def min_cut_partition(sim: np.ndarray, b: int, *, balanced: bool = True
                      ) -> tuple[tuple[tuple[int, ...], ...], float]:
    """(groups, cut) of the minimum ``b``-way cut of the symmetric similarity matrix ``sim``
    (indices 0..n-1), by exact enumeration; ``balanced`` keeps group sizes within one of each
    other. Ties go to the first partition in :func:`set_partitions` order."""
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or not np.allclose(sim, sim.T, equal_nan=True):
        raise NasrankError(f"similarity must be a symmetric square matrix, got shape "
                           f"{sim.shape}")
    if not np.all(np.isfinite(sim)):
        raise NasrankError(f"similarity matrix has non-finite entries: {sim.tolist()}")
    best, best_cut = None, np.inf
    for groups in set_partitions(sim.shape[0], int(b)):
        sizes = [len(g) for g in groups]
        if balanced and max(sizes) - min(sizes) > 1:
            continue
        c = cut_value(sim, groups)
        if c < best_cut - 1e-12:
            best, best_cut = groups, c
    assert best is not None  # a balanced partition always exists for 1 <= b <= n
    return best, float(best_cut)


# ----------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Split:
    """Choices of decision point ``decision`` partitioned into ``groups`` (choice indices)."""

    decision: int
    groups: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        groups = tuple(sorted(tuple(sorted(int(i) for i in g)) for g in self.groups))
        flat = [i for g in groups for i in g]
        if not groups or any(not g for g in groups) or len(flat) != len(set(flat)):
            raise NasrankError(f"split groups {self.groups!r} must be non-empty and disjoint")
        object.__setattr__(self, "groups", groups)

    @property
    def choices(self) -> frozenset[int]:
        return frozenset(i for g in self.groups for i in g)


def split_distance(a: Split, b: Split) -> int:
    """Definition 1 (split distance): the least number of choices that must change group to turn
    ``a`` into ``b``, group labels matched optimally; ``n - max_matching sum |A_g ∩ B_h|``.

    Splits of different decision points (or of different choice sets) share nothing to match:
    their distance is ``max(|A|, |B|)`` (every choice moves). This keeps the distance a metric
    (identity, symmetry, triangle inequality), since any two splits of one choice set are at
    most ``n - 1`` apart."""
    if a.decision != b.decision or a.choices != b.choices:
        return max(len(a.choices), len(b.choices))
    overlap = np.array([[len(set(g) & set(h)) for h in b.groups] for g in a.groups])
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return len(a.choices) - int(overlap[rows, cols].sum())


# ----------------------------------------------------------------------------- metrics
def _with_choice(arch_choices: Sequence[int], d: int, c: int) -> list[int]:
    out = list(arch_choices)
    out[d] = c
    return out


def _sample_paths(allowed: Allowed, paths: int, rng: np.random.Generator) -> list[list[int]]:
    return [[a[int(rng.integers(len(a)))] for a in allowed] for _ in range(paths)]


def _as_batches(batches: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        return [batches]
    out = list(batches)
    if not out:
        raise NasrankError("no batches given to compute the split metric on")
    return out


def gm_similarity(supernet: Supernet, allowed: Allowed, decision: int, batches: Any,
                  base_paths: Sequence[Sequence[int]], device: torch.device) -> np.ndarray:
    """Cosine similarity of the shared-weight gradients of the choices ``allowed[decision]``."""
    batches = _as_batches(batches)
    params = [p for p in supernet.parameters() if p.requires_grad]
    buffers = {k: v.detach().clone() for k, v in supernet.named_buffers()}
    was_training = supernet.training
    supernet.train()
    grads: list[list[torch.Tensor | None]] = []
    try:
        for c in allowed[decision]:
            acc: list[torch.Tensor | None] = [None] * len(params)
            for base in base_paths:
                arch = supernet.arch_from_choices(_with_choice(base, decision, c))
                for x, y in batches:
                    x, y = x.to(device), y.to(device)
                    loss = torch.nn.functional.cross_entropy(supernet(x, arch), y)
                    gs = torch.autograd.grad(loss, params, allow_unused=True)
                    for j, g in enumerate(gs):
                        if g is not None:
                            acc[j] = g.detach() if acc[j] is None else acc[j] + g.detach()
            grads.append(acc)
    finally:
        with torch.no_grad():
            for k, v in supernet.named_buffers():
                v.copy_(buffers[k])
        supernet.train(was_training)
    # shared weights: the parameters that every choice's paths reach
    shared = [j for j in range(len(params)) if all(g[j] is not None for g in grads)]
    if not shared:
        raise NasrankError(f"no parameter receives a gradient from every choice of decision "
                           f"point {decision}; gradient matching needs shared weights")
    vecs = torch.stack([torch.cat([g[j].flatten() for j in shared]) for g in grads]).double()
    norms = vecs.norm(dim=1).clamp_min(1e-30)
    cos = (vecs @ vecs.T) / (norms[:, None] * norms[None, :])
    return cos.cpu().numpy()


class ProxyCache:
    """Zero-cost proxy scores of paths of one supernet's *current* weights, by architecture key
    (every node of a zero-cost tree scores the same initial weights, so scores are shared)."""

    def __init__(self) -> None:
        self.scores: dict[str, dict[str, float]] = {}

    def get(self, supernet: Supernet, arch: Arch, names: Sequence[str],
            batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
            seed: int) -> dict[str, float]:
        from .proxies import score

        key = supernet.space.key(arch)
        have = self.scores.setdefault(key, {})
        missing = [n for n in names if n not in have]
        if missing:
            net = supernet.subnet(arch)
            have.update(score(net, batch, missing, device, seed))
        return {n: have[n] for n in names}


def proxy_similarity(supernet: Supernet, allowed: Allowed, decision: int, metric: str,
                     batch: tuple[torch.Tensor, torch.Tensor], base_paths: Sequence[Sequence[int]],
                     device: torch.device, seed: int, cache: ProxyCache | None = None,
                     also: Sequence[str] = ()) -> np.ndarray:
    """``-|s_i - s_j|`` of the mean proxy scores of the choices ``allowed[decision]``
    (``also``: further proxies computed in the same passes, for the cache)."""
    cache = cache if cache is not None else ProxyCache()
    names = [metric, *[n for n in also if n != metric]]
    means = []
    for c in allowed[decision]:
        vals = [cache.get(supernet, supernet.arch_from_choices(_with_choice(b, decision, c)),
                          names, batch, device, seed)[metric] for b in base_paths]
        finite = [v for v in vals if np.isfinite(v)]
        means.append(float(np.mean(finite)) if finite else np.nan)
    s = np.array(means)
    sim = -np.abs(s[:, None] - s[None, :])
    bad = ~np.isfinite(sim)
    if bad.any():
        low = float(np.min(sim[~bad])) if (~bad).any() else 0.0
        sim[bad] = low
        np.fill_diagonal(sim, 0.0)
    return sim


def edge_similarity(supernet: Supernet, allowed: Allowed, decision: int, metric: str,
                    batches: Any, base_paths: Sequence[Sequence[int]], *,
                    device: str | torch.device = "cpu", seed: int = 0,
                    cache: ProxyCache | None = None, also: Sequence[str] = ()) -> np.ndarray:
    """Pairwise similarity of the allowed choices of ``decision`` under ``metric`` (module
    docstring); ``base_paths`` are the choice indices of the sampled paths (their entry at
    ``decision`` is replaced by each candidate)."""
    metric = canonical_proxy(metric)
    also = tuple(canonical_proxy(n) for n in also)
    if metric not in METRICS:
        raise NasrankError(f"unknown split metric {metric!r}; expected one of {list(METRICS)}")
    device = torch.device(device)
    if metric == "gm":
        return gm_similarity(supernet, allowed, decision, batches, base_paths, device)
    batch = _as_batches(batches)[0]
    return proxy_similarity(supernet, allowed, decision, metric, batch, base_paths, device,
                            seed, cache, also)


# ----------------------------------------------------------------------------- policy & tree
class SplittingPolicy:
    """Branching factor of a node at ``depth`` (``None``: the node is a leaf)."""

    def branching(self, depth: int) -> int | None:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__}


class ConstantPolicy(SplittingPolicy):
    """The paper's constant policy: split every node down to ``depth`` with the same ``b``."""

    def __init__(self, depth: int, branching: int) -> None:
        if isinstance(depth, bool) or int(depth) < 0 or isinstance(branching, bool) \
                or int(branching) < 2:
            raise NasrankError(f"constant policy needs depth >= 0 and branching >= 2, got "
                               f"depth={depth!r}, branching={branching!r}")
        self.depth, self.b = int(depth), int(branching)

    def branching(self, depth: int) -> int | None:
        return self.b if depth < self.depth else None

    def config(self) -> dict[str, Any]:
        return {"name": "constant", "depth": self.depth, "branching": self.b}


@dataclass
class Node:
    """A sub-supernet of the splitting tree; ``split`` and ``children`` are set when split."""

    allowed: Allowed
    depth: int = 0
    split: Split | None = None
    cut: float | None = None
    children: list[Node] = field(default_factory=list)

    def leaves(self) -> list[Node]:
        return [self] if not self.children else [lf for c in self.children for lf in c.leaves()]

    def splits_at(self, depth: int) -> list[Split]:
        """The splits made by the nodes at ``depth`` (left to right)."""
        if self.depth == depth:
            return [self.split] if self.split is not None else []
        return [s for c in self.children for s in c.splits_at(depth)]

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": [list(a) for a in self.allowed], "depth": self.depth,
                "split": None if self.split is None else
                {"decision": self.split.decision, "groups": [list(g) for g in self.split.groups]},
                "cut": self.cut, "children": [c.to_dict() for c in self.children]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        s = d.get("split")
        return cls(tuple(tuple(a) for a in d["allowed"]), int(d["depth"]),
                   None if s is None else Split(int(s["decision"]), tuple(map(tuple, s["groups"]))),
                   d.get("cut"), [cls.from_dict(c) for c in d.get("children", [])])


def build_tree(
    supernet: Supernet, policy: SplittingPolicy, metric: str, batches: Any, *,
    paths: int = 4, balanced: bool = True, seed: int = 0, device: str | torch.device = "cpu",
    warmup: Callable[[Supernet, Allowed], None] | None = None,
    cache: ProxyCache | None = None, also: Sequence[str] = (),
) -> Node:
    """The splitting tree of ``supernet`` under ``policy`` (module docstring).

    Each internal node works on its own copy of its parent's weights: ``warmup(copy, allowed)``
    (e.g. a few epochs of :func:`~supernet.trainer.train_supernet` with a
    :class:`RestrictedUniformSampler`) runs before its metric when given. ``supernet`` itself is
    not changed. Base paths come from a generator seeded by ``(seed, node number)``."""
    if int(paths) < 1:
        raise NasrankError(f"paths must be >= 1, got {paths!r}")
    metric = canonical_proxy(metric)
    also = tuple(canonical_proxy(n) for n in also)
    if metric not in METRICS:
        raise NasrankError(f"unknown split metric {metric!r}; expected one of {list(METRICS)}")
    cache = cache if cache is not None else ProxyCache()
    root = Node(full_allowed(supernet))
    counter = itertools.count()

    def expand(node: Node, net: Supernet, done: frozenset[int]) -> None:
        b = policy.branching(node.depth)
        if b is None:
            return
        number = next(counter)
        if warmup is not None:
            net = copy.deepcopy(net)
            warmup(net, node.allowed)
        rng = np.random.default_rng([int(seed), number])
        base = _sample_paths(node.allowed, int(paths), rng)
        best: tuple[float, int, tuple[tuple[int, ...], ...]] | None = None
        for d, opts in enumerate(node.allowed):
            if d in done or len(opts) < b:
                continue
            sim = edge_similarity(net, node.allowed, d, metric, batches, base, device=device,
                                  seed=seed, cache=cache, also=also)
            groups, cut = min_cut_partition(sim, b, balanced=balanced)
            if best is None or cut < best[0] - 1e-12:
                best = (cut, d, tuple(tuple(opts[i] for i in g) for g in groups))
        if best is None:
            return  # nothing left to split: the node stays a leaf
        cut, d, groups = best
        node.split, node.cut = Split(d, groups), cut
        for g in node.split.groups:
            allowed = tuple(tuple(g) if i == d else a for i, a in enumerate(node.allowed))
            child = Node(allowed, node.depth + 1)
            node.children.append(child)
            expand(child, net, done | {d})

    expand(root, supernet, frozenset())
    return root


def internal_distances(tree: Node, depth: int) -> list[int]:
    """Split distances between every pair of splits made at ``depth`` within one tree."""
    splits = tree.splits_at(depth)
    return [split_distance(a, b) for a, b in itertools.combinations(splits, 2)]


def external_distances(trees: Sequence[Node], depth: int) -> list[int]:
    """Split distances between the splits at ``depth`` of different trees (other seeds): every
    pair of splits taken from two different trees."""
    out = []
    for t1, t2 in itertools.combinations(trees, 2):
        out += [split_distance(a, b) for a in t1.splits_at(depth) for b in t2.splits_at(depth)]
    return out


# ----------------------------------------------------------------------------- leaves
class FewShotSupernet:
    """The trained leaves of a splitting tree: ``supernets[k]`` holds the weights of the
    architectures of ``leaves[k]``."""

    def __init__(self, leaves: Sequence[Allowed], supernets: Sequence[Supernet]) -> None:
        if len(leaves) != len(supernets) or not leaves:
            raise NasrankError(f"need one supernet per leaf, got {len(supernets)} supernets for "
                               f"{len(leaves)} leaves")
        self.leaves = [tuple(tuple(a) for a in lf) for lf in leaves]
        self.supernets = list(supernets)

    def leaf_index(self, arch: Arch) -> int:
        """The leaf containing ``arch`` (leaves of a tree partition the space)."""
        net = self.supernets[0]
        choices = net.choices_of(net.check_arch(arch))
        hits = [k for k, lf in enumerate(self.leaves) if contains(lf, choices)]
        if len(hits) != 1:
            raise NasrankError(f"architecture {arch!r} lies in {len(hits)} leaves {hits}; the "
                               f"leaves must partition the space")
        return hits[0]

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.supernets[self.leaf_index(arch)](x, arch)


def _fresh(make_supernet: Callable[[], Supernet], seed: int) -> Supernet:
    """A supernet initialised from ``torch.manual_seed(seed)`` without touching the caller's
    global torch generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make_supernet()


def train_fewshot(
    leaves: Sequence[Allowed], make_supernet: Callable[[], Supernet], data: Any, *,
    epochs: int, batch_size: int, lr: float, seed: int = 0, archs_per_step: int = 1,
    checkpoint_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu",
    progress: bool = False, on_epoch_end: Callable[[int, int], None] | None = None,
    **train_kwargs: Any,
) -> tuple[FewShotSupernet, dict[str, Any]]:
    """Train every leaf from scratch (its own seeded initialisation, ``seed + 1000 * k``) for
    ``epochs`` with :class:`RestrictedUniformSampler`; returns the trained leaves and the cost
    ``{"leaf_epochs", "steps", "path_images", "seconds"}``.

    With ``checkpoint_dir`` each leaf checkpoints into ``leaf_<k>/`` after every epoch and
    ``leaves.json`` records the leaves; a rerun resumes each leaf where it stopped (bitwise:
    the trainer's resume), and refuses a directory of other leaves. ``on_epoch_end(k, epoch)``
    runs after leaf ``k``'s checkpoint of ``epoch``."""
    from .trainer import train_supernet

    leaves = [tuple(tuple(a) for a in lf) for lf in leaves]
    base = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if base is not None:
        from nasrank.launch import launched_rank
        from nasrank.safeio import write_text_atomic

        record = {"leaves": [[list(a) for a in lf] for lf in leaves], "seed": int(seed)}
        meta = base / "leaves.json"
        if meta.exists():
            if json.loads(meta.read_text()) != record:
                raise NasrankError(f"{str(meta)!r} records other leaves or seed; use another "
                                   f"checkpoint directory")
        elif launched_rank()[0] == 0:  # under torchrun rank 0 writes, like the checkpoints
            base.mkdir(parents=True, exist_ok=True)
            write_text_atomic(meta, json.dumps(record))  # another rank never reads half of it
    nets, cost = [], {"leaf_epochs": 0, "steps": 0, "path_images": 0, "seconds": 0.0}
    for k, lf in enumerate(leaves):
        net = _fresh(make_supernet, seed + 1000 * k)
        sampler = RestrictedUniformSampler(net, lf, archs_per_step)
        cb = None if on_epoch_end is None else (lambda e, k=k: on_epoch_end(k, e))
        stats = train_supernet(net, data, sampler, epochs=epochs, batch_size=batch_size, lr=lr,
                               seed=seed + 1000 * k, device=device, progress=progress,
                               checkpoint_dir=None if base is None else base / f"leaf_{k}",
                               on_epoch_end=cb, **train_kwargs)
        nets.append(net)
        cost["leaf_epochs"] += stats.epochs
        cost["steps"] += stats.steps
        cost["path_images"] += stats.path_images
        cost["seconds"] += stats.seconds
    return FewShotSupernet(leaves, nets), cost


def fewshot_weak_labels(
    fewshot: FewShotSupernet, archs: Sequence[Arch], data: Any, out_dir: str | os.PathLike,
    **kwargs: Any,
) -> LabelTable:
    """Weak labels of ``archs``, each evaluated with the weights of its own leaf
    (:func:`supernet.weak_labels.generate_weak_labels` per leaf into ``out_dir/leaf_<k>.csv``,
    resumable); returns one table in the order of first appearance of each key."""
    from .weak_labels import generate_weak_labels

    per_leaf: dict[int, list[Arch]] = {}
    for arch in archs:
        per_leaf.setdefault(fewshot.leaf_index(arch), []).append(arch)
    tables = {k: generate_weak_labels(fewshot.supernets[k], a, data,
                                      Path(out_dir) / f"leaf_{k}.csv", **kwargs)
              for k, a in sorted(per_leaf.items())}
    space = fewshot.supernets[0].space
    keys: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    for arch in archs:
        key = space.key(fewshot.supernets[0].check_arch(arch))
        if key not in rows:
            rows[key] = tables[fewshot.leaf_index(arch)].row(key)
            keys.append(key)
    names = next(iter(tables.values())).names
    return LabelTable(keys, {n: [rows[k][n] for k in keys] for n in names}, space=space.name)


# ----------------------------------------------------------------------------- registry entry
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import RestrictedUniformConfig  # noqa: E402, F401
