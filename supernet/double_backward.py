"""Hand-written second derivatives of ``conv2d`` and training-mode ``batch_norm`` (for GraSP).

GraSP's Hessian-vector product is a double backward through every convolution and BatchNorm,
and most of a ``score`` call's time (issue 16). Torch's generic double backwards are exact but
slow on the CPU: the convolution's weight term is a convolution whose kernel is the whole
feature map (``_convolution_double_backward``), and BatchNorm's is ~40 elementwise passes over
the activations (``batchnorm_double_backward``). Here both are derived by hand:

* conv: ``gx = conv_input_grad(gO, W)`` and ``gW = conv_weight_grad(x, gO)`` are bilinear, so
  with upstream ``(ggx, ggW)`` their derivatives are ``d gO = conv(ggx, W) + conv(x, ggW)``,
  ``d x = conv_input_grad(gO, ggW)`` and ``d W = conv_weight_grad(ggx, gO)``: two convolutions and
  two of torch's own backward kernels.
* batch norm (batch statistics; x^ = (x - mean) s, s = 1 / sqrt(var + eps)): the first
  backward is ``gx = gamma s P(gy)`` with ``P(v) = v - mean(v) - x^ mean(v x^)``, the projection
  off span{1, x^}; its derivatives reduce to five per-channel sums and a few fused passes.

:class:`FastDoubleBackward` is a ``TorchFunctionMode`` that routes ``conv2d`` and batch-statistics
``batch_norm`` calls through these functions while it is active; anything else (strings as
padding, transposed convolutions, running-statistics batch norm) runs unchanged. Third
derivatives are refused with an error. Exactness is tested in float64 against
torch's own double backward (``tests/test_double_backward.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_aten = torch.ops.aten


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(u) for u in v]


def _refuse_third_order() -> None:
    # the second derivatives below are not themselves differentiable (their saved tensors are
    # used as constants): a create_graph=True pass through them would silently drop terms
    if torch.is_grad_enabled():
        raise RuntimeError("FastDoubleBackward gives exact second derivatives only; a third "
                           "derivative (create_graph=True through the double backward) is not "
                           "supported: run that computation outside FastDoubleBackward")


# ----------------------------------------------------------------------------- convolution
class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                conf: tuple) -> torch.Tensor:
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(x, w)
        ctx.conf = conf
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, g_out: torch.Tensor) -> tuple:
        x, w = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        gx, gw = _Conv2dBackward.apply(g_out, x, w, ctx.conf, need_x, need_w)
        gb = g_out.sum((0, 2, 3)) if need_b else None
        return gx, gw, gb, None


class _Conv2dBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, g_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, conf: tuple,
                need_x: bool, need_w: bool) -> tuple:
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(g_out, x, w)
        ctx.conf = conf
        gx, gw, _ = _aten.convolution_backward(g_out, x, w, None, stride, padding, dilation,
                                               False, [0, 0], groups, [need_x, need_w, False])
        return gx, gw

    @staticmethod
    def backward(ctx: Any, ggx: torch.Tensor | None, ggw: torch.Tensor | None) -> tuple:
        _refuse_third_order()
        g_out, x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need_g, need_x, need_w = ctx.needs_input_grad[:3]
        d_g = d_x = d_w = None
        if need_g:
            if ggx is not None:
                d_g = F.conv2d(ggx, w, None, stride, padding, dilation, groups)
            if ggw is not None:
                t = F.conv2d(x, ggw, None, stride, padding, dilation, groups)
                d_g = t if d_g is None else d_g.add_(t)
        if need_x and ggw is not None:
            d_x = _aten.convolution_backward(g_out, x, ggw, None, stride, padding, dilation,
                                             False, [0, 0], groups, [True, False, False])[0]
        if need_w and ggx is not None:
            d_w = _aten.convolution_backward(g_out, ggx, w, None, stride, padding, dilation,
                                             False, [0, 0], groups, [False, True, False])[1]
        return d_g, d_x, d_w, None, None, None


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` with the hand-written double backward (numeric padding only)."""
    return _Conv2d.apply(x, w, b, (_pair(stride), _pair(padding), _pair(dilation), int(groups)))


# ----------------------------------------------------------------------------- batch norm
def _dims(x: torch.Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def _channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel vector shaped to broadcast against ``x`` (N, C, ...)."""
    return v.reshape(1, -1, *([1] * (x.dim() - 2)))


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None,
                bias: torch.Tensor | None, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, momentum: float, eps: float) -> torch.Tensor:
        out, mean, invstd = _aten.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                    True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx: Any, g_out: torch.Tensor) -> tuple:
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx, gw = _BatchNormBackward.apply(g_out, x, weight, mean, invstd, ctx.eps, need_x,
                                          need_w)
        gb = g_out.sum(_dims(g_out)) if need_b else None
        return gx, gw, gb, None, None, None, None


class _BatchNormBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, g_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                mean: torch.Tensor, invstd: torch.Tensor, eps: float, need_x: bool,
                need_w: bool) -> tuple:
        gx, gw, _ = _aten.native_batch_norm_backward(g_out, x, weight, None, None, mean, invstd,
                                                     True, eps, [need_x, need_w, False])
        ctx.save_for_backward(g_out, x, weight, mean, invstd)
        return gx, gw

    @staticmethod
    def backward(ctx: Any, a: torch.Tensor | None, b_gamma: torch.Tensor | None) -> tuple:
        """Upstream ``a`` (for gx) and ``b_gamma`` (for d gamma); returns d g_out, d x, d gamma.

        With x^ = (x - mean) s, gy = g_out, and means over the reduced dimensions:
        ggO = gamma s P(a) + b_gamma x^;   d gamma = s sum(a P(gy));
        d x = s (D - mean(D) - x^ mean(D x^)) - (S s^2 / M) x^, where
        D = -gamma s (mean(gy x^) a + mean(a x^) gy) + b_gamma gy (the derivative in x^) and
        S = gamma M (mean(a gy) - mean(a) mean(gy) - mean(a x^) mean(gy x^)) (the one in s).
        """
        _refuse_third_order()
        g_out, x, weight, mean, invstd = ctx.saved_tensors
        need_g, need_x, need_w = ctx.needs_input_grad[:3]
        dims = _dims(x)
        m = x.numel() // x.shape[1]
        s = _channel(invstd, x)
        gamma = _channel(weight, x) if weight is not None else torch.ones_like(s)
        xh = (x - _channel(mean, x)) * s
        gy_mean = _channel(g_out.mean(dims), x)
        gyx_mean = _channel((g_out * xh).mean(dims), x)
        zero = torch.zeros_like(s)
        if a is not None:
            a_mean = _channel(a.mean(dims), x)
            ax_mean = _channel((a * xh).mean(dims), x)
            # sum(a P(gy)) / M: the derivative of <a, gx> in gamma (over gamma) and in s
            apg_mean = (_channel((a * g_out).mean(dims), x) - a_mean * gy_mean
                        - ax_mean * gyx_mean)
        else:
            a_mean = ax_mean = apg_mean = zero
        bg = _channel(b_gamma, x) if b_gamma is not None else zero
        d_g = d_x = d_w = None
        if need_g:
            # gamma s (a - mean(a) - x^ mean(a x^)) + b_gamma x^
            d_g = xh * (bg - gamma * s * ax_mean) - gamma * s * a_mean
            if a is not None:
                d_g = d_g.add_(a * (gamma * s))
        if need_w and a is not None:
            d_w = (s * m * apg_mean).reshape(-1)  # s sum(a P(gy))
        if need_x:
            # D = c_a a + c_g gy; mean(D) and mean(D x^) follow from the sums above
            c_a = -gamma * s * gyx_mean
            c_g = bg - gamma * s * ax_mean
            big_s = gamma * m * apg_mean
            k0 = -s * (c_a * a_mean + c_g * gy_mean)
            k1 = -s * (c_a * ax_mean + c_g * gyx_mean) - big_s * s * s / m
            d_x = xh * k1 + k0
            d_x = d_x.addcmul_(g_out, s * c_g)
            if a is not None:
                d_x = d_x.addcmul_(a, s * c_a)
        return d_g, d_x, d_w, None, None, None, None, None


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None,
               running_var: torch.Tensor | None, weight: torch.Tensor | None,
               bias: torch.Tensor | None, momentum: float, eps: float) -> torch.Tensor:
    """Batch-statistics ``F.batch_norm`` with the hand-written double backward; the running
    statistics (when given) are updated as torch updates them."""
    return _BatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)


# ----------------------------------------------------------------------------- the mode
class FastDoubleBackward(TorchFunctionMode):
    """While active, ``conv2d`` with numeric padding and batch-statistics ``batch_norm`` use
    the hand-written double backwards above; every other call runs unchanged."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            call = _conv_call(*args, **kwargs)
            if call is not None:
                return conv2d(*call)
        elif func is F.batch_norm:
            call = _bn_call(*args, **kwargs)
            if call is not None:
                return batch_norm(*call)
        return func(*args, **kwargs)


def _conv_call(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               stride: Any = 1, padding: Any = 0, dilation: Any = 1,
               groups: int = 1) -> tuple | None:
    if isinstance(padding, str) or input.dim() != 4 or weight.dim() != 4:
        return None
    return input, weight, bias, stride, padding, dilation, groups


def _bn_call(input: torch.Tensor, running_mean: torch.Tensor | None,
             running_var: torch.Tensor | None, weight: torch.Tensor | None = None,
             bias: torch.Tensor | None = None, training: bool = False,
             momentum: float | None = 0.1, eps: float = 1e-5) -> tuple | None:
    batch_stats = training or running_mean is None or running_var is None
    if not batch_stats or momentum is None or input.dim() < 2:
        return None
    return input, running_mean, running_var, weight, bias, float(momentum), float(eps)
