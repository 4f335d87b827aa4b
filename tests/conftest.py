"""Shared fixtures: the real benchmark data lives in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# One intra-op thread per test process: the suite runs in 2 xdist workers on 2 cores, and
# oversubscribed OpenMP threads slow small convolutions down by 10-100x.
torch.set_num_threads(1)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when the file is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared benchmark data {p} not available")
    return p


@pytest.fixture(scope="session")
def nb201_bench():
    from nasrank.spaces.benchmarks import load_nb201

    return load_nb201(data_path("nb201", "nb201.csv"))


@pytest.fixture
def pretrain_cli(tmp_path, monkeypatch, capsys):
    """``run(*flags)``: ``nasrank pretrain`` of a 12-cell NB201 FLOPs table (1 epoch) with the
    extra ``flags``; returns the keyword arguments ``RankingPredictor.pretrain`` received.
    Compilation is switched off inside: the mode only has to reach ``pretrain``."""
    import numpy as np

    from nasrank.predictor import RankingPredictor
    from nasrank.search.cli import main
    from nasrank.spaces import LabelTable
    from nasrank.spaces.base import sample_unique
    from nasrank.spaces.nb201 import NB201Space

    sp = NB201Space()
    archs = sample_unique(sp, 12, np.random.default_rng(0))
    LabelTable([sp.key(a) for a in archs], {"flops": [sp.cost(a)[0] for a in archs]},
               space="nb201").to_csv(tmp_path / "w.csv")
    real = RankingPredictor.pretrain
    seen: dict = {}

    def spy(self, *a, **kw):
        seen.update(kw)
        return real(self, *a, **{**kw, "compile": False})

    monkeypatch.setattr(RankingPredictor, "pretrain", spy)

    def run(*flags: str) -> dict:
        seen.clear()
        code = main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--epochs", "1",
                     "--out", str(tmp_path / "p"), *flags])
        assert code == 0, capsys.readouterr().err
        assert (tmp_path / "p" / "predictor.pt").exists()
        return dict(seen)

    return run
