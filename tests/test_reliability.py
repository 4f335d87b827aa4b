"""Reliability (issue 17): one writer per output folder, safe repair of torn files, disk full,
safe loaders. Each test reproduces a failure seen on the earlier code."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nasrank.errors import DiskFullError, NasrankError, OutputLockedError
from nasrank.locking import LOCK_NAME, output_lock


# ----------------------------------------------------------------------------- output lock
def _hold(folder: Path, *, shard: str = "None", seconds: float = 30.0) -> subprocess.Popen:
    """A child process holding the lock of ``folder`` until killed (prints 'locked' first)."""
    code = textwrap.dedent(f"""
        import sys, time
        from nasrank.locking import output_lock
        with output_lock({str(folder)!r}, shard={shard}):
            print("locked", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == "locked", proc.stderr.read()
    return proc


def test_second_writer_is_refused_at_once_naming_folder_and_holder(tmp_path):
    out = tmp_path / "run"
    holder = _hold(out)
    try:
        t0 = time.perf_counter()
        with pytest.raises(OutputLockedError) as exc:
            with output_lock(out):
                pass
        assert time.perf_counter() - t0 < 1.0
        msg = str(exc.value)
        assert repr(str(out)) in msg and f"pid {holder.pid}" in msg
        assert socket.gethostname() in msg
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL released the flock; the file it left names a dead pid: recovered with a message
    assert (out / LOCK_NAME).exists()
    with output_lock(out):
        assert (out / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_recovered_with_message_other_host_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()} nasrank run\n")
    with output_lock(out):
        pass
    err = capsys.readouterr().err
    assert "stale lock" in err and str(dead.pid) in err
    (out / LOCK_NAME).write_text("4242 some-other-machine nasrank run\n")
    with pytest.raises(OutputLockedError, match="some-other-machine.*delete"):
        with output_lock(out):
            pass
    assert (out / LOCK_NAME).read_text().startswith("4242 ")  # never taken over


def test_shards_run_side_by_side_but_not_twice_nor_with_a_whole_folder_job(tmp_path):
    out = tmp_path / "wl"
    s0 = _hold(out, shard="(0, 2)")
    try:
        with output_lock(out, shard=(1, 2)):      # another shard: fine
            with pytest.raises(OutputLockedError, match=f"shard 0/2.*pid {s0.pid}"):
                with output_lock(out, shard=(0, 2)):
                    pass
        with pytest.raises(OutputLockedError, match="shard jobs"):
            with output_lock(out):
                pass
    finally:
        s0.kill()
        s0.wait()
    whole = _hold(out)
    try:
        with pytest.raises(OutputLockedError, match=f"pid {whole.pid}"):
            with output_lock(out, shard=(1, 2)):
                pass
    finally:
        whole.kill()
        whole.wait()


def test_lock_is_reentrant_and_leaves_no_trace(tmp_path):
    out = tmp_path / "new" / "deeper"
    with output_lock(out):
        with output_lock(out):      # a stage calling another on the same folder
            assert out.is_dir()
    assert not out.exists()         # created by the lock, left empty: removed
    with output_lock(out):
        (out / "x.txt").write_text("kept")
    assert (out / "x.txt").read_text() == "kept" and os.listdir(out) == ["x.txt"]


def test_out_that_is_a_file_or_below_one(tmp_path):
    f = tmp_path / "file"
    f.write_text("data")
    with pytest.raises(NasrankError, match="is a file"):
        with output_lock(f):
            pass
    with pytest.raises(NasrankError, match="which is a file"):
        with output_lock(f / "sub"):
            pass
    assert f.read_text() == "data"
