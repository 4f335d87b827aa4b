"""Adam over one flat parameter buffer, for the predictor's many small steps.

At AceNAS's 20-graph batches a training step is short, and ``torch.optim.Adam`` pays a fixed
price per parameter tensor (30 in the default network) on top of the update itself: its fused
kernel over the 30 tensors took 0.61 ms per step on the 2-core CPU, over one flat buffer of the
same 149,301 values 0.31 ms (BENCHMARKS.md, issue 16). :class:`FlatAdam` moves the parameters,
and their gradients, into views of one buffer each for the length of a training run and steps
that buffer; :meth:`FlatAdam.release` gives every parameter its own storage back, so nothing
outside the training loop (state dicts, checkpoints) sees the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")

#: :class:`FlatAdam` sets vanishing weights and moments to 0 every this many steps (see
#: :meth:`FlatAdam.flush_vanishing_`; 0 turns it off)
FLUSH_VANISHING_EVERY = 16
#: magnitude below which :meth:`FlatAdam.flush_vanishing_` zeroes weights and first moments
VANISHING = 1e-30


class FlatAdam:
    """Adam over ``params`` laid out in one flat buffer (gradients in another).

    The update is torch's Adam (elementwise, so the same numbers as over the separate tensors),
    with one difference to keep in mind: ``torch.optim.Adam`` skips a tensor whose ``.grad`` is
    ``None``, while here every listed parameter is stepped, with a zero gradient if the loss did
    not reach it (so weight decay and momentum still move it). Pass only the parameters the loss
    reaches. :meth:`zero_grad` zeroes the gradient buffer in place (backward then accumulates
    into the views). ``optimizer`` is the wrapped ``torch.optim.Adam``, for LR schedulers.
    Parameters of another dtype than float32, or on a device without the fused kernel, get
    torch's per-tensor Adam instead (same interface).
    """

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, weight_decay: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("FlatAdam got no parameters that require gradients")
        devices = {p.device for p in self.params}
        dtypes = {p.dtype for p in self.params}
        self.flat: nn.Parameter | None = None
        self._direct = _HAS_FUSED_ADAM  # step through the fused kernel itself (see step)
        self._steps = 0  # for the periodic flush of vanishing values
        fusable = (len(devices) == 1 and dtypes == {torch.float32}
                   and next(iter(devices)).type in ("cpu", "cuda"))
        if not fusable:
            self.optimizer = torch.optim.Adam(self.params, lr=lr, weight_decay=weight_decay)
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.flat = nn.Parameter(flat)
        self.flat.grad = torch.zeros_like(flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.data = self.flat.data[offset:offset + n].view_as(p)
            p.grad = self.flat.grad[offset:offset + n].view_as(p)
            offset += n
        self.optimizer = torch.optim.Adam([self.flat], lr=lr, weight_decay=weight_decay, fused=True)

    def zero_grad(self) -> None:
        if self.flat is None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.flat.grad.zero_()

    def step(self) -> None:
        self._update()
        self._after_step()

    def _after_step(self) -> None:
        self._steps += 1
        if FLUSH_VANISHING_EVERY and self._steps % FLUSH_VANISHING_EVERY == 0:
            self.flush_vanishing_(cpu_only=True)

    @torch.no_grad()
    def flush_vanishing_(self, *, cpu_only: bool = False) -> None:
        """Set to 0 the weights and first moments below :data:`VANISHING` in magnitude, and the
        second moments that are subnormal (below float32's smallest normal number).
        ``cpu_only``: only tensors on the CPU (GPUs compute on subnormals at full speed).
        :meth:`step` calls it on the CPU every :data:`FLUSH_VANISHING_EVERY` steps, without a
        device sync.

        Why: with L2 weight decay, Adam moves a weight that the loss no longer reaches (into or
        out of a dead ReLU unit of a head) by ``lr * wd * w / eps`` once ``wd * w`` is below
        ``eps``: geometrically towards 0, forever. On the way its products with gradients fall
        into float32's subnormal range, where CPU arithmetic takes a slow microcode path: the
        backward of a 250-epoch DGCNN had 948 subnormal gradients per batch and took 1.18x the
        time of a fresh one (BENCHMARKS.md, issue 16). A weight below 1e-30 times an activation
        or gradient of any size below 1e6 adds less than 1e-24 to a sum, far below the float32
        rounding of any term that matters, so zeroing it changes no result that is not itself
        vanishing; a run whose values all stay above it is bit for bit the same.
        ``torch.set_flush_denormal`` would flush in hardware, but only for the calling thread."""
        tiny = torch.finfo(torch.float32).tiny
        if self.flat is not None:
            groups = [([self.flat], self.optimizer.state.get(self.flat, {}))]
        else:
            groups = [([p], self.optimizer.state.get(p, {})) for p in self.params]
        for params, state in groups:
            pairs = [(t, VANISHING) for t in params]
            if "exp_avg" in state:
                pairs += [(state["exp_avg"], VANISHING), (state["exp_avg_sq"], tiny)]
            for t, below in pairs:
                if t.dtype != torch.float32 or (cpu_only and t.device.type != "cpu"):
                    continue
                t.masked_fill_((t.abs() < below) & (t != 0), 0.0)

    def _update(self) -> None:
        # After the first step (which creates Adam's state), call the fused kernel straight:
        # ``Optimizer.step``'s Python bookkeeping (hooks, grouping by device and dtype, state
        # checks) costs as much as the update itself at this size (0.34 vs 0.17 ms per step on
        # the 2-core CPU). The arguments are those ``torch.optim.Adam(fused=True)`` passes;
        # tests/test_predictor_optim.py checks the result against torch's Adam.
        state = self.optimizer.state.get(self.flat) if self.flat is not None else None
        if not state or not self._direct:
            self.optimizer.step()
            return
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        state["step"].add_(1)
        try:
            torch._fused_adam_(
                [self.flat], [self.flat.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [],
                [state["step"]], amsgrad=False, lr=float(group["lr"]), beta1=float(beta1),
                beta2=float(beta2), weight_decay=float(group["weight_decay"]),
                eps=float(group["eps"]), maximize=False, grad_scale=None, found_inf=None)
        except TypeError:  # a torch whose private kernel takes other arguments: the public path
            state["step"].sub_(1)
            self._direct = False
            self.optimizer.step()

    def compiled_step(
        self, module: nn.Module, loss: Callable[..., torch.Tensor], *, mode: str | None = None,
    ) -> Callable[..., torch.Tensor]:
        """A whole training step as one ``torch.compile`` graph: ``step(*inputs)`` computes
        ``loss(module, *inputs)``, its gradient with respect to this optimiser's parameters
        (``torch.func.grad_and_value`` over the flat buffer) and the Adam update, and returns
        the detached loss. ``mode``: ``torch.compile``'s mode (``None``: its default).

        Why: at AceNAS's 20-graph batches a compiled forward pass still leaves the autograd
        engine, one gradient accumulation per parameter tensor, the guards of two compiled
        calls and a separate Adam kernel to every step; as one graph the whole step was ~18 %
        faster on the 2-core CPU (BENCHMARKS.md, issue 16). The update is :func:`adam_update_`,
        torch's Adam formula. Nothing in ``loss`` may draw random numbers from a
        ``torch.Generator`` (a graph break; pass masks in instead). The learning rate is read
        from ``optimizer.param_groups`` at every call, so LR schedulers work as with
        :meth:`step`, and Adam's state is the one :meth:`step` keeps (the two can be mixed).
        """
        if self.flat is None:
            raise ValueError("compiled_step needs the flat float32 buffer (one device, cpu or cuda)")
        ids = {id(p): i for i, p in enumerate(self.params)}
        names: list[str | None] = [None] * len(self.params)
        for name, p in module.named_parameters(remove_duplicate=False):
            if id(p) in ids:
                names[ids[id(p)]] = "module." + name
        missing = [i for i, n in enumerate(names) if n is None]
        if missing:
            raise ValueError(f"parameters {missing} of this optimiser are not in the module")
        shapes = [p.shape for p in self.params]
        sizes = [p.numel() for p in self.params]
        wrapper = _LossModule(module, loss)
        group = self.optimizer.param_groups[0]
        beta1, beta2 = (float(b) for b in group["betas"])
        eps, weight_decay = float(group["eps"]), float(group["weight_decay"])

        def step(flat, exp_avg, exp_avg_sq, step_t, lr, *inputs):
            def objective(f):
                views = {n: t.view(s) for n, t, s in zip(names, f.split(sizes), shapes)}
                return torch.func.functional_call(wrapper, views, inputs, strict=False)

            grad, value = torch.func.grad_and_value(objective)(flat)
            adam_update_(flat, grad, exp_avg, exp_avg_sq, step_t, lr, beta1=beta1, beta2=beta2,
                         eps=eps, weight_decay=weight_decay)
            return value.detach()

        compiled = torch.compile(step, dynamic=False, mode=mode)
        flat = self.flat
        state = self.optimizer.state[flat]
        if not state:  # the state torch's fused Adam creates on its first step
            state["step"] = torch.zeros((), dtype=torch.float32, device=flat.device)
            state["exp_avg"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(flat, memory_format=torch.preserve_format)
        lr = torch.zeros((), dtype=torch.float64, device=flat.device)

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            lr.fill_(float(group["lr"]))
            # what torch.optim's step wrapper records, so LR schedulers know a step happened
            self.optimizer._opt_called = True  # type: ignore[attr-defined]
            loss = compiled(flat.detach(), state["exp_avg"], state["exp_avg_sq"], state["step"],
                            lr, *inputs)
            self._after_step()
            return loss

        return run

    def release(self) -> None:
        """Give each parameter its own storage again and drop the gradients (idempotent)."""
        if self.flat is None:
            return
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None
        self.flat = None


class _LossModule(nn.Module):
    """``module`` with ``loss(module, *inputs)`` as its forward, for ``functional_call``."""

    def __init__(self, module: nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self._loss = loss

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._loss(self.module, *inputs)


def adam_update_(
    param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
    step: torch.Tensor, lr: torch.Tensor, *, beta1: float, beta2: float, eps: float,
    weight_decay: float,
) -> None:
    """One step of ``torch.optim.Adam`` (L2 weight decay, no amsgrad) in place, in plain tensor
    ops so that ``torch.compile`` fuses it with the step that computed ``grad``. ``step``: a
    0-d tensor, incremented here; ``lr``: a 0-d tensor (a new rate needs no recompilation).
    The bias corrections are computed in float64, as torch's fused kernel does."""
    step.add_(1)
    if weight_decay != 0:
        grad = grad + weight_decay * param
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    s = step.to(torch.float64)
    bias1 = 1 - beta1 ** s
    bias2_sqrt = (1 - beta2 ** s).sqrt()
    denom = (exp_avg_sq.sqrt() / bias2_sqrt.to(param.dtype)).add_(eps)
    param.sub_((lr / bias1).to(param.dtype) * exp_avg / denom)
