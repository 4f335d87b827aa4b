"""Baselines of supernet evaluation on a ground-truth table: how well SPOS and FairNAS supernets
and zero-cost proxies rank the table's architectures, at one fixed supernet training budget.

For each sampler (``uniform`` = SPOS, ``fair`` = FairNAS strict fairness) and supernet seed, a
supernet of the ground truth's own network size is trained on the truth's own data (same
training subset, batch size, lr, momentum, weight decay, cosine schedule) for ``--budget``
stand-alone-training equivalents: ``budget x epochs`` passes over the training subset, one path
per batch, i.e. as many path-images as ``budget`` stand-alone trainings. FairNAS visits its
paths on separate batches (``same_batch=False``: a step of k paths takes k batches), so both
samplers see exactly the same path-images. The supernet then labels the truth's fully trained
archs (BatchNorm recalibrated per arch, the truth's validation split): ``ws_acc`` and
``ws_neg_loss``. Zero-cost proxies score the same archs at initialisation (one training batch),
``params``/``flops`` come from the space's exact cost. Every column is judged with
:func:`nasrank.search.evaluate.evaluate_scores` against the seed-averaged ground truth.

Output (``--out``): one folder per supernet (checkpoint, weak labels; rerunning resumes),
``proxies.csv``, ``results.json`` and ``results.md`` (mean +- std over supernet seeds, and the
mean of the per-seed bootstrap 95 % intervals).

    python benchmarks/bench_supernet_eval.py --truth benchmarks/data/nb201_fmnist_gt.csv \\
        --data-root ../shared/data/fashion-mnist --out /tmp/bench_se_nb201 --budget 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from nasrank.search.evaluate import align, evaluate_scores
from nasrank.search.groundtruth import Recipe, load_recipe_data, read_groundtruth
from nasrank.spaces import get_space
from nasrank.spaces.labels import LabelTable

METRICS = ("kendall_tau", "spearman", "pearson", "precision@10%", "regret@1", "regret@5")


def build_supernet(recipe: Recipe, data, seed: int):
    from nasrank.supernet.registry import SUPERNETS

    space = get_space(recipe.space)
    opts = {}
    if recipe.space == "nb201":
        kw = recipe.build_kwargs()
        opts = {"channels": kw.get("C", 16), "cells": kw.get("N", 5)}
    cfg = SUPERNETS.make(recipe.space, opts)
    return cfg.build(space, num_classes=data.num_classes, in_channels=data.input_shape[0],
                     seed=seed)


def train_and_label(recipe: Recipe, data, keys: list[str], sampler: str, seed: int,
                    budget: int, folder: Path, *, bn_batches: int, device: str,
                    eval_batches: int | None = None) -> tuple:
    from nasrank.supernet.registry import SAMPLERS
    from nasrank.supernet.trainer import train_supernet
    from nasrank.supernet.weak_labels import generate_weak_labels

    sn = build_supernet(recipe, data, seed)
    smp = SAMPLERS.make(sampler).build(sn)
    c0 = time.process_time()
    stats = train_supernet(sn, data, smp, epochs=budget * recipe.epochs,
                           batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, device=device, seed=seed,
                           checkpoint_dir=folder, progress=False,
                           same_batch=(sampler == "uniform"))
    c1 = time.process_time()
    archs = [sn.space.parse(k) for k in keys]
    table = generate_weak_labels(sn, archs, data, folder / "weak_labels.csv",
                                 bn_batches=bn_batches, eval_batches=eval_batches,
                                 batch_size=128, device=device,
                                 seed=seed, progress=False)
    c2 = time.process_time()
    return table, {"train_cpu_s": c1 - c0, "label_cpu_s": c2 - c1, "steps": stats.steps,
                   "path_images": stats.path_images, "last_loss": stats.last_loss}


def proxy_table(recipe: Recipe, data, keys: list[str], proxies: list[str], out: Path,
                device: str) -> LabelTable:
    from nasrank.supernet.scoring import score_space
    from nasrank.supernet.train import epoch_order, get_batch

    space = get_space(recipe.space)
    archs = [space.parse(k) for k in keys]
    idx = epoch_order(len(data.train), 0, 0)[:recipe.batch_size]
    batch = get_batch(data.train, idx, "cpu")
    table = score_space(space, archs, batch, proxies, out, device=device, seed=0,
                        num_classes=data.num_classes, build_kwargs={
                            **recipe.build_kwargs(), "in_channels": data.input_shape[0]},
                        progress=False)
    cost = {"flops": [], "params": []}
    for a in archs:
        kw = {"num_classes": data.num_classes, **recipe.build_kwargs()} \
            if recipe.space == "nb201" else {}
        f, p = space.cost(a, data.input_shape, **kw)
        cost["flops"].append(f)
        cost["params"].append(p)
    cols = {f"zc_{p}": table.select(keys).column(f"zc_{p}") for p in proxies}
    return LabelTable(keys, {**cols, **cost}, space=recipe.space)


def summarize(results: list[dict]) -> dict:
    """mean/std over seeds of each metric value, mean of the per-seed interval ends."""
    out = {}
    for m in (*METRICS, "tau_over_ceiling"):
        vals = np.array([r["metrics"][m]["value"] if m != "tau_over_ceiling"
                         else r["tau_over_ceiling"] for r in results])
        lows = np.array([r["metrics"][m]["low"] if m != "tau_over_ceiling"
                         else r["bootstrap"]["tau_over_ceiling"]["low"] for r in results])
        highs = np.array([r["metrics"][m]["high"] if m != "tau_over_ceiling"
                          else r["bootstrap"]["tau_over_ceiling"]["high"] for r in results])
        out[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1
                  else 0.0, "low": float(lows.mean()), "high": float(highs.mean()),
                  "per_seed": vals.tolist()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=int, default=10,
                    help="supernet training budget in stand-alone-training equivalents")
    ap.add_argument("--samplers", default="uniform,fair")
    ap.add_argument("--supernet-seeds", default="0,1,2")
    ap.add_argument("--proxies", default="synflow,nwot,jacob_cov,snip")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--bn-batches", type=int, default=4)
    ap.add_argument("--eval-batches", type=int, default=None,
                    help="label on the first N validation batches of 128 (default: all)")
    ap.add_argument("--archs", type=int, default=None,
                    help="judge on the first N archs of the truth's list (a uniform sample; "
                         "all of them must be trained); default: every fully trained arch")
    ap.add_argument("--metric", default="valid_acc")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gt = read_groundtruth(args.truth)
    recipe = Recipe(**gt.recipe)
    data = load_recipe_data(recipe, args.data_root)
    keys, _ = gt.mean(args.metric)
    if args.archs is not None:
        first = gt.archs[:args.archs]
        missing = [k for k in first if k not in set(keys)]
        if missing:
            raise SystemExit(f"{len(missing)} of the first {args.archs} archs are not trained on "
                             f"every seed yet (first: {missing[0]})")
        keys = first
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(keys)} fully trained archs of {gt.path} ({recipe.space}); budget "
          f"{args.budget} stand-alone trainings per supernet", flush=True)

    def judge(table: LabelTable, column: str) -> dict:
        # a proxy undefined for a network (jacob_cov of the all-none cell) ranks it last; the
        # count is reported (nan_as_worst), nothing is dropped
        al = align(gt, table, column, metric=args.metric, nan_policy="worst")
        return evaluate_scores(al, column=column, truth_metric=args.metric,
                               n_boot=args.bootstrap, seed=0).to_dict()

    report: dict = {"truth": str(args.truth), "space": recipe.space, "archs": len(keys),
                    "seeds": len(gt.seeds), "budget_standalone_equivalents": args.budget,
                    "recipe": gt.recipe, "rows": {}, "costs": {}}
    proxies = [p for p in args.proxies.split(",") if p]
    c0 = time.process_time()
    ptable = proxy_table(recipe, data, keys, proxies, out / "proxies.csv", args.device)
    report["costs"]["proxies_cpu_s"] = time.process_time() - c0
    for col in [*(f"zc_{p}" for p in proxies), "params", "flops"]:
        r = judge(ptable, col)
        report["rows"][col] = {"n_seeds": 1, **summarize([r])}
        report["noise_ceiling"] = r["noise_ceiling"]
        print(f"{col:<14} tau {r['metrics']['kendall_tau']['value']:.3f}", flush=True)

    samplers = [s for s in args.samplers.split(",") if s]
    per_col: dict[tuple[str, str], list] = {(s, c): [] for s in samplers
                                            for c in ("ws_acc", "ws_neg_loss")}
    for seed in [int(s) for s in args.supernet_seeds.split(",") if s]:
        for sampler in samplers:  # seeds outer: every sampler has a seed before any has two
            folder = out / f"{sampler}-seed{seed}"
            table, cost = train_and_label(recipe, data, keys, sampler, seed, args.budget, folder,
                                          bn_batches=args.bn_batches, device=args.device,
                                          eval_batches=args.eval_batches)
            report["costs"][f"{sampler}-seed{seed}"] = cost
            for col in ("ws_acc", "ws_neg_loss"):
                per_col[(sampler, col)].append(judge(table, col))
            print(f"{sampler} seed {seed}: ws_acc tau "
                  f"{per_col[(sampler, 'ws_acc')][-1]['metrics']['kendall_tau']['value']:.3f} "
                  f"({cost['train_cpu_s']:.0f} + {cost['label_cpu_s']:.0f} cpu s)", flush=True)
            for (smp, col), rs in per_col.items():
                if rs:
                    name = {"uniform": "SPOS", "fair": "FairNAS"}.get(smp, smp)
                    report["rows"][f"{name} {col}"] = {"n_seeds": len(rs), **summarize(rs)}
            write_report(report, out, len(keys))
    write_report(report, out, len(keys))


def write_report(report: dict, out: Path, n_archs: int) -> None:
    """results.json and results.md (rewritten after every supernet, so a stopped run leaves the
    rows it finished)."""
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["| score | seeds | Kendall tau | Spearman | Pearson | P@10% | regret@1 | regret@5 "
             "| tau/ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        cells = [f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f} [{row[m]['low']:.3f}, "
                 f"{row[m]['high']:.3f}]" if row["n_seeds"] > 1 else
                 f"{row[m]['mean']:.3f} [{row[m]['low']:.3f}, {row[m]['high']:.3f}]"
                 for m in (*METRICS, "tau_over_ceiling")]
        lines.append(f"| {name} | {row['n_seeds']} | " + " | ".join(cells) + " |")
    c = report["noise_ceiling"]
    lines.append(f"\nnoise ceiling (Kendall tau between training seeds): {c['value']:.3f} "
                 f"[{c['low']:.3f}, {c['high']:.3f}] over {n_archs} archs")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
