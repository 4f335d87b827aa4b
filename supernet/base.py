"""The weight-sharing interface every supernet implements, and the architecture samplers.

A supernet holds the weights of a whole search space; ``forward(x, arch)`` runs the single path
of one architecture. Architectures are addressed two ways: as the space's own value (``arch``),
and as one choice index per *decision point* (``choices_of(arch)``), where ``decisions()`` lists
the options of every decision point in order (NB201: 6 edges x 5 ops; the CVPR 2021 channel
space: 20 positions x their widths). Samplers work only on choice indices, so one sampler serves
every space.

Seams for later training strategies (they are not implemented here):

* :class:`ArchSampler` decides which architectures one training step visits (sandwich rule,
  few-shot sub-supernets restricted through ``decisions``, EnNAS/RD-NAS style samplers).
* :class:`StepStrategy` decides the loss of each visited path (running-teacher knowledge
  distillation, RD-NAS's ranking distillation); its default is plain cross-entropy, and its
  ``state_dict`` travels in the trainer's checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nasrank.spaces.base import SearchSpace
from nasrank.errors import InvalidArchitectureError, NasrankError

Arch = Any


class Supernet(nn.Module, ABC):
    """A weight-sharing network over the architectures of ``space``.

    Subclasses set ``self.space`` and implement the abstract methods. ``config()`` must return
    every constructor argument that shapes the weights (it is recorded in checkpoints and
    compared on load), plus the space's name under ``"space"``.
    """

    space: SearchSpace

    @abstractmethod
    def decisions(self) -> list[list[Any]]:
        """The choices of every decision point, in a fixed order."""

    @abstractmethod
    def arch_from_choices(self, indices: Sequence[int]) -> Arch:
        """The architecture picking choice ``indices[d]`` at decision point ``d``."""

    @abstractmethod
    def choices_of(self, arch: Arch) -> list[int]:
        """Inverse of :meth:`arch_from_choices`."""

    @abstractmethod
    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """Logits of the sampled path ``arch`` on the batch ``x``."""

    @abstractmethod
    def subnet(self, arch: Arch) -> nn.Module:
        """A stand-alone network of the space's own builder holding copies of the shared
        weights (and BatchNorm statistics) of ``arch``'s path."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments, including ``"space": self.space.name``."""

    # -- helpers shared by every supernet
    def check_arch(self, arch: Arch) -> Arch:
        """``arch`` as this space's value (strings are parsed); raises a
        :class:`~nasrank.errors.NasrankError` for an architecture of another space."""
        if isinstance(arch, str):
            return self.space.parse(arch)
        try:
            self.space.key(arch)
        except NasrankError:
            raise
        except Exception as err:  # another space's value: its own type errors are not ours
            raise InvalidArchitectureError(
                f"{arch!r} is not an architecture of space {self.space.name!r} ({err})"
            ) from None
        return arch

    def cost(self, arch: Arch, input_shape: Sequence[int]) -> tuple[float, float]:
        """(FLOPs, params) in millions of ``arch``'s stand-alone network."""
        return self.space.cost(self.check_arch(arch), input_shape)

    def check_choices(self, indices: Sequence[int]) -> list[int]:
        """Validate one choice index per decision point; returns them as ints."""
        decisions = self.decisions()
        idx = [int(i) for i in indices]
        if len(idx) != len(decisions):
            raise InvalidArchitectureError(
                f"{len(idx)} choice indices {idx}, expected one per decision point "
                f"({len(decisions)})"
            )
        for d, (i, options) in enumerate(zip(idx, decisions)):
            if not 0 <= i < len(options):
                raise InvalidArchitectureError(
                    f"choice index {i} at decision point {d} is out of range 0..{len(options) - 1}"
                )
        return idx

    def bn_modules(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def largest_arch(self) -> Arch:
        """The largest architecture of the space (the teacher of NCS's fixed and running
        teacher strategies). A space without one raises :class:`~nasrank.errors.NasrankError`."""
        raise NasrankError(
            f"{type(self).__name__} defines no largest architecture; teacher strategies "
            f"(running/fixed teacher) need one")

    def smallest_arch(self) -> Arch:
        """The smallest architecture of the space (the sandwich rule's extra student). A space
        without one raises :class:`~nasrank.errors.NasrankError`."""
        raise NasrankError(
            f"{type(self).__name__} defines no smallest architecture; the sandwich rule needs "
            f"one")


def unwrap(model: nn.Module) -> Supernet:
    """The supernet inside a ``DistributedDataParallel`` wrapper (or the supernet itself)."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, Supernet):
        raise NasrankError(f"expected a Supernet, got {type(inner).__name__}")
    return inner


# ----------------------------------------------------------------------------- samplers
class _Checkpointable:
    """Config and (empty) state recorded in trainer checkpoints; samplers and step strategies
    with state override ``state_dict``/``load_state_dict``."""

    def config(self) -> dict[str, Any]:
        """What a checkpoint records about this object (compared on resume)."""
        return {"name": type(self).__name__}

    def state_dict(self) -> dict[str, Any]:
        """State beyond the trainer's rng (e.g. a learned distribution); empty by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise NasrankError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


class ArchSampler(_Checkpointable, ABC):
    """Chooses the architectures of one training step.

    ``sample(rng)`` returns the step's architectures; the trainer runs each of them on the same
    batch and accumulates their gradients before one optimizer step. Every rank of a
    distributed run calls it with an identically seeded ``rng``, so all ranks visit the same
    paths. Conformance: same ``rng`` state -> same list.
    """

    def __init__(self, supernet: Supernet) -> None:
        self.supernet = supernet

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> list[Arch]:
        """The architectures of one training step (at least one)."""


class UniformSampler(ArchSampler):
    """Single-path one-shot (SPOS, Guo et al. 2020): every decision point draws a choice
    uniformly and independently; ``archs_per_step`` paths per step."""

    def __init__(self, supernet: Supernet, archs_per_step: int = 1) -> None:
        super().__init__(supernet)
        if int(archs_per_step) < 1:
            raise NasrankError(f"archs_per_step must be >= 1, got {archs_per_step!r}")
        self.archs_per_step = int(archs_per_step)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        counts = [len(d) for d in self.supernet.decisions()]
        return [
            self.supernet.arch_from_choices([int(rng.integers(c)) for c in counts])
            for _ in range(self.archs_per_step)
        ]

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "archs_per_step": self.archs_per_step}


class StrictFairSampler(ArchSampler):
    """Strict fairness (FairNAS, Chu et al. 2021): one step visits ``n`` paths (the
    *architecture batch*, ``arch_batch``; default: the largest number of choices of any
    decision point); decision point ``d`` with ``k_d`` choices takes its ``n`` picks from
    independent random permutations of its choices, concatenated and cut to length ``n``.

    Each choice of decision point ``d`` is therefore used ``floor(n / k_d)`` or
    ``ceil(n / k_d)`` times per step: as equal as ``n`` picks allow, exactly equal when ``k_d``
    divides ``n``. With the default ``n`` on NB201 (5 ops on every edge) each op of each edge is
    used exactly once; on the channel space (4, 8 or 16 widths) the default is 16, while NCS's
    best setting is ``n = 18`` (two widths of a 16-width position used twice). ``n`` below
    ``k_d`` uses ``n`` distinct choices of that decision point.
    """

    def __init__(self, supernet: Supernet, arch_batch: int | None = None) -> None:
        super().__init__(supernet)
        if arch_batch is not None and (
            isinstance(arch_batch, bool) or not isinstance(arch_batch, (int, np.integer))
            or arch_batch < 1
        ):
            raise NasrankError(
                f"arch_batch must be an int >= 1 (or None for the largest choice count), "
                f"got {arch_batch!r}")
        self.arch_batch = None if arch_batch is None else int(arch_batch)

    def sample(self, rng: np.random.Generator) -> list[Arch]:
        counts = [len(d) for d in self.supernet.decisions()]
        n = max(counts) if self.arch_batch is None else self.arch_batch
        columns = []
        for k in counts:
            perms = [rng.permutation(k) for _ in range(-(-n // k))]
            columns.append(np.concatenate(perms)[:n])
        picks = np.stack(columns, axis=1)  # [n, decision points]
        return [self.supernet.arch_from_choices(row.tolist()) for row in picks]

    def config(self) -> dict[str, Any]:
        # arch_batch only when given, so checkpoints of the default sampler stay resumable
        out: dict[str, Any] = {"name": type(self).__name__}
        if self.arch_batch is not None:
            out["arch_batch"] = self.arch_batch
        return out


# ----------------------------------------------------------------------------- strategies
class StepStrategy(_Checkpointable):
    """The loss of each path visited in one training step (default: cross-entropy).

    The trainer calls ``begin_epoch(model, epoch)`` at the start of every epoch; for each batch
    it takes the batch's sampled architectures, asks ``paths(archs)`` which paths to run on it
    (default: exactly those; a running teacher puts the largest architecture first), calls
    ``begin_step(model, x, y, paths)``, then for each ``paths[i]`` in order
    ``loss(model, x, y, paths[i], i)`` and backpropagates it divided by the number of paths of
    the whole step. ``loss`` may return ``None`` for a path whose loss it folds into a later
    path's (a pairwise ranking term needs both graphs); a loss may run several forwards.
    Gradients are averaged across ranks once per step, after the last backward. ``model`` may be
    a ``DistributedDataParallel`` wrapper: call ``model(x, arch)`` for outputs, :func:`unwrap`
    for the bare supernet. Subclasses keep their state in ``state_dict`` so it is checkpointed
    with the weights.
    """

    def __init__(self) -> None:
        self.criterion = nn.CrossEntropyLoss()

    def begin_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called at the start of every epoch, also the first one of a resumed run."""

    def paths(self, archs: list[Arch]) -> list[Arch]:
        """The paths run on one batch whose sampled architectures are ``archs``."""
        return list(archs)

    def begin_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, archs: list[Arch]
    ) -> None:
        """Called before the step's first path (nothing to do for plain cross-entropy)."""

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch, index: int
    ) -> torch.Tensor | None:
        return self.criterion(model(x, arch), y)


# ----------------------------------------------------------------------------- registry entries
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import CrossEntropyConfig, FairSamplerConfig, UniformSamplerConfig  # noqa: E402, F401
