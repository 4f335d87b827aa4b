"""linear_regions on NB201 (issue 18): does it separate cells, and how does it rank them?

    nice -n 10 python benchmarks/bench_linear_regions.py --data ../shared/data/nb201/nb201.csv \
        --cells 50 --seed 0

Scores ``--cells`` distinct random NB201 cells (NB201 C=16, N=5, 10 classes, weights seeded per
cell; no data: Gaussian inputs) under three settings of ``supernet.proxies.linear_regions`` and
prints, for each, the number of distinct values and Kendall tau / Spearman rho with
``cifar10_valid``. As a reference it also ranks by the number of ReLU calls alone (a depth
count), which the per-layer sum grows with.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.spaces.benchmarks import load_nb201  # noqa: E402
from nasrank.supernet.proxies import ProxySettings, score  # noqa: E402

SETTINGS = {
    "old default (network, 256 x 3x3)": ProxySettings(lr_size=3, lr_count="network"),
    "network, 256 x 2x2": ProxySettings(lr_count="network"),
    "new default (layer, 256 x 2x2)": ProxySettings(),
    "layer, 256 x 3x3": ProxySettings(lr_size=3),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="nb201.csv")
    ap.add_argument("--cells", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench = load_nb201(args.data)
    space = bench.space
    keys = bench.labelled("cifar10_valid")
    rng = np.random.default_rng(args.seed)
    seen, cells = set(), []
    for i in rng.permutation(len(keys)):
        arch = bench.archs[keys[i]]
        if space.key(arch) not in seen:
            seen.add(space.key(arch))
            cells.append(arch)
        if len(cells) == args.cells:
            break
    y = np.array([bench.value(a, "cifar10_valid") for a in cells])
    values: dict[str, list[float]] = {name: [] for name in [*SETTINGS, "ReLU calls (depth)"]}
    t0 = time.time()
    for j, arch in enumerate(cells):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed * 100_000 + j)
            net = space.build(arch, 10)
        for name, settings in SETTINGS.items():
            values[name].append(score(net, None, ["linear_regions"], settings=settings,
                                      input_shape=(3, 32, 32), seed=args.seed)["linear_regions"])
        calls = []
        hooks = [m.register_forward_hook(lambda *_: calls.append(1))
                 for m in net.modules() if isinstance(m, nn.ReLU)]
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, 8, 8))
        for h in hooks:
            h.remove()
        values["ReLU calls (depth)"].append(float(len(calls)))
    print(f"{len(cells)} NB201 cells, seed {args.seed}, {time.time() - t0:.0f} s")
    print("| setting | distinct values | Kendall tau | Spearman rho |")
    print("|---|---:|---:|---:|")
    for name, v in values.items():
        v = np.asarray(v)
        tau = stats.kendalltau(v, y).statistic
        rho = stats.spearmanr(v, y).statistic
        print(f"| {name} | {len(np.unique(v))} | {tau:.3f} | {rho:.3f} |")


if __name__ == "__main__":
    main()
