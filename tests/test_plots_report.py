"""Plots are written as real PNGs; report tables are aligned; correlation matrix is correct."""

from __future__ import annotations

import numpy as np
import pytest

from nasrank.search.plots import best_so_far_curves, correlation_heatmap, scatter_predicted_vs_true
from nasrank.search.report import format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    scatter_predicted_vs_true(tmp_path / "s.png", rng.random(20), rng.random(20), top_k=3)
    best_so_far_curves(tmp_path / "c.png", {"search": [1, 2, 2, 3], "random": [0, 1, 1, 1]})
    x = np.arange(10.0)
    m = correlation_heatmap(tmp_path / "h.png", {"a": x, "b": -x, "c": x ** 2, "d": [np.nan] * 10})
    for name in ("s.png", "c.png", "h.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    # hand-known rank correlations: a vs b perfectly reversed, a vs c monotone
    assert m[0, 1] == pytest.approx(-1.0) and m[0, 2] == pytest.approx(1.0)
    assert np.isnan(m[0, 3])


def test_format_table_aligns_columns():
    text = format_table(["name", "value"], [["a", 1.23456], ["long-name", float("nan")]])
    lines = text.splitlines()
    assert lines[0].startswith("name") and set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["a", "1.235"] and lines[3].split() == ["long-name", "nan"]
