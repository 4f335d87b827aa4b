"""One markdown table from several ``bench_strategies.py --out`` folders of one ground truth.

Each run's Kendall tau per seed, the mean over seeds, the bootstrap 95 % interval over archs of
each seed (the mean of the per-seed bounds), the path-images against SPOS's budget, and, for
every seed that also has ``--baseline`` (default ``spos``), the paired difference from it (mean
over the shared seeds and how many seeds are higher). Runs appear in ``--order`` when given.

    python benchmarks/report_strategies_table.py /work/bench_runs/v3/tier1 /work/bench_runs/v3/q2s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def collect(folders: list[str]) -> tuple[dict[str, dict[int, dict]], dict]:
    """Run name -> seed -> entry, from every ``summary.json``; one table and budget only."""
    runs: dict[str, dict[int, dict]] = {}
    first: dict | None = None
    for folder in folders:
        rep = json.loads((Path(folder) / "summary.json").read_text())
        key = (rep["args"]["groundtruth"], rep["budget_path_images"])
        if first is None:
            first = {"groundtruth": key[0], "budget_path_images": key[1], "archs": rep["archs"]}
        elif key != (first["groundtruth"], first["budget_path_images"]):
            raise SystemExit(f"{folder}: table/budget {key} differs from "
                             f"{(first['groundtruth'], first['budget_path_images'])}")
        for name, r in rep["runs"].items():
            for e in r["seeds"]:
                runs.setdefault(name, {})[int(e["seed"])] = e
    if first is None:
        raise SystemExit("no folder given")
    return runs, first


def table(runs: dict[str, dict[int, dict]], baseline: str, order: list[str] | None) -> str:
    names = [n for n in (order or []) if n in runs] + sorted(n for n in runs
                                                             if n not in (order or []))
    base = runs.get(baseline, {})
    lines = ["| run | tau per seed | mean | 95 % interval (mean of per-seed bounds) | "
             f"path-images / SPOS | minus {baseline}, paired (seeds higher) |",
             "|---|---|---|---|---|---|"]
    for name in names:
        seeds = sorted(runs[name])
        es = [runs[name][s] for s in seeds]
        taus = np.array([e["kendall_tau"] for e in es])
        per = ", ".join(f"{t:.3f} (s{s})" for s, t in zip(seeds, taus))
        ratio = es[0].get("budget_ratio")
        ratio_s = f"{ratio:.2f}" if ratio is not None else "0"
        shared = [s for s in seeds if s in base]
        if name != baseline and shared:
            d = np.array([runs[name][s]["kendall_tau"] - base[s]["kendall_tau"] for s in shared])
            diff = f"{d.mean():+.3f} ({int((d > 0).sum())} of {len(d)})"
        else:
            diff = "—"
        lines.append(f"| {name} | {per} | {taus.mean():.3f} | "
                     f"[{np.mean([e['tau_low'] for e in es]):.3f}, "
                     f"{np.mean([e['tau_high'] for e in es]):.3f}] | {ratio_s} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--baseline", default="spos")
    p.add_argument("--order", nargs="+", default=None)
    args = p.parse_args(argv)
    runs, info = collect(args.folders)
    text = (f"{info['groundtruth']}: {info['archs']} archs, SPOS budget "
            f"{info['budget_path_images']} path-images\n\n" + table(runs, args.baseline, args.order))
    print(text)
    return text


if __name__ == "__main__":
    main()
