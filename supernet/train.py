"""Stand-alone training of one network: the real, expensive label (and the search's oracle).

SGD with momentum and a per-step cosine learning-rate schedule; no data
augmentation (the datasets here are tiny and pre-sized). With ``checkpoint=`` the state after
every epoch is written atomically; a rerun with the same path resumes and ends with the same
weights as an uninterrupted run (data order comes from ``(seed, epoch)``, not from global state).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from torch.utils.data.dataloader import default_collate
from tqdm import tqdm

from nasrank.spaces.base import SearchSpace
from nasrank.errors import DiskFullError, NasrankError

from .datasets import DatasetSplits


class CheckpointError(NasrankError):
    """A checkpoint that is unreadable or was written by another model, space or config."""


@dataclass
class TrainResult:
    """Final validation/test accuracy (fraction) and mean cross-entropy of one training run."""

    valid_acc: float
    valid_loss: float
    test_acc: float
    test_loss: float
    epochs: int
    seconds: float


# ----------------------------------------------------------------------------- batches
def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of one epoch, a pure function of ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def get_batch(
    dataset: Dataset, idx: torch.Tensor, device: str | torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Examples ``idx`` of ``dataset`` as ``(x, y)`` on ``device`` (fast path for tensors)."""
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors[0][idx], dataset.tensors[1][idx]
    else:
        x, y = default_collate([dataset[int(i)] for i in idx])
    return x.to(device), y.to(device)


def iterate_batches(
    dataset: Dataset, batch_size: int, *, order: torch.Tensor | None = None,
    drop_last: bool = False, max_batches: int | None = None,
) -> Iterator[torch.Tensor]:
    """Index tensors of consecutive batches over ``order`` (default: dataset order)."""
    n = len(dataset)  # type: ignore[arg-type]
    order = torch.arange(n) if order is None else order
    stop = (n // batch_size) * batch_size if drop_last else n
    for b, start in enumerate(range(0, stop, batch_size)):
        if max_batches is not None and b >= max_batches:
            return
        yield order[start:start + batch_size]


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, *, batch_size: int = 256,
    device: str | torch.device = "cpu", max_batches: int | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``forward`` on ``dataset`` (first ``max_batches``
    batches when given). The caller sets train/eval mode."""
    return evaluate_batches(forward, (
        get_batch(dataset, idx, device)
        for idx in iterate_batches(dataset, batch_size, max_batches=max_batches)))


@torch.no_grad()
def evaluate_batches(
    forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[float, float]:
    """:func:`evaluate` on ready ``(x, y)`` batches (e.g. kept on the device and reused for many
    architectures). Sums stay on the device, one transfer at the end: float32 per-batch loss
    sums added in float64, integer counts."""
    loss_sum, correct, count = None, None, 0
    for x, y in batches:
        logits = forward(x)
        batch_loss = nn.functional.cross_entropy(logits, y, reduction="sum").double()
        batch_correct = (logits.argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        count += len(y)
    if count == 0:
        raise NasrankError("cannot evaluate on an empty dataset")
    return int(correct) / count, float(loss_sum) / count


# ----------------------------------------------------------------------------- checkpoints
def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a checkpoint.

    A full disk raises :class:`~nasrank.errors.DiskFullError` naming the file (the previous
    checkpoint is intact, so a rerun resumes from it); the partial temporary file is removed.
    """
    from nasrank.safeio import disk_full_guard, disk_full_message, refuse_symlink

    path = Path(path)
    refuse_symlink(path, "checkpoint")
    with disk_full_guard(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with disk_full_guard(path):
            torch.save(obj, tmp)
            os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, RuntimeError) and "write" in str(err).lower():
            # torch's zip writer reports ENOSPC as a RuntimeError ("file write failed")
            import shutil

            if shutil.disk_usage(path.parent).free < 64 * 2**20:
                raise DiskFullError(disk_full_message(path)) from None
            raise CheckpointError(
                f"cannot write checkpoint {str(path)!r}: {str(err).splitlines()[0]}") from None
        raise


#: What each stage's checkpoint must hold, and what deleting it costs.
CHECKPOINT_FIELDS: dict[str, tuple[str, ...]] = {
    "standalone": ("model", "optimizer", "scheduler", "epoch", "seconds", "result"),
    "supernet": ("model", "epoch"),
}
_REDONE = {"standalone": "the stand-alone training of this architecture",
           "supernet": "the supernet training"}


def _unreadable(path: Path, kind: str, err: BaseException) -> str:
    """One line: what is wrong with the checkpoint file and what deleting it redoes."""
    from nasrank.safeio import unreadable_checkpoint

    return unreadable_checkpoint(path, err, _REDONE.get(kind, f"the {kind} stage"))


def load_checked(path: str | os.PathLike, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint of ``kind`` and check that it was written with ``config``."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign file: torch raises many types
        raise CheckpointError(_unreadable(Path(path), kind, err)) from None
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{str(path)!r} is not a {kind} checkpoint (it holds {got!r})")
    missing = [f for f in CHECKPOINT_FIELDS.get(kind, ()) if f not in state]
    if missing:
        raise CheckpointError(
            f"{kind} checkpoint {str(path)!r} lacks {missing}"
            f"; delete it to redo {_REDONE.get(kind, f'the {kind} stage')}")
    saved = state.get("config", {})
    if saved != config:
        diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {config.get(k)!r}"
                            for k in diff)
        raise CheckpointError(
            f"checkpoint {str(path)!r} was written by another run ({details}); "
            f"use another checkpoint path")
    return state


# ----------------------------------------------------------------------------- training
def train_standalone(
    net_or_arch: nn.Module | tuple[SearchSpace, Any], data: DatasetSplits, *, epochs: int,
    batch_size: int, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
    device: str | torch.device = "cpu", seed: int = 0,
    checkpoint: str | os.PathLike | None = None, progress: bool = False,
    build_kwargs: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train one network from scratch and return its validation and test accuracy/loss.

    ``net_or_arch`` is a module (trained in place) or ``(space, arch)``: then the network is
    ``space.build(arch, num_classes, in_channels=..., **build_kwargs)`` initialised from
    ``seed``. ``on_epoch_end(epoch)`` runs after each epoch's checkpoint (progress reports,
    time slicing; an exception there stops the run, which a rerun resumes).
    """
    if int(epochs) < 1 or int(batch_size) < 1 or not lr > 0:
        raise NasrankError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs!r}, {batch_size!r}, {lr!r}")
    arch_key = None
    if isinstance(net_or_arch, nn.Module):
        net = net_or_arch
    else:
        try:
            space, arch = net_or_arch
        except (TypeError, ValueError):
            raise NasrankError(
                f"expected a module or a (space, arch) pair, got {net_or_arch!r}") from None
        arch_key = space.key(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = space.build(arch, data.num_classes, in_channels=data.input_shape[0],
                              **(build_kwargs or {}))
    net = net.to(device)
    n_train = len(data.train)  # type: ignore[arg-type]
    steps_per_epoch = -(-n_train // batch_size)
    config = {
        "model": type(net).__name__, "arch": arch_key,
        "param_shapes": [list(p.shape) for p in net.parameters()],
        "dataset": data.name, "input_shape": list(data.input_shape), "n_train": n_train,
        "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
        "momentum": float(momentum), "weight_decay": float(weight_decay), "seed": int(seed),
    }
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    start_epoch, seconds = 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checked(checkpoint, "standalone", config)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
        if state.get("result") is not None:
            return TrainResult(**state["result"])

    criterion = nn.CrossEntropyLoss()
    bar = tqdm(total=epochs, initial=start_epoch, desc="train", disable=not progress)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        net.train()
        for idx in iterate_batches(data.train, batch_size, order=epoch_order(n_train, seed, epoch)):
            x, y = get_batch(data.train, idx, device)
            opt.zero_grad(set_to_none=True)
            criterion(net(x), y).backward()
            opt.step()
            sched.step()
        seconds += time.perf_counter() - t0
        result = None
        if epoch + 1 == epochs:
            t0 = time.perf_counter()
            net.eval()
            va, vl = evaluate(net, data.valid, device=device)
            ta, tl = evaluate(net, data.test, device=device)
            seconds += time.perf_counter() - t0
            result = TrainResult(va, vl, ta, tl, int(epochs), seconds)
        if checkpoint is not None:
            save_atomic({"kind": "standalone", "config": config, "epoch": epoch + 1,
                         "seconds": seconds, "model": net.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "result": asdict(result) if result else None}, checkpoint)
        bar.update(1)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    assert result is not None
    return result
