"""DistributedDataParallel with 2 CPU processes (gloo on 127.0.0.1) matches one process.

The exact comparison uses a BatchNorm-free toy supernet (with BatchNorm each rank normalises
its half batch, so plain DDP differs from one process by design); the NB201 supernet is run
under DDP too, and both ranks must end with identical weights.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from nasrank.supernet.base import Supernet, UniformSampler
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.trainer import train_supernet


class ToySupernet(Supernet):
    """Flattened 8x8 digits -> one of 3 hidden layers -> one of 2 classifiers (no BatchNorm)."""

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

    def forward(self, x, arch):
        return self.head[arch[1]](torch.relu(self.hidden[arch[0]](x.flatten(1))))

    def subnet(self, arch):
        return nn.Sequential(self.hidden[arch[0]], nn.ReLU(), self.head[arch[1]])

    def config(self):
        return {"space": "toy"}


def _run(kind: str, out: str, world: int) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    if kind == "toy":
        data = load_dataset("digits", seed=0, subset=256)
        net: Supernet = ToySupernet()
        # two paths per step: the first backward runs under no_sync, with other weights
        sampler = UniformSampler(net, archs_per_step=2)
    else:
        data = load_dataset("digits", seed=0, subset=128, channels=3)
        net = NB201Supernet(10, C=4, N=1)
        sampler = UniformSampler(net)
    stats = train_supernet(net, data, sampler, epochs=2, batch_size=32, lr=0.1, seed=1,
                           progress=False)
    rank = int(os.environ.get("RANK", "0"))
    torch.save(net.state_dict(), os.path.join(out, f"{kind}_{world}_{rank}.pt"))
    torch.save(stats.last_loss, os.path.join(out, f"{kind}_{world}_{rank}_loss.pt"))


def _worker(rank: int, world: int, ports: tuple[int, ...], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch.distributed as dist

    # Two trainings in one process on one rendezvous port: the first makes the process group
    # (nobody initialised one) and the second reuses it; it lives until the process exits.
    os.environ["MASTER_PORT"] = str(ports[0])
    _run("toy", out, world)
    assert dist.is_initialized()
    group = dist.group.WORLD
    _run("nb201", out, world)
    assert dist.group.WORLD is group


def _free_ports(n: int) -> tuple[int, ...]:
    """``n`` distinct free ports (held open together while chosen, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def test_ddp_two_processes_match_one(tmp_path):
    mp.spawn(_worker, args=(2, _free_ports(1), str(tmp_path)), nprocs=2, join=True)
    _run("toy", str(tmp_path), 1)
    single = torch.load(tmp_path / "toy_1_0.pt")
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"toy_2_{rank}.pt")
        for k in single:
            assert torch.allclose(single[k], ddp[k], atol=1e-6), (rank, k)
        # every rank reports the loss of the whole global batch, as one process does
        loss = torch.load(tmp_path / f"toy_2_{rank}_loss.pt")
        assert loss == pytest.approx(torch.load(tmp_path / "toy_1_0_loss.pt"), rel=1e-6)
    torch.manual_seed(0)
    untrained = ToySupernet().state_dict()
    assert all(not torch.equal(untrained[k], single[k]) for k in single)  # all were trained
    r0, r1 = torch.load(tmp_path / "nb201_2_0.pt"), torch.load(tmp_path / "nb201_2_1.pt")
    for k in r0:
        if "running" not in k and "num_batches" not in k:  # per-rank BN statistics differ
            assert torch.equal(r0[k], r1[k]), k
