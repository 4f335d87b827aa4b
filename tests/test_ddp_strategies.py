"""Few-shot splitting and RD-NAS under DistributedDataParallel: 2 CPU ranks (gloo on 127.0.0.1)
end where one process ends.

A BatchNorm-free toy supernet makes the comparison exact (with BatchNorm each rank normalises
its own half batch). What distribution must not change:
- few-shot: the gradient-matching tree (built after a warm-up trained under DDP) and every leaf's
  trained weights;
- RD-NAS with an on-the-fly zero-cost teacher: rank 0 computes the teacher's pool and broadcasts
  it, so every rank samples the same pairs and the weights match one process.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from nasrank.supernet.base import Supernet
from nasrank.supernet.datasets import load_dataset
from test_ddp import _free_ports


def _join(rank: int, world: int, port: int) -> None:
    """This process's place in a gloo launch on 127.0.0.1, as torchrun sets it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))


class _Toy(Supernet):
    """Flattened 8x8 digits -> one of 3 hidden layers (each with its own activation, so that
    freshly initialised paths differ) -> one of 2 classifiers (no BatchNorm)."""

    ACTS = (torch.relu, torch.tanh, torch.sigmoid)

    def __init__(self) -> None:
        super().__init__()
        self.space = SimpleNamespace(name="ddptoy", key=lambda a: ",".join(map(str, a)),
                                     parse=lambda k: tuple(int(c) for c in k.split(",")))
        self.hidden = nn.ModuleList(nn.Linear(64, 16) for _ in range(3))
        self.head = nn.ModuleList(nn.Linear(16, 10) for _ in range(2))

    def decisions(self) -> list[list[Any]]:
        return [[0, 1, 2], [0, 1]]

    def arch_from_choices(self, indices):
        return tuple(self.check_choices(indices))

    def choices_of(self, arch):
        return list(arch)

    def check_arch(self, arch):
        return tuple(int(a) for a in arch)

    def forward(self, x, arch):
        return self.head[arch[1]](self.ACTS[arch[0]](self.hidden[arch[0]](x.flatten(1))))

    def subnet(self, arch):
        return _Path(self, arch)

    def config(self):
        return {"space": "ddptoy", "in_channels": 1, "num_classes": 10}


class _Path(nn.Module):
    """A stand-alone copy of one path of :class:`_Toy`."""

    def __init__(self, net: _Toy, arch) -> None:
        super().__init__()
        import copy

        self.hidden = copy.deepcopy(net.hidden[arch[0]])
        self.head = copy.deepcopy(net.head[arch[1]])
        self.act = net.ACTS[arch[0]]

    def forward(self, x):
        return self.head(self.act(self.hidden(x.flatten(1))))


def _run(out: str, world: int) -> None:
    from nasrank.supernet.fewshot import (ConstantPolicy, RestrictedUniformSampler, build_tree,
                                          train_fewshot)
    from nasrank.supernet.rdnas import MarginPairSampler, RankingDistillStrategy, shared_teacher
    from nasrank.supernet.trainer import train_supernet

    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    data = load_dataset("digits", seed=0, subset=256)
    x, y = data.train.tensors
    kw = dict(batch_size=32, lr=0.1, progress=False)

    def warmup(net, allowed):
        train_supernet(net, data, RestrictedUniformSampler(net, allowed), epochs=1, seed=5, **kw)

    torch.manual_seed(0)
    root = _Toy()
    tree = build_tree(root, ConstantPolicy(1, 2), "gm", (x[:64], y[:64]), paths=2, seed=0,
                      warmup=warmup)
    leaves = [leaf.allowed for leaf in tree.leaves()]
    fewshot, _ = train_fewshot(leaves, _Toy, data, epochs=2, seed=3, **kw)

    torch.manual_seed(1)
    net = _Toy()
    teacher = shared_teacher(net, proxies=("grad_norm",), pool_size=6, seed=2, image_size=8,
                             batch_size=16)
    sampler = MarginPairSampler(net, teacher, groups=3)
    strategy = RankingDistillStrategy(net, teacher, groups=3, margin=0.05, weight=5.0)
    train_supernet(net, data, sampler, strategy=strategy, epochs=2, seed=4, **kw)
    torch.save({"tree": tree.to_dict(), "leaves": [n.state_dict() for n in fewshot.supernets],
                "pool": teacher.pool_keys, "rdnas": net.state_dict()},
               os.path.join(out, f"run_{world}_{rank}.pt"))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    _join(rank, world, port)
    try:
        _run(out, world)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _without_cut(node: dict[str, Any]) -> dict[str, Any]:
    return {**node, "cut": None, "children": [_without_cut(c) for c in node["children"]]}


@pytest.mark.slow
def test_fewshot_and_rdnas_under_ddp_match_one_process(tmp_path):
    (port,) = _free_ports(1)
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    _run(str(tmp_path), 1)
    single = torch.load(tmp_path / "run_1_0.pt")
    assert single["tree"]["split"] is not None and len(single["leaves"]) == 2
    assert len(single["pool"]) == 6
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"run_2_{rank}.pt")
        # same split everywhere; the cut (a sum of cosines) equal up to float rounding
        assert _without_cut(ddp["tree"]) == _without_cut(single["tree"]), rank
        assert ddp["tree"]["cut"] == pytest.approx(single["tree"]["cut"], abs=1e-6), rank
        assert ddp["pool"] == single["pool"], rank  # rank 0's pool reached every rank
        for a, b in zip(single["leaves"], ddp["leaves"]):
            for k in a:
                assert torch.allclose(a[k], b[k], atol=1e-5), (rank, k)
        for k, v in single["rdnas"].items():
            assert torch.allclose(v, ddp["rdnas"][k], atol=1e-5), (rank, k)
    # every leaf and the RD-NAS supernet moved from their initial weights (training happened)
    torch.manual_seed(1)
    init = _Toy().state_dict()
    moved = [k for k in init if not torch.allclose(init[k], single["rdnas"][k])]
    assert moved, "RD-NAS did not train"
    assert np.isfinite([float(v.abs().sum()) for v in single["rdnas"].values()]).all()


def _diverge_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1's loss turns NaN at the first step; every rank must stop with the same error
    (the loss is averaged with the gradients before the finiteness check)."""
    import torch.distributed as dist

    from nasrank.errors import NasrankError
    from nasrank.supernet.base import StepStrategy, UniformSampler
    from nasrank.supernet.trainer import train_supernet

    class NanOnRank1(StepStrategy):
        def loss(self, model, x, y, arch, index):
            loss = super().loss(model, x, y, arch, index)
            return loss * float("nan") if rank == 1 else loss

    _join(rank, world, port)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = _Toy()
    try:
        train_supernet(net, load_dataset("digits", seed=0, subset=128), UniformSampler(net),
                       strategy=NanOnRank1(), epochs=1, batch_size=32, lr=0.1, progress=False)
    except NasrankError as err:
        Path(out, f"stopped_{rank}.txt").write_text(str(err))
    # both ranks stopped after the same all-reduce; meet once more, then leave without the
    # interpreter's teardown. Under a loaded test run a rank occasionally died of SIGABRT
    # ("terminate called without an active exception", gloo) in 2 of 16 runs when it went
    # through the teardown; in 10 runs leaving this way, never
    dist.barrier()
    os._exit(0)


@pytest.mark.slow
def test_a_loss_that_diverges_on_one_rank_stops_every_rank(tmp_path):
    (port,) = _free_ports(1)
    mp.spawn(_diverge_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        text = (tmp_path / f"stopped_{rank}.txt").read_text()
        assert "supernet loss is nan at epoch 0 step 0: training diverged" in text, rank
