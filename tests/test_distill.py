"""NCS distillation strategies and the same-batch switch: losses against hand-written formulas,
one training step against an independent reference, bitwise resume, DDP with 2 processes."""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from nasrank.errors import ConfigError, InvalidArchitectureError, NasrankError
from nasrank.supernet.base import StrictFairSampler, Supernet, UniformSampler
from nasrank.supernet.channel import ChannelSupernet
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.distill import (
    PRESETS,
    FixedTeacherStrategy,
    RunningTeacherStrategy,
    get_preset,
    kd_loss,
)
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.registry import STEP_STRATEGIES
from nasrank.supernet.train import epoch_order
from nasrank.supernet.trainer import train_supernet

LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, subset=128, channels=3)


def _net(seed: int = 0) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(10, C=4, N=1)


def _channel(seed: int = 0) -> ChannelSupernet:
    torch.manual_seed(seed)
    return ChannelSupernet({"conv": "full", "bn": "end", "fc": "independent"}, num_classes=10,
                           in_channels=3, choices=[(4, 8)] * 7 + [(4, 8)] * 6 + [(4, 8)] * 7)


def _hand_kd(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * mean over examples of sum_c p_t (log p_t - log p_s), softmax written out."""
    def softmax(z):
        e = torch.exp(z / T - (z / T).max(dim=1, keepdim=True).values)
        return e / e.sum(dim=1, keepdim=True)
    p_t, p_s = softmax(t), softmax(s)
    return T * T * (p_t * (torch.log(p_t) - torch.log(p_s))).sum(dim=1).mean()


def test_kd_loss_is_the_kl_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 3
    for T in (1.0, 4.0):
        assert torch.allclose(kd_loss(s, t, T), _hand_kd(s, t, T), atol=1e-6)
    assert float(kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # two classes, T = 1, hand-computed: p_t = (0.5, 0.5), p_s = softmax(0, ln 3) = (0.25, 0.75)
    value = kd_loss(torch.tensor([[0.0, float(np.log(3))]]), torch.zeros(1, 2), 1.0)
    expected = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert float(value) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(NasrankError, match="shape"):
        kd_loss(s, t[:, :3])


def _one_batch_reference(ref, x, y, terms, lr, wd):
    """Expected weights after one SGD step on ``terms(ref) -> loss`` (first step: momentum
    buffer = gradient + wd * weight; parameters without gradient are untouched)."""
    ref.train()
    ref.zero_grad(set_to_none=True)
    terms(ref).backward()
    with torch.no_grad():
        return {n: (p - lr * (p.grad + wd * p)) if p.grad is not None else p.clone()
                for n, p in ref.named_parameters()}


def test_running_teacher_step_equals_hand_computed_update(digits):
    net, ref = _net(), _net()
    lr, wd, T, w = 0.1, 1e-3, 2.0, 0.5
    strategy = RunningTeacherStrategy(net, temperature=T, ce_weight=w)
    train_supernet(net, digits, UniformSampler(net, archs_per_step=2), epochs=1,
                   batch_size=len(digits.train), lr=lr, weight_decay=wd, seed=4,
                   strategy=strategy, progress=False)
    archs = UniformSampler(ref, archs_per_step=2).sample(np.random.default_rng([4, 0]))
    x, y = digits.train.tensors
    order = epoch_order(len(y), 4, 0)
    x, y = x[order], y[order]
    ce = nn.functional.cross_entropy

    def terms(m):
        t = m(x, ref.space.parse(LARGEST))
        students = [m(x, a) for a in archs]
        soft = t.detach()
        return (ce(t, y) + sum(_hand_kd(s, soft, T) + w * ce(s, y) for s in students)) / 3

    expected = _one_batch_reference(ref, x, y, terms, lr, wd)
    for n, p in net.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6), n


def test_same_batch_false_runs_each_arch_on_its_own_batch(digits):
    net, ref = _net(), _net()
    lr, wd = 0.1, 1e-3
    half = len(digits.train) // 2
    stats = train_supernet(net, digits, UniformSampler(net, archs_per_step=2), epochs=1,
                           batch_size=half, lr=lr, weight_decay=wd, seed=5, same_batch=False,
                           progress=False)
    assert stats.steps == 1 and stats.images == 2 * half and stats.path_images == 2 * half
    archs = UniformSampler(ref, archs_per_step=2).sample(np.random.default_rng([5, 0]))
    x, y = digits.train.tensors
    order = epoch_order(len(y), 5, 0)
    batches = [order[:half], order[half:2 * half]]
    ce = nn.functional.cross_entropy
    expected = _one_batch_reference(
        ref, None, None, lambda m: sum(ce(m(x[b], a), y[b]) for a, b in zip(archs, batches)) / 2,
        lr, wd)
    for n, p in net.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6), n


def test_same_batch_false_counts_fair_arch_batch(digits):
    net = _net()
    # 128 images / 8 = 16 batches per epoch; fair n = 5 archs per step -> 3 steps of 5 batches,
    # the last batch of each epoch skipped
    stats = train_supernet(net, digits, StrictFairSampler(net), epochs=2, batch_size=8,
                           lr=0.05, seed=0, same_batch=False, progress=False)
    assert stats.steps == 2 * 3 and stats.images == 2 * 15 * 8
    assert stats.path_images == 2 * 15 * 8  # one path per batch


def test_sandwich_paths_and_refusals():
    ch = _channel()
    s = RunningTeacherStrategy(ch, sandwich=True)
    archs = UniformSampler(ch, archs_per_step=3).sample(np.random.default_rng(0))
    paths = s.paths(archs)
    assert paths[0].widths == (8,) * 20 and paths[-1].widths == (4,) * 20
    assert paths[1:-1] == archs
    assert RunningTeacherStrategy(ch).paths(archs)[1:] == archs
    with pytest.raises(InvalidArchitectureError, match="no smallest"):
        RunningTeacherStrategy(_net(), sandwich=True)
    assert _net().largest_arch() == _net().space.parse(LARGEST)
    with pytest.raises(NasrankError, match="fixed teacher needs exactly one"):
        FixedTeacherStrategy(ch)
    with pytest.raises(ConfigError, match="exactly one"):
        STEP_STRATEGIES.make("fixed_teacher", {"warmup_epochs": 1, "teacher_checkpoint": "x"})
    with pytest.raises(ConfigError, match="temperature"):
        STEP_STRATEGIES.make("running_teacher", {"temperature": 0})


def test_fixed_teacher_warms_up_the_largest_then_freezes_it(digits):
    net = _net()
    snapshots = {}

    def grab(epoch):
        snapshots[epoch] = {k: v.clone() for k, v in net.state_dict().items()}

    before = {k: v.clone() for k, v in net.state_dict().items()}
    strategy = STEP_STRATEGIES.make("fixed_teacher", {"warmup_epochs": 1}).build(net)
    stats = train_supernet(net, digits, UniformSampler(net, archs_per_step=2), epochs=2,
                           batch_size=32, lr=0.05, seed=1, strategy=strategy,
                           on_epoch_end=grab, progress=False)
    assert stats.path_images == 4 * 32 * 1 + 4 * 32 * 2  # warm-up: the largest path only
    conv3 = 3  # index of nor_conv_3x3 in OPS
    for k, v in snapshots[0].items():
        if ".ops." in k and "running" not in k and "num_batches" not in k:
            op = int(k.split(".ops.")[1].split(".")[0])
            assert torch.equal(v, before[k]) == (op != conv3), k  # only the largest's ops moved
    teacher = strategy.teacher
    assert teacher is not None and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    # the teacher is the largest path as it was at the end of the warm-up epoch
    warm = _net()
    warm.load_state_dict(snapshots[0])
    expected = warm.subnet(warm.largest_arch()).state_dict()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert not torch.equal(snapshots[1]["classifier.weight"], snapshots[0]["classifier.weight"])


def test_fixed_teacher_from_a_checkpoint(digits, tmp_path):
    src = _net(seed=3)
    train_supernet(src, digits, UniformSampler(src), epochs=1, batch_size=64, lr=0.05,
                   checkpoint_dir=tmp_path / "src", progress=False)
    net = _net()
    strategy = FixedTeacherStrategy(net, teacher_checkpoint=str(tmp_path / "src"))
    train_supernet(net, digits, UniformSampler(net), epochs=1, batch_size=64, lr=0.05,
                   strategy=strategy, progress=False)
    expected = src.subnet(src.largest_arch()).state_dict()
    for k, v in strategy.teacher.state_dict().items():
        assert torch.equal(v, expected[k]), k


class Kill(Exception):
    pass


@pytest.mark.parametrize("name, values, same_batch", [
    ("running_teacher", {"temperature": 2.0, "ce_weight": 0.3}, True),
    ("fixed_teacher", {"warmup_epochs": 1}, False),
])
def test_killed_run_resumes_bitwise(digits, tmp_path, name, values, same_batch):
    kw = dict(epochs=3, batch_size=16, lr=0.05, seed=2, progress=False, same_batch=same_batch)

    def run(net, where, **extra):
        strategy = STEP_STRATEGIES.make(name, values).build(net)
        train_supernet(net, digits, UniformSampler(net, archs_per_step=2), strategy=strategy,
                       checkpoint_dir=tmp_path / where, **kw, **extra)
        return strategy

    def kill(epoch):
        if epoch == 1:
            raise Kill

    full = _net()
    full_strategy = run(full, "a")
    killed = _net()
    with pytest.raises(Kill):
        run(killed, "b", on_epoch_end=kill)
    resumed = _net(seed=9)  # other initial weights: the checkpoint must win
    resumed_strategy = run(resumed, "b")
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    if name == "fixed_teacher":  # the checkpointed teacher was used, not a new snapshot
        a, b = full_strategy.state_dict()["teacher"], resumed_strategy.state_dict()["teacher"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_ncs_best_preset():
    preset = get_preset("ncs_best")
    assert PRESETS["ncs_best"] is preset and preset.same_batch
    assert preset.supernet == "cvpr2021"
    assert dict(preset.supernet_options) == {"conv": "full", "bn": "end", "fc": "independent"}
    from nasrank.spaces.cvpr2021 import CVPR2021Space
    from nasrank.supernet.registry import SUPERNETS

    full = SUPERNETS.make(preset.supernet, preset.supernet_options).build(
        CVPR2021Space(), num_classes=10)
    assert full.sharing == {"conv": "full", "bn": "end", "fc": "independent"}
    ch = _channel()
    sampler, strategy = preset.build(ch)
    assert isinstance(sampler, StrictFairSampler) and sampler.arch_batch == 18
    assert len(sampler.sample(np.random.default_rng(0))) == 18
    assert isinstance(strategy, RunningTeacherStrategy)
    with pytest.raises(ConfigError, match="ncs_best"):
        get_preset("nope")


# ----------------------------------------------------------------------------- DDP
class ToySupernet(Supernet):
    """Flattened 8x8 digits -> one of 3 hidden layers -> one of 2 heads (no BatchNorm);
    largest = hidden 2 + head 1."""

    def __init__(self) -> None:
        super().__init__()
        self.space = None  # type: ignore[assignment]
        self.hidden = nn.ModuleList(nn.Linear(64, 16) for _ in range(3))
        self.head = nn.ModuleList(nn.Linear(16, 10) for _ in range(2))

    def decisions(self) -> list[list[Any]]:
        return [[0, 1, 2], [0, 1]]

    def arch_from_choices(self, indices):
        return tuple(self.check_choices(indices))

    def choices_of(self, arch):
        return list(arch)

    def largest_arch(self):
        return (2, 1)

    def forward(self, x, arch):
        return self.head[arch[1]](torch.relu(self.hidden[arch[0]](x.flatten(1))))

    def subnet(self, arch):
        return nn.Sequential(nn.Flatten(), self.hidden[arch[0]], nn.ReLU(), self.head[arch[1]])

    def config(self):
        return {"space": "toy"}


def _ddp_run(out: str, world: int, ports: tuple[int, ...] = ()) -> None:
    """``ports``: one rendezvous port per training (see tests/test_ddp.py: a reused port can
    hang the second process group)."""
    if ports:
        os.environ["MASTER_PORT"] = str(ports[0])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0, subset=128)
    net = ToySupernet()
    train_supernet(net, data, UniformSampler(net, archs_per_step=2), epochs=2, batch_size=32,
                   lr=0.1, seed=1, strategy=RunningTeacherStrategy(net, temperature=2.0),
                   progress=False)
    rank = int(os.environ.get("RANK", "0"))
    torch.save(net.state_dict(), os.path.join(out, f"toy_{world}_{rank}.pt"))
    if world > 1:  # RD-NAS: a pair's two forwards share one backward; on-the-fly teacher
        if ports:
            os.environ["MASTER_PORT"] = str(ports[1])
        from nasrank.supernet.registry import SAMPLERS

        data = load_dataset("digits", seed=0, subset=64, channels=3)
        nb = NB201Supernet(10, C=4, N=1)
        opts = {"proxies": ["params"], "pool_size": 8, "image_size": 8, "groups": 2}
        train_supernet(nb, data, SAMPLERS.make("rdnas", opts).build(nb), epochs=1,
                       batch_size=16, lr=0.1, seed=1, progress=False,
                       strategy=STEP_STRATEGIES.make("rdnas", opts).build(nb))
        torch.save(nb.state_dict(), os.path.join(out, f"rdnas_{world}_{rank}.pt"))


def _ddp_worker(rank: int, world: int, ports: tuple[int, int], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    try:
        _ddp_run(out, world, ports)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_distillation_under_ddp_matches_one_process(tmp_path):
    socks = [socket.socket(), socket.socket()]
    for s in socks:  # two distinct free ports, one per training
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    mp.spawn(_ddp_worker, args=(2, ports, str(tmp_path)), nprocs=2, join=True)
    _ddp_run(str(tmp_path), 1)
    single = torch.load(tmp_path / "toy_1_0.pt")
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"toy_2_{rank}.pt")
        for k in single:
            assert torch.allclose(single[k], ddp[k], atol=1e-6), (rank, k)
    r0, r1 = torch.load(tmp_path / "rdnas_2_0.pt"), torch.load(tmp_path / "rdnas_2_1.pt")
    for k in r0:
        if "running" not in k and "num_batches" not in k:  # per-rank BN statistics differ
            assert torch.equal(r0[k], r1[k]), k
