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
