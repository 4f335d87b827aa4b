"""RD-NAS: ranking distillation from zero-cost proxies into a supernet (Dong et al., ICASSP 2023).

Zero-cost proxies are a cheap teacher of the *ranking* of architectures. Three pieces:

* :class:`ZeroCostTeacher`: the teacher's score of an architecture. Proxy values come from a
  precomputed label table (``nasrank proxies`` output: a CSV keyed by canonical key with
  ``zc_<proxy>`` columns) or are computed on the fly (:func:`nasrank.supernet.proxies.score` on
  a seeded, freshly initialised copy of the path and a seeded Gaussian batch) and cached. A
  *reference pool* of architectures (the table's rows, or ``pool_size`` architectures drawn
  with the teacher's seed) fixes the scale: the score of an architecture is the mean over the
  chosen proxies of its percentile among the pool's values of that proxy (one proxy: its
  percentile; several: the rank average). Non-finite proxy values count as the worst.
* :class:`MarginPairSampler` (``SAMPLERS["rdnas"]``): splits the pool into ``groups`` groups by
  teacher rank (group 0 = the best ``1/groups``) and samples pairs of architectures from two
  different groups.
* :class:`RankingDistillStrategy` (``STEP_STRATEGIES["rdnas"]``): for each consecutive pair
  ``(a, b)`` of a step's paths, the supernet's score of a path is ``-cross-entropy`` on the batch,
  and a margin ranking loss ``max(0, margin_ab - sign(t_a - t_b) * (s_a - s_b))`` makes the pair
  ordered as the teacher orders it, with ``margin_ab = margin * |group(a) - group(b)|`` growing
  with the pair's group distance. The loss of the pair is ``CE_a + CE_b + weight * ranking``;
  both paths get the ranking gradient (the pair's two forwards share one backward). Under
  DDP the hinge sees the pair's scores on the whole global batch. Options of ours, not the
  paper's: ``decay_epochs`` (the weight falls linearly to 0 over the first epochs),
  ``uniform_paths`` (uniform paths before the pairs, cross-entropy only) and ``pair_ce=False``
  (the pairs learn the ranking loss only).

The paper's released code (PicoNAS) is the source for the method's details; the numbers of this
implementation's defaults are ours (see BENCHMARKS.md for what was measured).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nasrank.errors import LabelTableError, NasrankError
from nasrank.proxy_names import canonical_proxy

from .base import Arch, ArchSampler, StepStrategy, Supernet


# ----------------------------------------------------------------------------- teacher
class ZeroCostTeacher:
    """Zero-cost teacher scores of architectures (see the module docstring).

    ``proxies``: proxy names (table columns ``zc_<name>``). ``table``: path of a label table, or
    ``None`` to compute on the fly over a pool of ``pool_size`` architectures drawn with
    ``seed``. ``image_size``/``batch_size``: the Gaussian batch of on-the-fly scoring. The pool
    and every computed value are in :meth:`state_dict`.
    """

    def __init__(
        self, supernet: Supernet, *, proxies: Sequence[str] = ("nwot",), table: str | None = None,
        pool_size: int = 500, seed: int = 0, image_size: int = 32, batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(proxies, str) or not proxies:
            raise NasrankError(f"proxies must be a non-empty list of names, got {proxies!r}")
        self.supernet = supernet
        self.proxies = tuple(canonical_proxy(str(p)) for p in proxies)  # jacob_cov -> jacov
        if len(set(self.proxies)) != len(self.proxies):
            raise NasrankError(f"proxies {list(self.proxies)} name one proxy twice")
        if table is None:
            from .proxies import available_proxies

            unknown = [p for p in self.proxies if p not in available_proxies()]
            if unknown:
                raise NasrankError(f"unknown zero-cost proxies {unknown}; expected names from "
                                   f"{available_proxies()}")
        for name, v, low in (("pool_size", pool_size, 2), ("image_size", image_size, 1),
                             ("batch_size", batch_size, 2)):
            if isinstance(v, bool) or int(v) != v or v < low:
                raise NasrankError(f"{name} must be an int >= {low}, got {v!r}")
        self.table = None if table is None else str(table)
        self.pool_size, self.seed = int(pool_size), int(seed)
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.device = torch.device(device)
        self.pool_keys: list[str] | None = None
        self.pool_values: np.ndarray | None = None  # [pool, proxies], non-finite -> -inf
        self._extra: dict[str, np.ndarray] = {}  # on-the-fly values of non-pool archs
        self._index: dict[str, int] = {}
        self._sorted: np.ndarray | None = None  # per-proxy sorted pool values [proxies, pool]
        self._pool_scores: np.ndarray | None = None

    def settings(self) -> tuple[Any, ...]:
        return (self.proxies, self.table, self.pool_size, self.seed, self.image_size,
                self.batch_size)

    # -- the pool
    def _ensure_pool(self) -> None:
        if self.pool_keys is not None:
            return
        if self.table is not None:  # every rank reads the table (cheap; errors everywhere)
            self._set_pool(*self._read_table())
            return
        if not (dist.is_available() and dist.is_initialized()):
            self._set_pool(*self._compute_pool())
            return
        # distributed: rank 0 computes the pool once, every rank gets it (or rank 0's error)
        box: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                box = [("ok", *self._compute_pool())]
            except NasrankError as err:
                box = [("error", str(err), None)]
        dist.broadcast_object_list(box, 0)
        status, keys, values = box[0]
        if status != "ok":
            raise NasrankError(f"rank 0 could not compute the zero-cost teacher: {keys}")
        self._set_pool(keys, values)

    def _set_pool(self, keys: list[str], values: np.ndarray) -> None:
        values = np.where(np.isfinite(values), values, -np.inf).astype(np.float64)
        if values.shape != (len(keys), len(self.proxies)) or len(keys) < 2:
            raise NasrankError(f"teacher pool needs >= 2 architectures x {len(self.proxies)} "
                               f"proxies, got values of shape {values.shape}")
        self.pool_keys, self.pool_values = list(keys), values
        self._index = {k: i for i, k in enumerate(self.pool_keys)}
        self._sorted = np.sort(values, axis=0).T
        self._pool_scores = self._scores_of(values)
        self._sorted_scores = np.sort(self._pool_scores)

    def _read_table(self) -> tuple[list[str], np.ndarray]:
        from nasrank.spaces.labels import LabelTable

        space = self.supernet.space
        t = LabelTable.read_csv(self.table, space=space.name)
        cols = [f"zc_{p}" for p in self.proxies]
        missing = [c for c in cols if c not in t.names]
        if missing:
            raise LabelTableError(f"teacher table {self.table!r} has no column(s) {missing}; "
                                  f"it has {t.names} (make it with `nasrank proxies`)")
        keys = []
        for k in t.keys:
            try:
                keys.append(space.key(self.supernet.check_arch(space.parse(k))))
            except NasrankError as err:
                raise LabelTableError(f"teacher table {self.table!r}: key {k!r} is not an "
                                      f"architecture of this supernet ({err})") from None
        if len(set(keys)) != len(keys):
            raise LabelTableError(f"teacher table {self.table!r} lists an architecture twice "
                                  f"under different keys (keys must be canonical)")
        return keys, np.stack([t.column(c) for c in cols], axis=1)

    def _compute_pool(self) -> tuple[list[str], np.ndarray]:
        rng = np.random.default_rng(self.seed)
        counts = [len(d) for d in self.supernet.decisions()]
        space = self.supernet.space
        found: dict[str, Arch] = {}
        for _ in range(20 * self.pool_size):
            if len(found) >= self.pool_size:
                break
            arch = self.supernet.arch_from_choices([int(rng.integers(c)) for c in counts])
            found.setdefault(space.key(arch), arch)
        keys = list(found)
        return keys, np.stack([self._compute(found[k]) for k in keys])

    def _compute(self, arch: Arch) -> np.ndarray:
        """Proxy values of a freshly initialised (seeded, on the CPU) copy of ``arch``'s path
        on the seeded Gaussian batch."""
        from .proxies import score

        cfg = self.supernet.config()
        c, k = int(cfg.get("in_channels", 3)), int(cfg.get("num_classes", 10))
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.batch_size, c, self.image_size, self.image_size, generator=g)
        y = torch.randint(0, k, (self.batch_size,), generator=g)
        net = self.supernet.subnet(arch).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for m in net.modules():
                if m is not net and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        values = score(net, (x, y), list(self.proxies), self.device, self.seed)
        return np.array([values[p] for p in self.proxies], dtype=np.float64)

    # -- scores
    def proxy_values(self, arch: Arch) -> np.ndarray:
        """The proxies of ``arch`` (table lookup, or computed once and cached)."""
        self._ensure_pool()
        key = self.supernet.space.key(self.supernet.check_arch(arch))
        i = self._index.get(key)
        if i is not None:
            return self.pool_values[i]  # type: ignore[index]
        if self.table is not None:
            raise NasrankError(
                f"architecture {key!r} is not in the teacher table {self.table!r}: use the "
                f"'rdnas' sampler (its pairs come from the table) or an on-the-fly teacher")
        if key not in self._extra:
            v = self._compute(arch)
            self._extra[key] = np.where(np.isfinite(v), v, -np.inf)
        return self._extra[key]

    def _scores_of(self, values: np.ndarray) -> np.ndarray:
        """Mean over proxies of the percentile ``(#below + #equal / 2) / pool`` of each row of
        ``values`` ([archs, proxies]) among the pool's values."""
        assert self._sorted is not None
        n, k = self._sorted.shape[1], self._sorted.shape[0]
        # integer half-counts summed over proxies, divided once: equal ranks give equal scores
        # exactly (no float noise splits a tie)
        halves = sum(np.searchsorted(s, v, "left") + np.searchsorted(s, v, "right")
                     for s, v in zip(self._sorted, np.atleast_2d(values).T))
        return np.asarray(halves, dtype=np.float64) / (2 * n * k)

    def score(self, arch: Arch) -> float:
        """Teacher score in [0, 1] (higher = predicted better): mean percentile of ``arch``'s
        proxy values among the pool's."""
        return float(self._scores_of(self.proxy_values(arch)[None, :])[0])

    def _above(self, scores: np.ndarray) -> np.ndarray:
        """Fraction of the pool the teacher scores strictly above each of ``scores``."""
        n = len(self._sorted_scores)
        return (n - np.searchsorted(self._sorted_scores, scores, "right")) / n

    def rank_fraction(self, arch: Arch) -> float:
        """Fraction of the pool the teacher scores strictly above ``arch``."""
        return float(self._above(np.array([self.score(arch)]))[0])

    def group(self, arch: Arch, groups: int) -> int:
        """``floor(rank * groups / pool)``: group 0 holds the teacher's best ``1/groups``."""
        return min(groups - 1, int(math.floor(self.rank_fraction(arch) * groups)))

    def pool_groups(self, groups: int) -> list[list[str]]:
        """The pool's keys in each of ``groups`` groups (some may be empty when scores tie)."""
        self._ensure_pool()
        assert self._pool_scores is not None and self.pool_keys is not None
        above = self._above(self._pool_scores)
        gid = np.minimum(groups - 1, np.floor(above * groups).astype(int))
        return [[k for k, gi in zip(self.pool_keys, gid) if gi == g] for g in range(groups)]

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        if self.pool_keys is None:
            return {}
        extra = sorted(self._extra)
        return {"pool_keys": list(self.pool_keys),
                "pool_values": torch.from_numpy(self.pool_values.copy()),  # type: ignore[union-attr]
                "extra_keys": extra,
                "extra_values": torch.from_numpy(np.array(
                    [self._extra[k] for k in extra], dtype=np.float64).reshape(
                        len(extra), len(self.proxies)))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        want = {"pool_keys", "pool_values", "extra_keys", "extra_values"}
        if set(state) != want:
            raise NasrankError(f"teacher state has keys {sorted(state)}, expected {sorted(want)}")
        self._set_pool(list(state["pool_keys"]), state["pool_values"].numpy())
        self._extra = {k: v for k, v in zip(state["extra_keys"], state["extra_values"].numpy())}


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_teacher(supernet: Supernet, **settings: Any) -> ZeroCostTeacher:
    """One teacher per supernet and settings, so the sampler and the strategy of one run score
    each architecture once."""
    teacher = ZeroCostTeacher(supernet, **settings)
    per_net = _SHARED.setdefault(supernet, {})
    return per_net.setdefault(teacher.settings(), teacher)


# ----------------------------------------------------------------------------- sampler
class MarginPairSampler(ArchSampler):
    """``pairs`` pairs per step, each from two different teacher groups: a first group drawn
    uniformly among the non-empty groups, a second among the others, an architecture uniformly
    within each. Returns ``[a1, b1, a2, b2, ...]``."""

    def __init__(self, supernet: Supernet, teacher: ZeroCostTeacher, *, groups: int = 5,
                 pairs: int = 1, uniform_paths: int = 0) -> None:
        super().__init__(supernet)
        if isinstance(groups, bool) or int(groups) != groups or groups < 2:
            raise NasrankError(f"groups must be an int >= 2, got {groups!r}")
        if isinstance(pairs, bool) or int(pairs) != pairs or pairs < 1:
            raise NasrankError(f"pairs must be an int >= 1, got {pairs!r}")
        self.teacher, self.groups, self.pairs = teacher, int(groups), int(pairs)
        self.uniform_paths = _count(uniform_paths, "uniform_paths")
        self._members: list[list[Arch]] | None = None

    def members(self) -> list[list[Arch]]:
        """The architectures of each group (group 0 = the teacher's best)."""
        if self._members is None:
            parse = self.supernet.space.parse
            self._members = [[self.supernet.check_arch(parse(k)) for k in g]
                             for g in self.teacher.pool_groups(self.groups)]
            if sum(1 for g in self._members if g) < 2:
                raise NasrankError(
                    "the teacher puts the whole pool in one group (its scores all tie): "
                    "cannot sample pairs from different groups; use other proxies")
        return self._members

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        members = self.members()
        nonempty = [g for g, m in enumerate(members) if m]
        counts = [len(d) for d in self.supernet.decisions()]
        out = [self.supernet.arch_from_choices([int(rng.integers(c)) for c in counts])
               for _ in range(self.uniform_paths)]
        for _ in range(self.pairs):
            g1 = nonempty[int(rng.integers(len(nonempty)))]
            rest = [g for g in nonempty if g != g1]
            g2 = rest[int(rng.integers(len(rest)))]
            for g in (g1, g2):
                out.append(members[g][int(rng.integers(len(members[g])))])
        return out

    def config(self) -> dict[str, Any]:
        cfg = {"name": type(self).__name__, "groups": self.groups, "pairs": self.pairs,
               "teacher": list(map(_jsonable, self.teacher.settings()))}
        if self.uniform_paths:  # only when set: runs recorded before the option still resume
            cfg["uniform_paths"] = self.uniform_paths
        return cfg

    def state_dict(self) -> dict[str, Any]:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state)
        self._members = None


def _count(v: Any, name: str) -> int:
    if isinstance(v, bool) or int(v) != v or v < 0:
        raise NasrankError(f"{name} must be an int >= 0, got {v!r}")
    return int(v)


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# ----------------------------------------------------------------------------- loss
def pair_ranking_loss(
    s_a: torch.Tensor, s_b: torch.Tensor, t_a: Sequence[float], t_b: Sequence[float],
    margins: Sequence[float],
) -> torch.Tensor:
    """Mean over pairs of ``max(0, m - sign(t_a - t_b) * (s_a - s_b))`` (torch's margin ranking
    loss, one margin per pair); pairs the teacher ties contribute 0."""
    if not (s_a.shape == s_b.shape and s_a.dim() == 1 and len(t_a) == len(t_b) == len(margins)
            == s_a.shape[0]):
        raise NasrankError(f"pair_ranking_loss needs equal-length 1-d inputs, got {tuple(s_a.shape)}, "
                           f"{tuple(s_b.shape)}, {len(t_a)}, {len(t_b)}, {len(margins)}")
    terms = []
    for i in range(s_a.shape[0]):
        sign = float(np.sign(float(t_a[i]) - float(t_b[i])))
        if sign == 0:
            terms.append(s_a[i] * 0.0)
            continue
        target = torch.tensor([sign], dtype=s_a.dtype, device=s_a.device)
        terms.append(F.margin_ranking_loss(s_a[i:i + 1], s_b[i:i + 1], target,
                                           margin=float(margins[i])))
    return torch.stack(terms).mean()


def _global_mean(t: torch.Tensor) -> torch.Tensor:
    """A scalar whose value is the mean of ``t`` over the ranks of a distributed run and whose
    gradient is ``t``'s own (``t`` alone outside one). The hinge of the ranking loss must see
    the pair's scores on the whole global batch: on each rank's share alone it could be active
    on one rank and not on another, and the averaged gradient would differ from one process's.
    With the trainer's gradient average over ranks (equal shares), the gradient is then exactly
    one process's."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    mean = t.detach().clone()
    dist.all_reduce(mean)
    mean /= dist.get_world_size()
    return t + (mean - t.detach())


class RankingDistillStrategy(StepStrategy):
    """RD-NAS's loss over the step's consecutive path pairs (module docstring). Needs an even
    number of paths per batch (``same_batch=True`` and a pair sampler)."""

    def __init__(self, supernet: Supernet, teacher: ZeroCostTeacher, *, groups: int = 5,
                 margin: float = 0.01, weight: float = 1.0, decay_epochs: int = 0,
                 uniform_paths: int = 0, pair_ce: bool = True) -> None:
        super().__init__()
        if isinstance(groups, bool) or int(groups) != groups or groups < 2:
            raise NasrankError(f"groups must be an int >= 2, got {groups!r}")
        if not margin >= 0 or not weight >= 0:
            raise NasrankError(f"margin and weight must be >= 0, got {margin!r}, {weight!r}")
        if isinstance(decay_epochs, bool) or int(decay_epochs) != decay_epochs or decay_epochs < 0:
            raise NasrankError(f"decay_epochs must be an int >= 0, got {decay_epochs!r}")
        self.teacher, self.groups = teacher, int(groups)
        self.margin, self.weight = float(margin), float(weight)
        self.decay_epochs = int(decay_epochs)
        self.uniform_paths = _count(uniform_paths, "uniform_paths")
        if not isinstance(pair_ce, bool):
            raise NasrankError(f"pair_ce must be true or false, got {pair_ce!r}")
        if not pair_ce and self.weight == 0:
            raise NasrankError("pair_ce=False with weight 0 gives the pairs no loss at all")
        self.pair_ce = pair_ce
        self._epoch = 0
        self._first: tuple[Arch, torch.Tensor] | None = None

    def begin_epoch(self, model: nn.Module, epoch: int) -> None:
        self._epoch = int(epoch)

    def current_weight(self) -> float:
        """lambda of this epoch: ``weight``, or with ``decay_epochs = D > 0`` falling linearly
        to 0 over the first D epochs (``weight * max(0, 1 - epoch / D)``): the teacher orders
        the paths early, cross-entropy alone trains them afterwards. It depends on the epoch
        only, so a resumed run continues the same schedule."""
        if self.decay_epochs <= 0:
            return self.weight
        return self.weight * max(0.0, 1.0 - self._epoch / self.decay_epochs)

    def paths(self, archs: list[Arch]) -> list[Arch]:
        n = len(archs) - self.uniform_paths
        if n <= 0 or n % 2:
            raise NasrankError(
                f"ranking distillation compares pairs of paths on one batch, got {len(archs)} "
                f"path(s) on a batch ({self.uniform_paths} uniform first): use same_batch=True "
                f"and a sampler of pairs (e.g. 'rdnas' with the same uniform_paths)")
        return list(archs)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch,
             index: int) -> torch.Tensor | None:
        ce = self.criterion(model(x, arch), y)
        if index < self.uniform_paths:  # a uniform path: cross-entropy alone, as SPOS
            return ce
        if (index - self.uniform_paths) % 2 == 0:
            self._first = (arch, ce)  # its loss joins the pair's (both graphs are needed)
            return None
        assert self._first is not None
        a, ce_a = self._first
        self._first = None
        weight = self.current_weight()
        own = ce_a + ce if self.pair_ce else 0.0 * (ce_a + ce)
        if weight == 0.0:
            return own
        t = self.teacher
        margin = self.margin * abs(t.group(a, self.groups) - t.group(arch, self.groups))
        rank = pair_ranking_loss(-_global_mean(ce_a).view(1), -_global_mean(ce).view(1),
                                 [t.score(a)], [t.score(arch)], [margin])
        return own + weight * rank

    def config(self) -> dict[str, Any]:
        cfg = {"name": type(self).__name__, "groups": self.groups, "margin": self.margin,
               "weight": self.weight, "teacher": list(map(_jsonable, self.teacher.settings()))}
        # only when set: runs recorded before these options still resume
        if self.decay_epochs:
            cfg["decay_epochs"] = self.decay_epochs
        if self.uniform_paths:
            cfg["uniform_paths"] = self.uniform_paths
        if not self.pair_ce:
            cfg["pair_ce"] = False
        return cfg

    def state_dict(self) -> dict[str, Any]:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state)


# ----------------------------------------------------------------------------- registry entries
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import (  # noqa: E402, F401
    MarginPairSamplerConfig,
    RankingDistillConfig,
    _TeacherOptions,
)
