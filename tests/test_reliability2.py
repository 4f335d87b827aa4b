"""Reliability (issue 17, second part): a pretrained predictor is reused only for its own label
table, resume independent of how --out is spelled, reproducible bits. Each test fails on the
code before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nasrank.search.cli import main


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _table(path: Path, n: int, seed: int, column: str = "flops") -> None:
    from nasrank.spaces import LabelTable, sample_unique
    from nasrank.spaces.nb201 import NB201Space

    sp = NB201Space()
    archs = sample_unique(sp, n, np.random.default_rng(seed))
    vals = [sp.cost(a)[0] for a in archs]
    LabelTable([sp.key(a) for a in archs], {column: vals}, space="nb201").to_csv(path)


# ----------------------------------------------------------------------------- pretrain reuse
@pytest.mark.slow
def test_pretrain_refuses_checkpoint_of_another_table(tmp_path, capsys):
    _table(tmp_path / "a.csv", 12, 0)
    _table(tmp_path / "b.csv", 12, 1)  # other archs, same column
    out = tmp_path / "pred"
    code, _, err = _cli(capsys, "pretrain", "--labels", tmp_path / "a.csv", "--epochs", 1,
                        "--out", out)
    assert code == 0, err
    before = (out / "predictor.pt").read_bytes()
    # same table again (a copy at another path): reused
    for suffix in ("", ".meta.json"):
        src = tmp_path / f"a.csv{suffix}"
        if src.exists():
            (tmp_path / f"a2.csv{suffix}").write_bytes(src.read_bytes())
    code, outp, err = _cli(capsys, "pretrain", "--labels", tmp_path / "a2.csv", "--epochs", 1,
                           "--out", out)
    assert code == 0, err
    assert "reused" in outp
    # another table, other epochs, other seed: each refused in one line, checkpoint untouched
    for extra, needle in ((["--labels", tmp_path / "b.csv", "--epochs", 1], "label table"),
                          (["--labels", tmp_path / "a.csv", "--epochs", 2], "epochs=1"),
                          (["--labels", tmp_path / "a.csv", "--epochs", 1, "--seed", 3],
                           "seed=0")):
        code, _, err = _cli(capsys, "pretrain", *extra, "--out", out)
        assert code == 2, (extra, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert (out / "predictor.pt").read_bytes() == before


def test_pretrain_refuses_checkpoint_without_record(tmp_path, capsys):
    _table(tmp_path / "a.csv", 12, 0)
    out = tmp_path / "pred"
    out.mkdir()
    (out / "predictor.pt").write_bytes(b"foreign")
    code, _, err = _cli(capsys, "pretrain", "--labels", tmp_path / "a.csv", "--epochs", 1,
                        "--out", out)
    assert code == 2 and "predictor.pt" in err, err


# ----------------------------------------------------------------------------- resume vs --out spelling
NB201 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201.csv"


def _queries(record: Path) -> list[str]:
    return [ln for ln in record.read_text().splitlines() if '"query"' in ln]


@pytest.mark.slow
def test_resume_independent_of_out_spelling_and_folder_moves(tmp_path, capsys, monkeypatch):
    import shutil

    if not NB201.exists():
        pytest.skip("shared NB201 data not available")
    monkeypatch.chdir(tmp_path)
    _table(tmp_path / "w.csv", 12, 0)
    code, _, err = _cli(capsys, "pretrain", "--labels", "w.csv", "--epochs", 1, "--out", "a/p")
    assert code == 0, err
    args = ["search", "--benchmark", "nb201", "--data", NB201, "--method", "iterative",
            "--method.rounds", 2, "--method.pool-size", 40, "--budget", 6, "--fit-epochs", 1]
    code, _, err = _cli(capsys, *args, "--checkpoint", "a/p/predictor.pt", "--out", "a/s")
    assert code == 0, err
    rec = tmp_path / "a/s/record.jsonl"
    first = _queries(rec)
    assert len(first) == 6
    # the same folders spelled absolute, with "./" and "..": resumed, no new query
    for ck, out in ((tmp_path / "a/p/predictor.pt", tmp_path / "a/s"),
                    ("./a/../a/p/predictor.pt", "./a/s/")):
        code, _, err = _cli(capsys, *args, "--checkpoint", ck, "--out", out)
        assert code == 0, (out, err)
        assert _queries(rec) == first
    # the whole folder moved elsewhere
    shutil.move(str(tmp_path / "a"), str(tmp_path / "moved"))
    code, _, err = _cli(capsys, *args, "--checkpoint", tmp_path / "moved/p/predictor.pt",
                        "--out", tmp_path / "moved/s")
    assert code == 0, err
    assert _queries(tmp_path / "moved/s/record.jsonl") == first


# ----------------------------------------------------------------------------- search without --out
def test_search_without_out_locks_its_default_folder(tmp_path, capsys, monkeypatch):
    import subprocess
    import sys
    import textwrap

    monkeypatch.chdir(tmp_path)
    args = ["search", "--benchmark", "nb201", "--data", tmp_path / "missing.csv",
            "--method", "random", "--budget", 5, "--seed", 3]
    default = "runs/search-nb201-random-cifar10_valid-b5-s3"  # the documented default folder
    code = textwrap.dedent(f"""
        import time
        from nasrank.locking import output_lock
        with output_lock({default!r}):
            print("locked", flush=True)
            time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        code, _, err = _cli(capsys, *args)
        assert code == 2 and f"pid {holder.pid}" in err, err
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- same seed, same bits
TINY_SN = ["--dataset", "digits", "--epochs", 1, "--batch-size", 64, "--supernet.channels", 4,
           "--image-size", 8, "--seed", 5, "--device", "cpu", "--quiet"]


def _tensors(obj, prefix=""):
    """Every tensor / array of a (nested) checkpoint, by path."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, np.ndarray):
        return {prefix: torch.from_numpy(obj)}
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}/{i}"))
    return out


@pytest.mark.slow
def test_same_seed_same_bits_supernet_train_and_weak_labels(tmp_path, capsys):
    import torch

    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        code, _, err = _cli(capsys, "supernet-train", *TINY_SN, "--out", out)
        assert code == 0, err
    cks = [sorted((r / "supernet").rglob("*.pt")) for r in runs]
    assert cks[0] and [p.name for p in cks[0]] == [p.name for p in cks[1]]
    for pa, pb in zip(*cks):
        ta, tb = (_tensors(torch.load(p, map_location="cpu", weights_only=False))
                  for p in (pa, pb))
        assert ta.keys() == tb.keys() and ta
        for k in ta:  # bitwise: same dtype, same shape, same bytes
            assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
            assert ta[k].reshape(-1).contiguous().view(torch.uint8).equal(
                tb[k].reshape(-1).contiguous().view(torch.uint8)), (pa.name, k)
    for out in runs:
        code, _, err = _cli(capsys, "weak-labels", "--out", out, "--num-archs", 8,
                            "--proxies", "synflow", "--seed", 2, "--device", "cpu", "--quiet")
        assert code == 0, err
    a, b = ((r / "weak_labels.csv").read_bytes() for r in runs)
    assert a.count(b"\n") == 9 and a == b
