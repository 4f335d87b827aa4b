"""Which process of a ``torchrun`` launch this is, read from the environment (no torch import).

``torchrun --nproc_per_node K -m nasrank supernet-train ...`` starts K copies of one command.
They train one supernet together (:mod:`nasrank.supernet.trainer` wraps it in
DistributedDataParallel); rank 0 alone holds the ``--out`` lock and writes files, the other ranks
only train. ``run`` trains its supernet on every rank, then rank 0 alone runs the later stages;
``fewshot`` trains every leaf on every rank and labels on rank 0. Commands that do not train
across ranks are refused under such a launch, since K copies would each do the whole job and
race on the same files.
"""

from __future__ import annotations

import os

from nasrank.errors import ConfigError

__all__ = ["launched_rank", "DISTRIBUTED_COMMANDS", "check_launch"]

#: commands that train across the ranks of a ``torchrun`` launch
DISTRIBUTED_COMMANDS = ("supernet-train", "fewshot", "run")


def launched_rank() -> tuple[int, int]:
    """``(rank, world size)`` from ``RANK`` / ``WORLD_SIZE`` (set by ``torchrun``); ``(0, 1)``
    when they are unset. A value that is not a rank of the world is refused by name."""
    raw_world, raw_rank = os.environ.get("WORLD_SIZE", ""), os.environ.get("RANK", "")
    try:
        world = int(raw_world) if raw_world.strip() else 1
        rank = int(raw_rank) if raw_rank.strip() else 0
    except ValueError:
        raise ConfigError(f"environment WORLD_SIZE={raw_world!r} RANK={raw_rank!r}: both must "
                          f"be integers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"environment WORLD_SIZE={raw_world!r} RANK={raw_rank!r}: need "
                          f"WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE")
    return rank, world


def check_launch(command: str) -> tuple[int, int]:
    """``(rank, world size)`` for ``nasrank <command>``; refuses a command that does not train
    across ranks when the world has more than one process."""
    rank, world = launched_rank()
    if world > 1 and command not in DISTRIBUTED_COMMANDS:
        raise ConfigError(
            f"nasrank {command} runs in one process, but this is rank {rank} of a launch of "
            f"{world} (WORLD_SIZE={world}): only {', '.join(DISTRIBUTED_COMMANDS)} train across "
            f"ranks. Run `torchrun ... -m nasrank supernet-train --out DIR` (or `run`), then the "
            f"other stages on DIR in one process")
    return rank, world
