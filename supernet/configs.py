"""The entries of :data:`~nasrank.supernet.registry.SUPERNETS`, ``SAMPLERS`` and
``STEP_STRATEGIES``: one config per supernet, architecture sampler and step strategy.

Torch-free (issue 19): the registries' loader imports only this module, so the help of ``nasrank
run``, ``supernet-train``, ``proxies`` and ``fewshot`` lists the entries and their options without
importing torch; each ``build()`` imports its implementation (``base``, ``nb201_supernet``,
``channel``, ``mbconv_supernet``, ``fewshot``, ``ennas``, ``rdnas``, ``distill``) when called. The
names stay importable from those modules too.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nasrank.errors import ConfigError, InvalidArchitectureError
from nasrank.registry import Config, option
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS

if TYPE_CHECKING:
    from .base import StepStrategy, StrictFairSampler, Supernet, UniformSampler
    from .channel import ChannelSupernet
    from .distill import FixedTeacherStrategy, RunningTeacherStrategy
    from .ennas import DiversitySampler, EnsembleKDStrategy
    from .fewshot import RestrictedUniformSampler
    from .mbconv_supernet import MBConvSupernet
    from .nb201_supernet import NB201Supernet
    from .rdnas import MarginPairSampler, RankingDistillStrategy, ZeroCostTeacher

#: weight-sharing schemes of the channel supernet's layer types (NCS)
SHARING_SCHEMES: tuple[str, ...] = ("full", "front", "end", "independent")


# ----------------------------------------------------------------------------- supernets
@SUPERNETS.register("cvpr2021")
@dataclass(frozen=True)
class ChannelSupernetConfig(Config):
    """CVPR 2021 ResNet-20 channel supernet (slimmable layers; NCS sharing per layer type)."""

    space: ClassVar[str] = "cvpr2021"
    conv: str = option("full", "sharing of the conv weights", choices=SHARING_SCHEMES)
    bn: str = option("full", "sharing of the BatchNorm parameters/statistics",
                     choices=SHARING_SCHEMES)
    fc: str = option("full", "sharing of the classifier weights", choices=SHARING_SCHEMES)

    def build(self, space: Any, *, num_classes: int, in_channels: int = 3,
              seed: int = 0) -> ChannelSupernet:
        """The supernet with initial weights drawn from ``seed`` (the global torch RNG is
        left as it was)."""
        import torch

        from .channel import ChannelSupernet, SharingError

        if getattr(space, "name", None) != "cvpr2021":
            raise SharingError(f"supernet 'cvpr2021' serves space 'cvpr2021', got "
                               f"{getattr(space, 'name', space)!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return ChannelSupernet({"conv": self.conv, "bn": self.bn, "fc": self.fc},
                                   num_classes=num_classes, in_channels=in_channels)


@SUPERNETS.register("mbconv")
@dataclass(frozen=True)
class MBConvSupernetConfig(Config):
    """One-path-per-layer supernet of the MBConv chain space (sizes from the space)."""

    space: ClassVar[str] = "mbconv"

    def build(self, space: Any, *, num_classes: int, in_channels: int = 3,
              seed: int = 0) -> MBConvSupernet:
        """The supernet of ``space`` with initial weights drawn from ``seed`` (the global
        torch RNG is left as it was)."""
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ConfigError(f"supernet 'mbconv': seed must be an int, got {seed!r}")
        import torch

        from .mbconv_supernet import MBConvSupernet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return MBConvSupernet(space, num_classes=num_classes, in_channels=in_channels)


@SUPERNETS.register("nb201")
@dataclass(frozen=True)
class NB201SupernetConfig(Config):
    """NB201 weight-sharing supernet (one MixedEdge of the 5 ops per edge)."""

    #: the search space this supernet serves (``nasrank run --space nb201`` picks it)
    space: ClassVar[str] = "nb201"
    channels: int = option(8, "C: channels of the first stage (paper: 16)", low=1)
    cells: int = option(1, "N: cells per stage (paper: 5)", low=1)

    def build(self, space: Any, *, num_classes: int, in_channels: int = 3,
              seed: int = 0) -> NB201Supernet:
        """The supernet with initial weights drawn from ``seed`` (the global torch RNG is
        left as it was)."""
        if getattr(space, "name", None) != "nb201":
            raise InvalidArchitectureError(
                f"supernet 'nb201' serves space 'nb201', got {getattr(space, 'name', space)!r}")
        import torch

        from .nb201_supernet import NB201Supernet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return NB201Supernet(num_classes=num_classes, C=self.channels, N=self.cells,
                                 in_channels=in_channels)

    def network_kwargs(self) -> dict[str, int]:
        """``NB201Space.build`` options of the stand-alone networks matching this supernet."""
        return {"C": self.channels, "N": self.cells}


# ----------------------------------------------------------------------------- samplers
@SAMPLERS.register("uniform")
@dataclass(frozen=True)
class UniformSamplerConfig(Config):
    """Single-path one-shot (SPOS): every decision point draws uniformly."""

    archs_per_step: int = option(1, "paths visited (gradients accumulated) per training step",
                                 low=1)

    def build(self, supernet: Supernet) -> UniformSampler:
        from .base import UniformSampler

        return UniformSampler(supernet, archs_per_step=self.archs_per_step)


@SAMPLERS.register("fair")
@dataclass(frozen=True)
class FairSamplerConfig(Config):
    """Strict fairness (FairNAS): every choice used floor/ceil(n / k) times per step."""

    arch_batch: int | None = option(
        None, "architecture batch n: paths per step (default: the largest choice count; "
        "NCS's best on the CVPR 2021 space is 18)", low=1)

    def build(self, supernet: Supernet) -> StrictFairSampler:
        from .base import StrictFairSampler

        return StrictFairSampler(supernet, arch_batch=self.arch_batch)


@SAMPLERS.register("ennas_diversity")
@dataclass(frozen=True)
class DiversitySamplerConfig(Config):
    """EnNAS diversity-based sampling: m paths per step, operators drawn by diversity."""

    m: int = option(4, "paths per step (ensemble size)", low=1)
    refresh_every: int = option(0, "also refresh every this many steps (0: only at the start "
                                   "of every epoch)", low=0)
    probe_size: int = option(16, "probe images for the diversity", low=2)
    probe_paths: int = option(2, "sampled paths that route the probe images", low=1)
    probe_hw: int = option(32, "height/width of the noise probe when no data is bound", low=1)
    seed: int = option(0, "seed of the probe images and routing paths", low=0)

    def build(self, supernet: Supernet) -> DiversitySampler:
        from .ennas import DiversitySampler

        return DiversitySampler(supernet, self.m, refresh_every=self.refresh_every,
                                probe_size=self.probe_size, probe_paths=self.probe_paths,
                                probe_hw=self.probe_hw, seed=self.seed)


@SAMPLERS.register("restricted_uniform")
@dataclass(frozen=True)
class RestrictedUniformConfig(Config):
    """Uniform sampling inside a sub-supernet (few-shot leaf): only the allowed choices."""

    allowed: tuple[str, ...] = option((), "allowed choice indices per decision point, joined by "
                                          "'+' ('0+2'), '*' for all; empty = whole supernet")
    archs_per_step: int = option(1, "paths visited (gradients accumulated) per step", low=1)

    def build(self, supernet: Supernet) -> RestrictedUniformSampler:
        from .fewshot import RestrictedUniformSampler, parse_allowed

        parsed = parse_allowed(self.allowed, [len(o) for o in supernet.decisions()])
        return RestrictedUniformSampler(supernet, parsed, self.archs_per_step)


@dataclass(frozen=True)
class _TeacherOptions(Config):
    """Options of the zero-cost teacher shared by the 'rdnas' sampler and step strategy."""

    proxies: tuple[str, ...] = option(("nwot",), "teacher proxies (rank-averaged when several)")
    table: str | None = option(None, "label table with zc_<proxy> columns (`nasrank proxies`); "
                               "default: compute on the fly over a seeded pool")
    pool_size: int = option(500, "on-the-fly teacher: architectures in the reference pool", low=2)
    teacher_seed: int = option(0, "on-the-fly teacher: seed of the pool, init and batch", low=0)
    image_size: int = option(32, "on-the-fly teacher: side of the Gaussian scoring batch", low=1)
    groups: int = option(5, "teacher-rank groups of the margin sampler", low=2)

    def check(self) -> None:
        if not self.proxies:
            raise ConfigError(f"{self.kind} {self.name!r}: proxies must name at least one proxy")

    def teacher(self, supernet: Supernet) -> ZeroCostTeacher:
        from .rdnas import shared_teacher

        return shared_teacher(supernet, proxies=self.proxies, table=self.table,
                              pool_size=self.pool_size, seed=self.teacher_seed,
                              image_size=self.image_size)


@SAMPLERS.register("rdnas")
@dataclass(frozen=True)
class MarginPairSamplerConfig(_TeacherOptions):
    """RD-NAS margin subnet sampler: pairs from different zero-cost-teacher rank groups."""

    pairs: int = option(1, "architecture pairs per step", low=1)
    uniform_paths: int = option(0, "uniform (SPOS) paths drawn before the pairs of each step "
                                   "(give the strategy the same number)", low=0)

    def build(self, supernet: Supernet) -> MarginPairSampler:
        from .rdnas import MarginPairSampler

        return MarginPairSampler(supernet, self.teacher(supernet), groups=self.groups,
                                 pairs=self.pairs, uniform_paths=self.uniform_paths)


# ----------------------------------------------------------------------------- step strategies
@STEP_STRATEGIES.register("ce")
@dataclass(frozen=True)
class CrossEntropyConfig(Config):
    """Plain cross-entropy of every visited path (SPOS/FairNAS training)."""

    def build(self, supernet: Supernet) -> StepStrategy:
        from .base import StepStrategy

        return StepStrategy()


@dataclass(frozen=True)
class _DistillOptions(Config):
    """Options shared by the NCS distillation strategies (running and fixed teacher)."""

    temperature: float = option(1.0, "distillation temperature T (the KL term is scaled by T^2)",
                                low=0.0, low_open=True)
    ce_weight: float = option(0.0, "weight of the students' own cross-entropy on the labels",
                              low=0.0)


@STEP_STRATEGIES.register("running_teacher")
@dataclass(frozen=True)
class RunningTeacherConfig(_DistillOptions):
    """NCS running teacher: the largest path learns from labels, sampled paths from its output."""

    sandwich: bool = option(False, "also distil into the smallest architecture on every batch "
                            "(sandwich rule; channel spaces)")

    def build(self, supernet: Supernet) -> RunningTeacherStrategy:
        from .distill import RunningTeacherStrategy

        return RunningTeacherStrategy(supernet, temperature=self.temperature,
                                      ce_weight=self.ce_weight, sandwich=self.sandwich)


@STEP_STRATEGIES.register("fixed_teacher")
@dataclass(frozen=True)
class FixedTeacherConfig(_DistillOptions):
    """NCS fixed teacher: a frozen copy of the trained largest path teaches every sampled path."""

    warmup_epochs: int = option(0, "epochs at the start of the run that train only the largest "
                                "path, which then becomes the frozen teacher", low=0)
    teacher_checkpoint: str | None = option(
        None, "supernet checkpoint whose largest path is the teacher (instead of warm-up)")

    def check(self) -> None:
        if (self.teacher_checkpoint is None) == (self.warmup_epochs == 0):
            raise ConfigError(
                f"step strategy 'fixed_teacher': give exactly one of teacher_checkpoint or "
                f"warmup_epochs >= 1 (got {self.teacher_checkpoint!r}, {self.warmup_epochs})")

    def build(self, supernet: Supernet) -> FixedTeacherStrategy:
        from .distill import FixedTeacherStrategy

        return FixedTeacherStrategy(
            supernet, temperature=self.temperature, ce_weight=self.ce_weight,
            warmup_epochs=self.warmup_epochs, teacher_checkpoint=self.teacher_checkpoint)


@STEP_STRATEGIES.register("ennas_kd")
@dataclass(frozen=True)
class EnsembleKDConfig(Config):
    """EnNAS: distil every path from the optimally weighted ensemble of the step's paths."""

    tau: float = option(1.0, "distillation temperature (loss scaled by tau^2)", low=0.0,
                        low_open=True)

    def build(self, supernet: Supernet) -> EnsembleKDStrategy:
        from .ennas import EnsembleKDStrategy

        return EnsembleKDStrategy(self.tau)


@STEP_STRATEGIES.register("rdnas")
@dataclass(frozen=True)
class RankingDistillConfig(_TeacherOptions):
    """RD-NAS: cross-entropy + weight * margin ranking loss against a zero-cost teacher."""

    margin: float = option(0.01, "margin per group of distance between a pair's groups", low=0.0)
    weight: float = option(1.0, "lambda: weight of the ranking loss", low=0.0)
    decay_epochs: int = option(0, "lambda falls linearly to 0 over this many epochs "
                                  "(0: constant)", low=0)
    uniform_paths: int = option(0, "the step's first paths are uniform (SPOS) paths trained by "
                                   "cross-entropy alone (the sampler's uniform_paths)", low=0)
    pair_ce: bool = option(True, "the pairs learn their own cross-entropy too (the paper); "
                                 "false: the ranking loss only")

    def build(self, supernet: Supernet) -> RankingDistillStrategy:
        from .rdnas import RankingDistillStrategy

        return RankingDistillStrategy(supernet, self.teacher(supernet), groups=self.groups,
                                      margin=self.margin, weight=self.weight,
                                      decay_epochs=self.decay_epochs,
                                      uniform_paths=self.uniform_paths, pair_ce=self.pair_ce)
