"""Supernet training strategies of NCS and RD-NAS against a stand-alone ground truth, at the SPOS
baseline's budget: Kendall tau (bootstrap 95% interval) of ``ws_acc`` over the table's archs.

Every run trains one supernet per ``--seeds`` seed (same initial weights and data order across
runs for one seed), labels the ground truth's architectures (BatchNorm recalibrated per arch,
:func:`nasrank.search.evaluate.weak_labels_for_truth`) and evaluates them with
:func:`nasrank.search.evaluate.supernet_eval` (tau, interval, noise ceiling). The budget is
counted in path-images: SPOS (one uniform path per batch, cross-entropy) trains
``--budget-epochs`` epochs; a run that runs ``p`` paths per consumed batch (teacher and sandwich
paths included) trains ``round(budget_epochs / p)`` epochs (at least 1), and its real
path-images are reported next to SPOS's. ``proxy:<name>`` runs train nothing: the zero-cost
teacher's score (the RD-NAS teacher alone) on the same archs.

Runs (``--runs``; the catalog depends on the table's space, ``--list`` prints it):

* both spaces: ``spos``, ``fairnas`` (fair, default n; both with the supernet's default
  sharing, as the baselines), ``running_teacher``, ``fixed_teacher`` (warm-up = a quarter of
  the epochs), ``rdnas``, ``rdnas_u1`` / ``rdnas_u1_rank`` (one uniform SPOS path per step
  before the pair; the pair learns CE + ranking / ranking only), ``proxy:<teacher proxy>`` (with several teacher proxies also
  ``proxy:<p1>+<p2>``, their rank average: the teacher RD-NAS distils);
* CVPR 2021 channel space (NCS's ablations, other factors at the paper's best sharing):
  ``spos_ncs_sharing``,
  ``share_<layer>_<scheme>`` (conv/bn/fc x full/front/end/independent), ``uniform_n<k>`` and
  ``fair_n<k>`` (k in 1, 4, 9, 18), ``fair_n18_diffbatch`` (each arch on its own batch),
  ``naive_n18`` / ``fixed_n18`` / ``running_n18`` and ``ncs_best``.

Everything is resumable (checkpoints and label tables under ``--out``); rerun the same command
after a kill. Writes ``summary.json`` and prints a markdown table.

    nice -n 10 .venv/bin/python benchmarks/bench_strategies.py \\
        --groundtruth benchmarks/data/nb201_gt.csv --root ../shared/data/fashion-mnist \\
        --budget-epochs 30 --seeds 0 1 2 --out /tmp/bench_strategies
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.spaces import get_space  # noqa: E402
from nasrank.spaces.labels import LabelTable  # noqa: E402
from nasrank.search.evaluate import supernet_eval, weak_labels_for_truth  # noqa: E402
from nasrank.search.groundtruth import Recipe, load_recipe_data, read_groundtruth  # noqa: E402
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS  # noqa: E402
from nasrank.supernet.trainer import train_supernet  # noqa: E402

BEST_SHARING = {"conv": "full", "bn": "end", "fc": "independent"}  # NCS's best


def _run(sampler: str, sampler_opts: dict | None = None, strategy: str = "ce",
         strategy_opts: dict | None = None, supernet_opts: dict | None = None,
         same_batch: bool = True) -> dict[str, Any]:
    return {"sampler": sampler, "sampler_opts": sampler_opts or {}, "strategy": strategy,
            "strategy_opts": strategy_opts or {}, "supernet_opts": supernet_opts or {},
            "same_batch": same_batch}


def catalog(space: str, teacher: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run name -> settings (see the module docstring). ``teacher``: RD-NAS teacher options."""
    runs = {
        "spos": _run("uniform"),
        "fairnas": _run("fair"),
        "running_teacher": _run("uniform", strategy="running_teacher"),
        "fixed_teacher": _run("uniform", strategy="fixed_teacher",
                              strategy_opts={"warmup_epochs": "quarter"}),
        "rdnas": _run("rdnas", teacher, "rdnas", teacher),
        # RD-NAS pairs after one uniform SPOS path per step (CE only), pairs with CE + ranking
        # (``rdnas_u1``) or ranking only (``rdnas_u1_rank``)
        "rdnas_u1": _run("rdnas", {**teacher, "uniform_paths": 1}, "rdnas",
                         {**teacher, "uniform_paths": 1}),
        "rdnas_u1_rank": _run("rdnas", {**teacher, "uniform_paths": 1}, "rdnas",
                              {**teacher, "uniform_paths": 1, "pair_ce": False}),
    }
    if space == "cvpr2021":
        best = dict(BEST_SHARING)
        for name, run in runs.items():  # SPOS/FairNAS keep the baselines' default sharing
            if name not in ("spos", "fairnas"):
                run["supernet_opts"] = best
        runs["spos_ncs_sharing"] = _run("uniform", supernet_opts=best)
        for layer in ("conv", "bn", "fc"):
            for scheme in ("full", "front", "end", "independent"):
                runs[f"share_{layer}_{scheme}"] = _run(
                    "fair", {"arch_batch": 18}, "running_teacher",
                    supernet_opts={**best, layer: scheme})
        for k in (1, 4, 9, 18):
            runs[f"uniform_n{k}"] = _run("uniform", {"archs_per_step": k}, supernet_opts=best)
            runs[f"fair_n{k}"] = _run("fair", {"arch_batch": k}, supernet_opts=best)
        runs["fair_n18_diffbatch"] = _run("fair", {"arch_batch": 18}, supernet_opts=best,
                                          same_batch=False)
        runs["naive_n18"] = runs["fair_n18"]
        runs["fixed_n18"] = _run("fair", {"arch_batch": 18}, "fixed_teacher",
                                 {"warmup_epochs": "quarter"}, best)
        runs["running_n18"] = _run("fair", {"arch_batch": 18}, "running_teacher",
                                   supernet_opts=best)
        runs["ncs_best"] = runs["running_n18"]
    return runs


def _paths_per_batch(sampler: Any, strategy: Any, same_batch: bool) -> float:
    """Paths run per consumed batch after any warm-up (from one throwaway draw)."""
    archs = sampler.sample(np.random.default_rng(12345))
    if same_batch:
        return len(strategy.paths(archs))
    return sum(len(strategy.paths([a])) for a in archs) / len(archs)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groundtruth", required=True, help="ground-truth table (search.groundtruth)")
    p.add_argument("--root", default=None, help="dataset folder of the table's recipe")
    p.add_argument("--runs", nargs="+", default=None, help="run names (default: all)")
    p.add_argument("--list", action="store_true", help="print the run catalog and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--budget-epochs", type=int, default=30,
                   help="SPOS epochs (one path per batch): the budget in path-images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--channels", type=int, default=None, help="NB201 supernet C "
                   "(default: the table's recipe width, else 8)")
    p.add_argument("--cells", type=int, default=None, help="NB201 supernet N")
    p.add_argument("--teacher-proxies", nargs="+", default=["nwot"])
    p.add_argument("--teacher-table", default=None, help="zero-cost table of the GT archs' "
                   "space (default: on-the-fly teacher)")
    p.add_argument("--pool-size", type=int, default=500)
    p.add_argument("--rdnas-weight", type=float, default=1.0)
    p.add_argument("--rdnas-margin", type=float, default=0.01)
    p.add_argument("--rdnas-decay", type=float, default=0.0,
                   help="RD-NAS lambda falls linearly to 0 over this fraction of the epochs "
                   "(0: constant, the paper's)")
    p.add_argument("--bn-batches", type=int, default=8)
    p.add_argument("--eval-batches", type=int, default=None,
                   help="label on the first N validation batches (default: the whole split)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    truth = read_groundtruth(args.groundtruth)
    recipe = Recipe(**truth.recipe)
    teacher = {"proxies": list(args.teacher_proxies), "table": args.teacher_table,
               "pool_size": args.pool_size, "image_size": recipe.image_size or 32}
    runs = catalog(truth.space, teacher)
    runs = {**runs, **{f"proxy:{name}": {"proxy": ps} for name, ps in teacher_alone(args).items()}}
    if args.list:
        print("\n".join(runs))
        return {}
    names = args.runs or [n for n in runs if n not in ("naive_n18", "ncs_best")]
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise SystemExit(f"unknown run(s) {unknown}; --list shows the catalog")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_recipe_data(recipe, args.root)
    n_train = len(data.train)
    space = get_space(truth.space)
    net_opts: dict[str, Any] = {}
    if truth.space == "nb201":
        net_opts = {"channels": args.channels or recipe.width or 8,
                    "cells": args.cells or recipe.cells or 1}
    budget = args.budget_epochs * (n_train // args.batch_size) * args.batch_size
    report: dict[str, Any] = {"args": vars(args), "space": truth.space, "archs": len(truth.archs),
                              "budget_path_images": budget, "runs": {}}

    for name in names:
        run = runs[name]
        entries = []
        for seed in args.seeds:
            where = out / f"{name.replace(':', '_')}_s{seed}"
            t0 = time.perf_counter()
            if "proxy" in run:  # the teacher alone: no training
                net = SUPERNETS.make(truth.space, net_opts).build(
                    space, num_classes=data.num_classes, in_channels=data.input_shape[0],
                    seed=seed)
                opts = {**teacher, "proxies": list(run["proxy"]), "teacher_seed": seed}
                tch = SAMPLERS.make("rdnas", opts).build(net).teacher
                keys = list(truth.archs)
                scores = [tch.score(space.parse(k)) for k in keys]
                labels = LabelTable(keys, {"teacher": scores}, space=truth.space)
                where.mkdir(parents=True, exist_ok=True)
                labels.to_csv(where / "labels.csv")  # for the paired comparison below
                res = supernet_eval(truth, labels, "teacher", n_boot=args.n_boot, seed=seed,
                                    plot=False)
                entries.append({"seed": seed, "path_images": 0,
                                "seconds": time.perf_counter() - t0, **_metrics(res)})
                continue
            net = SUPERNETS.make(truth.space, {**net_opts, **run["supernet_opts"]}).build(
                space, num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed)
            s_opts = dict(run["sampler_opts"])
            t_opts = dict(run["strategy_opts"])
            if run["strategy"] == "rdnas":  # the teacher's seed follows the supernet's
                t_opts.update(weight=args.rdnas_weight, margin=args.rdnas_margin,
                              teacher_seed=seed)
            if run["sampler"] == "rdnas":
                s_opts["teacher_seed"] = seed
            probe_t = dict(t_opts)
            if probe_t.get("warmup_epochs") == "quarter":
                probe_t["warmup_epochs"] = 1
            sampler = SAMPLERS.make(run["sampler"], s_opts).build(net)
            strategy = STEP_STRATEGIES.make(run["strategy"], probe_t).build(net)
            per_batch = _paths_per_batch(sampler, strategy, run["same_batch"])
            epochs = max(1, round(args.budget_epochs / per_batch))
            if t_opts.get("warmup_epochs") == "quarter":
                t_opts["warmup_epochs"] = max(1, epochs // 4)
                epochs = max(epochs, t_opts["warmup_epochs"] + 1)
                strategy = STEP_STRATEGIES.make(run["strategy"], t_opts).build(net)
            if run["strategy"] == "rdnas" and args.rdnas_decay > 0:
                t_opts["decay_epochs"] = max(1, round(args.rdnas_decay * epochs))
                strategy = STEP_STRATEGIES.make(run["strategy"], t_opts).build(net)
            stats = train_supernet(net, data, sampler, strategy=strategy, epochs=epochs,
                                   batch_size=args.batch_size, lr=args.lr, seed=seed,
                                   device=args.device, checkpoint_dir=where,
                                   same_batch=run["same_batch"], progress=False)
            labels = weak_labels_for_truth(truth, net, where / "labels.csv", data=data,
                                           bn_batches=args.bn_batches, device=args.device,
                                           seed=seed, batch_size=args.batch_size,
                                           eval_batches=args.eval_batches)
            res = supernet_eval(truth, labels, "ws_acc", n_boot=args.n_boot, seed=seed,
                                plot=False)
            entries.append({"seed": seed, "epochs": epochs, "paths_per_batch": per_batch,
                            "path_images": stats.path_images,
                            "budget_ratio": stats.path_images / budget,
                            "train_seconds": stats.seconds,
                            "seconds": time.perf_counter() - t0, **_metrics(res)})
            print(f"{name} seed {seed}: tau {entries[-1]['kendall_tau']:.4f} "
                  f"[{entries[-1]['tau_low']:.4f}, {entries[-1]['tau_high']:.4f}] "
                  f"path-images x{entries[-1]['budget_ratio']:.2f}", flush=True)
        taus = np.array([e["kendall_tau"] for e in entries])
        report["runs"][name] = {"seeds": entries, "tau_mean": float(taus.mean()),
                                "tau_std": float(taus.std(ddof=1)) if len(taus) > 1 else 0.0}
        (out / "summary.json").write_text(json.dumps(report, indent=1))
    report["rdnas_minus_teacher"] = paired_vs_teacher(truth, out, args)
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return report


def teacher_alone(args: argparse.Namespace) -> dict[str, list[str]]:
    """The ``proxy:<name>`` runs: each teacher proxy alone and, when there are several, their
    rank average (``proxy:jacov+nwot``), which is the teacher RD-NAS then distils."""
    ps = list(args.teacher_proxies)
    runs = {p: [p] for p in ps}
    if len(ps) > 1:
        runs["+".join(ps)] = ps
    return runs


RDNAS_RUNS = ("rdnas", "rdnas_u1", "rdnas_u1_rank")


def paired_vs_teacher(truth: Any, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """For every seed with both an ``rdnas*`` run and a ``proxy:<teacher>`` label table under
    ``out``: Kendall tau of RD-NAS's ``ws_acc`` minus tau of the teacher's score on the same
    archs, with a paired bootstrap 95 % interval (the same resampled archs for both). It says
    whether the supernet ranks above the proxy that taught it."""
    from scipy.stats import kendalltau

    from nasrank.search.evaluate import align

    res: dict[str, Any] = {}
    for p, seed, run in itertools.product(teacher_alone(args), args.seeds, RDNAS_RUNS):
        rd, tp = out / f"{run}_s{seed}" / "labels.csv", out / f"proxy_{p}_s{seed}" / "labels.csv"
        if not (rd.exists() and tp.exists()):
            continue
        a = align(truth, LabelTable.read_csv(rd), "ws_acc")
        b = align(truth, LabelTable.read_csv(tp), "teacher")
        if a.keys != b.keys:
            raise SystemExit(f"{rd} and {tp} label different archs")
        diff = lambda i: (kendalltau(a.truth[i], a.score[i])[0]  # noqa: E731
                          - kendalltau(b.truth[i], b.score[i])[0])
        rng = np.random.default_rng(seed)
        n = len(a.keys)
        boot = [diff(rng.integers(0, n, n)) for _ in range(args.n_boot)]
        name = f"{p}_s{seed}" if run == "rdnas" else f"{run}-{p}_s{seed}"
        r = res[name] = {"diff": float(diff(np.arange(n))),
                         "low": float(np.quantile(boot, 0.025)),
                         "high": float(np.quantile(boot, 0.975))}
        print(f"{run} - proxy:{p} seed {seed}: {r['diff']:+.4f} "
              f"[{r['low']:+.4f}, {r['high']:+.4f}]", flush=True)
    return res


def _metrics(res: Any) -> dict[str, float]:
    tau = res.metrics["kendall_tau"]
    return {"kendall_tau": tau["value"], "tau_low": tau["low"], "tau_high": tau["high"],
            "spearman": res.metrics["spearman"]["value"],
            "noise_ceiling": res.noise_ceiling["value"], "n_archs": res.n_archs}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"space {report['space']}, {report['archs']} archs, budget "
             f"{report['budget_path_images']} path-images (SPOS)", "",
             "| run | Kendall tau (mean ± std over seeds) | 95% interval (seed 0) | "
             "path-images / SPOS | noise ceiling |", "|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        e = r["seeds"][0]
        ratio = f"{e['budget_ratio']:.2f}" if "budget_ratio" in e else "0 (no training)"
        lines.append(f"| {name} | {r['tau_mean']:.4f} ± {r['tau_std']:.4f} | "
                     f"[{e['tau_low']:.3f}, {e['tau_high']:.3f}] | {ratio} | "
                     f"{e['noise_ceiling']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
