"""EnNAS on NB201: ensemble-teacher vs student accuracy (diversity vs uniform sampling), and
Kendall tau of the weak labels against a stand-alone ground truth (vs SPOS at equal budget).

Runs, each a supernet trained from the same initial weights and data order:

* ``ennas_diversity``: :class:`DiversitySampler` (``m`` paths, diversity refreshed every epoch)
  + :class:`EnsembleKDStrategy`;
* ``ennas_uniform``: ``m`` uniform paths + the same ensemble distillation;
* ``ennas_fair``: ``m`` paths of the strict-fair sampler (``arch_batch = m``: no op twice on an
  edge while ``m`` <= its ops) + the same ensemble distillation;
* ``spos``: one uniform path per step, cross-entropy, for ``m`` times the epochs (the same
  number of path-images as the EnNAS runs; EnNAS also pays the teacher's weight solve).

Per epoch it records the ensemble teacher's and the mean student's accuracy on that epoch's
training batches (from the strategy's counters). With ``--groundtruth`` (a table of
``search/groundtruth.py``; its recipe gives the dataset and network size) each trained supernet
labels the table's architectures (``ws_acc``, BN recalibrated per arch) and Kendall tau against
the seed-mean validation accuracy is reported with the table's noise ceiling. Checkpoints and
label tables live under ``--out``: a killed run resumes with the same command.

    nice -n 10 .venv/bin/python benchmarks/bench_ennas.py --out /tmp/bench_ennas \
        [--groundtruth benchmarks/data/nb201_gt.csv --root ../shared/data/fashion-mnist]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.supernet.base import StepStrategy, StrictFairSampler, UniformSampler  # noqa: E402
from nasrank.supernet.datasets import load_dataset  # noqa: E402
from nasrank.supernet.ennas import DiversitySampler, EnsembleKDStrategy  # noqa: E402
from nasrank.supernet.nb201_supernet import NB201Supernet  # noqa: E402
from nasrank.supernet.trainer import train_supernet  # noqa: E402
from nasrank.supernet.weak_labels import generate_weak_labels  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                         / "fashion-mnist"))
    p.add_argument("--subset", type=int, default=5000)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--m", type=int, default=4, help="paths per EnNAS step (ensemble size)")
    p.add_argument("--tau", type=float, default=1.0, help="distillation temperature")
    p.add_argument("--epochs", type=int, default=10, help="EnNAS epochs (SPOS gets m times)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--runs", nargs="+", default=["ennas_diversity", "ennas_uniform", "spos"])
    p.add_argument("--groundtruth", default=None, help="ground-truth table (optional)")
    p.add_argument("--bn-batches", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = None
    C, N = args.C, args.N
    if args.groundtruth:
        from nasrank.search.groundtruth import load_recipe_data, noise_ceiling, read_groundtruth

        truth = read_groundtruth(args.groundtruth)
        from nasrank.search.groundtruth import Recipe

        recipe = Recipe(**truth.recipe) if isinstance(truth.recipe, dict) else truth.recipe
        data = load_recipe_data(recipe, None if recipe.dataset == "digits" else args.root)
        C, N = recipe.width or C, recipe.cells or N
    else:
        data = load_dataset(args.dataset, None if args.dataset == "digits" else args.root,
                            seed=0, subset=args.subset, image_size=args.image_size, channels=3)
    report: dict = {"args": vars(args), "C": C, "N": N, "runs": {}}
    if truth is not None:
        keys, gt = truth.mean("valid_acc")
        report["groundtruth"] = {"archs": len(keys), "noise_ceiling": noise_ceiling(truth)}

    for run in args.runs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            net = NB201Supernet(data.num_classes, C=C, N=N, in_channels=data.input_shape[0])
        epochs = args.epochs
        if run == "ennas_diversity":
            sampler = DiversitySampler(net, args.m, seed=args.seed)  # refreshed every epoch
            strategy: StepStrategy = EnsembleKDStrategy(args.tau)
        elif run == "ennas_uniform":
            sampler, strategy = UniformSampler(net, args.m), EnsembleKDStrategy(args.tau)
        elif run == "ennas_fair":
            sampler = StrictFairSampler(net, arch_batch=args.m)
            strategy = EnsembleKDStrategy(args.tau)
        elif run == "spos":
            sampler, strategy, epochs = UniformSampler(net, 1), StepStrategy(), args.m * args.epochs
        else:
            raise SystemExit(f"unknown run {run!r}")
        # cumulative strategy counters per epoch, kept on disk so a resumed run's curve is whole
        curve_path = out / f"{run}_curve.jsonl"
        curve = [json.loads(line) for line in curve_path.read_text().splitlines()] \
            if curve_path.exists() else []

        def on_epoch_end(epoch: int, strategy=strategy, curve=curve, path=curve_path) -> None:
            if isinstance(strategy, EnsembleKDStrategy):
                s = dict(strategy.stats)
                last = curve[-1]["cumulative"] if curve else {k: 0 for k in s}
                d = {k: s[k] - last[k] for k in s}
                curve.append({"epoch": epoch + 1, "cumulative": s,
                              "teacher_acc": d["teacher_correct"] / max(d["images"], 1),
                              "student_acc": d["student_correct"] / max(d["students"], 1)})
                with open(path, "a") as f:
                    f.write(json.dumps(curve[-1]) + "\n")
                print(f"{run} epoch {epoch + 1}: teacher {curve[-1]['teacher_acc']:.4f} "
                      f"students {curve[-1]['student_acc']:.4f}", flush=True)

        t0 = time.perf_counter()
        stats = train_supernet(net, data, sampler, strategy=strategy, epochs=epochs,
                               batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               checkpoint_dir=out / run, progress=False,
                               on_epoch_end=on_epoch_end)
        entry = {"seconds": stats.seconds, "path_images": stats.path_images,
                 "epochs": stats.epochs, "curve": curve}
        if truth is not None:
            table = generate_weak_labels(net, keys, data, out / f"{run}_labels.csv",
                                         bn_batches=args.bn_batches, batch_size=args.batch_size,
                                         seed=args.seed, progress=False)
            ws = np.array([table.row(k)["ws_acc"] for k in keys])
            entry["kendall_tau"] = float(kendalltau(ws, gt)[0])
        entry["wall_seconds_this_call"] = time.perf_counter() - t0
        report["runs"][run] = entry
        (out / "summary.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({r: {k: v for k, v in e.items() if k != "curve"}
                      for r, e in report["runs"].items()}, indent=1))
    return report


if __name__ == "__main__":
    main()
