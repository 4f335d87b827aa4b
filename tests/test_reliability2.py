"""Reliability (issue 17, second part): a pretrained predictor is reused only for its own label
table, resume independent of how --out is spelled, reproducible bits. Each test fails on the
code before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
