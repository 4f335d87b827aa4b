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

from collections.abc import Iterable

import torch
from torch import nn


_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")


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

    def release(self) -> None:
        """Give each parameter its own storage again and drop the gradients (idempotent)."""
        if self.flat is None:
            return
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None
        self.flat = None
