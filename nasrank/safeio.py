"""Small file-writing helpers shared by every writer of an output folder.

- :func:`disk_full_guard`: an ``ENOSPC`` / ``EDQUOT`` from a write becomes a
  :class:`~nasrank.errors.DiskFullError` naming the file and saying that a rerun resumes (every
  writer of nasrank appends or replaces atomically, so nothing already written is lost);
- :func:`refuse_symlink` and :func:`open_append`: nasrank never writes *through* a symbolic
  link (a record linked to another file must not change that file), ``O_NOFOLLOW`` closes the
  race between the check and the open.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from nasrank.errors import DiskFullError, UnsafePathError

__all__ = ["disk_full_guard", "refuse_symlink", "open_append", "write_text_atomic",
           "DISK_FULL_ERRNOS"]

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_message(path: str | os.PathLike) -> str:
    return (f"no space left on the device while writing {os.fspath(path)!r}; free some space "
            f"and rerun the same command: the run resumes from what was written")


@contextmanager
def disk_full_guard(path: str | os.PathLike) -> Iterator[None]:
    """Turn a disk-full ``OSError`` raised inside the block into :class:`DiskFullError`."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(disk_full_message(path)) from None
        raise


def refuse_symlink(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`UnsafePathError` when ``path`` is a symbolic link."""
    if Path(path).is_symlink():
        raise UnsafePathError(
            f"{what} {os.fspath(path)!r} is a symbolic link (to {os.readlink(path)!r}); nasrank "
            f"does not write through links: replace it with a regular file or use another path")


def open_append(path: str | os.PathLike, what: str = "file", *, binary: bool = False,
                create: bool = True) -> IO:
    """Open ``path`` for appending without following a symlink (text mode, UTF-8, by default)."""
    flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if create:
        flags |= os.O_CREAT
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            refuse_symlink(path, what)
        if err.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(disk_full_message(path)) from None
        raise
    if binary:
        return os.fdopen(fd, "ab")
    return os.fdopen(fd, "a", encoding="utf-8", newline="")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``: a reader
    (another rank, a resumed run) sees the old file or the whole new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with disk_full_guard(path):
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def unreadable_checkpoint(path: str | os.PathLike, err: BaseException, redo: str = "") -> str:
    """One line saying why ``torch.load`` refused ``path`` (empty, truncated, foreign, or a
    crafted file asking for a global) and, with ``redo``, what deleting it redoes.

    Works on the exception alone (no torch import): torch's own messages run to several lines.
    """
    import re

    path = os.fspath(path)
    tail = f"; delete it to redo {redo} (the other outputs are kept)" if redo else ""
    text = str(err)
    try:
        size = os.stat(path).st_size
    except OSError:
        size = None
    if size == 0:
        return f"checkpoint {path!r} is empty (a write was interrupted or the disk was full){tail}"
    if "Weights only load failed" in text:
        m = re.search(r"GLOBAL ([\w.]+)", text)
        if m:
            return (f"refused to load checkpoint {path!r}: it asks to load {m.group(1)}, which a "
                    f"nasrank checkpoint never holds (a crafted or foreign file?){tail}")
        return (f"cannot read checkpoint {path!r}: not a PyTorch checkpoint (a foreign or "
                f"damaged file){tail}")
    first = text.splitlines()[0] if text.strip() else type(err).__name__
    if isinstance(err, (EOFError, RuntimeError)):
        return (f"cannot read checkpoint {path!r}: truncated or damaged "
                f"({first.split('. ')[0]}){tail}")
    return f"cannot read checkpoint {path!r}: {type(err).__name__}: {first}{tail}"
