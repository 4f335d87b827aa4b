"""Supernet training: sampled paths, gradient accumulation, checkpoints, DistributedDataParallel.

Each step asks the sampler for the step's architectures (NCS's *architecture batch*). With
``same_batch=True`` (default) all of them run on one data batch; with ``same_batch=False`` the
step consumes one batch per architecture (architecture ``i`` on batch ``i``; leftover batches at
the end of an epoch that cannot serve a whole step are skipped). On each batch the
:class:`~supernet.base.StepStrategy` chooses the paths to run (``paths``: e.g. a running teacher
first) and their losses; every loss is backpropagated divided by the number of paths of the
step, then one SGD step is made. The learning rate follows a cosine schedule over the batches of
the run (one scheduler step per batch consumed, so the schedule does not depend on the
architecture batch). Architectures come from a numpy Generator seeded by ``(seed, epoch)`` and
the data order from ``(seed, epoch)`` too; the sampler's and the strategy's state (a fixed
teacher's weights, a teacher's score cache) travel in the checkpoint, so a run killed after any
epoch and resumed from its checkpoint ends with exactly the weights of an uninterrupted run.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the model is wrapped in
``DistributedDataParallel`` (backend ``gloo`` on CPU, ``nccl`` on CUDA), which broadcasts rank 0's
initial weights: every rank draws the same architectures from the same seed and takes its
contiguous share of each global batch (``batch_size`` must divide by the world size). Every
backward runs under ``no_sync`` and the accumulated gradients are averaged across ranks once per
step, after the step's last backward; so a strategy may run any number of forwards per loss (a
teacher, a pair of paths for a ranking loss), which DDP's own hook-based reduction does not
allow. The step's loss travels in the same all-reduce: every rank reports the global batch's
loss, and a loss that diverges on one rank stops every rank with the same error. Every rank must therefore run the same paths (same seed, same strategy). BatchNorm
statistics stay per rank (rank 0's are checkpointed), so with BatchNorm a distributed run equals
a single-process run only up to those batch statistics.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from nasrank.errors import NasrankError

from .base import ArchSampler, StepStrategy, Supernet
from .datasets import DatasetSplits
from .train import (
    CheckpointError,
    epoch_order,
    get_batch,
    iterate_batches,
    load_checked,
    save_atomic,
)

CHECKPOINT_NAME = "supernet.pt"


@dataclass
class SupernetTrainStats:
    """What one training run did. ``images``/``path_images`` and the rates cover this call's
    epochs (a resumed run does not re-time earlier ones); ``seconds`` is the total training
    time over all calls. ``images_per_second`` counts each batch image once,
    ``path_images_per_second`` once per path it went through (both summed over ranks)."""

    epochs: int
    steps: int
    images: int
    path_images: int
    seconds: float
    images_per_second: float
    path_images_per_second: float
    last_loss: float


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); initialises the process group when torchrun launched us without
    one. A group made here is kept for the rest of the process (later trainings in the same
    torchrun process reuse it) and destroyed when the process exits."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_own_group)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _destroy_own_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _average_gradients(supernet: torch.nn.Module, world: int, loss: float) -> float:
    """Average the accumulated gradients and the step's ``loss`` across ranks (one all-reduce of
    their concatenation); returns the averaged loss, so every rank reports, and checks, the loss
    of the whole global batch. Parameters without a gradient (ops of no visited path) keep none:
    every rank ran the same paths, so the same parameters have gradients everywhere."""
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    device = grads[0].device if grads else next(supernet.parameters()).device
    dtype = grads[0].dtype if grads else torch.float32
    flat = torch.cat([g.reshape(-1) for g in grads]
                     + [torch.tensor([loss], dtype=dtype, device=device)])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return float(flat[-1])


def checkpoint_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def load_supernet(supernet: Supernet, checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Load the weights of a :func:`train_supernet` checkpoint (a file or its directory) into
    ``supernet``; raises :class:`~supernet.train.CheckpointError` when the checkpoint belongs to
    another supernet (space, class or shape arguments). Returns the checkpoint's metadata."""
    path = Path(checkpoint)
    if path.is_dir():
        path = checkpoint_path(path)
    if not path.is_file():
        raise NasrankError(f"supernet checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file: torch raises many types
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {err}") from None
    config = state.get("config", {}) if isinstance(state, dict) else {}
    load_checked(path, "supernet", {**config, "supernet": supernet.config()})
    supernet.load_state_dict(state["model"])
    return {k: state[k] for k in ("config", "epoch", "stats") if k in state}


def train_supernet(
    supernet: Supernet, data: DatasetSplits, sampler: ArchSampler, *, epochs: int,
    batch_size: int, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
    grad_clip: float | None = None, device: str | torch.device = "cpu", seed: int = 0,
    checkpoint_dir: str | os.PathLike | None = None, strategy: StepStrategy | None = None,
    progress: bool = True, on_epoch_end: Callable[[int], None] | None = None,
    same_batch: bool = True,
) -> SupernetTrainStats:
    """Train ``supernet`` in place on ``data.train``; see the module docstring.

    ``same_batch``: all architectures of a step on one batch (True) or each on its own batch
    (False: a step of ``n`` architectures consumes ``n`` batches).

    ``weight_decay`` defaults to AceNAS's supernet setting, 1e-4 (AceNAS Table 4; 5e-4 before
    issue 18, so such checkpoints resume only with ``weight_decay=5e-4`` passed).
    ``grad_clip``: maximum global L2 norm of the step's (path-averaged, rank-averaged)
    gradient, rescaled by ``torch.nn.utils.clip_grad_norm_`` before the SGD step; ``None`` =
    off (default). AceNAS clips at 5.

    ``checkpoint_dir`` receives ``supernet.pt`` after every epoch (rank 0 writes it); when it
    already holds one from the same configuration the run resumes, and a checkpoint of another
    supernet/sampler/config raises before anything is overwritten. ``on_epoch_end(epoch)`` runs
    after each checkpoint (an exception there stops the run; a rerun resumes).
    """
    if sampler.supernet is not supernet:
        raise NasrankError("the sampler was built for another supernet object")
    if int(epochs) < 1 or int(batch_size) < 1 or not lr > 0:
        raise NasrankError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs!r}, {batch_size!r}, {lr!r}")
    device = torch.device(device)
    strategy = strategy if strategy is not None else StepStrategy()
    rank, world = _distributed(device)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if batch_size % world:
        raise NasrankError(f"batch_size {batch_size} must divide by the world size {world}")
    if not isinstance(same_batch, bool):
        raise NasrankError(f"same_batch must be True or False, got {same_batch!r}")
    if grad_clip is not None and (isinstance(grad_clip, bool) or not isinstance(
            grad_clip, (int, float)) or not grad_clip > 0 or not np.isfinite(grad_clip)):
        raise NasrankError(f"grad_clip must be a number > 0 or None (off), got {grad_clip!r}")
    n_train = len(data.train)  # type: ignore[arg-type]
    steps_per_epoch = n_train // batch_size  # batches per epoch (= steps when same_batch)
    if steps_per_epoch < 1:
        raise NasrankError(f"batch_size {batch_size} exceeds the {n_train} training images")
    local = batch_size // world

    config = {
        "supernet": supernet.config(), "sampler": sampler.config(), "strategy": strategy.config(),
        "dataset": data.name, "input_shape": list(data.input_shape), "n_train": n_train,
        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
        "momentum": float(momentum), "weight_decay": float(weight_decay), "seed": int(seed),
        "world_size": world,
    }
    if not same_batch:  # recorded only when set, so older checkpoints stay resumable
        config["same_batch"] = False
    if grad_clip is not None:  # likewise
        config["grad_clip"] = float(grad_clip)
    supernet.to(device)
    opt = torch.optim.SGD(supernet.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    start_epoch, seconds_before, steps, last_loss = 0, 0.0, 0, float("nan")
    ckpt = checkpoint_path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.exists():
        state = load_checked(ckpt, "supernet", config)
        supernet.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler_state"])
        strategy.load_state_dict(state["strategy_state"])
        start_epoch, seconds_before = int(state["epoch"]), float(state["seconds"])
        steps, last_loss = int(state["steps"]), float(state["last_loss"])

    model: torch.nn.Module = supernet
    if world > 1:
        # every backward runs under no_sync (gradients are averaged by _average_gradients), so
        # DDP's reducer never searches for unused parameters
        model = torch.nn.parallel.DistributedDataParallel(
            supernet, device_ids=[device.index] if device.type == "cuda" else None)
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)

    bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               desc="supernet", disable=not progress or rank != 0)
    paths_done, images_here, seconds_here = 0, 0, 0.0
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(seed), epoch])
        model.train()
        strategy.begin_epoch(model, epoch)
        sampler_epoch = getattr(sampler, "begin_epoch", None)
        if callable(sampler_epoch):  # samplers that look at data (EnNAS diversity probes)
            sampler_epoch(epoch, data.train)
        order = epoch_order(n_train, seed, epoch)
        batches = list(iterate_batches(data.train, batch_size, order=order, drop_last=True))
        pos = 0
        while pos < len(batches):
            archs = sampler.sample(rng)
            if not archs:
                raise NasrankError(f"{type(sampler).__name__}.sample returned no architecture")
            # (batch, its sampled architectures): one batch for all, or one batch per arch
            take = 1 if same_batch else len(archs)
            if pos + take > len(batches):  # the epoch's last batches cannot serve a whole step
                for _ in range(len(batches) - pos):
                    sched.step()
                bar.update(len(batches) - pos)
                break
            groups = ([(batches[pos], archs)] if same_batch
                      else [(b, [a]) for b, a in zip(batches[pos:pos + take], archs)])
            plans = [(idx, strategy.paths(group)) for idx, group in groups]
            n_paths = sum(len(p) for _, p in plans)
            opt.zero_grad(set_to_none=True)
            total = 0.0
            with no_sync():
                for idx, paths in plans:
                    x, y = get_batch(data.train, idx[rank * local:(rank + 1) * local], device)
                    strategy.begin_step(model, x, y, paths)
                    for i, arch in enumerate(paths):
                        loss = strategy.loss(model, x, y, arch, i)
                        if loss is None:  # folded into a later path's loss
                            continue
                        loss = loss / n_paths
                        loss.backward()
                        total += float(loss.detach())
            if world > 1:  # before the check: a loss that diverged on one rank stops them all
                total = _average_gradients(supernet, world, total)
            if not np.isfinite(total):
                raise NasrankError(
                    f"supernet loss is {total} at epoch {epoch} step {steps}: training diverged "
                    f"(lower lr={lr})")
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(supernet.parameters(), float(grad_clip))
            opt.step()
            for _ in range(take):
                sched.step()
            steps += 1
            pos += take
            paths_done += n_paths
            images_here += batch_size * take
            last_loss = total
            bar.update(take)
        seconds_here += time.perf_counter() - t0
        seconds = float(seconds_before + seconds_here)
        # throughput of this call's epochs (a resumed run does not re-time the earlier ones)
        stats = SupernetTrainStats(
            epochs=epoch + 1, steps=steps, images=images_here,
            path_images=paths_done * batch_size, seconds=seconds,
            images_per_second=images_here / seconds_here,
            path_images_per_second=paths_done * batch_size / seconds_here, last_loss=last_loss)
        if ckpt is not None and rank == 0:
            save_atomic({"kind": "supernet", "config": config, "epoch": epoch + 1,
                         "seconds": seconds, "steps": steps, "last_loss": last_loss,
                         "model": supernet.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "sampler_state": sampler.state_dict(),
                         "strategy_state": strategy.state_dict(), "stats": asdict(stats)}, ckpt)
        if world > 1:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    if start_epoch >= epochs:
        return SupernetTrainStats(**state["stats"])
    return stats

