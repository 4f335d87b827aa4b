"""Shared fixtures: the real benchmark data lives in ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when the file is absent."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared benchmark data {p} not available")
    return p


@pytest.fixture(scope="session")
def nb201_bench():
    from spaces.benchmarks import load_nb201

    return load_nb201(data_path("nb201", "nb201.csv"))
