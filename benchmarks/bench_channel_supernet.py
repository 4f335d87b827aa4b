"""Cost of the CVPR 2021 ResNet-20 channel supernet under each sharing scheme.

For every scheme: stored parameters (100 classes), the time of one SGD training step on one
random path (forward, backward, optimizer step; batch of random CIFAR-shaped inputs), and the
time of ``subnet(arch)``; for reference the same step on the stand-alone networks of the same
architectures. The same architectures for every scheme; one CPU thread. Prints a markdown table.

    .venv/bin/python benchmarks/bench_channel_supernet.py --steps 20 --batch 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.supernet.channel import ChannelSupernet  # noqa: E402

SCHEMES = {
    "full": "full", "front": "front", "end": "end", "independent": "independent",
    "conv full / bn independent / fc full": {"conv": "full", "bn": "independent", "fc": "full"},
}


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 100, (args.batch,), generator=g)
    rows = ["| sharing | stored params | build s | train step ms (mean of steps) | "
            "images/s | subnet() ms |", "|---|---:|---:|---:|---:|---:|"]
    for label, sharing in SCHEMES.items():
        torch.manual_seed(args.seed)
        t0 = time.perf_counter()
        net = ChannelSupernet(sharing, num_classes=100, in_channels=3)
        build = time.perf_counter() - t0
        params = sum(q.numel() for q in net.parameters())
        rng = np.random.default_rng(args.seed)
        archs = [net.space.sample(rng) for _ in range(args.warmup + args.steps)]
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        net.train()
        times = []
        for i, arch in enumerate(archs):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x, arch), y).backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for arch in archs[:5]:
            net.subnet(arch)
        sub_ms = (time.perf_counter() - t0) / 5 * 1e3
        step_ms = float(np.mean(times)) * 1e3
        rows.append(f"| {label} | {params:,} | {build:.2f} | {step_ms:.1f} | "
                    f"{args.batch / (step_ms / 1e3):.0f} | {sub_ms:.1f} |")
    # reference: the same paths as fresh stand-alone networks (no slicing), same step
    times = []
    for i, arch in enumerate(archs):
        net = ChannelSupernet("full", num_classes=100).space.build(arch, 100)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        net.train()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step_ms = float(np.mean(times)) * 1e3
    rows.append(f"| stand-alone networks (reference) | - | - | {step_ms:.1f} | "
                f"{args.batch / (step_ms / 1e3):.0f} | - |")
    report = "\n".join(rows)
    print(report)
    return report


if __name__ == "__main__":
    main()
