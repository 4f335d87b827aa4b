"""Zero-cost proxies: many training-free scores of a network from as few passes as possible.

A proxy is one decorated function ``f(ctx) -> float`` that reads *artifacts* (gradients, ReLU
codes, an input Jacobian, ...) produced by a small number of shared *passes*::

    @proxy("snip", needs=("weight_grads",))
    def snip(ctx): ...

:func:`score` collects the artifacts every requested proxy needs, runs each pass once (one
forward + the backwards it needs for all batch-based proxies together; separate passes only where
the published definition needs other weights or inputs: synflow, zen, ntk, linear_regions), then
evaluates the proxies. The network is never deep-copied: everything a pass changes (weights,
dtype, BN running statistics, train/eval modes, ``requires_grad``, ``.grad``) is saved first and
restored exactly afterwards.

Proxy names are the published benchmark columns' (``jacov``, ``nwot``...; see
:mod:`nasrank.proxy_names`): an alias (``jacob_cov``) is accepted wherever a name is given, and
results are keyed by the canonical name. Every proxy returns one float, **higher = predicted
better**. Definitions follow the published
ones (zero-cost-nas ``foresight/pruners/measures`` as used by NAS-Bench-Suite-Zero, NASWOT,
EPE-NAS, Zen-NAS, TE-NAS); batch-based proxies score the network in train mode (BatchNorm uses
batch statistics), as those implementations do. "Layers" are the Conv/Linear modules.

========== ==============================================================================
grad_norm  sum over layers of ||dL/dW||_2 (L = cross-entropy on the batch)
snip       sum over layers of sum |W * dL/dW|
grasp      sum over layers of sum (-W * Hg), g = dL/dW, H = Hessian of L (exact double backward;
           a float32 forward difference of gradients was tried and is wrong by far on NB201)
fisher     sum over layer outputs a of fan_in * sum_channels 0.5 * mean_batch (sum_spatial a * dL/da)^2
plain      sum over layers of sum W * dL/dW
synflow    log of sum over layers of sum |W * dR/dW|, R = sum of the output for an all-ones input
           with every parameter and buffer replaced by its absolute value, in float64; BatchNorm
           is bypassed (identity), the ``bn=False`` variant of the published measure
jacov      -sum_i (log(v_i + k) + 1 / (v_i + k)), v = eigenvalues of the correlation matrix of
           the per-example input gradients of the summed output, k = 1e-5 (alias: jacob_cov)
nwot       log|det K|, K_ij = number of ReLU units (all ReLU inputs, whole network) on which
           examples i and j agree in sign (NASWOT, Mellor et al. 2021; alias: naswot)
epe_nas    EPE-NAS: per class c, s_c = sum log(|corr(J_c)| + k); score = sum_c |s_c| for <= 100 classes,
           else sum_{c,c'} |s_c/n_c - s_c'/n_c'| / #classes (the authors' code)
zen        Zen-NAS: weights re-drawn N(0, 1) (BN affine 1/0), Gaussian input x and x + 0.01 e;
           log mean_batch ||f(x) - f(x')||_1 of the features entering the last global pooling
           + sum over BN layers of log sqrt(mean running_var) after the two train-mode forwards
ntk        -condition number (max/min eigenvalue) of the empirical NTK J J^T of the first
           ``ntk_samples`` examples, J_i = d(sum of output i)/dW over layer weights (TE-NAS)
linear_regions  sum over ReLU calls of log(number of distinct sign patterns of that ReLU's input)
           over ``lr_samples`` Gaussian inputs of spatial size ``lr_size`` (``lr_count="layer"``,
           default); ``lr_count="network"``: distinct patterns of all ReLUs together (TE-NAS's
           count of linear regions on tiny inputs), which saturates at ``lr_samples`` on NB201
l2_norm    sum over layers of ||W||_2
flops      multiply-accumulates of every Conv/Linear layer for one input example, in millions
params     number of parameters (all of them), in millions
========== ==============================================================================
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasrank.errors import NasrankError
from nasrank.proxy_names import PROXY_ALIASES, canonical_proxy
from nasrank.supernet.double_backward import FastDoubleBackward


class ProxyError(NasrankError):
    """Bad input to a zero-cost proxy (unknown name, bad batch, network without parameters)."""


LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class ProxySettings:
    """Tunable constants of the proxies (defaults = the published values where one exists)."""

    jacob_k: float = 1e-5
    zen_mixup: float = 1e-2
    ntk_samples: int = 16
    lr_samples: int = 256
    # Issue 18: whole-network patterns of 256 inputs of 3x3 gave every NB201 cell 256 (each
    # input its own pattern). Counting per ReLU call on 2x2 inputs separates cells: on 50 NB201
    # cells, Kendall tau 0.52 with cifar10_valid (BENCHMARKS.md, issue 18).
    lr_size: int = 2
    lr_count: str = "layer"  # "layer" (sum of log per-ReLU counts) or "network" (TE-NAS)


@dataclass(frozen=True)
class ProxySpec:
    name: str
    fn: Callable[[Context], float]
    needs: tuple[str, ...]
    doc: str


_PROXIES: dict[str, ProxySpec] = {}
_PASSES: dict[str, Callable[[Context, set[str]], None]] = {}
_ARTIFACT_PASS: dict[str, str] = {}


def proxy(name: str, needs: Sequence[str] = ()) -> Callable:
    """Register ``fn(ctx) -> float`` as proxy ``name``; ``needs`` lists the artifacts it reads
    (each produced by one registered pass), so :func:`score` can share passes."""

    def register(fn: Callable[[Context], float]) -> Callable[[Context], float]:
        unknown = [a for a in needs if a not in _ARTIFACT_PASS]
        if unknown:
            raise ProxyError(f"proxy {name!r} needs unknown artifacts {unknown}; "
                             f"known: {sorted(_ARTIFACT_PASS)}")
        if name in _PROXIES:
            raise ProxyError(f"proxy {name!r} is already registered")
        _PROXIES[name] = ProxySpec(name, fn, tuple(needs), (fn.__doc__ or "").strip())
        return fn

    return register


def _pass(name: str, provides: Sequence[str]) -> Callable:
    def register(fn: Callable[[Context, set[str]], None]) -> Callable:
        _PASSES[name] = fn
        for a in provides:
            _ARTIFACT_PASS[a] = name
        return fn

    return register


def available_proxies() -> list[str]:
    return list(_PROXIES)


def proxy_needs(name: str) -> tuple[str, ...]:
    return _spec(name).needs


def _spec(name: str) -> ProxySpec:
    """The registered proxy ``name`` (an alias such as ``jacob_cov`` names its canonical one)."""
    try:
        return _PROXIES[canonical_proxy(name)]
    except (KeyError, TypeError):
        raise ProxyError(f"unknown proxy {name!r}; expected one of {list(_PROXIES)} (aliases: "
                         f"{PROXY_ALIASES})") from None


# ----------------------------------------------------------------------------- context
@dataclass
class Context:
    """What passes and proxies share for one call of :func:`score`."""

    net: nn.Module
    inputs: torch.Tensor | None
    targets: torch.Tensor | None
    device: torch.device
    seed: int
    settings: ProxySettings
    input_shape: tuple[int, ...]
    art: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def layers(self) -> list[nn.Module]:
        return [m for m in self.net.modules() if isinstance(m, LAYER_TYPES)]

    def generator(self, salt: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(int(self.seed) * 1000003 + salt)
        return g


class _SavedState:
    """Exact copy of everything a pass may change; :meth:`restore` puts it back in place (the
    Parameter and buffer objects stay the same, so optimisers keep their references)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.tensors = [(t, t.detach().clone()) for t in _tensors(net)]
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone())
                      for p in net.parameters()]
        self.requires_grad = [(p, p.requires_grad) for p in net.parameters()]
        self.modes = [(m, m.training) for m in net.modules()]
        self.momenta = [(m, m.momentum) for m in net.modules() if isinstance(m, BN_TYPES)]

    @torch.no_grad()
    def restore(self) -> None:
        for t, saved in self.tensors:
            if t.dtype != saved.dtype:
                t.data = saved.clone()
            else:
                t.copy_(saved)
        for p, g in self.grads:
            p.grad = None if g is None else g.clone()
        for p, r in self.requires_grad:
            p.requires_grad_(r)
        for m, mode in self.modes:
            m.training = mode
        for m, mom in self.momenta:
            m.momentum = mom


def _tensors(net: nn.Module) -> list[torch.Tensor]:
    return [*net.parameters(), *net.buffers()]


# ----------------------------------------------------------------------------- passes
@_pass("batch", provides=("layer_macs", "relu_kernel", "weight_grads", "act_grads",
                          "hessian_grad", "input_jacobian", "logits"))
def _batch_pass(ctx: Context, want: set[str]) -> None:
    """One train-mode forward of the batch, then only the backwards that ``want`` needs:
    d(sum output)/d input (jacov, epe_nas); dL/dW and dL/d(layer outputs) in one call
    (grad_norm, snip, plain, fisher); Hg by double backward through that call (grasp)."""
    net, x, y = ctx.net, ctx.inputs, ctx.targets
    assert x is not None and y is not None
    net.train()
    layers = ctx.layers()
    need_w = bool(want & {"weight_grads", "hessian_grad"})
    need_a = "act_grads" in want
    need_j = "input_jacobian" in want
    need_h = "hessian_grad" in want
    need_k = "relu_kernel" in want
    need_backward = need_w or need_a or need_j
    if (need_w or need_a) and not layers:
        raise ProxyError(f"{type(net).__name__} has no Conv/Linear layer; gradient proxies "
                         f"score those layers")
    weights = [m.weight for m in layers]
    # only the layer weights: no proxy reads another parameter's gradient, and BatchNorm's
    # affine parameters would add terms to GraSP's double backward
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(need_backward)
    acts: list[torch.Tensor] = []
    macs = [0]
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=ctx.device) if need_k else None

    def layer_hook(m: nn.Module, inp: Any, out: torch.Tensor) -> None:
        per_out = (m.in_channels // m.groups) * math.prod(m.kernel_size) \
            if isinstance(m, nn.modules.conv._ConvNd) else m.in_features
        macs[0] += out[:1].numel() * per_out
        if need_a:
            acts.append((out, per_out))

    def relu_hook(m: nn.Module, inp: Any) -> None:
        # K_ij = #units where i and j agree = 2 c c^T - s 1^T - 1 s^T + units (one matmul, not two)
        with torch.no_grad():
            c = (inp[0].detach() > 0).flatten(1).to(torch.float32)
            s = c.sum(1, dtype=torch.float64)
            kernel.add_(2.0 * (c @ c.T).double() - s[:, None] - s[None, :] + c.shape[1])

    hooks = [m.register_forward_hook(layer_hook) for m in layers]
    if need_k:
        hooks += [m.register_forward_pre_hook(relu_hook) for m in net.modules()
                  if isinstance(m, nn.ReLU)]
    try:
        x_in = x.detach().clone().requires_grad_(need_j)
        # GraSP: route conv2d / batch norm through hand-written double backwards (issue 16)
        fast = FastDoubleBackward() if need_h else contextlib.nullcontext()
        with torch.set_grad_enabled(need_backward), fast:
            out = _forward(net, x_in, ctx.input_shape)
    finally:
        for h in hooks:
            h.remove()
    _check_logits(out, y)
    ctx.art["logits"] = out.detach()
    ctx.art["layer_macs"] = macs[0]
    if need_k:
        ctx.art["relu_kernel"] = kernel.cpu().numpy()
    if need_j:
        (jac,) = torch.autograd.grad(out.sum(), x_in, retain_graph=need_w or need_a)
        ctx.art["input_jacobian"] = jac.detach()
    if need_w or need_a:
        loss = F.cross_entropy(out, y)
        inputs = (weights if need_w else []) + ([a for a, _ in acts] if need_a else [])
        grads = torch.autograd.grad(loss, inputs, create_graph=need_h, allow_unused=True)
        n_w = len(weights) if need_w else 0
        gw, ga = grads[:n_w], grads[n_w:]
        if need_w:
            ctx.art["weight_grads"] = [torch.zeros_like(w) if g is None else g.detach()
                                       for w, g in zip(weights, gw)]
        if need_a:
            ctx.art["act_grads"] = [(a.detach(), None if g is None else g.detach(), fan_in)
                                    for (a, fan_in), g in zip(acts, ga)]
        if need_h:
            z = sum((g * g.detach()).sum() for g in gw if g is not None and g.requires_grad)
            if isinstance(z, torch.Tensor):
                hg = torch.autograd.grad(z, weights, allow_unused=True)
                ctx.art["hessian_grad"] = [torch.zeros_like(w) if h is None else h.detach()
                                           for w, h in zip(weights, hg)]
            else:  # the loss is linear in every weight: H g = 0
                ctx.art["hessian_grad"] = [torch.zeros_like(w) for w in weights]


@_pass("synflow", provides=("synflow_grads",))
def _synflow_pass(ctx: Context, want: set[str]) -> None:
    """|params| and |buffers| in float64, BN bypassed, all-ones input of batch size 1."""
    net = ctx.net
    layers = ctx.layers()
    if not layers:
        raise ProxyError(f"{type(net).__name__} has no Conv/Linear layer for synflow")
    with torch.no_grad():
        for t in _tensors(net):
            if t.is_floating_point():
                t.data = t.data.abs().double()
    net.train()  # BN is bypassed (eval mode so a batch of one is accepted; output replaced)
    for m in net.modules():
        if isinstance(m, BN_TYPES):
            m.eval()
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    bypass = [m.register_forward_hook(lambda m, i, o: i[0]) for m in net.modules()
              if isinstance(m, BN_TYPES)]
    try:
        ones = torch.ones((1, *ctx.input_shape), dtype=torch.float64, device=ctx.device)
        out = _forward(net, ones, ctx.input_shape)
        grads = torch.autograd.grad(out.sum(), [m.weight for m in layers], allow_unused=True)
    finally:
        for h in bypass:
            h.remove()
    total = sum(float((m.weight.detach() * g).abs().sum()) for m, g in zip(layers, grads)
                if g is not None)
    ctx.art["synflow_grads"] = total


@_pass("zen", provides=("zen",))
def _zen_pass(ctx: Context, want: set[str]) -> None:
    net = ctx.net
    g = ctx.generator(11)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, LAYER_TYPES):
                m.weight.normal_(0.0, 1.0, generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, BN_TYPES):
                if m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
    net.train()
    pool = [m for m in net.modules() if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                                       nn.AdaptiveAvgPool3d))]
    feats: list[torch.Tensor] = []
    hook = pool[-1].register_forward_pre_hook(lambda m, i: feats.append(i[0])) if pool else None
    shape = (ctx.inputs.shape[0] if ctx.inputs is not None else 64, *ctx.input_shape)
    x = torch.randn(shape, generator=g, device=ctx.device)
    e = torch.randn(shape, generator=g, device=ctx.device)
    try:
        with torch.no_grad():
            o1 = _forward(net, x, ctx.input_shape)
            o2 = _forward(net, x + ctx.settings.zen_mixup * e, ctx.input_shape)
    finally:
        if hook is not None:
            hook.remove()
    f1, f2 = (feats[0], feats[1]) if pool else (o1, o2)
    delta = (f1 - f2).abs().flatten(1).sum(1).mean().double()
    bn_term = sum(float(torch.log(torch.sqrt(m.running_var.double().mean())))
                  for m in net.modules() if isinstance(m, BN_TYPES) and m.running_var is not None)
    ctx.art["zen"] = float(torch.log(delta)) + bn_term


@_pass("ntk", provides=("ntk_eigenvalues",))
def _ntk_pass(ctx: Context, want: set[str]) -> None:
    """Per-example gradients of the summed logits of a sub-batch, by one batched backward
    (``is_grads_batched``) instead of one backward per example."""
    net, x = ctx.net, ctx.inputs
    assert x is not None
    layers = ctx.layers()
    if not layers:
        raise ProxyError(f"{type(net).__name__} has no Conv/Linear layer for ntk")
    k = min(int(ctx.settings.ntk_samples), x.shape[0])
    net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    weights = [m.weight for m in layers]
    out = _forward(net, x[:k].detach(), ctx.input_shape).flatten(1).sum(1)
    eye = torch.eye(k, dtype=out.dtype, device=out.device)
    grads = torch.autograd.grad(out, weights, grad_outputs=eye, is_grads_batched=True,
                                allow_unused=True)
    gram = torch.zeros(k, k, dtype=torch.float64, device=ctx.device)
    for g in grads:
        if g is not None:
            flat = g.flatten(1).double()
            gram += flat @ flat.T
    g = gram.cpu().numpy()
    if not np.all(np.isfinite(g)):  # non-finite weights or gradients: no spectrum to read
        ctx.art["ntk_eigenvalues"] = np.full(k, math.nan)
        return
    try:
        ctx.art["ntk_eigenvalues"] = np.linalg.eigvalsh(g)
    except np.linalg.LinAlgError:
        ctx.art["ntk_eigenvalues"] = np.full(k, math.nan)


@_pass("linear_regions", provides=("relu_patterns",))
def _linear_regions_pass(ctx: Context, want: set[str]) -> None:
    net = ctx.net
    s = ctx.settings
    if s.lr_count not in ("layer", "network"):
        raise ProxyError(f"lr_count {s.lr_count!r} is unknown; expected 'layer' or 'network'")
    shape = (s.lr_samples, ctx.input_shape[0], *([s.lr_size] * (len(ctx.input_shape) - 1)))
    x = torch.randn(shape, generator=ctx.generator(23), device=ctx.device)
    codes: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda m, i: codes.append((i[0] > 0).flatten(1)))
             for m in net.modules() if isinstance(m, nn.ReLU)]
    if not hooks:
        raise ProxyError(f"{type(net).__name__} has no nn.ReLU module for linear_regions")
    net.train()
    try:
        with torch.no_grad():
            net(x)
    except RuntimeError as err:
        raise ProxyError(f"linear_regions feeds inputs of shape {tuple(shape)} (lr_size="
                         f"{s.lr_size}); the network rejected them: {err}") from None
    finally:
        for h in hooks:
            h.remove()
    ctx.art["relu_patterns"] = [c.cpu().numpy() for c in codes]  # one [samples, units] per call


@_pass("static", provides=("static",))
def _static_pass(ctx: Context, want: set[str]) -> None:
    ctx.art["static"] = True


# ----------------------------------------------------------------------------- proxies
def _layer_sum(ctx: Context, f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
    return float(sum(f(m.weight.detach(), g).double().sum() for m, g in
                     zip(ctx.layers(), ctx.art["weight_grads"])))


@proxy("grad_norm", needs=("weight_grads",))
def grad_norm(ctx: Context) -> float:
    """Sum over layers of the L2 norm of the loss gradient of the weight."""
    return float(sum(g.double().norm() for g in ctx.art["weight_grads"]))


@proxy("snip", needs=("weight_grads",))
def snip(ctx: Context) -> float:
    """Sum of |W * dL/dW| (SNIP saliency, Lee et al. 2019)."""
    return _layer_sum(ctx, lambda w, g: (w * g).abs())


@proxy("plain", needs=("weight_grads",))
def plain(ctx: Context) -> float:
    """Sum of W * dL/dW (signed)."""
    return _layer_sum(ctx, lambda w, g: w * g)


@proxy("grasp", needs=("hessian_grad",))
def grasp(ctx: Context) -> float:
    """Sum of -W * (H g) (GraSP, Wang et al. 2020)."""
    return float(sum((-m.weight.detach() * h).double().sum()
                     for m, h in zip(ctx.layers(), ctx.art["hessian_grad"])))


@proxy("fisher", needs=("act_grads",))
def fisher(ctx: Context) -> float:
    """Sum over layer outputs and channels of fan_in * 0.5 * mean_batch (sum_spatial a * dL/da)^2.

    The published measure (zero-cost-nas ``fisher``, the NAS-Bench-Suite-Zero column) gives
    each output channel's value to every weight of that channel (``reshape_elements``) and
    then sums over weights: a channel counts ``fan_in`` times (``in_channels / groups * kh *
    kw``, or ``in_features``), which weights wide-input layers up."""
    total = 0.0
    for a, g, fan_in in ctx.art["act_grads"]:
        if g is None:
            continue
        prod = (a * g).double()
        per_channel = prod.flatten(2).sum(2) if prod.dim() > 2 else prod
        total += fan_in * float(per_channel.pow(2).mean(0).mul(0.5).sum())
    return total


@proxy("synflow", needs=("synflow_grads",))
def synflow(ctx: Context) -> float:
    """log of the synaptic flow (Tanaka et al. 2020), float64, BN bypassed."""
    total = ctx.art["synflow_grads"]
    if total == 0.0:
        ctx.notes["synflow"] = "synflow is 0: no path carries signal (log = -inf)"
        return -math.inf
    if not math.isfinite(total):
        ctx.notes["synflow"] = f"synflow overflowed float64 ({total})"
        return math.inf if total > 0 else math.nan
    return math.log(total)


def _jacobians(ctx: Context) -> np.ndarray:
    jac = ctx.art["input_jacobian"]
    return jac.reshape(jac.shape[0], -1).double().cpu().numpy()


@proxy("jacov", needs=("input_jacobian",))
def jacov(ctx: Context) -> float:
    """-sum(log(v + k) + 1/(v + k)) over eigenvalues v of the input-Jacobian correlations."""
    j = _jacobians(ctx)
    k = ctx.settings.jacob_k
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(j)
    if not np.all(np.isfinite(corr)):
        ctx.notes["jacov"] = "an input gradient is constant (correlation undefined)"
        return math.nan
    v = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


@proxy("epe_nas", needs=("input_jacobian",))
def epe_nas(ctx: Context) -> float:
    """EPE-NAS (Lopes et al. 2021) as the authors' code scores it (and NAS-Bench-Suite-Zero with
    it): per class c of the batch, s_c = sum log(|corr(J_c)| + k); with at most 100 outputs
    (classes) the score is sum_c |s_c|; with more, s_c is divided by the class's example count
    and the score is sum_{c,c'} |s_c - s_c'| / #classes (a class with one example is skipped
    there, as the authors' code does)."""
    j = _jacobians(ctx)
    assert ctx.targets is not None
    y = ctx.targets.cpu().numpy()
    k = ctx.settings.jacob_k
    many = ctx.art["logits"].shape[-1] > 100
    per_class = []
    for c in np.unique(y):
        rows = j[y == c]
        if many and len(rows) < 2:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.atleast_2d(np.corrcoef(rows))
        if not np.all(np.isfinite(corr)):
            ctx.notes["epe_nas"] = f"class {int(c)}: an input gradient is constant"
            return math.nan
        s_c = float(np.sum(np.log(np.abs(corr) + k)))
        per_class.append(s_c / len(rows) if many else s_c)
    s = np.asarray(per_class)
    if not many:
        return float(np.abs(s).sum())
    return float(np.abs(s[:, None] - s[None, :]).sum() / len(s)) if len(s) else math.nan


@proxy("nwot", needs=("relu_kernel",))
def nwot(ctx: Context) -> float:
    """log|det K| of the ReLU-agreement kernel (NASWOT, Mellor et al. 2021)."""
    sign, logdet = np.linalg.slogdet(ctx.art["relu_kernel"])
    if sign == 0:
        ctx.notes["nwot"] = "the ReLU-agreement kernel is singular (two identical codes)"
        return -math.inf
    return float(logdet)


@proxy("zen", needs=("zen",))
def zen(ctx: Context) -> float:
    """Zen-NAS score (Lin et al. 2021), data-free."""
    v = ctx.art["zen"]
    if not math.isfinite(v):
        ctx.notes["zen"] = "feature difference or a BN variance is 0 (log undefined)"
    return v


@proxy("ntk", needs=("ntk_eigenvalues",))
def ntk(ctx: Context) -> float:
    """Minus the condition number of the empirical NTK (TE-NAS, Chen et al. 2021)."""
    ev = ctx.art["ntk_eigenvalues"]
    if not np.all(np.isfinite(ev)):
        ctx.notes["ntk"] = "NTK has non-finite entries (non-finite weights or gradients)"
        return math.nan
    if ev[0] <= 0:
        ctx.notes["ntk"] = f"NTK smallest eigenvalue {ev[0]:.3g} <= 0: condition number infinite"
        return -math.inf
    return float(-ev[-1] / ev[0])


@proxy("linear_regions", needs=("relu_patterns",))
def linear_regions(ctx: Context) -> float:
    """Distinct ReLU sign patterns over random tiny inputs (TE-NAS): the sum over ReLU calls
    of the log of each one's count (``lr_count="layer"``), or the count of whole-network
    patterns (``"network"``)."""
    codes = ctx.art["relu_patterns"]
    if ctx.settings.lr_count == "network":
        return float(len(np.unique(np.concatenate(codes, 1), axis=0)))
    return float(sum(math.log(len(np.unique(c, axis=0))) for c in codes))


@proxy("l2_norm", needs=("static",))
def l2_norm(ctx: Context) -> float:
    """Sum over layers of the L2 norm of the weight."""
    return float(sum(m.weight.detach().double().norm() for m in ctx.layers()))


@proxy("flops", needs=("layer_macs",))
def flops(ctx: Context) -> float:
    """Multiply-accumulates of the Conv/Linear layers for one example, in millions."""
    return ctx.art["layer_macs"] / 1e6


@proxy("params", needs=("static",))
def params(ctx: Context) -> float:
    """Number of parameters, in millions."""
    return sum(p.numel() for p in ctx.net.parameters()) / 1e6


# ----------------------------------------------------------------------------- entry points
DATA_FREE_PASSES = ("synflow", "zen", "linear_regions", "static")


def score(
    net: nn.Module, batch: Any, proxies: Sequence[str] | None = None,
    device: str | torch.device = "cpu", seed: int = 0, *,
    settings: ProxySettings | None = None, input_shape: Sequence[int] | None = None,
) -> dict[str, float]:
    """Proxies ``proxies`` (default: all) of ``net`` on ``batch = (inputs, targets)``.

    ``batch`` may be ``None`` when every requested proxy is data-free (synflow, zen,
    linear_regions, l2_norm, params); then ``input_shape`` (C, H, W) is required. The network is
    moved to ``device``; its weights, buffers, modes and gradients are restored afterwards.
    Same seed and batch -> same result.
    """
    values, _ = score_with_notes(net, batch, proxies, device, seed, settings=settings,
                                 input_shape=input_shape)
    return values


def score_with_notes(
    net: nn.Module, batch: Any, proxies: Sequence[str] | None = None,
    device: str | torch.device = "cpu", seed: int = 0, *,
    settings: ProxySettings | None = None, input_shape: Sequence[int] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Like :func:`score`, plus the reason for every non-finite value."""
    names = list(_PROXIES) if proxies is None else list(proxies)
    if isinstance(proxies, str):
        raise ProxyError(f"proxies must be a list of names, got the string {proxies!r}")
    if not names:
        raise ProxyError("no proxies requested; expected a non-empty list of names")
    specs = list({s.name: s for s in (_spec(n) for n in names)}.values())  # aliases: once
    if not isinstance(net, nn.Module):
        raise ProxyError(f"expected a torch.nn.Module, got {type(net).__name__}")
    if not any(True for _ in net.parameters()):
        raise ProxyError(f"{type(net).__name__} has no parameters; proxies score weights")
    device = torch.device(device)
    want_by_pass: dict[str, set[str]] = {}
    for s in specs:
        for a in s.needs:
            want_by_pass.setdefault(_ARTIFACT_PASS[a], set()).add(a)
    needs_data = any(p not in DATA_FREE_PASSES for p in want_by_pass)
    inputs, targets = _check_batch(batch, device, needs_data)
    if inputs is not None:
        shape = tuple(int(v) for v in inputs.shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise ProxyError(f"input_shape {tuple(input_shape)} differs from the batch's "
                             f"example shape {shape}")
    elif input_shape is not None:
        shape = tuple(int(v) for v in input_shape)
    else:
        raise ProxyError("no batch given: pass input_shape=(C, H, W) for data-free proxies")
    net.to(device)
    ctx = Context(net, inputs, targets, device, int(seed), settings or ProxySettings(), shape)
    saved = _SavedState(net)
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            for pass_name in _PASSES:  # registration order; each pass at most once
                if pass_name in want_by_pass:
                    torch.manual_seed(ctx.seed)
                    try:
                        _PASSES[pass_name](ctx, want_by_pass[pass_name])
                    finally:
                        saved.restore()
            values = {s.name: float(s.fn(ctx)) for s in specs}
    finally:
        saved.restore()
    notes = {}
    for n, v in values.items():
        if not math.isfinite(v):
            notes[n] = ctx.notes.get(n, f"{n} is {v}")
    return values, notes


def _check_batch(
    batch: Any, device: torch.device, required: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if batch is None:
        if required:
            raise ProxyError("these proxies need a batch (inputs, targets); got None")
        return None, None
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ProxyError(f"batch must be a pair (inputs, targets), got {type(batch).__name__}")
    x, y = batch
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ProxyError(f"batch must hold tensors, got ({type(x).__name__}, {type(y).__name__})")
    if x.dim() < 2 or not x.is_floating_point():
        raise ProxyError(f"inputs must be a float tensor (batch, ...), got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}")
    if y.shape != (x.shape[0],) or y.dtype != torch.long:
        raise ProxyError(f"targets must be int64 class indices of shape ({x.shape[0]},), got "
                         f"shape {tuple(y.shape)} and dtype {y.dtype}")
    if x.shape[0] < 2:
        raise ProxyError(f"a batch needs at least 2 examples, got {x.shape[0]}")
    return x.to(device), y.to(device)


def _forward(net: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        return net(x)
    except RuntimeError as err:
        raise ProxyError(f"{type(net).__name__} rejected inputs of shape {tuple(x.shape)} "
                         f"(examples of shape {shape}): {err}") from None


def _check_logits(out: torch.Tensor, y: torch.Tensor) -> None:
    if out.dim() != 2 or out.shape[0] != y.shape[0]:
        raise ProxyError(f"the network must output logits (batch, classes); got shape "
                         f"{tuple(out.shape)} for {y.shape[0]} examples")
    if int(y.min()) < 0 or int(y.max()) >= out.shape[1]:
        raise ProxyError(f"targets must lie in [0, {out.shape[1]}) (network outputs), got "
                         f"range [{int(y.min())}, {int(y.max())}]")


def first_batch(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` from a pair of tensors or the first item of an iterable."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(
            isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1]
    if isinstance(data, Iterable):
        for item in data:
            return first_batch(item)
        raise ProxyError("the data iterable is empty; expected at least one (inputs, targets)")
    raise ProxyError(f"expected (inputs, targets) tensors or an iterable of them, got "
                     f"{type(data).__name__}")


def describe() -> Mapping[str, str]:
    """Name -> one-line definition of every registered proxy."""
    return {n: s.doc for n, s in _PROXIES.items()}
