"""Few-shot supernets vs SPOS: Kendall tau of ``ws_acc`` against a stand-alone ground truth.

For every supernet seed this runs, side by side in one process (issue 14's tau benchmark):

* ``spos``: the SPOS baseline at the budget, exactly ``bench_strategies.py``'s ``spos`` run
  (uniform single path, cross-entropy, ``--budget-epochs`` epochs, checkpointed);
* ``fs_b2_d1``, ``fs_b5_d1``, ``fs_b2_d2``: few-shot at **equal cost** (``--warmup-epochs`` of
  restricted training on the parent before each split + every leaf's training = the SPOS budget
  in path-images; the epoch plan is in :data:`PLANS`);
* ``fs_b2_d1_paper``: b = 2 at the **paper's cost** (each leaf trained further from the warmed
  parent for the *whole* SPOS budget, as few-shot NAS fine-tunes each sub-supernet; total =
  ``(warm-up + b * budget) / budget`` times SPOS, 35/15 = 2.33 with the defaults).

Split metric: gradient matching (``gm``, the default of ``nasrank fewshot`` and of
:func:`nasrank.supernet.fewshot.build_tree`'s GM-NAS edge selection): cosine of the shared
weights' gradients with each op alone on an edge, ``--paths`` sampled paths on
``--metric-batches`` training batches of 64, minimum balanced b-way cut, the edge with the
smallest cut is split. ``--metrics`` adds the zero-cost split metrics of
:data:`nasrank.supernet.fewshot.PROXY_METRICS` (each op scored by the proxy's mean over the
sampled paths on the first batch; ops with close scores grouped), each run once per metric,
all sharing the seed's root warm-up. The split metric runs on the *warmed* parent
(``--warmup-epochs`` epochs from the SPOS seed's initial weights); the leaves **inherit** their parent's warmed
weights and continue (restricted uniform sampling, new cosine schedule at ``--lr``), so the
warm-up is not wasted at equal cost. All few-shot runs of one seed share the root warm-up
(and so the root split); at depth 2 each depth-1 node is warmed for ``--warmup-epochs-d1``
more epochs before its own split. The split metric's own forward/backward passes are reported
(``metric_path_images``) but not counted in the budget.

Each architecture's weak label comes from the leaf that contains it
(:func:`~nasrank.supernet.fewshot.fewshot_weak_labels`, the same ``generate_weak_labels`` call
as :func:`~nasrank.search.evaluate.weak_labels_for_truth`: BN recalibrated on ``--bn-batches``
batches, validation split of the truth's recipe); Kendall tau and its bootstrap interval from
:func:`~nasrank.search.evaluate.supernet_eval`.

Results are JSON lines in ``--out/results.jsonl`` (one per finished run and seed; a rerun skips
them and resumes unfinished trainings from their checkpoints); CPU seconds are the process time
of the pieces of that run (training, split metric with any depth-1 warm-up, weak labels; the
shared root warm-up is charged to every few-shot run of the seed; a piece resumed after a kill
counts only its part after the resume, except trainings, whose first call's time is kept). Runs are done in
the order of ``--order`` (all seeds of a run before the next run), so a run cut by the deadline
is the least important. Prints a markdown table at the end (``--summarise-only``: just that).

    nice -n 10 .venv/bin/python benchmarks/bench_fewshot_tau.py \\
        --groundtruth benchmarks/data/nb201_fmnist_gt.csv --root ../shared/data/fashion-mnist \\
        --seeds 0 1 2 --out /work/bench_runs/fewshot_tau
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_strategies import _metrics  # noqa: E402
from nasrank.search.evaluate import supernet_eval, weak_labels_for_truth  # noqa: E402
from nasrank.search.groundtruth import Recipe, load_recipe_data, read_groundtruth  # noqa: E402
from nasrank.spaces import get_space  # noqa: E402
from nasrank.supernet.fewshot import (METRICS, ConstantPolicy, FewShotSupernet,  # noqa: E402
                                      Node, RestrictedUniformSampler, build_tree,
                                      fewshot_weak_labels, full_allowed)
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS  # noqa: E402
from nasrank.supernet.train import epoch_order, get_batch  # noqa: E402
from nasrank.supernet.trainer import train_supernet  # noqa: E402

#: every run, in the order of the table (epochs of each: plan())
RUNS = ("spos", "fs_b2_d1", "fs_b2_d1_paper", "fs_b5_d1", "fs_b2_d2")


def plan(run: str, budget: int, w0: int, w1: int) -> dict[str, Any]:
    """Epochs of a few-shot run: ``b``, ``depth``, root warm-up ``w0``, depth-1 warm-up ``w1``,
    ``leaf`` epochs; equal cost means ``w0 + (b * w1 if depth 2) + leaves * leaf == budget``."""
    if run == "fs_b2_d1":
        b, depth, leaf = 2, 1, (budget - w0) / 2
    elif run == "fs_b5_d1":
        b, depth, leaf = 5, 1, (budget - w0) / 5
    elif run == "fs_b2_d2":
        b, depth, leaf = 2, 2, (budget - w0 - 2 * w1) / 4
    elif run == "fs_b2_d1_paper":
        b, depth, leaf = 2, 1, budget
    else:
        raise SystemExit(f"unknown run {run!r}")
    if leaf != int(leaf) or leaf < 1:
        raise SystemExit(f"{run}: budget {budget}, warm-up {w0}/{w1} leave {leaf} epochs per "
                         f"leaf; pick warm-ups that leave whole epochs")
    epochs = w0 + (b * w1 if depth == 2 else 0) + b ** depth * int(leaf)
    return {"b": b, "depth": depth, "w0": w0, "w1": w1 if depth == 2 else 0,
            "leaf": int(leaf), "total_epochs": epochs, "times_spos": epochs / budget}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groundtruth", required=True)
    p.add_argument("--root", default=None, help="dataset folder of the table's recipe")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--order", nargs="+", default=["spos", "fs_b2_d1", "fs_b2_d1_paper",
                                                  "fs_b5_d1", "fs_b2_d2"],
                   help=f"runs in the order to do them, from {list(RUNS)}")
    p.add_argument("--budget-epochs", type=int, default=15)
    p.add_argument("--warmup-epochs", type=int, default=5, help="root warm-up (shared)")
    p.add_argument("--warmup-epochs-d1", type=int, default=1, help="depth-1 warm-up (depth 2)")
    p.add_argument("--metrics", nargs="+", default=["gm"], choices=METRICS,
                   help="split metrics; every few-shot run of --order runs once per metric")
    p.add_argument("--paths", type=int, default=4, help="sampled paths of the split metric")
    p.add_argument("--metric-batches", type=int, default=1, help="batches of 64 for gm")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--bn-batches", type=int, default=8)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--deadline", default=None, help="UTC 'HH:MM' (today): start no run-seed that "
                   "would likely end after it (its expected wall time: see _late)")
    p.add_argument("--summarise-only", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    done = _read(results_path)
    if args.summarise_only:
        print(markdown(done, args.budget_epochs))
        return done
    torch.set_num_threads(args.threads)
    truth = read_groundtruth(args.groundtruth)
    recipe = Recipe(**truth.recipe)
    data = load_recipe_data(recipe, args.root)
    space = get_space(truth.space)
    net_opts = {"channels": recipe.width or 8, "cells": recipe.cells or 1}
    n_train = len(data.train)
    spe = n_train // args.batch_size
    budget_pi = args.budget_epochs * spe * args.batch_size
    archs = [space.parse(k) for k in truth.archs]
    bs, dev = args.batch_size, args.device

    def make(seed: int):
        return SUPERNETS.make(truth.space, net_opts).build(
            space, num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed)

    def judge(labels) -> dict[str, float]:
        return _metrics(supernet_eval(truth, labels, "ws_acc", n_boot=args.n_boot, seed=seed,
                                      plot=False))

    jobs = [(run, m) for run in args.order for m in (["gm"] if run == "spos" else args.metrics)]
    for run, metric in jobs:
        for seed in args.seeds:
            if any(r["run"] == run and r["seed"] == seed and r.get("metric", "gm") == metric
                   for r in done):
                continue
            if args.deadline and _late(args.deadline, run, done):
                print(f"{run} seed {seed} not started: it would not end by {args.deadline} UTC",
                      flush=True)
                continue
            t0 = time.perf_counter()
            where = out / f"s{seed}"
            if run == "spos":
                net = make(seed)
                sampler = SAMPLERS.make("uniform", {}).build(net)
                stats, ct = _cpu_memo(where / "spos", lambda: train_supernet(
                    net, data, sampler, strategy=STEP_STRATEGIES.make("ce", {}).build(net),
                    epochs=args.budget_epochs, batch_size=bs, lr=args.lr, seed=seed,
                    device=dev, checkpoint_dir=where / "spos", progress=False))
                c1 = time.process_time()
                labels = weak_labels_for_truth(truth, net, where / "spos" / "labels.csv",
                                               data=data, bn_batches=args.bn_batches,
                                               device=dev, seed=seed, batch_size=bs)
                rec = {"epochs": args.budget_epochs, "path_images": stats.steps * bs,
                       "train_cpu_s": ct, "label_cpu_s": time.process_time() - c1,
                       "leaves": 1}
            else:
                pl = plan(run, args.budget_epochs, args.warmup_epochs, args.warmup_epochs_d1)
                rec = fewshot(run, pl, seed, make, data, archs, where, args, bs, dev, metric)
                labels = rec.pop("labels")
            rec.update(run=run, seed=seed, metric=metric, budget_path_images=budget_pi,
                       budget_ratio=rec["path_images"] / budget_pi,
                       cpu_s=rec["train_cpu_s"] + rec.get("tree_cpu_s", 0.0) + rec["label_cpu_s"],
                       wall_s=time.perf_counter() - t0, **judge(labels))
            done.append(rec)
            with results_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{run} ({metric}) seed {seed}: tau {rec['kendall_tau']:.4f} "
                  f"[{rec['tau_low']:.3f}, "
                  f"{rec['tau_high']:.3f}] x{rec['budget_ratio']:.2f} SPOS, cpu "
                  f"{rec['cpu_s']:.0f} s, wall {rec['wall_s']:.0f} s "
                  f"({time.strftime('%H:%M:%S', time.gmtime())} UTC)", flush=True)
    print(markdown(done, args.budget_epochs))
    return done


def _late(deadline: str, run: str, done: list[dict]) -> bool:
    """Whether a run started now would likely end after ``deadline`` (UTC ``HH:MM`` today): its
    expected wall time is the longest finished seed of the same run (else of any run; the paper
    run counts double, as it trains twice as long)."""
    now = time.gmtime()
    h, m = (int(v) for v in deadline.split(":"))
    left = (h * 3600 + m * 60) - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    same = [r["wall_s"] for r in done if r["run"] == run]
    expect = max(same) if same else max((r["wall_s"] for r in done), default=0.0)
    if not same and run == "fs_b2_d1_paper":
        expect *= 1.3
    return expect > left


def _train(net, allowed, data, epochs: int, seed: int, where: Path, args, bs: int, dev: str):
    """Restricted uniform training of ``net`` in place (checkpointed, resumable)."""
    stats = train_supernet(net, data, RestrictedUniformSampler(net, allowed), epochs=epochs,
                           batch_size=bs, lr=args.lr, seed=seed, device=dev,
                           checkpoint_dir=where, progress=False)
    return stats.steps * bs


def _cpu_memo(where: Path, fn) -> tuple[Any, float]:
    """``fn()`` and its CPU seconds; the seconds of a first call are remembered in
    ``where/cpu.json`` so a resumed (or shared) piece reports what it cost when it ran."""
    c0 = time.process_time()
    value = fn()
    c = time.process_time() - c0
    memo = where / "cpu.json"
    if memo.exists():
        c = max(c, json.loads(memo.read_text())["cpu_s"])
    else:
        where.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"cpu_s": c}))
    return value, c


def fewshot(run: str, pl: dict, seed: int, make, data, archs, where: Path, args, bs: int,
            dev: str, metric: str = "gm") -> dict[str, Any]:
    """Train one few-shot setting of ``seed`` split by ``metric`` (module docstring); the weak
    labels in ``labels``. Every metric shares the seed's root warm-up; a metric other than
    ``gm`` keeps its tree and leaves under names of its own."""
    root_dir = where / f"root_w{pl['w0']}"
    root = make(seed)
    full = full_allowed(root)
    # shared root warm-up (its CPU seconds are charged to every few-shot run of the seed)
    root_pi, root_cpu = _cpu_memo(root_dir / "warmup", lambda: _train(
        root, full, data, pl["w0"], seed, root_dir / "warmup", args, bs, dev))
    order = epoch_order(len(data.train), seed, 0)
    batches = [get_batch(data.train, order[i * bs:(i + 1) * bs], dev)
               for i in range(args.metric_batches)]
    warmed: dict[Any, torch.nn.Module] = {full: root}
    warm_pi = [root_pi]

    def warm_d1(net, allowed):  # build_tree hands a copy of the parent: warm depth-1 nodes
        if allowed == full:
            return
        k = len(warmed)
        warm_pi.append(_train(net, allowed, data, pl["w1"], seed + 100 * k,
                              run_dir / f"warm_{k}", args, bs, dev))
        warmed[allowed] = net

    tag = "" if metric == "gm" else f"_{metric}"
    run_dir = where / f"{run}{tag}"
    tree_path = run_dir / "tree.json"
    n_edges = len(full)
    if pl["depth"] == 1:
        # the root split of b is the same for the equal-cost and the paper run
        tree_path = where / f"tree_b{pl['b']}_d1_w{pl['w0']}{tag}.json"
    c0 = time.process_time()
    if tree_path.exists() and pl["depth"] == 1:
        tree = Node.from_dict(json.loads(tree_path.read_text())["tree"])
        tree_cpu = json.loads(tree_path.read_text())["cpu_s"]
    else:
        # depth 2 rebuilds its tree on resume (the warm-ups resume from their checkpoints)
        tree = build_tree(root, ConstantPolicy(pl["depth"], pl["b"]), metric, batches,
                          paths=args.paths, seed=seed, device=dev,
                          warmup=warm_d1 if pl["depth"] == 2 else None)
        tree_cpu = time.process_time() - c0
        tree_path.parent.mkdir(parents=True, exist_ok=True)
        tree_path.write_text(json.dumps({"tree": tree.to_dict(), "cpu_s": tree_cpu}))
    # one scored path per (edge, op, path, batch) at every split node: gm's fwd/bwd on each of
    # --metric-batches batches, a zero-cost metric's passes on the first batch
    metric_pi = 0
    metric_batches = args.metric_batches if metric == "gm" else 1

    def count(node: Node, done: frozenset) -> None:
        nonlocal metric_pi
        if node.split is None:
            return
        metric_pi += sum(len(a) for d, a in enumerate(node.allowed)
                         if d not in done and len(a) >= pl["b"]) * args.paths * \
            metric_batches * bs
        for c in node.children:
            count(c, done | {node.split.decision})

    count(tree, frozenset())
    leaves = [lf.allowed for lf in tree.leaves()]
    nets, leaf_pi, leaf_cpu = [], 0, 0.0
    for k, lf in enumerate(leaves):
        parent = warmed[full] if pl["depth"] == 1 else next(
            v for a, v in warmed.items() if a != full and all(set(x) >= set(y)
                                                              for x, y in zip(a, lf)))
        net = copy.deepcopy(parent)
        pi, c = _cpu_memo(run_dir / f"leaf_{k}", lambda net=net, lf=lf, k=k: _train(
            net, lf, data, pl["leaf"], seed + 1000 * (k + 1), run_dir / f"leaf_{k}", args, bs,
            dev))
        nets.append(net)
        leaf_pi += pi
        leaf_cpu += c
    c0 = time.process_time()
    fs = FewShotSupernet(leaves, nets)
    labels = fewshot_weak_labels(fs, archs, data, run_dir / "labels", bn_batches=args.bn_batches,
                                 batch_size=bs, device=dev, seed=seed, progress=False)
    label_cpu = time.process_time() - c0
    path_images = sum(warm_pi) + leaf_pi
    return {"labels": labels, **pl, "leaves": len(leaves),
            "splits": [{"decision": s.decision, "groups": [list(g) for g in s.groups]}
                       for d in range(pl["depth"]) for s in tree.splits_at(d)],
            "archs_per_leaf": [sum(fs.leaf_index(a) == k for a in archs)
                               for k in range(len(leaves))],
            "path_images": path_images, "metric_path_images": metric_pi,
            "train_cpu_s": root_cpu + leaf_cpu, "tree_cpu_s": tree_cpu, "label_cpu_s": label_cpu,
            "n_edges": n_edges}


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


NAMES = {"spos": "SPOS (uniform, CE)",
         "fs_b2_d1": "few-shot b = 2, depth 1, equal cost",
         "fs_b5_d1": "few-shot b = 5, depth 1, equal cost",
         "fs_b2_d2": "few-shot b = 2, depth 2 (4 leaves), equal cost",
         "fs_b2_d1_paper": "few-shot b = 2, depth 1, paper cost"}


def markdown(results: list[dict], budget_epochs: int) -> str:
    lines = ["| run | epochs (warm-up + leaves) | Kendall tau per seed | mean ± std | "
             "95% interval (mean over seeds) | path-images / SPOS | "
             "split-metric path-images / SPOS | "
             "CPU s per seed (mean) |", "|---|---|---|---|---|---|---|---|"]
    metrics = list(dict.fromkeys(r.get("metric", "gm") for r in results))
    for run, metric in [(run, m) for run in RUNS for m in metrics]:
        rs = sorted((r for r in results if r["run"] == run and r.get("metric", "gm") == metric),
                    key=lambda r: r["seed"])
        if not rs:
            continue
        taus = np.array([r["kendall_tau"] for r in rs])
        std = f"{taus.std(ddof=1):.3f}" if len(taus) > 1 else "—"
        r0 = rs[0]
        if run == "spos":
            ep = f"{budget_epochs}"
        elif r0["depth"] == 1:
            ep = f"{r0['w0']} + {r0['b']} x {r0['leaf']}"
        else:
            ep = f"{r0['w0']} + {r0['b']} x {r0['w1']} + {r0['b'] ** 2} x {r0['leaf']}"
        per = ", ".join(f"{r['kendall_tau']:.3f} (s{r['seed']})" for r in rs)
        gm = np.mean([r.get("metric_path_images", 0) / r["budget_path_images"] for r in rs])
        name = NAMES[run] if run == "spos" else f"{NAMES[run]}, {metric}"
        lines.append(
            f"| {name} | {ep} | {per} | {taus.mean():.3f} ± {std} | "
            f"[{np.mean([r['tau_low'] for r in rs]):.3f}, "
            f"{np.mean([r['tau_high'] for r in rs]):.3f}] | "
            f"{np.mean([r['budget_ratio'] for r in rs]):.3f} | {gm:.3f} | "
            f"{np.mean([r['cpu_s'] for r in rs]):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
