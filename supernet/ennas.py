"""EnNAS: supernet training by ensemble knowledge distillation with diversity-based sampling.

Each training step visits ``m`` subnets on one batch. Their logits ``z_i`` form the **ensemble
teacher** ``t = sum_i w_i z_i``, with ``w`` on the probability simplex minimising the
cross-entropy of ``t`` against the batch's labels (:func:`ensemble_weights`). The objective is
convex in ``w`` (cross-entropy is convex in the logits, ``t`` is linear in ``w``, the simplex is
convex), so a local method finds the global minimum: SLSQP (:func:`scipy.optimize.minimize`) with
the analytic gradient, the simplex as ``sum w = 1`` plus bounds ``[0, 1]``, float64, from the
uniform ``w`` (``m`` is a handful of variables: a few milliseconds per step). Each subnet's loss
is ``CE(z_i, y) + tau^2 KL(softmax(t / tau) || softmax(z_i / tau))`` with the teacher detached
(:func:`ensemble_kd_loss`, :class:`EnsembleKDStrategy`).

**Diversity-based sampling** (:class:`DiversitySampler`): the diversity of two operators of a
decision point is ``1 - mean cosine similarity`` of their output feature maps on the same inputs.
The inputs of a decision point's operators are the probe images routed through the supernet
along a uniformly sampled path: forward hooks capture the input of the path's operator at every
position of that decision point (NB201: the edge in every cell), every candidate operator is
applied to that same input, and the cosine of two outputs (flattened per example) is averaged
over examples, positions and ``probe_paths`` paths. A zero output (NB201 ``none``) has cosine 0
with anything (diversity 1). The matrices are recomputed at the start of every epoch
(:meth:`DiversitySampler.begin_epoch`, called by the trainer, which draws ``probe_size`` fresh
probe images of the training set from ``(seed, epoch)``), and optionally every
``refresh_every`` sampler calls, from the current weights, in train-mode BatchNorm with the
running statistics restored, so measuring never changes the supernet.

For each decision point the ``m`` operators of a step are drawn *sequentially*: each new one with
probability proportional to ``pi_o * mean diversity to the operators already drawn`` (without
replacement; ``pi`` alone for the first). The paper requires every operator to be equally likely
overall; diversity alone would favour the operators far from the rest, so the per-operator
factors ``pi`` are calibrated after every refresh until the exact inclusion probability of every
operator (summed over all ordered draws, :func:`inclusion_probabilities`) is ``m / n``
(:func:`calibrate`, multiplicative fixed-point updates). With ``m > n`` every operator is taken
``m // n`` times and the remaining ``m % n`` draws follow the calibrated process. The drawn
operators are then shuffled across the ``m`` subnets, so each subnet alone is uniform too.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

from nasrank.errors import NasrankError

from .base import Arch, ArchSampler, StepStrategy, Supernet, unwrap

MAX_SEQUENCES = 50_000  # ordered draws enumerated exactly by the calibration


# ----------------------------------------------------------------------------- teacher
def _ce_and_grad(w: np.ndarray, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``t = sum_i w_i z_i`` and its gradient in ``w``."""
    t = np.tensordot(w, z, axes=1)  # [B, C]
    t = t - t.max(axis=1, keepdims=True)
    logp = t - np.log(np.exp(t).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -float(logp[np.arange(n), y].mean())
    r = np.exp(logp)
    r[np.arange(n), y] -= 1.0  # softmax - onehot
    grad = np.einsum("mbc,bc->m", z, r) / n
    return loss, grad


def ensemble_weights(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Simplex weights ``w`` [m] minimising the cross-entropy of ``sum_i w_i logits[i]``
    (``logits``: [m, batch, classes]) against ``y`` (see module docstring)."""
    z = logits.detach().to("cpu", torch.float64).numpy()
    yy = y.detach().cpu().numpy().astype(np.int64)
    if z.ndim != 3 or z.shape[1] != len(yy) or len(yy) == 0:
        raise NasrankError(f"logits must be [m, batch, classes] with batch = {len(yy)} labels, "
                           f"got shape {tuple(logits.shape)}")
    m = z.shape[0]
    if m == 1:
        return np.ones(1)
    res = minimize(_ce_and_grad, np.full(m, 1.0 / m), args=(z, yy), jac=True, method="SLSQP",
                   bounds=[(0.0, 1.0)] * m,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                 "jac": lambda w: np.ones_like(w)}],
                   options={"ftol": 1e-12, "maxiter": 200})
    w = np.clip(res.x, 0.0, None)
    return w / w.sum()


def ensemble_kd_loss(z: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
                     tau: float) -> torch.Tensor:
    """``CE(z, y) + tau^2 * KL(softmax(teacher / tau) || softmax(z / tau))`` (batch mean;
    the teacher is detached)."""
    t = teacher.detach()
    kl = F.kl_div(F.log_softmax(z / tau, dim=1), F.log_softmax(t / tau, dim=1),
                  reduction="batchmean", log_target=True)
    return F.cross_entropy(z, y) + tau * tau * kl


def _all_gather(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` concatenated over the ranks of a distributed run along ``dim`` (itself alone)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


@contextlib.contextmanager
def _frozen_buffers(net: nn.Module):
    """Restore every buffer (BatchNorm running statistics) on exit."""
    saved = {k: v.detach().clone() for k, v in net.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in net.named_buffers():
                v.copy_(saved[k])


class EnsembleKDStrategy(StepStrategy):
    """Each path's loss is :func:`ensemble_kd_loss` against the step's ensemble teacher.

    ``begin_step`` runs the ``m`` paths: on a bare supernet their graphs are kept and reused by
    ``loss`` (one forward per path); under ``DistributedDataParallel`` the teacher logits come
    from a ``no_grad`` pass of the bare supernet (BatchNorm statistics restored) and ``loss``
    runs each path again through the wrapper, so every DDP forward has its backward. The
    weights ``w`` are solved on the logits of the whole global batch (gathered across ranks),
    so every rank uses the same ``w``. Running counts of teacher and student accuracy on the
    training batches are kept in ``state_dict`` (checkpointed, see :meth:`accuracies`).
    The ensemble is the paths of one batch: train with ``same_batch=True`` (the trainer's
    default); with one batch per path each "ensemble" is a single path and the loss is plain
    cross-entropy."""

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 0):
            raise NasrankError(f"tau must be a number > 0, got {tau!r}")
        self.tau = float(tau)
        self.stats = {"images": 0, "teacher_correct": 0, "student_correct": 0, "students": 0}
        self.last_weights: np.ndarray | None = None
        self._cache: list[torch.Tensor] | None = None
        self._teacher: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "tau": self.tau}

    def state_dict(self) -> dict[str, Any]:
        return {"stats": dict(self.stats)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"stats"} or set(state["stats"]) != set(self.stats):
            raise NasrankError(f"EnsembleKDStrategy state must hold 'stats' with keys "
                               f"{sorted(self.stats)}, got {state!r}")
        self.stats = {k: int(v) for k, v in state["stats"].items()}

    def accuracies(self) -> tuple[float, float]:
        """(ensemble-teacher accuracy, mean student accuracy) on the training batches so far."""
        n, s = self.stats["images"], self.stats["students"]
        if n == 0:
            raise NasrankError("no training step has been taken yet")
        return self.stats["teacher_correct"] / n, self.stats["student_correct"] / s

    def begin_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   archs: list[Arch]) -> None:
        wrapped = model is not unwrap(model)
        if wrapped:
            net = unwrap(model)
            with torch.no_grad(), _frozen_buffers(net):
                logits = [net(x, a) for a in archs]
            self._cache = None
        else:
            logits = [model(x, a) for a in archs]
            self._cache = logits
        z = torch.stack([t.detach() for t in logits])  # [m, B, C]
        w = ensemble_weights(_all_gather(z, 1), _all_gather(y, 0))
        self.last_weights = w
        self._teacher = torch.tensordot(torch.as_tensor(w, dtype=z.dtype, device=z.device), z,
                                        dims=1)
        self.stats["images"] += int(len(y))
        self.stats["teacher_correct"] += int((self._teacher.argmax(1) == y).sum())
        self.stats["students"] += int(len(y)) * len(archs)
        self.stats["student_correct"] += int((z.argmax(2) == y).sum())

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch,
             index: int) -> torch.Tensor:
        if self._teacher is None:
            raise NasrankError("EnsembleKDStrategy.loss called before begin_step")
        if self._cache is not None:
            z = self._cache[index]
            self._cache[index] = None  # type: ignore[call-overload]  # free the graph after use
        else:
            z = model(x, arch)
        return ensemble_kd_loss(z, self._teacher, y, self.tau)


# ----------------------------------------------------------------------------- diversity
def choice_modules(supernet: Supernet, decision: int, choice: int) -> list[nn.Module]:
    """The modules that run choice ``choice`` of decision point ``decision``, one per position
    where that decision acts. NB201: the edge's op in every cell; MBConv chain: the layer's
    candidate; other supernets provide a ``choice_modules(decision, choice)`` method."""
    own = getattr(supernet, "choice_modules", None)
    if callable(own):
        return list(own(decision, choice))
    from .mbconv_supernet import MBConvSupernet
    from .nb201_supernet import NB201Supernet, SuperCell

    if isinstance(supernet, NB201Supernet):
        return [cell.edges[decision].ops[choice] for cell in supernet.cells
                if isinstance(cell, SuperCell)]
    if isinstance(supernet, MBConvSupernet):
        return [supernet.blocks[decision].ops[choice]]
    raise NasrankError(f"{type(supernet).__name__} has no choice_modules(decision, choice); "
                       f"diversity sampling needs the modules of each choice")


@torch.no_grad()
def operator_diversity(supernet: Supernet, x: torch.Tensor, rng: np.random.Generator,
                       paths: int = 1) -> list[np.ndarray]:
    """Per decision point, the matrix ``1 - mean cosine`` of its choices' outputs on the inputs
    that ``x`` produces at that decision point along ``paths`` uniformly sampled paths."""
    decisions = supernet.decisions()
    sums = [np.zeros((len(o), len(o))) for o in decisions]
    counts = [0] * len(decisions)
    was_training = supernet.training
    supernet.train()
    try:
        with _frozen_buffers(supernet):
            for _ in range(int(paths)):
                base = [int(rng.integers(len(o))) for o in decisions]
                captured: dict[int, list[tuple[int, torch.Tensor]]] = {}
                hooks = []
                for d, c in enumerate(base):
                    for pos, mod in enumerate(choice_modules(supernet, d, c)):
                        def hook(_m, args, d=d, pos=pos):
                            captured.setdefault(d, []).append((pos, args[0]))
                        hooks.append(mod.register_forward_pre_hook(hook))
                try:
                    supernet(x, supernet.arch_from_choices(base))
                finally:
                    for h in hooks:
                        h.remove()
                for d, items in captured.items():
                    k = len(decisions[d])
                    mods = [choice_modules(supernet, d, c) for c in range(k)]
                    for pos, inp in items:
                        outs = [mods[c][pos](inp).flatten(1) for c in range(k)]
                        for i, j in itertools.combinations(range(k), 2):
                            cos = float(F.cosine_similarity(outs[i], outs[j], dim=1).mean())
                            sums[d][i, j] += cos
                            sums[d][j, i] += cos
                        counts[d] += 1
    finally:
        supernet.train(was_training)
    out = []
    for d, s in enumerate(sums):
        if counts[d] == 0:
            raise NasrankError(f"decision point {d} was never reached by the probe paths; "
                               f"cannot measure its diversity")
        div = 1.0 - s / counts[d]
        np.fill_diagonal(div, 0.0)
        out.append(div)
    return out


def _sequences(n: int, m: int) -> list[tuple[int, ...]]:
    if math.perm(n, m) > MAX_SEQUENCES:
        raise NasrankError(f"{math.perm(n, m)} ordered draws of {m} of {n} choices exceed "
                           f"{MAX_SEQUENCES}; use fewer paths per step")
    return list(itertools.permutations(range(n), m))


def _step_weights(div: np.ndarray, pi: np.ndarray, drawn: Sequence[int]) -> np.ndarray:
    """Unnormalised probabilities of the next draw after ``drawn`` (0 for drawn ones)."""
    n = len(pi)
    if not drawn:
        w = pi.copy()
    else:
        w = pi * div[:, list(drawn)].mean(axis=1)
    w[list(drawn)] = 0.0
    if w.sum() <= 0:  # every remaining choice has zero diversity to the drawn ones
        w = pi.copy()
        w[list(drawn)] = 0.0
    return w if w.sum() > 0 else np.where(np.isin(np.arange(n), drawn), 0.0, 1.0)


def inclusion_probabilities(div: np.ndarray, pi: np.ndarray, m: int) -> np.ndarray:
    """Exact probability that each choice is among ``m`` sequential draws (without
    replacement, weights ``pi_o * mean diversity to the drawn``): a depth-first walk over every
    ordered draw, adding the probability of each draw to its choice."""
    n = len(pi)
    _sequences(n, m)  # refuse sizes too large to enumerate
    incl = np.zeros(n)

    def walk(drawn: list[int], p: float) -> None:
        w = _step_weights(div, pi, drawn)
        q = p * w / w.sum()
        incl[:] += q
        if len(drawn) + 1 < m:
            for o in np.flatnonzero(q):
                walk(drawn + [int(o)], float(q[o]))

    if m > 0:
        walk([], 1.0)
    return incl


def calibrate(div: np.ndarray, m: int, *, tol: float = 1e-10, max_iter: int = 2000
              ) -> np.ndarray:
    """Factors ``pi`` (sum 1) for which every choice's inclusion probability is ``m / n``."""
    n = div.shape[0]
    pi = np.full(n, 1.0 / n)
    if m == 0 or m >= n:
        return pi
    target = m / n
    for _ in range(max_iter):
        incl = inclusion_probabilities(div, pi, m)
        if np.max(np.abs(incl - target)) < tol:
            return pi
        pi = pi * (target / np.maximum(incl, 1e-300))
        pi /= pi.sum()
    raise NasrankError(f"equal-marginal calibration did not converge for diversity "
                       f"{div.tolist()} and m = {m} (inclusion {incl.tolist()})")


class DiversitySampler(ArchSampler):
    """EnNAS diversity-based sampling of ``m`` paths per step (module docstring).

    Probe inputs: the trainer's :meth:`begin_epoch` draws ``probe_size`` training images per
    epoch; outside the trainer ``bind_data(dataset)`` fixes them, else seeded standard-normal
    images of shape ``(in_channels, probe_hw, probe_hw)`` are used (the datasets are normalised
    per channel, so noise has the images' scale). ``refresh_every`` = 0: refresh only at epoch
    starts (and at the first call); k > 0: also every k calls."""

    def __init__(self, supernet: Supernet, m: int = 4, *, refresh_every: int = 0,
                 probe_size: int = 16, probe_paths: int = 2, probe_hw: int = 32,
                 seed: int = 0) -> None:
        super().__init__(supernet)
        for name, v, low in (("m", m, 1), ("refresh_every", refresh_every, 0),
                             ("probe_size", probe_size, 2), ("probe_paths", probe_paths, 1),
                             ("probe_hw", probe_hw, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise NasrankError(f"{name} must be an int >= {low}, got {v!r}")
        self.m, self.refresh_every = int(m), int(refresh_every)
        self.probe_size, self.probe_paths = int(probe_size), int(probe_paths)
        self.probe_hw, self.seed = int(probe_hw), int(seed)
        for k in (len(o) for o in supernet.decisions()):
            _sequences(k, self.m % k)  # fail now for spaces too large to calibrate
        self.calls = 0
        self.diversity: list[np.ndarray] | None = None
        self.pi: list[np.ndarray] | None = None
        self.probe: torch.Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "m": self.m, "refresh_every": self.refresh_every,
                "probe_size": self.probe_size, "probe_paths": self.probe_paths,
                "probe_hw": self.probe_hw, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls,
                "diversity": None if self.diversity is None else [d.tolist()
                                                                  for d in self.diversity],
                "pi": None if self.pi is None else [p.tolist() for p in self.pi]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"calls", "diversity", "pi"}:
            raise NasrankError(f"DiversitySampler state needs keys calls, diversity, pi; got "
                               f"{sorted(state)}")
        self.calls = int(state["calls"])
        self.diversity = None if state["diversity"] is None else [
            np.array(d, dtype=np.float64) for d in state["diversity"]]
        self.pi = None if state["pi"] is None else [np.array(p, dtype=np.float64)
                                                    for p in state["pi"]]

    def _draw_probe(self, dataset: Any, salt: int) -> torch.Tensor:
        n = len(dataset)
        if n < self.probe_size:
            raise NasrankError(f"dataset has {n} images, fewer than probe_size "
                               f"{self.probe_size}")
        idx = np.random.default_rng([self.seed, salt]).choice(n, self.probe_size, replace=False)
        return torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in np.sort(idx)])

    def bind_data(self, dataset: Any) -> None:
        """Use ``probe_size`` images of ``dataset`` (a seeded choice) as probe inputs of the
        refreshes outside :meth:`begin_epoch`."""
        self.probe = self._draw_probe(dataset, -1 % 2**32)

    def begin_epoch(self, epoch: int, dataset: Any) -> None:
        """Refresh the diversity at the start of ``epoch`` on ``probe_size`` images of
        ``dataset`` drawn from ``(seed, epoch)`` (the trainer calls this, also on resume)."""
        probe = self._draw_probe(dataset, int(epoch))
        self._refresh(probe, np.random.default_rng([self.seed, int(epoch), 1]))

    def _probe(self) -> torch.Tensor:
        device = next(self.supernet.parameters()).device
        if self.probe is None:
            c = int(self.supernet.config().get("in_channels", 3))
            g = torch.Generator().manual_seed(self.seed)
            self.probe = torch.randn(self.probe_size, c, self.probe_hw, self.probe_hw,
                                     generator=g)
        return self.probe.to(device)

    def refresh(self) -> None:
        """Recompute the diversity matrices from the current weights and recalibrate (probe:
        the bound images, else noise)."""
        self._refresh(self._probe(), np.random.default_rng([self.seed, self.calls]))

    def _refresh(self, probe: torch.Tensor, rng: np.random.Generator) -> None:
        device = next(self.supernet.parameters()).device
        self.diversity = operator_diversity(self.supernet, probe.to(device), rng,
                                            self.probe_paths)
        self.pi = [calibrate(d, self.m % d.shape[0]) for d in self.diversity]

    def draw(self, d: int, rng: np.random.Generator) -> list[int]:
        """The ``m`` choices of decision point ``d`` for one step (shuffled)."""
        assert self.diversity is not None and self.pi is not None
        div, pi = self.diversity[d], self.pi[d]
        n = len(pi)
        picks = list(range(n)) * (self.m // n)
        drawn: list[int] = []
        for _ in range(self.m % n):
            w = _step_weights(div, pi, drawn)
            drawn.append(int(rng.choice(n, p=w / w.sum())))
        return [int(c) for c in rng.permutation(picks + drawn)]

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        if self.diversity is None or (self.refresh_every and self.calls
                                      and self.calls % self.refresh_every == 0):
            self.refresh()
        self.calls += 1
        columns = [self.draw(d, rng) for d in range(len(self.supernet.decisions()))]
        return [self.supernet.arch_from_choices([col[i] for col in columns])
                for i in range(self.m)]


# ----------------------------------------------------------------------------- registry entries
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import DiversitySamplerConfig, EnsembleKDConfig  # noqa: E402, F401
