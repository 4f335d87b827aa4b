"""The predictor's training-loop speed work (issue 16) against plain torch: ``FlatAdam`` against
``torch.optim.Adam`` over the separate tensors, and resident against per-step batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import nasrank.predictor.model as model
from nasrank.predictor import RankingPredictor
from nasrank.predictor.optim import FlatAdam
from nasrank.spaces.nb101 import NB101Space
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


def two_nets():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Linear(3, 2))
    b = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Linear(3, 2))
    b.load_state_dict(a.state_dict())
    return a, b


def test_flat_adam_takes_the_steps_of_torch_adam_and_gives_storage_back():
    ref, net = two_nets()
    # the last layer is never reached by the loss: torch's Adam leaves it alone (grad None),
    # so FlatAdam is only given the reached parameters
    torch_opt = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=0.01)
    reached = list(net[0].parameters()) + list(net[2].parameters())
    flat = FlatAdam(reached, lr=0.05, weight_decay=0.01)
    grad_storage = flat.flat.grad.untyped_storage().data_ptr()
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        x = torch.randn(8, 4, generator=g)
        torch_opt.zero_grad(set_to_none=True)
        ref[:3](x).square().sum().backward()
        torch_opt.step()
        flat.zero_grad()
        net[:3](x).square().sum().backward()
        # backward accumulated into the flat buffer's views, not into new tensors
        assert all(p.grad.untyped_storage().data_ptr() == grad_storage for p in reached)
        flat.step()
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)
    flat.release()
    ptrs = {p.untyped_storage().data_ptr() for p in net.parameters()}
    assert len(ptrs) == 6 and all(p.grad is None for p in net.parameters())
    flat.release()  # idempotent


def step_side_by_side(ref, net, torch_opt, flat, steps: int, seed: int, after=()) -> None:
    """``steps`` steps of torch's Adam on ``ref`` and FlatAdam on ``net`` on the same batches
    (``after``: schedulers stepped after each step), then the weights must agree."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        torch_opt.zero_grad(set_to_none=True)
        ref(x).square().sum().backward()
        torch_opt.step()
        flat.zero_grad()
        net(x).square().sum().backward()
        flat.step()
        for s in after:
            s.step()
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)


def test_flat_adam_follows_an_lr_schedule_like_torch_adam():
    # after its first step FlatAdam calls the fused kernel itself: the scheduler's lr must reach it
    ref, net = two_nets()
    torch_opt = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=0.01)
    flat = FlatAdam(net.parameters(), lr=0.05, weight_decay=0.01)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1)
              for o in (torch_opt, flat.optimizer)]
    step_side_by_side(ref, net, torch_opt, flat, steps=7, seed=2, after=scheds)
    assert flat.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1 ** 3)
    assert int(flat.optimizer.state[flat.flat]["step"]) == 7


def test_flat_adam_falls_back_to_per_tensor_adam_for_float64():
    net = nn.Linear(3, 2).double()
    opt = FlatAdam(net.parameters(), lr=0.1, weight_decay=0.0)
    assert opt.flat is None
    net(torch.ones(1, 3, dtype=torch.float64)).sum().backward()
    before = net.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, net.weight)
    with pytest.raises(ValueError, match="no parameters"):
        FlatAdam([], lr=0.1, weight_decay=0.0)


class PlainAdam:
    """The optimizer before the speed work: torch's Adam over every parameter tensor."""

    def __init__(self, params, **kw):
        self.optimizer = torch.optim.Adam(params, **kw)

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)

    def step(self):
        self.optimizer.step()

    def release(self):
        pass


@pytest.mark.parametrize("hybrid", [False, True])
def test_predictor_trains_the_same_with_flat_adam_as_with_torch_adam(monkeypatch, hybrid):
    space = NB201Space()
    rng = np.random.default_rng(2)
    archs = [space.sample(rng) for _ in range(48)]
    flops = np.array([space.cost(a)[0] for a in archs])
    params = np.array([space.cost(a)[1] for a in archs])
    labels = {"flops": flops, "params": params}

    def train(factory):
        monkeypatch.setattr(model, "_adam", factory)
        p = RankingPredictor(space, seed=4, hybrid=hybrid, **SMALL)
        p.pretrain(archs, labels, epochs=3, batch_size=8)
        p.fit(archs[:24], params[:24] + flops[:24], loss="margin", epochs=4, batch_size=6, lr=1e-3)
        return p

    flat, plain = train(model.FlatAdam), train(PlainAdam)
    np.testing.assert_allclose(flat.predict(archs), plain.predict(archs), rtol=1e-4, atol=1e-5)
    # the pretraining heads are not touched by fit (no gradient reaches them): same labels
    for name, v in plain.predict_labels(archs).items():
        np.testing.assert_allclose(flat.predict_labels(archs)[name], v, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(plain.net.state_dict().items(), flat.net.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    # parameters own their storage again after training (checkpoints hold no shared buffer)
    ptrs = [p.untyped_storage().data_ptr() for p in flat.net.parameters()]
    assert len(set(ptrs)) == len(ptrs)


def test_resident_and_per_step_batches_train_alike(monkeypatch):
    space = NB101Space()  # padded graphs: the resident batch always carries a mask
    archs = [space.sample(np.random.default_rng(s)) for s in range(40)]
    y = np.array([float(space.cost(a)[1]) for a in archs])
    preds = []
    for limit in (model.RESIDENT_BATCH_BYTES, 0):
        monkeypatch.setattr(model, "RESIDENT_BATCH_BYTES", limit)
        p = RankingPredictor(space, seed=1, **SMALL)
        p.pretrain(archs, {"params": y}, epochs=2, batch_size=7)
        p.fit(archs[:20], y[:20], epochs=2, batch_size=5)
        preds.append(p.predict(archs))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-5, atol=1e-6)


def test_flat_adam_falls_back_to_torch_adam_when_the_fused_kernel_refuses_its_arguments(monkeypatch):
    # a torch whose private kernel takes other arguments: FlatAdam steps through torch's Adam
    ref, net = two_nets()
    torch_opt = torch.optim.Adam(ref.parameters(), lr=0.05, weight_decay=0.01)
    flat = FlatAdam(net.parameters(), lr=0.05, weight_decay=0.01)

    import nasrank.predictor.optim as optim

    class TorchWithOtherKernel:  # torch as FlatAdam sees it; torch's own Adam keeps the real one
        def __getattr__(self, name):
            if name == "_fused_adam_":
                def refuse(*args, **kwargs):
                    raise TypeError("_fused_adam_() got an unexpected keyword argument")
                return refuse
            return getattr(torch, name)

    monkeypatch.setattr(optim, "torch", TorchWithOtherKernel())
    step_side_by_side(ref, net, torch_opt, flat, steps=4, seed=3)
    assert not flat._direct and int(flat.optimizer.state[flat.flat]["step"]) == 4


def test_adam_update_is_torch_adam():
    """``adam_update_`` (the update inside the whole-step graph) against torch's own Adam, with
    weight decay and a learning rate that changes between steps."""
    from nasrank.predictor.optim import adam_update_

    g = torch.Generator().manual_seed(3)
    start = torch.randn(50, generator=g)
    ref = nn.Parameter(start.clone())
    torch_opt = torch.optim.Adam([ref], lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05,
                                 foreach=False)
    p, m, v = start.clone(), torch.zeros(50), torch.zeros(50)
    step, lr = torch.zeros(()), torch.zeros((), dtype=torch.float64)
    for i in range(8):
        grad = torch.randn(50, generator=g)
        rate = 0.1 / (1 + i)
        torch_opt.param_groups[0]["lr"] = rate
        ref.grad = grad.clone()
        torch_opt.step()
        lr.fill_(rate)
        adam_update_(p, grad, m, v, step, lr, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05)
    torch.testing.assert_close(p, ref.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(v, torch_opt.state[ref]["exp_avg_sq"], rtol=1e-6, atol=1e-9)
    assert float(step) == 8


def test_compiled_step_takes_the_steps_of_eager_flat_adam_under_a_schedule():
    """One ``torch.compile`` graph for forward, gradient and Adam: the same weights and losses
    as backward + ``FlatAdam.step`` on the same batches (float rounding apart), the scheduler's
    rate reaching every step, and Adam's state shared with ``step``."""
    ref, net = two_nets()
    eager = FlatAdam(list(ref[0].parameters()) + list(ref[2].parameters()), lr=0.05,
                     weight_decay=0.01)
    fused = FlatAdam(list(net[0].parameters()) + list(net[2].parameters()), lr=0.05,
                     weight_decay=0.01)
    scheds = [torch.optim.lr_scheduler.StepLR(o.optimizer, step_size=2, gamma=0.3)
              for o in (eager, fused)]

    def loss(module, x):
        return module[:3](x).square().mean()

    step = fused.compiled_step(net, loss)
    g = torch.Generator().manual_seed(4)
    for _ in range(5):
        x = torch.randn(8, 4, generator=g)
        eager.zero_grad()
        want = loss(ref, x)
        want.backward()
        eager.step()
        got = step(x)
        assert not got.requires_grad
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
        for s in scheds:
            s.step()
    for (name, p), q in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert int(fused.optimizer.state[fused.flat]["step"]) == 5
    fused.step()  # the eager step continues from the compiled steps' state
    assert int(fused.optimizer.state[fused.flat]["step"]) == 6


def test_compiled_step_refuses_what_it_cannot_run():
    net = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="flat float32 buffer"):
        FlatAdam(net.double().parameters(), lr=0.1, weight_decay=0.0).compiled_step(
            net, lambda m, x: m(x).sum())
    other = nn.Linear(3, 2)
    opt = FlatAdam(other.parameters(), lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match=r"parameters \[0, 1\] of this optimiser are not in the module"):
        opt.compiled_step(nn.Linear(3, 2), lambda m, x: m(x).sum())


def test_flush_vanishing_zeroes_tiny_weights_and_moments_and_keeps_the_rest_exactly():
    from nasrank.predictor.optim import VANISHING

    assert VANISHING == 1e-30
    tiny = torch.finfo(torch.float32).tiny
    values = [1.0, 1e-31, -1e-35, tiny / 4, 0.0, -0.0, 1e-29, -2e-30]
    a = nn.Parameter(torch.tensor(values))
    b = nn.Parameter(torch.tensor([[3e-39, 5.0]]))  # 3e-39 < tiny (1.18e-38): subnormal
    opt = FlatAdam([a, b], lr=0.1, weight_decay=0.0)
    a.grad.fill_(1.0), b.grad.fill_(1.0)
    opt.step()  # creates the moments
    with torch.no_grad():
        a.copy_(torch.tensor(values))
        b.copy_(torch.tensor([[3e-39, 5.0]]))
        state = opt.optimizer.state[opt.flat]
        state["exp_avg"].fill_(0.5)
        state["exp_avg"][:3] = torch.tensor([1e-31, 2e-30, -1e-40])
        state["exp_avg_sq"].fill_(0.25)
        state["exp_avg_sq"][:3] = torch.tensor([1e-35, 1e-40, 1e-31])  # squares: only subnormals go
    opt.flush_vanishing_()
    f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
    assert a.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, f32(1e-29), f32(-2e-30)]  # the rest exact
    assert math.copysign(1.0, float(a[5])) == -1.0  # a zero is left alone, sign included
    assert b.tolist() == [[0.0, 5.0]]
    assert state["exp_avg"][:3].tolist() == [0.0, f32(2e-30), 0.0]
    assert bool((state["exp_avg"][3:] == 0.5).all())
    assert state["exp_avg_sq"][:3].tolist() == [f32(1e-35), 0.0, f32(1e-31)]


def test_step_flushes_every_16_steps_and_the_per_tensor_fallback_flushes_too():
    from nasrank.predictor.optim import FLUSH_VANISHING_EVERY

    assert FLUSH_VANISHING_EVERY == 16
    w = nn.Parameter(torch.tensor([1e-40, 1.0]))
    opt = FlatAdam([w], lr=0.0, weight_decay=0.0)  # lr 0: the steps leave w alone
    for _ in range(15):
        opt.step()
    assert w[0].item() == pytest.approx(1e-40, rel=1e-3)  # still there after 15 steps
    opt.step()
    assert w.tolist() == [0.0, 1.0]
    d = nn.Parameter(torch.tensor([1e-40, 1.0], dtype=torch.float64))  # not subnormal in float64
    f = nn.Parameter(torch.tensor([1e-40, 1.0]))
    fallback = FlatAdam([d, f], lr=0.1, weight_decay=0.0)
    assert fallback.flat is None
    fallback.flush_vanishing_()
    assert d.tolist() == [1e-40, 1.0] and f.tolist() == [0.0, 1.0]
