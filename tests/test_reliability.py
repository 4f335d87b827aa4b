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


def test_stale_lock_recovered_with_message_other_host_refused(tmp_path, caplog):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()} nasrank run\n")
    with caplog.at_level("WARNING", logger="nasrank.locking"):
        with output_lock(out):
            pass
    err = caplog.text  # a logging warning (the CLI shows it on stderr)
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


# ----------------------------------------------------------------------------- two commands, one --out
ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["--supernet-epochs", "1", "--archs", "40", "--pretrain-epochs", "2", "--budget", "4",
            "--method.rounds", "2", "--epochs", "1", "--supernet.channels", "4",
            "--image-size", "8", "--proxies", "", "--device", "cpu"]


def _nasrank(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nasrank.search.cli", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"first process ended early:\n{proc.stdout.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the first process")
        time.sleep(0.05)


def _second(capsys, *args: str) -> tuple[int, str, float]:
    from nasrank.search.cli import main, parse_args

    parse_args(list(args))  # imports done: time the refusal itself
    capsys.readouterr()
    t0 = time.perf_counter()
    code = main(list(args))
    return code, capsys.readouterr().err, time.perf_counter() - t0


@pytest.mark.slow
def test_two_runs_on_one_out_one_runs_one_is_refused_table_intact(tmp_path, capsys):
    from nasrank.spaces import LabelTable

    out = tmp_path / "run"
    first = _nasrank("run", "--out", str(out), *TINY_RUN)
    try:
        table = out / "weak_labels.csv"
        _wait_for(lambda: table.is_file() and table.stat().st_size > 60, first)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".pt"
                  and p.name != table.name and not p.name.startswith(".")}
        code, err, seconds = _second(capsys, "run", "--out", str(out), *TINY_RUN)
        assert code == 2 and seconds < 5.0
        assert err.count("\n") == 1 and err.startswith("nasrank: error: ")
        assert repr(str(out)) in err and f"pid {first.pid}" in err
        assert {p: p.read_bytes() for p in before} == before  # the refused run wrote nothing
        _wait_for(lambda: (out / "predictor.pt").is_file(), first)  # weak labels complete
    finally:
        first.kill()   # (a whole tiny run is tested in test_run_e2e)
        first.wait()
    t = LabelTable.read_csv(out / "weak_labels.csv")   # duplicate keys would raise here
    assert len(t) == 40


@pytest.mark.slow
def test_two_searches_on_one_out_one_is_refused_record_intact(tmp_path, capsys):
    from conftest import data_path

    data = str(data_path("nb201", "nb201.csv"))
    out = tmp_path / "s"
    args = ["search", "--benchmark", "nb201", "--data", data, "--method", "random",
            "--budget", "200", "--out", str(out), "--device", "cpu"]
    first = _nasrank(*args)
    try:
        _wait_for(lambda: (out / LOCK_NAME).is_file() and (out / LOCK_NAME).stat().st_size > 0,
                  first)
        code, err, seconds = _second(capsys, *args)
        assert code == 2 and seconds < 5.0 and f"pid {first.pid}" in err
        assert err.count("\n") == 1
        stdout, _ = first.communicate(timeout=300)
        assert first.returncode == 0, stdout
    finally:
        first.kill()
        first.wait()
    import json

    lines = [json.loads(x) for x in (out / "record.jsonl").read_text().splitlines()]
    keys = [e["key"] for e in lines if e["type"] == "query"]
    assert len(keys) == 200 == len(set(keys))


# ----------------------------------------------------------------------------- checkpoints
def _ckpt(tmp_path):
    import torch

    from nasrank.supernet.train import save_atomic

    path = tmp_path / "trainings" / "nb201-abc.pt"
    state = {"kind": "standalone", "config": {"a": 1}, "epoch": 1, "seconds": 0.5,
             "model": {"w": torch.ones(3)}, "optimizer": {}, "scheduler": {}, "result": None}
    save_atomic(state, path)
    return path, state


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unreadable_checkpoints_one_line_naming_file_and_stage_to_redo(tmp_path):
    import torch

    from nasrank.supernet.train import CheckpointError, load_checked

    path, state = _ckpt(tmp_path)
    good = path.read_bytes()
    marker = tmp_path / "pwned"
    torch.save({"kind": "standalone", "x": _Evil(marker)}, tmp_path / "evil.pt")
    cases = {
        "empty": (b"", "is empty"),
        "truncated": (good[: len(good) // 2], "truncated or damaged"),
        "crafted": ((tmp_path / "evil.pt").read_bytes(), "asks to load posix.system"),
    }
    for what, (content, needle) in cases.items():
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as exc:
            load_checked(path, "standalone", {"a": 1})
        msg = str(exc.value)
        assert "\n" not in msg, what
        assert needle in msg and repr(str(path)) in msg, msg
        assert "delete it to redo the stand-alone training of this architecture" in msg
    assert not marker.exists()
    torch.save({k: v for k, v in state.items() if k != "optimizer"}, path)
    with pytest.raises(CheckpointError, match=r"lacks \['optimizer'\]; delete it"):
        load_checked(path, "standalone", {"a": 1})


def test_disk_full_during_torch_save_names_file_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    import nasrank.supernet.train as train

    path, state = _ckpt(tmp_path)
    before = path.read_bytes()

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFullError, match=r"nb201-abc\.pt.*resumes"):
        train.save_atomic({**state, "epoch": 2}, path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]  # the partial temporary file is gone


def test_ntk_of_non_finite_weights_is_nan_with_a_note():
    import math

    import torch
    from torch import nn

    from nasrank.supernet.proxies import score_with_notes

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = float("nan")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.arange(6) % 5
    values, notes = score_with_notes(net, (x, y), ["ntk"])
    assert math.isnan(values["ntk"]) and "non-finite" in notes["ntk"]


def test_empty_config_json_from_a_full_disk_does_not_lock_the_folder_out(tmp_path):
    import json

    from nasrank.search.pipeline import OutputDirError, prepare_out

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_bytes(b"")            # a write cut short by a full disk
    prepare_out(out, {"seed": 1})
    saved = json.loads((out / "config.json").read_text())
    assert {k: v for k, v in saved.items() if k != "provenance"} == {"seed": 1}
    prepare_out(out, {"seed": 1})                      # and the folder resumes as usual
    (out / "config.json").write_bytes(b"\x00\xffgarbage")
    with pytest.raises(OutputDirError, match="delete it to reuse"):
        prepare_out(out, {"seed": 1})
    assert (out / "config.json").read_bytes() == b"\x00\xffgarbage"
