"""Search methods on NAS-Bench-201 with the benchmark oracle (issue 6).

For each method, dataset setting and seed, run the search and append one JSON line (best arch,
reported accuracy at budgets 20/50/100, config) to ``<out>/runs.jsonl``; rerunning skips the
runs already there, so the benchmark can be stopped and resumed. ``--summarize`` prints the
markdown table (mean ± std of the reported accuracy and of its regret).

Settings: ``c10`` selects by ``cifar10_valid`` and reports ``cifar10_test``; ``c100`` selects and
reports ``cifar100_test``. Regret = the space's best reported value (94.37 / 73.51) minus the
reported value of the returned arch.

Methods whose query sequence does not depend on the budget (random, RE, surrogate RE, the Optuna
sampler: fixed population/startup settings) are run once at the largest budget and read at the
smaller budgets from their query prefix (``SearchResult.best_reported_at``), which is exactly the
run a smaller budget would make (checked here on the first seed). Iterative sampling depends on
the budget (round sizes, final top-k), so it is run once per budget.

Usage (2-core CPU: one thread, run in the background)::

    .venv/bin/python benchmarks/bench_search_nb201.py pretrain --data ../shared/data/nb201/nb201.csv \
        --checkpoint runs/search_nb201/pretrained.pt
    .venv/bin/python benchmarks/bench_search_nb201.py run --data ../shared/data/nb201/nb201.csv \
        --out runs/search_nb201 --methods random re greedy_jacov --seeds 50
    .venv/bin/python benchmarks/bench_search_nb201.py summarize --out runs/search_nb201
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {"c10": ("cifar10_valid", "cifar10_test"), "c100": ("cifar100_test", "cifar100_test")}
BUDGETS = (20, 50, 100)
PREFIX_METHODS = {"random", "re", "sre_rf", "optuna_rf", "sre_pre", "optuna_pre"}
GREEDY = {"greedy_jacov": "zc_jacov", "greedy_synflow": "zc_synflow",
          "greedy_12ep": "cifar10_valid_12ep"}
WEAK_COLUMNS = ["zc_epe_nas", "zc_fisher", "zc_flops", "zc_grad_norm", "zc_grasp", "zc_jacov",
                "zc_l2_norm", "zc_nwot", "zc_params", "zc_plain", "zc_snip", "zc_synflow",
                "zc_zen", "cifar10_valid_12ep", "cifar100_valid_12ep"]
PREDICTOR = {"hidden": 64, "num_layers": 3, "embedding_dim": 64, "head_hidden": 64}
FIT = {"loss": "lambdarank", "epochs": 40, "batch_size": 100, "lr": 5e-3,
       "valid_fraction": 0.0, "patience": 40}
# After pretraining, fit starts from the ridge read-out of the pretrained head; its default lr
# (predictor.PRETRAINED_FINETUNE_LR) is small enough to keep it, so no lr is given here.
FIT_PRE = {k: v for k, v in FIT.items() if k != "lr"}
# it_pre_prior: the weak label (a head of the pretrained checkpoint) that picks round 1, per
# selection metric: the 12-epoch validation accuracy of the same dataset.
PRIOR_LABEL = {"cifar10_valid": "cifar10_valid_12ep", "cifar100_test": "cifar100_valid_12ep"}


def weak_labels(bench):
    """The weak-label table: published proxies (failure sentinel -1e8 replaced by the column's
    finite minimum; heavy-tailed ones as signed log1p) and the 12-epoch validation accuracies."""
    from nasrank.spaces.labels import LabelTable

    t = bench.table
    cols = {}
    for c in WEAK_COLUMNS:
        v = t.column(c).copy()
        bad = ~np.isfinite(v) | (v <= -1e7)
        if c in ("zc_fisher", "zc_grad_norm", "zc_grasp", "zc_snip", "zc_l2_norm", "zc_epe_nas",
                 "zc_nwot", "zc_zen"):
            v = np.sign(v) * np.log1p(np.abs(v))
        v[bad] = np.min(v[~bad])
        cols[c] = v
    return LabelTable(t.keys, cols, space=t.space)


def cmd_pretrain(args) -> None:
    import torch

    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.benchmarks import canonical_subset, load_nb201

    torch.set_num_threads(args.threads)
    bench = canonical_subset(load_nb201(args.data))
    labels = weak_labels(bench)
    archs = [bench.archs[k] for k in labels.keys]
    p = RankingPredictor(bench.space, seed=0, **PREDICTOR)
    t0 = time.time()
    hist = p.pretrain(archs, labels, epochs=args.epochs, batch_size=128, lr=1e-3, progress=True)
    p.save(args.checkpoint)
    print(f"pretrained on {len(archs)} archs x {len(WEAK_COLUMNS)} weak labels, {args.epochs} "
          f"epochs in {time.time() - t0:.0f} s; loss {hist['loss'][0]:.3f} -> "
          f"{hist['loss'][-1]:.3f}; saved {args.checkpoint}")


FACTORIES: dict = {}


def run_one(method, bench, oracle, budget, seed, args):
    from nasrank.search import (forest_factory, greedy_by_proxy, iterative_sampling, random_search,
                        ranking_predictor_factory, regularized_evolution, surrogate_evolution)
    from nasrank.search.optuna_search import optuna_sampler_search

    space = bench.space
    common = {"space": space, "oracle": oracle, "budget": budget, "seed": seed}
    if not FACTORIES:  # made once: each factory shares its graph/feature caches across runs
        FACTORIES["rf"] = forest_factory(space, n_estimators=50)
        FACTORIES["scratch"] = ranking_predictor_factory(space, predictor_kwargs=PREDICTOR,
                                                         fit_kwargs=FIT)
        if args.checkpoint:
            FACTORIES["pre"] = ranking_predictor_factory(space, checkpoint=args.checkpoint,
                                                         fit_kwargs=FIT_PRE)
    rf = FACTORIES["rf"]
    if method == "random":
        return random_search(**common)
    if method == "re":
        return regularized_evolution(**common, population_size=10, sample_size=3)
    if method in GREEDY:
        return greedy_by_proxy(**common, labels=bench.table, column=GREEDY[method])
    if method == "sre_rf":
        return surrogate_evolution(**common, predictor_factory=rf, population_size=10,
                                   sample_size=3, n_init=10, n_children=100, queries_per_fit=2)
    if method == "optuna_rf":
        return optuna_sampler_search(**common, predictor_factory=rf, n_startup_trials=10,
                                     fit_every=2)
    if method == "sre_pre":
        return surrogate_evolution(**common, predictor_factory=FACTORIES["pre"],
                                   population_size=10, sample_size=3, n_init=10, n_children=100,
                                   queries_per_fit=10)
    if method == "optuna_pre":
        return optuna_sampler_search(**common, predictor_factory=FACTORIES["pre"],
                                     n_startup_trials=10, fit_every=10)
    if method == "it_rf":
        return iterative_sampling(**common, predictor_factory=rf, rounds=4, alpha=0.5)
    if method == "it_scratch":
        return iterative_sampling(**common, predictor_factory=FACTORIES["scratch"], rounds=3,
                                  alpha=0.5)
    if method == "it_pre_prior":  # round 1 = top by the pretrained head's 12-epoch accuracy
        key = f"pre_prior_{oracle.metric}"
        if key not in FACTORIES:
            prior = PRIOR_LABEL[oracle.metric]
            FACTORIES[key] = ranking_predictor_factory(space, checkpoint=args.checkpoint,
                                                       fit_kwargs=FIT_PRE, prior_label=prior)
        return iterative_sampling(**common, predictor_factory=FACTORIES[key], rounds=3,
                                  alpha=0.5, first_round="predicted")
    if method == "it_pre":
        return iterative_sampling(**common, predictor_factory=FACTORIES["pre"], rounds=3,
                                  alpha=0.5,
                                  first_round="random")
    raise SystemExit(f"unknown method {method!r}")


def cmd_run(args) -> None:
    import optuna
    import torch

    from nasrank.search import BenchmarkOracle
    from nasrank.spaces.benchmarks import load_nb201

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.jsonl"
    done = set()
    if runs_file.exists():
        for line in runs_file.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["setting"], r["budget"], r["seed"]))
    bench = load_nb201(args.data)
    oracles = {s: BenchmarkOracle(bench, metric=m, report_metric=r) for s, (m, r) in
               SETTINGS.items()}
    best = {s: max(float(x) for x in bench.table.column(r) if math.isfinite(x))
            for s, (_, r) in SETTINGS.items()}
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        for method in args.methods:
            for setting in args.settings:
                budgets = [max(args.budgets)] if method in PREFIX_METHODS else args.budgets
                for budget in budgets:
                    if (method, setting, budget, seed) in done:
                        continue
                    t0 = time.time()
                    res = run_one(method, bench, oracles[setting], budget, seed, args)
                    wall = time.time() - t0
                    at = {str(b): res.best_reported_at(b) for b in args.budgets if b <= budget
                          and (method in PREFIX_METHODS or b == budget)}
                    if method in PREFIX_METHODS and seed == 0:
                        for b in args.budgets:  # the prefix is the smaller-budget run
                            small = run_one(method, bench, oracles[setting], b, seed, args)
                            assert [q[0] for q in small.queries] == [q[0] for q in res.queries[:b]], \
                                (method, setting, b)
                    rec = {"method": method, "setting": setting, "budget": budget, "seed": seed,
                           "reported_at": at, "best_arch": res.best_arch,
                           "best_value": res.best_value, "n_queries": len(res.queries),
                           "space_best": best[setting], "wall_s": wall, "config": res.config}
                    with open(runs_file, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(f"{method} {setting} b={budget} seed={seed}: "
                          f"{json.dumps(at)} ({wall:.1f} s)", flush=True)


def cmd_summarize(args) -> None:
    rows: dict[tuple[str, str, int], list[float]] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    best = {}
    lines = [line for out in args.out for line in (Path(out) / "runs.jsonl").read_text()
             .splitlines()]
    for line in lines:
        r = json.loads(line)
        best[r["setting"]] = r["space_best"]
        wall.setdefault((r["method"], r["setting"]), []).append(r["wall_s"])
        for b, v in r["reported_at"].items():
            rows.setdefault((r["method"], r["setting"], int(b)), []).append(v)
    methods = list(dict.fromkeys(k[0] for k in rows))
    for setting in ("c10", "c100"):
        if setting not in best:
            continue
        name = "CIFAR-10 (select cifar10_valid, report cifar10_test)" if setting == "c10" \
            else "CIFAR-100 (select and report cifar100_test)"
        print(f"\n### {name}; space best {best[setting]:.2f}\n")
        print("| method | " + " | ".join(f"{b} queries: acc / regret (n)" for b in BUDGETS)
              + " | s/run |")
        print("|---|" + "---|" * (len(BUDGETS) + 1))
        for m in methods:
            cells = []
            for b in BUDGETS:
                v = np.array(rows.get((m, setting, b), []))
                if v.size == 0:
                    cells.append("-")
                    continue
                reg = best[setting] - v
                cells.append(f"{v.mean():.2f} ± {v.std():.2f} / {reg.mean():.3f} ± "
                             f"{reg.std():.3f} ({v.size})")
            w = wall.get((m, setting), [math.nan])
            print(f"| {m} | " + " | ".join(cells) + f" | {np.mean(w):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("run")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--settings", nargs="+", default=["c10", "c100"])
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="pretrained predictor (it_pre)")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("summarize")
    p.add_argument("--out", nargs="+", required=True, help="one or more run folders")
    args = ap.parse_args()
    {"pretrain": cmd_pretrain, "run": cmd_run, "summarize": cmd_summarize}[args.cmd](args)


if __name__ == "__main__":
    main()
