"""Supernet training loop: one step equals the hand-computed SGD update of the averaged path
gradients; a killed run resumes to the same weights; foreign checkpoints are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.spaces import NasrankError
from nasrank.supernet.base import StrictFairSampler, UniformSampler
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.train import CheckpointError, epoch_order, evaluate
from nasrank.supernet.trainer import checkpoint_path, load_supernet, train_supernet


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", seed=0, subset=256, channels=3)


def _net(seed: int = 0, **kw) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(10, **{"C": 4, "N": 1, **kw})


def test_one_step_is_sgd_on_the_mean_of_the_path_gradients(digits):
    net = _net()
    ref = _net()
    sampler = UniformSampler(net, archs_per_step=3)
    lr, wd, mom = 0.1, 1e-3, 0.9
    # batch_size = whole training set: exactly one step, at the schedule's initial lr
    train_supernet(net, digits, sampler, epochs=1, batch_size=len(digits.train), lr=lr,
                   momentum=mom, weight_decay=wd, seed=11, progress=False)
    archs = UniformSampler(ref, archs_per_step=3).sample(np.random.default_rng([11, 0]))
    x, y = digits.train.tensors
    order = epoch_order(len(y), 11, 0)
    x, y = x[order], y[order]
    ref.train()
    grads = [torch.zeros_like(p) for p in ref.parameters()]
    used = [False] * len(grads)
    for arch in archs:  # independent reference: separate passes, gradients averaged by hand
        ref.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(ref(x, arch), y).backward()
        for j, (g, p) in enumerate(zip(grads, ref.parameters())):
            if p.grad is not None:
                g += p.grad / len(archs)
                used[j] = True
    assert 0 < sum(used) < len(used)
    with torch.no_grad():
        for (name, p), g, q, u in zip(ref.named_parameters(), grads, net.parameters(), used):
            # first SGD step: momentum buffer = gradient + weight decay * weight; the ops of
            # no sampled path have no gradient and are left alone (no weight decay either)
            expected = p - lr * (g + wd * p) if u else p
            assert torch.allclose(q, expected, atol=1e-6), name


class Kill(Exception):
    pass


def _kill_after_first(epoch: int) -> None:
    if epoch == 0:
        raise Kill


def test_killed_run_resumes_to_identical_weights(digits, tmp_path):
    kw = dict(epochs=2, batch_size=64, lr=0.05, seed=3, progress=False)
    full = _net()
    train_supernet(full, digits, StrictFairSampler(full), checkpoint_dir=tmp_path / "a", **kw)
    killed = _net()
    with pytest.raises(Kill):
        train_supernet(killed, digits, StrictFairSampler(killed), checkpoint_dir=tmp_path / "b",
                       on_epoch_end=_kill_after_first, **kw)
    resumed = _net(seed=99)  # other initial weights: the checkpoint must win
    stats = train_supernet(resumed, digits, StrictFairSampler(resumed),
                           checkpoint_dir=tmp_path / "b", **kw)
    assert stats.epochs == 2 and stats.steps == 2 * (256 // 64)
    assert stats.path_images == 4 * 64 * 5  # this call: 1 epoch of 4 steps x 5 fair paths
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_trained_supernet_paths_beat_chance():
    digits = load_dataset("digits", seed=0, subset=600, channels=3)
    net = _net(C=8)
    stats = train_supernet(net, digits, UniformSampler(net), epochs=3, batch_size=32, lr=0.1,
                           progress=False)
    assert stats.images == 3 * (600 // 32) * 32 and stats.images_per_second > 0
    arch = net.space.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    net.train()  # batch statistics: the running ones are a mix of paths
    acc, loss = evaluate(lambda x: net(x, arch), digits.valid)
    assert acc > 0.25 and loss < 2.15  # chance: 0.1 and ln 10 = 2.30


def test_foreign_checkpoint_is_refused_and_kept(digits, tmp_path):
    net = _net()
    kw = dict(epochs=1, batch_size=128, lr=0.05, progress=False, checkpoint_dir=tmp_path)
    train_supernet(net, digits, UniformSampler(net), **kw)
    before = checkpoint_path(tmp_path).read_bytes()
    wider = _net(C=6)
    with pytest.raises(CheckpointError, match="supernet"):
        train_supernet(wider, digits, UniformSampler(wider), **kw)
    with pytest.raises(CheckpointError, match="sampler"):
        train_supernet(net, digits, StrictFairSampler(net), **kw)
    with pytest.raises(CheckpointError, match="'C': 4"):
        load_supernet(wider, tmp_path)
    assert checkpoint_path(tmp_path).read_bytes() == before
    fresh = _net(seed=5)
    meta = load_supernet(fresh, tmp_path)
    assert meta["epoch"] == 1
    assert all(torch.equal(u, v) for u, v in zip(fresh.state_dict().values(),
                                                  net.state_dict().values()))
    with pytest.raises(NasrankError, match="does not exist"):
        load_supernet(fresh, tmp_path / "missing.pt")


def test_bad_arguments(digits):
    net = _net()
    with pytest.raises(NasrankError, match="another supernet"):
        train_supernet(net, digits, UniformSampler(_net()), epochs=1, batch_size=8, lr=0.1)
    with pytest.raises(NasrankError, match="exceeds"):
        train_supernet(net, digits, UniformSampler(net), epochs=1, batch_size=10**5, lr=0.1)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_acenas_defaults_weight_decay_1e4_and_gradient_clipping(digits, grad_clip):
    """Issue 18: weight decay defaults to AceNAS's 1e-4 (Table 4); ``grad_clip`` rescales the
    averaged gradient to a global norm of at most ``grad_clip`` before the SGD step (weight
    decay added after). Reference: the hand-computed first step of the test above."""
    net, ref = _net(), _net()
    lr, mom = 0.1, 0.9
    kw = {} if grad_clip is None else {"grad_clip": grad_clip}
    train_supernet(net, digits, UniformSampler(net, archs_per_step=2), epochs=1,
                   batch_size=len(digits.train), lr=lr, momentum=mom, seed=5, progress=False,
                   **kw)
    archs = UniformSampler(ref, archs_per_step=2).sample(np.random.default_rng([5, 0]))
    x, y = digits.train.tensors
    order = epoch_order(len(y), 5, 0)
    x, y = x[order], y[order]
    ref.train()
    grads = [torch.zeros_like(p) for p in ref.parameters()]
    used = [False] * len(grads)
    for arch in archs:
        ref.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(ref(x, arch), y).backward()
        for j, (g, p) in enumerate(zip(grads, ref.parameters())):
            if p.grad is not None:
                g += p.grad / len(archs)
                used[j] = True
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    scale = 1.0 if grad_clip is None else min(1.0, grad_clip / (norm + 1e-6))
    if grad_clip is not None:
        assert scale < 0.5  # the clip is active
    with torch.no_grad():
        for (name, p), g, q, u in zip(ref.named_parameters(), grads, net.parameters(), used):
            expected = p - lr * (scale * g + 1e-4 * p) if u else p
            assert torch.allclose(q, expected, atol=1e-6), name
    with pytest.raises(NasrankError, match="grad_clip"):
        train_supernet(net, digits, UniformSampler(net), epochs=1, batch_size=32, lr=0.1,
                       grad_clip=0.0, progress=False)
