"""One writer per output folder: an exclusive, advisory lock file holding the holder's pid and host.

Two ``nasrank run`` (or ``search``) on one ``--out`` would append the same keys twice to one
table; :func:`output_lock` makes the second one fail at once with
:class:`~nasrank.errors.OutputLockedError`, naming the folder and the process that holds it.

Design:

- the lock is ``fcntl.flock`` on ``<folder>/.nasrank.lock`` (the kernel releases it when the
  holder dies, even by SIGKILL, so a lock can never outlive its process on this host); the file
  holds ``pid host command`` so that a refusal can say who holds it. A file left behind by a
  dead process on this host is taken over with a message; one written on *another* host (a
  shared file system) is refused, since this host cannot tell whether that job still runs;
- shard jobs (``--shard i/n``) each write their own file and run side by side: they hold the
  folder lock *shared* plus an exclusive lock of their own (``.nasrank-shard-<i>of<n>.lock``), so
  shards coexist, a second copy of one shard is refused, and a whole-folder job is refused while
  any shard runs (and the other way round);
- re-entrant within one process (a command that calls another stage on the same folder);
- a folder created by the lock and left empty is removed again on release, so a command refused
  after taking the lock leaves nothing behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nasrank.errors import NasrankError, OutputLockedError

__all__ = ["output_lock", "LOCK_NAME", "read_holder"]

LOCK_NAME = ".nasrank.lock"

_held: dict[tuple[str, str], int] = {}   # (folder, lock name) -> depth, this process
_mutex = threading.Lock()


logger = logging.getLogger(__name__)


def _log(msg: str) -> None:
    """A lock event the user should see (a stale lock taken over): a logging warning."""
    logger.warning(msg)


def read_holder(lock_file: str | os.PathLike) -> tuple[int | None, str, str]:
    """``(pid, host, command)`` recorded in a lock file (``None`` / '' when unreadable)."""
    try:
        text = Path(lock_file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, "", ""
    parts = text.strip().split(" ", 2)
    try:
        pid = int(parts[0])
    except (ValueError, IndexError):
        return None, "", ""
    host = parts[1] if len(parts) > 1 else ""
    return pid, host, parts[2] if len(parts) > 2 else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(pid: int | None, host: str, command: str) -> str:
    if pid is None:
        return "another process (its lock file names none)"
    where = f" on host {host}" if host else ""
    return f"pid {pid}{where}" + (f" ({command})" if command else "")


class _Lock:
    """One flock on one file, with the inode check that makes unlinking on release safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, exclusive: bool) -> bool:
        """Take the lock without waiting; False when someone else holds it."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(20):  # the file can be unlinked by a releasing holder: retry on a new one
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise OutputLockedError(
                        f"lock file {str(self.path)!r} is a symbolic link; remove it") from None
                raise
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)
        raise NasrankError(f"could not take the lock {str(self.path)!r}: it keeps being replaced")

    def write_holder(self) -> None:
        assert self.fd is not None
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} {socket.gethostname()} {cmd}\n".encode(), 0)

    def release(self, unlink: bool) -> None:
        if self.fd is None:
            return
        if unlink:
            try:  # unlink while still holding the lock: a waiter re-checks the inode
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _check_stale(path: Path, folder: Path) -> None:
    """We hold ``path`` exclusively: report (or refuse) what a previous holder left in it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    pid, host, command = read_holder(path)
    if pid is None:
        return
    if host and host != socket.gethostname():
        raise OutputLockedError(
            f"output folder {str(folder)!r} is locked by {_describe(pid, host, command)}, another "
            f"machine; if that job is no longer running, delete {str(path)!r} and rerun")
    state = "no longer running" if not _alive(pid) else "not holding it"
    _log(f"recovered a stale lock on {str(folder)!r} left by pid {pid} ({state})")


@contextmanager
def output_lock(folder: str | os.PathLike, *, shard: tuple[int, int] | None = None) -> Iterator[Path]:
    """Hold ``folder`` for writing for the duration of the block (see module docstring).

    Creates ``folder`` when missing (removed again on exit if it is still empty). Raises
    :class:`OutputLockedError` at once when another process holds the folder, or the same shard.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NasrankError(f"--out {str(folder)!r} is a file, expected a folder")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise NasrankError(f"--out {str(folder)!r} lies below {str(parent)!r}, which is a file")
    key_folder = os.path.realpath(folder)
    names = [LOCK_NAME] if shard is None else [LOCK_NAME, f".nasrank-shard-{shard[0]}of{shard[1]}.lock"]
    with _mutex:
        depth = _held.get((key_folder, names[-1]), 0)
        if depth:  # re-entrant in this process
            _held[(key_folder, names[-1])] = depth + 1
    if depth:
        try:
            yield folder
        finally:
            with _mutex:
                _held[(key_folder, names[-1])] -= 1
        return

    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NasrankError(f"--out {str(folder)!r} is not a folder") from None
    except NotADirectoryError:
        raise NasrankError(f"--out {str(folder)!r} lies below a file, expected a folder") from None
    main, own = _Lock(folder / LOCK_NAME), None
    try:
        if not main.acquire(exclusive=shard is None):
            pid, host, command = read_holder(main.path)
            if pid is None:
                holder = ("a job writing the whole folder" if shard is not None else
                          f"running shard jobs (their {names[0][:-5]}-shard-*.lock files)")
            else:
                holder = _describe(pid, host, command)
            raise OutputLockedError(
                f"output folder {str(folder)!r} is in use by {holder}; wait for it to finish or "
                f"use another --out")
        if shard is None:
            _check_stale(main.path, folder)
            main.write_holder()
        else:
            own = _Lock(folder / names[1])
            if not own.acquire(exclusive=True):
                pid, host, command = read_holder(own.path)
                raise OutputLockedError(
                    f"shard {shard[0]}/{shard[1]} of output folder {str(folder)!r} is in use by "
                    f"{_describe(pid, host, command)}; wait for it to finish")
            _check_stale(own.path, folder)
            own.write_holder()
    except BaseException:
        if own is not None:
            own.release(unlink=False)
        main.release(unlink=False)
        _cleanup(folder, created)
        raise
    with _mutex:
        _held[(key_folder, names[-1])] = 1
    try:
        yield folder
    finally:
        with _mutex:
            _held.pop((key_folder, names[-1]), None)
        if own is not None:
            own.release(unlink=True)
        if shard is None:
            main.release(unlink=True)
        else:
            # the shared folder lock file is removed only by the last shard to leave
            main.release(unlink=False)
            last = _Lock(main.path)
            if last.acquire(exclusive=True):
                last.release(unlink=last.path.stat().st_size == 0 if last.path.exists() else False)
        _cleanup(folder, created)


def _cleanup(folder: Path, created: bool) -> None:
    if created:
        try:
            folder.rmdir()  # only succeeds when nothing was written
        except OSError:
            pass


@contextmanager
def command_lock(cmd: object) -> Iterator[Path | None]:
    """The lock a ``nasrank`` command needs: its ``out`` folder (when it has one), per shard
    when its ``shard`` is ``i/n`` with ``n > 1``; nothing for commands that write no folder."""
    out = getattr(cmd, "out", None)
    if not out:
        yield None
        return
    shard = None
    text = getattr(cmd, "shard", None)
    if isinstance(text, str) and "/" in text:
        try:
            i, n = (int(t) for t in text.split("/"))
        except ValueError:
            i, n = 0, 1  # the command's own check reports the bad text
        if n > 1:
            shard = (i, n)
    with output_lock(out, shard=shard) as folder:
        yield folder
