"""Baseline weak-label quality of an NB201 supernet (uniform SPOS and strict-fair sampling).

Steps, each timed: load the dataset; train one supernet per sampler; weak labels (ws_acc,
ws_neg_loss) for ``--archs`` distinct random cells; stand-alone training of the same cells;
Kendall tau (scipy) between each weak label and the stand-alone validation/test accuracy.
Everything is resumable (checkpoints and label tables under ``--out``), so a killed run can be
restarted with the same command. Prints a markdown report and writes ``summary.json``.

    .venv/bin/python benchmarks/bench_supernet.py --dataset digits --out /tmp/bench_supernet
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.spaces.base import sample_unique  # noqa: E402
from nasrank.spaces.labels import LabelWriter  # noqa: E402
from nasrank.supernet.base import StrictFairSampler, UniformSampler  # noqa: E402
from nasrank.supernet.datasets import load_dataset  # noqa: E402
from nasrank.supernet.nb201_supernet import NB201Supernet  # noqa: E402
from nasrank.supernet.train import train_standalone  # noqa: E402
from nasrank.supernet.trainer import train_supernet  # noqa: E402
from nasrank.supernet.weak_labels import generate_weak_labels  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--root", default=None, help="dataset folder (not needed for digits)")
    p.add_argument("--subset", type=int, default=None, help="training images kept")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--archs", type=int, default=40)
    p.add_argument("--supernet-epochs", type=int, default=30)
    p.add_argument("--supernet-lr", type=float, default=0.05)
    p.add_argument("--standalone-epochs", type=int, default=10)
    p.add_argument("--standalone-lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bn-batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    data = load_dataset(args.dataset, args.root, seed=args.seed, subset=args.subset,
                        valid_fraction=args.valid_fraction, image_size=args.image_size,
                        channels=3)
    times["load data"] = time.perf_counter() - t0
    print(f"data {args.dataset}: train {len(data.train)} valid {len(data.valid)} "
          f"test {len(data.test)} shape {data.input_shape}", flush=True)

    space = NB201Supernet(data.num_classes, C=args.C, N=args.N).space
    archs = sample_unique(space, args.archs, np.random.default_rng(args.seed))
    keys = [space.key(a) for a in archs]

    weak: dict[str, dict[str, np.ndarray]] = {}
    throughput: dict[str, dict[str, float]] = {}
    for name, make in (("uniform", lambda s: UniformSampler(s)),
                       ("fair", lambda s: StrictFairSampler(s))):
        torch.manual_seed(args.seed)
        net = NB201Supernet(data.num_classes, C=args.C, N=args.N)
        sampler = make(net)
        stats = train_supernet(net, data, sampler, epochs=args.supernet_epochs,
                               batch_size=args.batch_size, lr=args.supernet_lr, seed=args.seed,
                               checkpoint_dir=out / f"supernet_{name}", progress=False)
        times[f"supernet training ({name})"] = stats.seconds
        throughput[name] = {"images_per_second": stats.images_per_second,
                            "path_images_per_second": stats.path_images_per_second,
                            "paths_per_step": stats.path_images / max(stats.images, 1),
                            "final_loss": stats.last_loss}
        print(f"supernet {name}: {stats}", flush=True)
        t0 = time.perf_counter()
        table = generate_weak_labels(net, archs, data, out / f"weak_{name}.csv",
                                     bn_batches=args.bn_batches, batch_size=128, seed=args.seed,
                                     progress=False)
        times[f"weak labels ({name}, {len(archs)} archs)"] = time.perf_counter() - t0
        weak[name] = {c: table.select(keys).column(c) for c in ("ws_acc", "ws_neg_loss",
                                                                "flops", "params")}

    t0 = time.perf_counter()
    cols = ["valid_acc", "valid_loss", "test_acc", "test_loss", "seconds"]
    with LabelWriter(out / "standalone.csv", cols, space=space.name, chunk_size=1) as writer:
        for i, (key, arch) in enumerate(zip(keys, archs)):
            if key in writer.done:
                continue
            r = train_standalone((space, arch), data, epochs=args.standalone_epochs,
                                 batch_size=args.batch_size, lr=args.standalone_lr,
                                 seed=args.seed, build_kwargs={"C": args.C, "N": args.N})
            writer.add(key, {c: getattr(r, c) for c in cols})
            print(f"standalone {i + 1}/{len(archs)} {key}: valid {r.valid_acc:.4f} "
                  f"test {r.test_acc:.4f} ({r.seconds:.1f}s)", flush=True)
        gt = writer.table().select(keys)
    times[f"stand-alone training ({len(archs)} archs)"] = time.perf_counter() - t0
    times["stand-alone training (sum of per-arch seconds)"] = float(gt.column("seconds").sum())

    taus: dict[str, dict[str, float]] = {}
    for target in ("valid_acc", "test_acc"):
        y = gt.column(target)
        for name in weak:
            for col in ("ws_acc", "ws_neg_loss"):
                taus.setdefault(f"{name} {col}", {})[target] = float(
                    kendalltau(weak[name][col], y).statistic)
        for col in ("flops", "params"):
            taus.setdefault(f"(reference) {col}", {})[target] = float(
                kendalltau(weak["uniform"][col], y).statistic)

    summary = {"args": vars(args), "n_train": len(data.train), "n_valid": len(data.valid),
               "n_test": len(data.test), "input_shape": list(data.input_shape),
               "times_s": times, "throughput": throughput, "kendall_tau": taus,
               "standalone_valid_acc": {"min": float(gt.column("valid_acc").min()),
                                        "median": float(np.median(gt.column("valid_acc"))),
                                        "max": float(gt.column("valid_acc").max())},
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
               "loadavg_end": os.getloadavg()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
