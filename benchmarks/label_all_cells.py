"""Weak labels + zero-cost proxies of every canonical NB201 cell from one trained supernet of
``bench_strategies.py`` (issue 15, end to end on our own labels; BENCHMARKS.md).

The ground truth's 300 cells come first, so that a stopped run still covers them; rows are
appended and a rerun resumes. ``nasrank weak-labels --all-archs`` does the same for a folder of
``nasrank supernet-train``; this script reads a bench run's ``supernet.pt`` and the truth's recipe.

  python benchmarks/label_all_cells.py SUPERNET.pt OUT.csv --shard 0/2 --seed 6
"""

from __future__ import annotations

import argparse
import time

import torch

from nasrank.search.evaluate import supernet_from_checkpoint
from nasrank.search.groundtruth import Recipe, load_recipe_data, read_groundtruth
from nasrank.supernet.weak_labels import generate_weak_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("supernet", help="supernet.pt of a bench_strategies.py run")
    ap.add_argument("out", help="label table CSV (appended; a rerun resumes)")
    ap.add_argument("--truth", default="benchmarks/data/nb201_fmnist_gt.csv")
    ap.add_argument("--root", default="../shared/data/fashion-mnist")
    ap.add_argument("--proxies", nargs="+", default=["jacov", "nwot", "synflow", "snip"])
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--seed", type=int, default=0, help="BN batches and proxy initialisation")
    ap.add_argument("--limit", type=int, default=0, help="first N architectures only (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gt = read_groundtruth(args.truth)
    data = load_recipe_data(Recipe(**gt.recipe), args.root)
    sn = supernet_from_checkpoint(args.supernet)
    archs = [sn.space.parse(k) for k in gt.keys] + list(sn.space.enumerate())
    if args.limit:
        archs = archs[:args.limit]
    t0 = time.time()
    table = generate_weak_labels(sn, archs, data, args.out, bn_batches=8, batch_size=64,
                                 seed=args.seed, proxies=args.proxies, shard=args.shard,
                                 progress=False)
    print(f"{len(table.keys)} rows in {args.out}, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
