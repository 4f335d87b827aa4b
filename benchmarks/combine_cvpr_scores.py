"""Kendall tau of an ensemble over pretrainings on CVPR 2021 (issue 15): the per-split test scores
that ``bench_predictor_cheap.py --cvpr --save-scores`` wrote for several runs (e.g. one checkpoint
pretrained with MSE, one with a rank weight) are averaged after standardising each run's scores
(as ``fit(ensemble=K)`` averages its members), and ranked against the ground truth.

    python combine_cvpr_scores.py --runs /work/bench_runs/cvpr9/sc_mse_scores /work/bench_runs/cvpr9/sc_rank3_scores \\
        --methods hyb_lrlin_e5 hyb_margin_e5 --seeds 0-9

NB201 runs save one file per seed, target and method: pass ``--methods cifar10_valid.pre_lr_k``
(tau over all cells).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench_predictor_nb201 import parse_seeds
from nasrank.predictor import kendall_tau, ndcg_at_k


def combined_scores(runs: list[Path], seed: int, method: str) -> tuple[np.ndarray, np.ndarray, list]:
    """(truth, mean of the runs' standardised scores, the runs' saved arrays) on one split."""
    parts = [np.load(run / f"{seed}_{method}.npz") for run in runs]
    index, truth = parts[0]["test_index"], parts[0]["truth"]
    for run, part in zip(runs, parts):
        if not np.array_equal(part["test_index"], index):
            raise SystemExit(f"{run}: split {seed} has other test archs than {runs[0]}")
    z = [(p["scores"] - p["scores"].mean()) / (p["scores"].std() or 1.0) for p in parts]
    return truth, np.mean(z, axis=0), parts


def split_taus(truth: np.ndarray, mean: np.ndarray, parts: list) -> tuple[float, list[float]]:
    """(tau of the combined scores, tau of each run) from :func:`combined_scores`' result."""
    return kendall_tau(truth, mean), [kendall_tau(truth, p["scores"]) for p in parts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, type=Path, help="score folders (*_scores)")
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", default=["0-9"])
    ap.add_argument("--ndcg", action="store_true", help="also NDCG@10 (linear gain) of the combined scores")
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    for method in args.methods:
        splits = [combined_scores(args.runs, s, method) for s in seeds]  # each loaded once
        rows = [split_taus(*split) for split in splits]
        comb = np.array([r[0] for r in rows])
        each = np.array([r[1] for r in rows])
        singles = " / ".join(f"{m:.3f}" for m in each.mean(0))
        ndcg = ""
        if args.ndcg:  # NDCG@10 with linear gain, as bench_predictor_cheap.py's ndcg_lin@10
            vals = [ndcg_at_k(t, m, 10, gain="lin") for t, m, _ in splits]
            ndcg = f" NDCG@10 lin of the combined: {np.mean(vals):.3f} |"
        print(f"| {method} | {len(seeds)} | runs: {singles} | combined: {comb.mean():.3f} ± "
              f"{comb.std():.3f} (worst {comb.min():.3f}, >= 0.90: {(comb >= 0.9).sum()}) | "
              f"combined > best run: {(comb > each.max(1)).sum()} |{ndcg}")


if __name__ == "__main__":
    main()
