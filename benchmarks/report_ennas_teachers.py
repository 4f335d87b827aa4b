"""Diversity vs uniform sampling in EnNAS over several ``bench_ennas.py`` runs (issue 14).

Each argument is the ``--out`` folder of a ``bench_ennas.py`` run; the folders of one seed
(its ``args.seed``) together must hold both compared runs (``--pair A B``, default
``ennas_diversity ennas_uniform``; they may come from separate runs, and the same run found
twice must agree). Prints, per seed, the last epoch's ensemble-teacher and mean-student accuracy
(training batches) and the weak labels' Kendall tau, then the paired difference A - B: mean, sd,
paired t, how many seeds are higher, and a two-sided sign-flip permutation p-value (exact over
the 2^n sign patterns).

    python benchmarks/report_ennas_teachers.py /work/bench_runs/ennas_nb201_s0 ...
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np


def last_epoch(run: dict) -> tuple[float, float]:
    end = run["curve"][-1]
    return end["teacher_acc"], end["student_acc"]


def sign_flip_p(diff: np.ndarray) -> float:
    """Exact two-sided sign-flip p: how often a random sign pattern of the paired differences
    gives a mean at least as extreme as the observed one (2^n patterns)."""
    means = [abs(np.mean(diff * np.array(s))) for s in itertools.product((1, -1), repeat=len(diff))]
    return float(np.mean([m >= abs(diff.mean()) - 1e-15 for m in means]))


def paired(diff: np.ndarray) -> str:
    n = len(diff)
    sd = diff.std(ddof=1) if n > 1 else float("nan")
    t = diff.mean() / (sd / np.sqrt(n)) if n > 1 and sd > 0 else float("nan")
    p = sign_flip_p(diff)
    return (f"mean {diff.mean():+.4f}, sd {sd:.4f}, paired t {t:.2f}, higher in "
            f"{int((diff > 0).sum())}/{n}, sign-flip p = {p:.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="bench_ennas.py --out folders, one per seed")
    ap.add_argument("--pair", nargs=2, default=["ennas_diversity", "ennas_uniform"],
                    metavar=("A", "B"), help="the two runs compared, A - B (default: "
                    "ennas_diversity ennas_uniform)")
    args = ap.parse_args(argv)
    ra, rb = args.pair
    na, nb = (r.removeprefix("ennas_") for r in args.pair)
    by_seed: dict[int, dict[str, dict]] = {}
    for folder in args.runs:
        summary = json.loads((Path(folder) / "summary.json").read_text())
        runs = by_seed.setdefault(int(summary["args"]["seed"]), {})
        for name, run in summary["runs"].items():
            if name in runs and runs[name] != run:
                raise SystemExit(f"{folder}: seed {summary['args']['seed']} has a second, "
                                 f"different {name!r} run")
            runs[name] = run
    rows = []
    for seed, runs in by_seed.items():
        missing = [r for r in (ra, rb) if r not in runs]
        if missing:
            raise SystemExit(f"seed {seed}: no {missing} run in the folders given")
        (td, sd), (tu, su) = last_epoch(runs[ra]), last_epoch(runs[rb])
        rows.append((seed, td, tu, sd, su, runs[ra].get("kendall_tau", float("nan")),
                     runs[rb].get("kendall_tau", float("nan"))))
    rows.sort()
    print(f"| seed | teacher, {na} | teacher, {nb} | students, {na} | students, {nb} "
          f"| tau, {na} | tau, {nb} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join([str(r[0])] + [f"{v:.3f}" for v in r[1:]]) + " |")
    a = np.array([r[1:] for r in rows])
    print("| mean | " + " | ".join(f"{v:.3f}" for v in a.mean(0)) + " |")
    print()
    print(f"teacher accuracy, {na} - {nb}:", paired(a[:, 0] - a[:, 1]))
    print(f"student accuracy, {na} - {nb}:", paired(a[:, 2] - a[:, 3]))
    print(f"Kendall tau,      {na} - {nb}:", paired(a[:, 4] - a[:, 5]))


if __name__ == "__main__":
    main()
