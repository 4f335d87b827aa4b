"""Weak labels fused by rank average against each alone, paired seed by seed (issue 13).

Reads the per-seed label tables a ``bench_strategies.py --runs spos rdnas proxy:<teacher>`` run
wrote (``<dir>/spos_s<seed>/labels.csv``, ``rdnas_s<seed>``, ``proxy_<teacher>_s<seed>``; RD-NAS
optional: without it, SPOS and the teacher only; several ``--runs`` folders may hold different
seeds) and judges, on the ground truth, each label alone
and the rank averages SPOS ``ws_acc`` + teacher and RD-NAS ``ws_acc`` + teacher
(:func:`nasrank.search.evaluate.fused_labels`, what ``nasrank supernet-eval --column a+b``
judges). Prints Kendall tau per seed and the paired differences (exact sign-flip p, 95 %
bootstrap interval over seeds).

    python benchmarks/report_label_fusion.py --truth benchmarks/data/nb201_fmnist_gt.csv \\
        --runs /work/bench_runs/heldout_6_19 --seeds 6-19
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_predictor_nb201 import parse_seeds  # noqa: E402
from report_ennas_teachers import paired  # noqa: E402
from report_strategies_heldout import boot_ci  # noqa: E402

from nasrank.search.evaluate import align, evaluate_scores, fused_labels  # noqa: E402
from nasrank.search.groundtruth import read_groundtruth  # noqa: E402


def _find(folders: list[Path], name: str) -> Path:
    hits = [f / name / "labels.csv" for f in folders if (f / name / "labels.csv").is_file()]
    if len(hits) != 1:
        raise SystemExit(f"{name}/labels.csv found {len(hits)} times under {folders}")
    return hits[0]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", required=True, help="e.g. 6-19")
    ap.add_argument("--teacher", default="jacov")
    args = ap.parse_args(argv)

    truth = read_groundtruth(args.truth)
    seeds = sorted(set(parse_seeds(args.seeds)))
    with_rd = all(any((f / f"rdnas_s{s}").is_dir() for f in args.runs) for s in seeds)
    if not with_rd:
        print("no RD-NAS labels for every seed: SPOS, the teacher and their rank average only")
    names = ["spos", "rdnas", f"teacher {args.teacher}", f"spos+{args.teacher}",
             f"rdnas+{args.teacher}"]
    if not with_rd:
        names = [names[0], names[2], names[3]]
    table = []
    for s in seeds:
        spos = _find(args.runs, f"spos_s{s}")
        teacher = _find(args.runs, f"proxy_{args.teacher}_s{s}")
        cases = [([spos], "ws_acc"), ([teacher], "teacher"), ([spos, teacher], "ws_acc+teacher")]
        if with_rd:
            rd = _find(args.runs, f"rdnas_s{s}")
            cases = [cases[0], ([rd], "ws_acc"), cases[1], cases[2], ([rd, teacher], "ws_acc+teacher")]
        row = []
        for tables, column in cases:
            lab = fused_labels(tables, column)
            res = evaluate_scores(align(truth, lab, column), column=column, n_boot=0)
            row.append(res.metrics["kendall_tau"]["value"])
        table.append(row)
    t = np.array(table)
    print("| seed | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for s, row in zip(seeds, t):
        print(f"| {s} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in t.mean(0)) + " |\n")
    report = {"seeds": seeds, "runs": {n: t[:, i].tolist() for i, n in enumerate(names)},
              "paired": {}}
    pairs = ((3, 2), (4, 2), (3, 1), (4, 1), (3, 4)) if with_rd else ((2, 1), (2, 0))
    for a, b in pairs:
        diff = t[:, a] - t[:, b]
        lo, hi = boot_ci(diff)
        print(f"{names[a]} - {names[b]}: {paired(diff)}, 95 % bootstrap of the mean "
              f"[{lo:+.4f}, {hi:+.4f}]")
        report["paired"][f"{names[a]} - {names[b]}"] = {"mean": float(diff.mean()), "low": lo,
                                                        "high": hi}
    return report


if __name__ == "__main__":
    main()
