"""Weight-sharing channel supernet of the CVPR 2021 ResNet-20 space, with selectable sharing.

A channel supernet runs every architecture of a channel space with weights cut from a common
store. How much two widths share is the *sharing scheme* (the four schemes of the
channel-sharing study in NCS, "One-Shot Neural Channel Search: What Works and What's Next",
CVPR 2021 NAS workshop). For a layer whose input width ``c_in`` comes from ``in_choices`` and
whose output width ``c_out`` comes from ``out_choices`` (weight tensor ``[c_out, c_in, ...]``), a scheme says which tensor serves the pair
``(c_in, c_out)``; the axis a scheme does *not* key on is sliced from the front (``[:c]``):

==============  ==========================  ==================================  ============
scheme          keyed on                    tensor for ``(c_in, c_out)``        tensors
==============  ==========================  ==================================  ============
``full``        nothing                     ``W[:c_out, :c_in]`` of one         1
                                            ``[max_out, max_in]`` tensor
``front``       the input width ``c_in``    ``W_{c_in}[:c_out]`` of a           ``|in|``
                                            ``[max_out, c_in]`` tensor
``end``         the output width ``c_out``  ``W_{c_out}[:, :c_in]`` of a        ``|out|``
                                            ``[c_out, max_in]`` tensor
``independent`` the pair ``(c_in, c_out)``  ``W_{c_in, c_out}``, unsliced       ``|in|*|out|``
==============  ==========================  ==================================  ============

"Front" keys on the layer's front (input) side: all architectures that *feed* the layer the
same width share one tensor and differ only in how many output rows they use. "End" keys on the
layer's end (output) side: architectures that ask the layer for the same width share one tensor
and differ only in how many input columns they read. Independent shares nothing, so a
weight-sharing path is a stand-alone network whose weights are trained only by the paths with
that exact pair. A bias (output axis only) follows its weight's key: it is ``b[:c_out]`` of a
``[max_out]`` vector under full/front and a ``[c_out]`` vector under end/independent.

BatchNorm follows NCS ("One-Shot Neural Channel Search", CVPR 2021 NAS workshop): a BN sits
after a conv with input width ``c_in`` and output width ``c``, and its scheme keys on the
conv's widths exactly as a conv bias would:

==============  ================================================  ========================
scheme          BN serving ``(c_in, c)``                          affine parameters
==============  ================================================  ========================
``full``        ``[:c]`` of one BN of the widest width            ``2 * max_out``
``front``       ``[:c]`` of the widest-width BN of ``c_in``       ``2 * |in| * max_out``
``end``         the width-``c`` BN, shared by every ``c_in``      ``2 * sum(out)``
``independent`` the BN of the pair ``(c_in, c)``                  ``2 * |in| * sum(out)``
==============  ================================================  ========================

Running statistics and the batch counter follow the same key. (Before, ``front``, ``end`` and
``independent`` BN all meant today's ``end``; the paper reports different Kendall tau for
them, 0.7899 / 0.7829 / 0.7823.) Any layer with a single input or output choice (the stem's
input, the classifier's output) makes keying on that axis the same as not keying on it.

Every ``(c_in, c_out)`` pair of the choice lists gets its tensor, including pairs a given
network never runs (e.g. a stride-1 projection shortcut with ``c_in == c_out``, where the
network uses the identity); those tensors simply receive no gradient.

:class:`SlimConv2d`, :class:`SlimBatchNorm2d` and :class:`SlimLinear` know nothing about
ResNet-20: any channel space can build its supernet from them. :class:`ChannelSupernet` wires
them into the CVPR 2021 ResNet-20 (module docstring of :mod:`spaces.cvpr2021`), its sharing
chosen per layer type (``conv``, ``bn``, ``fc``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasrank.spaces.cvpr2021 import (
    CHOICES,
    NUM_BLOCKS,
    NUM_POSITIONS,
    BlockSpec,
    CVPR2021Arch,
    CVPR2021Space,
    block_plan,
)
from nasrank.spaces.networks.cvpr2021 import CVPR2021ResNet
from nasrank.errors import InvalidArchitectureError, NasrankError

from .base import Supernet
from .configs import SHARING_SCHEMES  # the one list (the CLI reads it there, without torch)

LAYER_TYPES: tuple[str, ...] = ("conv", "bn", "fc")


class SharingError(NasrankError):
    """An unknown sharing scheme, layer type or width choice list."""


def check_sharing(sharing: Any) -> str:
    """``sharing`` as one of :data:`SHARING_SCHEMES` (case-insensitive)."""
    name = sharing.lower() if isinstance(sharing, str) else sharing
    if name not in SHARING_SCHEMES:
        raise SharingError(f"unknown sharing scheme {sharing!r}; expected one of {SHARING_SCHEMES}")
    return name


def _check_widths(widths: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(w) for w in widths)
    except (TypeError, ValueError):
        raise SharingError(f"{what} must be a sequence of positive ints, got {widths!r}") from None
    if not out or any(w < 1 for w in out) or len(set(out)) != len(out) or any(
        isinstance(w, bool) for w in widths
    ):
        raise SharingError(
            f"{what} must be a non-empty sequence of distinct positive ints, got {widths!r}"
        )
    return tuple(sorted(out))


class _SharedBank(nn.Module):
    """The tensors of one weight (``[c_out, c_in, *tail]``) and, optionally, its bias under one
    sharing scheme; :meth:`get` returns the pair's (sliced) tensors. See the module docstring."""

    def __init__(
        self, in_choices: Sequence[int], out_choices: Sequence[int], tail: tuple[int, ...],
        sharing: str, bias: bool,
    ) -> None:
        super().__init__()
        self.in_choices = _check_widths(in_choices, "in_choices")
        self.out_choices = _check_widths(out_choices, "out_choices")
        self.sharing = check_sharing(sharing)
        self.tail = tail
        max_in, max_out = self.in_choices[-1], self.out_choices[-1]
        shapes: dict[str, tuple[int, int]] = {}  # key -> (rows, columns) of the stored tensor
        if self.sharing == "full":
            shapes["full"] = (max_out, max_in)
        elif self.sharing == "front":
            shapes.update({f"in{i}": (max_out, i) for i in self.in_choices})
        elif self.sharing == "end":
            shapes.update({f"out{o}": (o, max_in) for o in self.out_choices})
        else:
            shapes.update({f"in{i}_out{o}": (o, i)
                           for i in self.in_choices for o in self.out_choices})
        self.weight = nn.ParameterDict(
            {k: nn.Parameter(torch.empty(r, c, *tail)) for k, (r, c) in shapes.items()})
        self.bias = nn.ParameterDict(
            {k: nn.Parameter(torch.empty(r)) for k, (r, _) in shapes.items()}) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each stored tensor initialised as ``nn.Conv2d``/``nn.Linear`` initialise a layer of
        its shape (Kaiming-uniform weight, uniform bias in +-1/sqrt(fan_in))."""
        for key, w in self.weight.items():
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            if self.bias is not None:
                fan_in = w[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(self.bias[key], -bound, bound)

    def key(self, c_in: int, c_out: int) -> str:
        """The stored tensor serving the pair (raises for a width not in the choices)."""
        if c_in not in self.in_choices:
            raise InvalidArchitectureError(
                f"input width {c_in!r} is not one of this layer's input choices {self.in_choices}")
        if c_out not in self.out_choices:
            raise InvalidArchitectureError(
                f"output width {c_out!r} is not one of this layer's output choices "
                f"{self.out_choices}")
        return {"full": "full", "front": f"in{c_in}", "end": f"out{c_out}",
                "independent": f"in{c_in}_out{c_out}"}[self.sharing]

    def get(self, c_in: int, c_out: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight ``[c_out, c_in, *tail]``, bias ``[c_out]`` or None): views of the store, so
        gradients flow into exactly the entries the pair uses."""
        k = self.key(c_in, c_out)
        w = self.weight[k][:c_out, :c_in]
        b = self.bias[k][:c_out] if self.bias is not None else None
        return w, b


class SlimConv2d(nn.Module):
    """A convolution whose input width (read from ``x``) and output width (an argument) vary
    over the given choices, its weights shared by ``sharing`` (module docstring)."""

    def __init__(
        self, in_choices: Sequence[int], out_choices: Sequence[int], kernel_size: int, *,
        stride: int = 1, padding: int = 0, bias: bool = False, sharing: str = "full",
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.kernel_size = stride, padding, kernel_size
        self.bank = _SharedBank(in_choices, out_choices, (kernel_size, kernel_size), sharing, bias)

    def forward(self, x: torch.Tensor, c_out: int) -> torch.Tensor:
        w, b = self.bank.get(x.shape[1], c_out)
        return F.conv2d(x, w, b, self.stride, self.padding)

    def export(self, c_in: int, c_out: int) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent ``nn.Conv2d(c_in, c_out, ...)`` (copies)."""
        w, b = self.bank.get(c_in, c_out)
        out = {"weight": w.detach().clone()}
        if b is not None:
            out["bias"] = b.detach().clone()
        return out


class SlimLinear(nn.Module):
    """A linear layer with varying input (read from ``x``) and output widths (see
    :class:`SlimConv2d`); ``c_out`` may be omitted when there is a single output choice."""

    def __init__(
        self, in_choices: Sequence[int], out_choices: Sequence[int], *, bias: bool = True,
        sharing: str = "full",
    ) -> None:
        super().__init__()
        self.bank = _SharedBank(in_choices, out_choices, (), sharing, bias)

    def _out(self, c_out: int | None) -> int:
        if c_out is not None:
            return c_out
        if len(self.bank.out_choices) != 1:
            raise InvalidArchitectureError(
                f"SlimLinear has output choices {self.bank.out_choices}: pass c_out")
        return self.bank.out_choices[0]

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:
        w, b = self.bank.get(x.shape[-1], self._out(c_out))
        return F.linear(x, w, b)

    def export(self, c_in: int, c_out: int | None = None) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent ``nn.Linear(c_in, c_out)`` (copies)."""
        w, b = self.bank.get(c_in, self._out(c_out))
        out = {"weight": w.detach().clone()}
        if b is not None:
            out["bias"] = b.detach().clone()
        return out


def _bn_keys(sharing: str, in_choices: tuple[int, ...], widths: tuple[int, ...]
             ) -> dict[str, int]:
    """Stored BatchNorm state per key -> its number of channels (the NCS BN schemes; the same
    keys and sizes as a conv bias under the conv schemes)."""
    if sharing == "full":
        return {"full": widths[-1]}
    if sharing == "front":
        return {f"in{i}": widths[-1] for i in in_choices}
    if sharing == "end":
        return {f"out{c}": c for c in widths}
    return {f"in{i}_out{c}": c for i in in_choices for c in widths}


class SlimBatchNorm2d(nn.Module):
    """BatchNorm over a varying number of channels ``c`` (read from ``x``) after a layer whose
    input width ``c_in`` varies over ``in_choices`` (NCS's BN sharing, module docstring):

    * ``full``: one BN of the widest width, sliced to ``[:c]`` for every choice;
    * ``front``: one BN of the widest width per input width ``c_in`` of the conv before it,
      sliced to ``[:c]`` (choices with the same input width share);
    * ``end``: one BN of ``c`` channels per output width ``c`` (same output width share);
    * ``independent``: one BN per ``(c_in, c)`` pair (nothing shared).

    Affine parameters, running statistics and the batch counter all follow the key; a
    train-mode forward updates exactly the ``[:c]`` running statistics of its key. Same
    arithmetic as ``nn.BatchNorm2d`` with ``track_running_stats=True``. ``in_choices=None``
    means the layer before has a single input width: then ``front`` = ``full`` and
    ``independent`` = ``end``, and ``c_in`` need not be passed.
    """

    def __init__(
        self, widths: Sequence[int], *, in_choices: Sequence[int] | None = None,
        sharing: str = "full", eps: float = 1e-5, momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.widths = _check_widths(widths, "widths")
        self.in_choices = None if in_choices is None else _check_widths(in_choices, "in_choices")
        self.sharing = check_sharing(sharing)
        self.eps, self.momentum = eps, momentum
        # with one unnamed input width, keying on it is keying on nothing
        self._scheme = ({"front": "full", "independent": "end"}.get(self.sharing, self.sharing)
                        if self.in_choices is None else self.sharing)
        sizes = _bn_keys(self._scheme, self.in_choices or (), self.widths)
        self.weight = nn.ParameterDict({k: nn.Parameter(torch.ones(n)) for k, n in sizes.items()})
        self.bias = nn.ParameterDict({k: nn.Parameter(torch.zeros(n)) for k, n in sizes.items()})
        for k, n in sizes.items():
            self.register_buffer(f"running_mean_{k}", torch.zeros(n))
            self.register_buffer(f"running_var_{k}", torch.ones(n))
            self.register_buffer(f"num_batches_tracked_{k}", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        """As ``nn.BatchNorm2d.reset_running_stats``, for every stored key (BN recalibration
        before weight-sharing evaluation relies on it)."""
        for name, buf in self.named_buffers(recurse=False):
            if name.startswith("running_mean_") or name.startswith("num_batches_tracked_"):
                buf.zero_()
            else:
                buf.fill_(1.0)

    def key(self, c: int, c_in: int | None = None) -> str:
        """The stored BN serving output width ``c`` after input width ``c_in``."""
        if c not in self.widths:
            raise InvalidArchitectureError(
                f"BatchNorm width {c!r} is not one of this layer's choices {self.widths}")
        if self.in_choices is not None:
            if c_in is None and self._scheme in ("front", "independent"):
                if len(self.in_choices) != 1:
                    raise InvalidArchitectureError(
                        f"BatchNorm with {self.sharing!r} sharing needs the input width c_in of "
                        f"the layer before it (one of {self.in_choices})")
                c_in = self.in_choices[0]
            if c_in is not None and c_in not in self.in_choices:
                raise InvalidArchitectureError(
                    f"input width {c_in!r} is not one of the input choices {self.in_choices} "
                    f"of the layer before this BatchNorm")
        return {"full": "full", "front": f"in{c_in}", "end": f"out{c}",
                "independent": f"in{c_in}_out{c}"}[self._scheme]

    def _state(self, c: int, c_in: int | None) -> dict[str, torch.Tensor]:
        k = self.key(c, c_in)
        return {"weight": self.weight[k][:c], "bias": self.bias[k][:c],
                "running_mean": getattr(self, f"running_mean_{k}")[:c],
                "running_var": getattr(self, f"running_var_{k}")[:c],
                "num_batches_tracked": getattr(self, f"num_batches_tracked_{k}")}

    def forward(self, x: torch.Tensor, c_in: int | None = None) -> torch.Tensor:
        """BatchNorm of ``x`` (``c = x.shape[1]`` channels); ``c_in``: the input width of the
        layer before (needed by ``front``/``independent`` when it has several choices)."""
        s = self._state(x.shape[1], c_in)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            s["num_batches_tracked"].add_(1)
            if self.momentum is None:  # cumulative average, as nn.BatchNorm2d
                factor = 1.0 / float(s["num_batches_tracked"])
        # The running statistics are views of the stored buffers: batch_norm updates them in
        # place, so only the first c entries of this key's buffers move.
        return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"],
                            self.training, factor, self.eps)

    def export(self, c: int, c_in: int | None = None) -> dict[str, torch.Tensor]:
        """The state dict of the equivalent ``nn.BatchNorm2d(c)`` (copies)."""
        return {k: v.detach().clone() for k, v in self._state(c, c_in).items()}

    _LEGACY = re.compile(r"^(weight\.|bias\.|running_mean_|running_var_|num_batches_tracked_)"
                         r"w(\d+)$")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # type: ignore[override]
        # Before the NCS BN schemes, front/end/independent all stored one BN per width under
        # "w{c}": that is today's "end" (renamed on load); front/independent differ: refused.
        legacy = [k for k in state_dict
                  if k.startswith(prefix) and self._LEGACY.match(k[len(prefix):])]
        if legacy and self._scheme != "end":
            raise SharingError(
                f"checkpoint BatchNorm {legacy[0]!r} has the old one-BN-per-width layout "
                f"(today's 'end' sharing); this layer uses {self.sharing!r} sharing")
        for k in legacy:
            state_dict[prefix + self._LEGACY.sub(r"\1out\2", k[len(prefix):])] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


# ----------------------------------------------------------------------------- ResNet-20
class SlimBlock(nn.Module):
    """A ResNet basic block over width choices (``c_in``, ``c_mid``, ``c_out``); names mirror
    :class:`~nasrank.spaces.networks.cvpr2021.BasicBlock`. ``shortcut_conv``/``shortcut_bn`` exist
    when some choice needs a projection (always for stride 2, else when ``c_in`` may differ from
    ``c_out``)."""

    def __init__(
        self, in_choices: Sequence[int], mid_choices: Sequence[int], out_choices: Sequence[int],
        stride: int, sharing: Mapping[str, str],
    ) -> None:
        super().__init__()
        self.stride = stride
        conv, bn = sharing["conv"], sharing["bn"]
        self.conv1 = SlimConv2d(in_choices, mid_choices, 3, stride=stride, padding=1,
                                sharing=conv)
        self.bn1 = SlimBatchNorm2d(mid_choices, in_choices=in_choices, sharing=bn)
        self.conv2 = SlimConv2d(mid_choices, out_choices, 3, padding=1, sharing=conv)
        self.bn2 = SlimBatchNorm2d(out_choices, in_choices=mid_choices, sharing=bn)
        projects = stride != 1 or any(i != o for i in in_choices for o in out_choices)
        self.shortcut_conv = (SlimConv2d(in_choices, out_choices, 1, stride=stride, sharing=conv)
                              if projects else None)
        self.shortcut_bn = (SlimBatchNorm2d(out_choices, in_choices=in_choices, sharing=bn)
                            if projects else None)

    def forward(self, x: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
        c_in = x.shape[1]
        out = torch.relu(self.bn1(self.conv1(x, spec.c_mid), c_in))
        out = self.bn2(self.conv2(out, spec.c_out), spec.c_mid)
        if spec.projection:
            short = self.shortcut_bn(self.shortcut_conv(x, spec.c_out), c_in)
        else:
            short = x
        return torch.relu(out + short)

    def export(self, spec: BlockSpec) -> dict[str, torch.Tensor]:
        """State dict of ``BasicBlock(spec)``."""
        state = {}
        for name, part in (("conv1", self.conv1.export(spec.c_in, spec.c_mid)),
                           ("bn1", self.bn1.export(spec.c_mid, spec.c_in)),
                           ("conv2", self.conv2.export(spec.c_mid, spec.c_out)),
                           ("bn2", self.bn2.export(spec.c_out, spec.c_mid))):
            state.update({f"{name}.{k}": v for k, v in part.items()})
        if spec.projection:
            state.update({f"shortcut.0.{k}": v
                          for k, v in self.shortcut_conv.export(spec.c_in, spec.c_out).items()})
            state.update({f"shortcut.1.{k}": v
                          for k, v in self.shortcut_bn.export(spec.c_out, spec.c_in).items()})
        return state


def normalise_sharing(sharing: str | Mapping[str, str]) -> dict[str, str]:
    """``sharing`` as ``{"conv": s, "bn": s, "fc": s}``: one scheme name for all three layer
    types, or a mapping of some of them (the others default to ``"full"``)."""
    if isinstance(sharing, str):
        s = check_sharing(sharing)
        return {t: s for t in LAYER_TYPES}
    if not isinstance(sharing, Mapping):
        raise SharingError(
            f"sharing must be a scheme name or a mapping layer type -> scheme, got {sharing!r}")
    unknown = [t for t in sharing if t not in LAYER_TYPES]
    if unknown:
        raise SharingError(
            f"unknown layer type(s) {unknown} in sharing {dict(sharing)!r}; expected keys from "
            f"{LAYER_TYPES}")
    return {t: check_sharing(sharing.get(t, "full")) for t in LAYER_TYPES}


class ChannelSupernet(Supernet):
    """Weight-sharing supernet of the CVPR 2021 ResNet-20 channel space.

    ``sharing``: a scheme of :data:`SHARING_SCHEMES` for every layer, or a mapping
    ``{"conv": ..., "bn": ..., "fc": ...}`` (missing types are ``"full"``). ``choices``
    optionally narrows each of the 20 positions to a subset of its published widths (a
    sub-space, e.g. for small tests or few-shot splits); by default every published width.

    ``forward(x, arch)`` computes what ``CVPR2021Space().build(arch)`` computes with the weights
    :meth:`subnet` copies out (same operations in the same order). Decision points are the 20
    positions (position 20 has no layer but stays a decision, as in the space's key).
    """

    def __init__(
        self, sharing: str | Mapping[str, str] = "full", num_classes: int = 100,
        in_channels: int = 3, choices: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise SharingError(f"ChannelSupernet {name} must be an int >= 1, got {v!r}")
        self.space = CVPR2021Space()
        self.sharing = normalise_sharing(sharing)
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.choices = self._check_choice_lists(choices)
        c = self.choices
        self.stem_conv = SlimConv2d((self.in_channels,), c[0], 3, padding=1,
                                    sharing=self.sharing["conv"])
        self.stem_bn = SlimBatchNorm2d(c[0], in_choices=(self.in_channels,),
                                       sharing=self.sharing["bn"])
        blocks, c_in = [], c[0]
        for b in range(NUM_BLOCKS):
            stride = 2 if b in (3, 6) else 1
            blocks.append(SlimBlock(c_in, c[1 + 2 * b], c[2 + 2 * b], stride, self.sharing))
            c_in = c[2 + 2 * b]
        self.blocks = nn.ModuleList(blocks)
        self.fc = SlimLinear(c[NUM_POSITIONS - 2], (self.num_classes,),
                             sharing=self.sharing["fc"])

    @staticmethod
    def _check_choice_lists(choices: Sequence[Sequence[int]] | None) -> tuple[tuple[int, ...], ...]:
        if choices is None:
            return CHOICES
        if isinstance(choices, (str, bytes)) or len(choices) != NUM_POSITIONS:
            raise SharingError(
                f"choices must list the widths of all {NUM_POSITIONS} positions, got {choices!r}")
        out = []
        for i, widths in enumerate(choices):
            ws = _check_widths(widths, f"choices of position {i + 1}")
            bad = [w for w in ws if w not in CHOICES[i]]
            if bad:
                raise SharingError(
                    f"position {i + 1} width(s) {bad} are not in the space's choices {CHOICES[i]}")
            out.append(ws)
        return tuple(out)

    # -- interface
    def config(self) -> dict[str, Any]:
        return {"space": self.space.name, "class": type(self).__name__,
                "sharing": dict(self.sharing), "num_classes": self.num_classes,
                "in_channels": self.in_channels, "choices": [list(c) for c in self.choices]}

    def decisions(self) -> list[list[Any]]:
        return [list(c) for c in self.choices]

    def arch_from_choices(self, indices: Sequence[int]) -> CVPR2021Arch:
        return CVPR2021Arch(tuple(self.choices[d][i]
                                  for d, i in enumerate(self.check_choices(indices))))

    def choices_of(self, arch: CVPR2021Arch) -> list[int]:
        arch = self.check_arch(arch)
        return [self.choices[i].index(w) for i, w in enumerate(arch.widths)]

    def check_arch(self, arch: Any) -> CVPR2021Arch:
        """A CVPR 2021 architecture (or its string) whose widths are in this supernet's
        choices; anything else raises :class:`~nasrank.errors.InvalidArchitectureError`."""
        arch = self.space._check(arch)
        for i, w in enumerate(arch.widths):
            if w not in self.choices[i]:
                raise InvalidArchitectureError(
                    f"{arch}: position {i + 1} has width {w}, but this supernet only holds "
                    f"{self.choices[i]}")
        return arch

    def largest_arch(self) -> CVPR2021Arch:
        """Every position at its widest choice (NCS's teacher)."""
        return CVPR2021Arch(tuple(c[-1] for c in self.choices))

    def smallest_arch(self) -> CVPR2021Arch:
        """Every position at its narrowest choice (the sandwich rule's smallest student)."""
        return CVPR2021Arch(tuple(c[0] for c in self.choices))

    def forward(self, x: torch.Tensor, arch: CVPR2021Arch) -> torch.Tensor:
        arch = self.check_arch(arch)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise NasrankError(
                f"expected input [batch, {self.in_channels}, H, W], got {tuple(x.shape)}")
        x = torch.relu(self.stem_bn(self.stem_conv(x, arch.widths[0]), self.in_channels))
        for block, spec in zip(self.blocks, block_plan(arch)):
            x = block(x, spec)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def cost(self, arch: CVPR2021Arch, input_shape: Sequence[int]) -> tuple[float, float]:
        return self.space.cost(self.check_arch(arch), input_shape, num_classes=self.num_classes)

    def bn_modules(self) -> list[SlimBatchNorm2d]:  # type: ignore[override]
        """The :class:`SlimBatchNorm2d` layers: they are not ``nn.BatchNorm2d`` instances but
        offer what BN recalibration uses (``reset_running_stats()``, ``momentum``, with
        ``momentum=None`` a cumulative average as in ``nn.BatchNorm2d``)."""
        return [m for m in self.modules() if isinstance(m, SlimBatchNorm2d)]

    def subnet(self, arch: CVPR2021Arch) -> CVPR2021ResNet:
        """``CVPR2021Space().build(arch)`` holding copies of ``arch``'s weights and BatchNorm
        statistics (loaded with ``strict=True``: every tensor is accounted for)."""
        arch = self.check_arch(arch)
        net = self.space.build(arch, self.num_classes, in_channels=self.in_channels)
        c1 = arch.widths[0]
        state = {f"stem.0.{k}": v for k, v in self.stem_conv.export(self.in_channels, c1).items()}
        state.update({f"stem.1.{k}": v
                      for k, v in self.stem_bn.export(c1, self.in_channels).items()})
        for b, (block, spec) in enumerate(zip(self.blocks, block_plan(arch))):
            state.update({f"blocks.{b}.{k}": v for k, v in block.export(spec).items()})
        state.update({f"fc.{k}": v
                      for k, v in self.fc.export(arch.widths[NUM_POSITIONS - 2]).items()})
        net.load_state_dict(state, strict=True)
        return net.to(next(self.parameters()).device)


# ----------------------------------------------------------------------------- registry entry
# in the torch-free ``configs`` module (the CLI lists them without torch); the names stay
# importable from here
from .configs import ChannelSupernetConfig  # noqa: E402, F401
