"""GraSP's Hessian-vector product: speed of the hand-written double backwards, and float32 precision.

``ab``: Hg (g = dL/dW of the layer weights, cross-entropy on a batch of 64 digits at 32x32x3) on
NB201 stand-alone networks (C = 16, N = 5), with torch's generic double backward, with
``FastDoubleBackward`` routing batch norm only, and routing conv2d and batch norm; interleaved,
in one process, the first network a warm-up. Also the classic six via ``score`` with and without
the mode.

``precision``: ``score(..., ["grasp"])`` of random canonical NB201 cells in float32 and on a
float64 copy of the same network (Fashion-MNIST batch of 64, as ``bench_proxies.py``), with the
published accuracies, one JSON line per cell; ``--report`` summarises a finished file (relative
differences, Spearman with the accuracies, time).

    python benchmarks/bench_grasp.py ab --nets 5 --repeats 4
    python benchmarks/bench_grasp.py precision --cells 200 --shard 0 --shards 2 --out f0.jsonl
    python benchmarks/bench_grasp.py precision --report f0.jsonl f1.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLASSIC6 = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacov"]


def cmd_ab(args: argparse.Namespace) -> None:
    from nasrank.spaces.base import sample_unique
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet import double_backward as db
    from nasrank.supernet import proxies
    from nasrank.supernet.datasets import load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset("digits", seed=0, image_size=32, channels=3, valid_fraction=0.2)
    x, y = data.train.tensors[0][:64].contiguous(), data.train.tensors[1][:64].contiguous()
    space = NB201Space()
    nets = []
    for k, arch in enumerate(sample_unique(space, args.nets + 1, np.random.default_rng(0))):
        torch.manual_seed(k)
        nets.append(space.build(arch))

    class BatchNormOnly(db.FastDoubleBackward):
        def __torch_function__(self, func, types, a=(), kw=None):  # noqa: ANN001
            kw = kw or {}
            if func is F.batch_norm and (call := db._bn_call(*a, **kw)) is not None:
                return db.batch_norm(*call)
            return func(*a, **kw)

    def hg(net: torch.nn.Module, mode: contextlib.AbstractContextManager) -> None:
        weights = [m.weight for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        net.train()
        with mode:
            out = net(x)
        g = torch.autograd.grad(F.cross_entropy(out, y), weights, create_graph=True)
        torch.autograd.grad(sum((a * a.detach()).sum() for a in g), weights)

    modes = {"torch": contextlib.nullcontext, "bn_only": BatchNormOnly, "conv_and_bn": db.FastDoubleBackward}
    fast = proxies.FastDoubleBackward
    score_modes = {"score_torch": contextlib.nullcontext, "score_hand": fast}

    def run(name: str) -> None:
        if name in modes:
            for net in nets[1:]:
                hg(net, modes[name]())
        else:
            proxies.FastDoubleBackward = score_modes[name]
            try:
                for net in nets[1:]:
                    proxies.score(net, (x, y), CLASSIC6, seed=0)
            finally:
                proxies.FastDoubleBackward = fast

    names = [*modes, *score_modes]
    for name in names:  # warm-up on the first network only
        saved, nets[:] = nets[:], nets[:2]
        run(name)
        nets[:] = saved
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        for name in (names if r % 2 else names[::-1]):
            t = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - t)
    res = {"nets": args.nets, "threads": args.threads, "seconds": times,
           "best": {n: min(v) for n, v in times.items()}}
    res["hg_torch_over_hand_best"] = res["best"]["torch"] / res["best"]["conv_and_bn"]
    res["score_torch_over_hand_best"] = res["best"]["score_torch"] / res["best"]["score_hand"]
    res["score_torch_over_hand_paired_median"] = float(np.median(
        np.array(times["score_torch"]) / np.array(times["score_hand"])))
    print(json.dumps(res, indent=1))


def cmd_precision(args: argparse.Namespace) -> None:
    from bench_proxies import build, fashion_batch, pick, read_nb201

    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.proxies import score

    if args.report:
        return report(args.report)
    torch.set_num_threads(args.threads)
    space = NB201Space()
    rows = pick(read_nb201(args.data), args.cells, 2)[args.shard::args.shards]
    x, y = fashion_batch(args.data, 64, 0)
    done = set()
    if args.out.exists():
        done = {json.loads(line)["arch"] for line in args.out.read_text().splitlines() if line}
    with open(args.out, "a") as f:
        for r in rows:
            if r["arch_str"] in done:
                continue
            net = build(space, r["arch_str"], 0)
            t = time.perf_counter()
            g32 = score(net, (x, y), ["grasp"], seed=0)["grasp"]
            t32 = time.perf_counter() - t
            net64 = copy.deepcopy(net).double()
            t = time.perf_counter()
            g64 = score(net64, (x.double(), y), ["grasp"], seed=0)["grasp"]
            t64 = time.perf_counter() - t
            f.write(json.dumps({"arch": r["arch_str"], "g32": g32, "g64": g64, "t32": t32,
                                "t64": t64, "zc_grasp": float(r["zc_grasp"]),
                                "cifar10_valid": float(r["cifar10_valid"]),
                                "cifar100_test": float(r["cifar100_test"])}) + "\n")
            f.flush()


def report(paths: list[Path]) -> None:
    from scipy.stats import spearmanr

    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line]
    g32, g64 = np.array([r["g32"] for r in rows]), np.array([r["g64"] for r in rows])
    rel = np.abs(g32 - g64) / np.maximum(np.abs(g64), 1e-12)
    out = {"cells": len(rows), "t32_s": sum(r["t32"] for r in rows),
           "t64_s": sum(r["t64"] for r in rows), "median_rel_diff": float(np.median(rel)),
           "cells_rel_diff_over_1pct": int((rel > 0.01).sum()),
           "cells_rel_diff_over_10pct": int((rel > 0.1).sum()),
           "sign_flips": int((np.sign(g32) != np.sign(g64)).sum()),
           "spearman_f32_f64": float(spearmanr(g32, g64)[0])}
    for target in ("cifar10_valid", "cifar100_test"):
        acc = np.array([r[target] for r in rows])
        out[f"spearman_{target}"] = {"f32": float(spearmanr(g32, acc)[0]),
                                     "f64": float(spearmanr(g64, acc)[0])}
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["ab", "precision"])
    ap.add_argument("--nets", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--report", type=Path, nargs="+")
    args = ap.parse_args()
    if args.cmd == "precision" and not args.report and args.out is None:
        ap.error("precision needs --out (or --report FILES)")
    {"ab": cmd_ab, "precision": cmd_precision}[args.cmd](args)


if __name__ == "__main__":
    main()
