"""Human-readable summaries: benchmark tables and run results as short text tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nasrank.spaces.benchmarks import Benchmark


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width text table (no dependency, readable in any terminal or log)."""
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def summarize_benchmark(bench: Benchmark, *, top: int = 5) -> str:
    """Size, label coverage and the best architectures of every ground-truth metric."""
    t = bench.table
    lines = [f"benchmark {bench.name}: {len(t):,} architectures of space {bench.space.name!r}, "
             f"{len(t.names)} columns"]
    rows = []
    for name in t.names:
        col = t.column(name)
        fin = col[np.isfinite(col)]
        if fin.size == 0:
            rows.append([name, 0, math.nan, math.nan, math.nan])
        else:
            rows.append([name, int(fin.size), float(fin.min()), float(np.median(fin)),
                         float(fin.max())])
    lines.append(format_table(["column", "finite", "min", "median", "max"], rows))
    for metric in bench.metrics:
        col = t.column(metric)
        order = np.argsort(np.where(np.isfinite(col), -col, np.inf))[:top]
        lines.append("")
        lines.append(f"best {top} by {metric}:")
        lines.append(format_table(["rank", metric, "architecture"],
                                  [[i + 1, float(col[j]), t.keys[j]] for i, j in enumerate(order)]))
    return "\n".join(lines)
