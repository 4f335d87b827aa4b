"""Knowledge-distillation step strategies of NCS ("One-Shot Neural Channel Search: What Works
and What's Next", CVPR 2021 NAS workshop), and the paper's best setting as a named preset.

NCS compares three supernet optimisations (the first is the default
:class:`~nasrank.supernet.base.StepStrategy`, registered as ``"ce"``):

* **naive**: every sampled path learns from the labels with cross-entropy;
* **fixed teacher** (:class:`FixedTeacherStrategy`, ``"fixed_teacher"``): the largest
  architecture is trained first, then a frozen copy of it teaches every sampled path. The teacher
  comes from a supernet checkpoint (its largest path) or from ``warmup_epochs`` epochs at the
  start of the run in which only the largest path is trained (part of the run's budget);
* **running teacher** (:class:`RunningTeacherStrategy`, ``"running_teacher"``): on every batch
  the largest architecture runs first and learns from the labels (cross-entropy); each sampled
  path then learns from its detached soft targets. With ``sandwich=True`` the smallest
  architecture is one more student on every batch (the sandwich rule of BigNAS/US-Nets).

The distillation loss of a student is ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged
over the batch (Hinton et al.; the ``T^2`` keeps gradient magnitudes independent of ``T``), plus
``ce_weight`` times its cross-entropy on the labels.

The paper's best setting on the CVPR 2021 channel space (its Kendall tau 0.8304 against SPOS
0.7655 and FairNAS 0.7718) is :data:`PRESETS` ``["ncs_best"]``: FullConv + EndBN +
IndependentFC sharing, strict-fair sampling with an architecture batch of 18, all 18 paths on
the same data batch, running teacher.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nasrank.errors import ConfigError, NasrankError
from nasrank.supernet.registry import STEP_STRATEGIES

from .base import Arch, StepStrategy, Supernet, unwrap


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(p_t || p_s)`` with ``p = softmax(logits / T)``, summed over classes and
    averaged over the batch. The teacher's logits are used as given (detach them first)."""
    if student_logits.shape != teacher_logits.shape:
        raise NasrankError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                           f"{tuple(teacher_logits.shape)} differ in shape")
    if not temperature > 0:
        raise NasrankError(f"temperature must be > 0, got {temperature!r}")
    t = float(temperature)
    log_s = F.log_softmax(student_logits / t, dim=1)
    log_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (t * t)


class _DistillBase(StepStrategy):
    """Shared student loss: ``kd_loss`` + ``ce_weight * cross-entropy``."""

    def __init__(self, supernet: Supernet, *, temperature: float = 1.0,
                 ce_weight: float = 0.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise NasrankError(f"temperature must be > 0, got {temperature!r}")
        if not ce_weight >= 0:
            raise NasrankError(f"ce_weight must be >= 0, got {ce_weight!r}")
        self.temperature, self.ce_weight = float(temperature), float(ce_weight)
        self.teacher_arch = supernet.largest_arch()  # raises for spaces without one
        self._soft: torch.Tensor | None = None  # the current batch's teacher logits (detached)

    def student_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._soft is None:
            raise NasrankError(f"{type(self).__name__}: no teacher output for this batch")
        loss = kd_loss(logits, self._soft, self.temperature)
        if self.ce_weight:
            loss = loss + self.ce_weight * self.criterion(logits, y)
        return loss


class RunningTeacherStrategy(_DistillBase):
    """NCS's running teacher: on every batch ``paths = [largest, *sampled (, smallest)]``; the
    largest learns from the labels, the others from its detached soft targets."""

    def __init__(self, supernet: Supernet, *, temperature: float = 1.0, ce_weight: float = 0.0,
                 sandwich: bool = False) -> None:
        super().__init__(supernet, temperature=temperature, ce_weight=ce_weight)
        self.sandwich = bool(sandwich)
        self.smallest_arch = supernet.smallest_arch() if self.sandwich else None

    def paths(self, archs: list[Arch]) -> list[Arch]:
        extra = [self.smallest_arch] if self.sandwich else []
        return [self.teacher_arch, *archs, *extra]

    def begin_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   archs: list[Arch]) -> None:
        self._soft = None

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch,
             index: int) -> torch.Tensor:
        logits = model(x, arch)
        if index == 0:  # the teacher: cross-entropy; its detached output teaches the rest
            self._soft = logits.detach()
            return self.criterion(logits, y)
        return self.student_loss(logits, y)

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "temperature": self.temperature,
                "ce_weight": self.ce_weight, "sandwich": self.sandwich}


class FixedTeacherStrategy(_DistillBase):
    """NCS's fixed teacher: a frozen copy of the largest path (eval mode: its BatchNorm running
    statistics) teaches every sampled path.

    The teacher comes from ``teacher_checkpoint`` (a :func:`~supernet.trainer.train_supernet`
    checkpoint of a supernet of the same configuration: its largest path) or, with
    ``warmup_epochs = w``, from this run: epochs ``0..w-1`` train only the largest path with
    cross-entropy (the sampled architectures are drawn but not run), and at the start of epoch
    ``w`` the largest path is copied out and frozen. The teacher's weights are part of
    :meth:`state_dict`, so a resumed run continues with the same teacher. The teacher
    normalises with its BatchNorm running statistics: after a warm-up they are the largest
    path's own; a checkpoint of a supernet trained on many paths holds mixed statistics (prefer
    a checkpoint of a ``fixed_teacher`` warm-up run).
    """

    def __init__(self, supernet: Supernet, *, temperature: float = 1.0, ce_weight: float = 0.0,
                 warmup_epochs: int = 0, teacher_checkpoint: str | os.PathLike | None = None
                 ) -> None:
        super().__init__(supernet, temperature=temperature, ce_weight=ce_weight)
        if int(warmup_epochs) < 0:
            raise NasrankError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
        if (teacher_checkpoint is None) == (int(warmup_epochs) == 0):
            raise NasrankError(
                "the fixed teacher needs exactly one source: a teacher_checkpoint or "
                f"warmup_epochs >= 1 (got teacher_checkpoint={teacher_checkpoint!r}, "
                f"warmup_epochs={warmup_epochs!r})")
        self.warmup_epochs = int(warmup_epochs)
        self.teacher_checkpoint = None if teacher_checkpoint is None else str(teacher_checkpoint)
        self.teacher: nn.Module | None = None
        self._pending: dict[str, torch.Tensor] | None = None
        self._warming = False

    # -- teacher
    def _make_teacher(self, supernet: Supernet) -> None:
        if self.teacher_checkpoint is not None:
            from .trainer import load_supernet  # the trainer imports this package's base only

            source = copy.deepcopy(supernet).cpu()
            load_supernet(source, self.teacher_checkpoint)
        else:
            source = supernet
        device = next(supernet.parameters()).device
        teacher = source.subnet(self.teacher_arch).to(device)
        if dist.is_available() and dist.is_initialized():  # one teacher on every rank
            for t in teacher.state_dict().values():
                dist.broadcast(t, 0)
        self._freeze(teacher)

    def _freeze(self, teacher: nn.Module) -> None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher

    def begin_epoch(self, model: nn.Module, epoch: int) -> None:
        supernet = unwrap(model)
        if self._pending is not None:  # a resumed run: the checkpointed teacher
            teacher = supernet.subnet(self.teacher_arch)
            teacher.load_state_dict(self._pending, strict=True)
            self._freeze(teacher.to(next(supernet.parameters()).device))
            self._pending = None
        self._warming = epoch < self.warmup_epochs
        if not self._warming and self.teacher is None:
            self._make_teacher(supernet)

    # -- steps
    def paths(self, archs: list[Arch]) -> list[Arch]:
        return [self.teacher_arch] if self._warming else list(archs)

    def begin_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   archs: list[Arch]) -> None:
        self._soft = None
        if not self._warming:
            if self.teacher is None:
                raise NasrankError("FixedTeacherStrategy: begin_epoch was not called")
            with torch.no_grad():
                self._soft = self.teacher(x)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch,
             index: int) -> torch.Tensor:
        logits = model(x, arch)
        if self._warming:
            return self.criterion(logits, y)
        return self.student_loss(logits, y)

    # -- checkpoints
    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "temperature": self.temperature,
                "ce_weight": self.ce_weight, "warmup_epochs": self.warmup_epochs,
                "teacher_checkpoint": self.teacher_checkpoint}

    def state_dict(self) -> dict[str, Any]:
        if self.teacher is None:
            return {} if self._pending is None else {"teacher": self._pending}
        return {"teacher": {k: v.detach().cpu().clone()
                            for k, v in self.teacher.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep a checkpointed teacher; it becomes a network at the next ``begin_epoch``, when
        the supernet (which builds the teacher's class) and its device are known."""
        unknown = sorted(set(state) - {"teacher"})
        if unknown:
            raise NasrankError(f"FixedTeacherStrategy state has unknown keys {unknown}")
        self.teacher = None
        self._pending = state.get("teacher")


# ----------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class TrainingPreset:
    """A named supernet training setting: registry names plus options of the supernet, the
    sampler and the step strategy, and the trainer's ``same_batch`` switch."""

    description: str
    supernet: str | None  # a SUPERNETS name, or None: any supernet
    sampler: str
    strategy: str
    supernet_options: Mapping[str, Any] = field(default_factory=dict)
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    same_batch: bool = True

    def build(self, supernet: Supernet, *, sampler_options: Mapping[str, Any] | None = None,
              strategy_options: Mapping[str, Any] | None = None) -> tuple[Any, StepStrategy]:
        """``(sampler, strategy)`` of this preset for ``supernet`` (built by the caller from
        ``supernet``/``supernet_options``, e.g. through ``SUPERNETS``); the given options
        override the preset's. Train with ``train_supernet(..., same_batch=preset.same_batch)``."""
        from nasrank.supernet.registry import SAMPLERS

        sampler = SAMPLERS.make(
            self.sampler, {**self.sampler_options, **(sampler_options or {})}).build(supernet)
        strategy = STEP_STRATEGIES.make(
            self.strategy, {**self.strategy_options, **(strategy_options or {})}).build(supernet)
        return sampler, strategy


#: NCS's best setting on the CVPR 2021 channel space (Kendall tau 0.8304 in the paper).
NCS_BEST = TrainingPreset(
    description="NCS best: FullConv + EndBN + IndependentFC, fair sampling n=18, same batch, "
                "running teacher",
    supernet="cvpr2021", supernet_options={"conv": "full", "bn": "end", "fc": "independent"},
    sampler="fair", sampler_options={"arch_batch": 18},
    strategy="running_teacher", strategy_options={}, same_batch=True)

#: RD-NAS with its defaults: margin pairs from an on-the-fly nwot teacher, ranking loss.
RDNAS = TrainingPreset(
    description="RD-NAS: margin pair sampler over zero-cost teacher groups, CE + margin ranking "
                "loss (on-the-fly nwot teacher; set table= for a precomputed one)",
    supernet=None, sampler="rdnas", strategy="rdnas", same_batch=True)

PRESETS: dict[str, TrainingPreset] = {"ncs_best": NCS_BEST, "rdnas": RDNAS}


def get_preset(name: str) -> TrainingPreset:
    """The preset called ``name``; the error lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown training preset {name!r}; expected one of "
                          f"{sorted(PRESETS)}") from None


# ----------------------------------------------------------------------------- registry entries
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import FixedTeacherConfig, RunningTeacherConfig  # noqa: E402, F401
