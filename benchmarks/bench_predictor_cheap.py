"""NB201 predictor from cheap weak labels only (issue 15).

Pretraining labels: the 13 published zero-cost proxies of NAS-Bench-Suite-Zero (they include
params and FLOPs), computed on CIFAR-10 at initialisation. Never the 12-epoch accuracies (a real
training of every cell). Evaluation over the 9,445 canonical cells; for each target and seed, N
training cells drawn with ``numpy.random.default_rng(seed)`` (the issue-3 protocol).

Methods (one pretraining, seed 0, shared by every ``pre_``/``hyb_`` method):
  rf            random forest on one-hot ops + the 13 proxies (the issue-3 baseline)
  pre_start     the fine-tuning start: ridge read-out of the pretrained hidden layer (lr 0)
  pre_lr        pretrained, LambdaRank, early stopping on the validation loss (issue 3)
  pre_margin    pretrained, margin ranking, early stopping on the validation loss (issue 3)
  pre_lr_k      as pre_lr, early stopping on the validation Kendall tau
  pre_margin_k  as pre_margin, early stopping on the validation Kendall tau
  hyb_start     hybrid head start: ridge read-out of [pretrained hidden layer, measured proxies]
  hyb_lr        hybrid head, LambdaRank, early stopping on the validation Kendall tau
  hyb_margin    hybrid head, margin ranking, early stopping on the validation Kendall tau
  pre_lrlin_k   as pre_lr_k with LambdaRank's linear NDCG gain (rel, not 2^rel - 1)
  hyb_lrlin     as hyb_lr with the linear gain
  <method>_e5   any fine-tuned method above as an ensemble of 5 members (``fit(ensemble=5)``:
                each its own validation split, batch order and dropout; scores averaged);
                ``_e10`` of 10 members (CVPR only)

  python benchmarks/bench_predictor_cheap.py --work runs/bench_cheap --seeds 0-9
  python benchmarks/bench_predictor_cheap.py --work runs/bench_cheap --report

CVPR 2021 (``--cvpr``): pretrained on the published supernets' accuracies (both runs) + FLOPs +
params of ``--cvpr-pre-archs`` archs (the 500 with ground truth among them; cached), fine-tuned on
100 of the 500 labelled archs, Kendall tau on the other 400, per split seed; also the supernet
mean and a ridge regression on the four measured labels (the hybrid head's linear part alone).

  python benchmarks/bench_predictor_cheap.py --cvpr --work runs/bench_cheap --seeds 0-9

End to end with our own weak labels (``--e2e``): the NB201 Fashion-MNIST ground truth of
``benchmarks/data`` (300 cells x 2 seeds; truth = seed-averaged ``valid_acc``); pretraining on
*our* cheap labels of those cells (``--e2e-weak``: a SPOS supernet's ws_acc / ws_neg_loss +
FLOPs / params, ``--e2e-proxies``: zero-cost proxies on Fashion-MNIST), fine-tuning on N = 25 / 50
/ 100 of the cells, Kendall tau on the rest; next to each weak label alone, the rank average of
``ws_acc`` with each proxy, and the forest. ``--e2e-pretrain-on all`` pretrains on every cell the
tables hold (e.g. all canonical NB201 cells labelled by ``generate_weak_labels``) instead of the
truth's 300.

  python benchmarks/bench_predictor_cheap.py --e2e --work runs/bench_cheap --seeds 0-9 \
      --e2e-weak WEAK.csv --e2e-proxies PROXIES.csv
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench_predictor_nb201 import ZC, clean_proxy, parse_seeds, rf_features
from nasrank.predictor import ENCODERS, RankingPredictor, kendall_tau, ndcg_at_k, precision_at_k
from nasrank.spaces.benchmarks import canonical_subset, load_nb201

_FINETUNED = ["pre_lr", "pre_margin", "pre_lr_k", "pre_margin_k", "hyb_lr", "hyb_margin",
              "pre_lrlin_k", "hyb_lrlin"]
METHODS = ["rf", "pre_start", "pre_lr", "pre_margin", "pre_lr_k", "pre_margin_k",
           "hyb_start", "hyb_lr", "hyb_margin", "pre_lrlin_k", "hyb_lrlin",
           *[f"{m}_e5" for m in _FINETUNED]]


def cheap_labels(table) -> dict[str, np.ndarray]:
    """The 13 zero-cost proxies, cleaned (failure sentinels -> column minimum, heavy tails
    log-scaled); nothing that needs training."""
    return {f"zc_{n}": clean_proxy(n, table.column(f"zc_{n}")) for n in ZC}


def extra_labels(paths: list[str], keys: list[str]) -> dict[str, np.ndarray]:
    """Label columns of the tables at ``paths`` (e.g. ``generate_weak_labels`` of every
    canonical cell by our own supernet, ``x_`` prefixed), at ``keys``, cleaned as in ``--e2e``."""
    from nasrank.spaces.labels import LabelTable

    tables = [LabelTable.read_csv(p, space="nb201") for p in paths]
    return {f"x_{k}": v for k, v in _e2e_labels(tables, keys).items()}


def pretrained_pair(args, bench, archs, labels):
    """(plain, hybrid) predictors sharing one pretraining (cached in --work)."""
    rank = f"_rank{args.pre_rank_weight:g}" if args.pre_rank_weight else ""
    rank += f"_s{args.pre_seed}" if args.pre_seed else ""
    rank += f"_{args.encoder}" if args.encoder != "dgcnn" else ""
    if args.extra_labels:  # a checkpoint per set of extra label tables
        import hashlib

        names = ",".join(sorted(Path(p).name for p in args.extra_labels))
        rank += "_x" + hashlib.sha1(names.encode()).hexdigest()[:8]
    ckpt = Path(args.work) / f"pretrained_zc_e{args.pre_epochs}_b{args.pre_batch}{rank}.pt"
    if not ckpt.exists():
        pre = RankingPredictor(bench.space, device=args.device, seed=args.pre_seed,
                               encoder=args.encoder)
        t0 = time.time()
        hist = pre.pretrain(archs, labels, epochs=args.pre_epochs, batch_size=args.pre_batch,
                            rank_weight=args.pre_rank_weight)
        pre.save(ckpt)
        (Path(args.work) / f"pretrain_log{rank}.json").write_text(json.dumps(
            {"seconds": time.time() - t0, "epochs": args.pre_epochs, "batch": args.pre_batch,
             "labels": pre.label_names, "loss_last": hist["loss"][-1]}))
    plain = RankingPredictor.load(ckpt, space=bench.space, device=args.device)
    return plain, plain.as_hybrid(archs, labels)


def finetuned(method: str, plain, hybrid, seed: int, archs, y, args, *,
              plain_select: str | None = "loss"):
    """A copy of the pretrained predictor fine-tuned as ``method`` says: ``pre_``/``hyb_``
    (plain or hybrid head), then ``start`` (the ridge read-out, lr 0), ``lr`` / ``lrlin`` /
    ``margin`` (LambdaRank with exponential / linear NDCG gain, margin ranking) with an optional ``_k`` (early stopping on validation Kendall
    tau; the hybrid head always uses it). ``plain_select``: the selection of ``pre_lr`` /
    ``pre_margin`` (``"loss"``: issue 3's; ``None``: the package default)."""
    p = copy.deepcopy(hybrid if method.startswith("hyb_") else plain)
    for member in getattr(p, "members", [p]):  # a PretrainingEnsemble: each member
        member.seed = seed  # split / batch order of the fine-tuning run
    ensemble = 1
    for k in (5, 10):
        if method.endswith(f"_e{k}"):
            method, ensemble = method[:-len(f"_e{k}")], k
    kind = method.split("_", 1)[1]
    if kind == "start":
        return p.fit(archs, y, loss="lambdarank", epochs=1, lr=0.0)
    loss = "margin" if kind.startswith("margin") else "lambdarank"
    gain = "linear" if kind.startswith("lrlin") else "exp"  # LambdaRank's NDCG gain
    select = "kendall" if kind.endswith("_k") or method.startswith("hyb_") else plain_select
    return p.fit(archs, y, loss=loss, epochs=args.ft_epochs, patience=args.patience,
                 select=select, gain=gain, ensemble=ensemble, lr=args.ft_lr,
                 mu=args.lambda_mu if loss == "lambdarank" else 0.0)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench = canonical_subset(load_nb201(args.data))
    archs = [bench.archs[k] for k in bench.table.keys]
    labels = cheap_labels(bench.table)
    feats = rf_features(archs, bench.table)
    if args.extra_labels:  # our own weak labels of every cell, beside the 13 proxies
        extra = extra_labels(args.extra_labels, bench.table.keys)
        labels.update(extra)
        feats = np.concatenate([feats, np.stack(list(extra.values()), axis=1)], axis=1)
    out = work / args.out
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["target"], r["n"], r["seed"], r["method"]))
    plain, hybrid = pretrained_pair(args, bench, archs, labels)
    if args.pre_ensemble_seeds:  # pre_* methods fine-tune a PretrainingEnsemble of these seeds
        from nasrank.predictor import PretrainingEnsemble

        if any(m.startswith("hyb_") for m in args.methods):
            raise SystemExit("--pre-ensemble-seeds: only the rf and pre_* methods")
        encoders = args.pre_ensemble_encoders or [args.encoder] * len(args.pre_ensemble_seeds)
        if len(encoders) != len(args.pre_ensemble_seeds):
            raise SystemExit(f"--pre-ensemble-encoders: {len(encoders)} encoders for "
                             f"{len(args.pre_ensemble_seeds)} --pre-ensemble-seeds")
        plain = PretrainingEnsemble([
            pretrained_pair(argparse.Namespace(**{**vars(args), "pre_seed": s, "encoder": e}),
                            bench, archs, labels)[0]
            for s, e in zip(args.pre_ensemble_seeds, encoders)])
    for target in args.targets:
        y_all = bench.table.column(target)
        for n in args.ns:
            for seed in parse_seeds(args.seeds):
                idx = np.random.default_rng(seed).choice(len(archs), size=n, replace=False)
                tr_archs, tr_y = [archs[i] for i in idx], y_all[idx]
                for method in args.methods:
                    if (target, n, seed, method) in done:
                        continue
                    t0 = time.time()
                    if method == "rf":
                        from sklearn.ensemble import RandomForestRegressor

                        rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
                        scores = rf.fit(feats[idx], tr_y).predict(feats)
                    else:
                        p = finetuned(method, plain, hybrid, seed, tr_archs, tr_y, args)
                        scores = p.predict(archs)
                    rec = {
                        "target": target, "n": n, "seed": seed, "method": method,
                        "kendall_tau": kendall_tau(y_all, scores),
                        "ndcg_exp@10": ndcg_at_k(y_all, scores, 10, gain="exp"),
                        "ndcg_lin@10": ndcg_at_k(y_all, scores, 10, gain="lin"),
                        "precision@1%": precision_at_k(y_all, scores, 0.01),
                        "seconds": time.time() - t0,
                    }
                    if args.save_scores:  # combine_cvpr_scores.py --methods <target>.<method>
                        folder = work / (Path(args.out).stem + "_scores")
                        folder.mkdir(exist_ok=True)
                        np.savez(folder / f"{seed}_{target}.{method}.npz",
                                 test_index=np.arange(len(archs)), scores=scores, truth=y_all)
                    with open(out, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(json.dumps(rec), flush=True)


CVPR_METHODS = _FINETUNED + [f"{m}_e{k}" for k in (5, 10) for m in _FINETUNED]


def run_cvpr(args: argparse.Namespace) -> None:
    from sklearn.linear_model import Ridge

    from nasrank.spaces.cvpr2021 import load_cvpr2021_csv

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bench = load_cvpr2021_csv(args.cvpr_data)
    space, table = bench.space, bench.table
    archs = [bench.archs[k] for k in table.keys]
    cost = np.array([space.cost(a) for a in archs])
    weak = {"supernet_acc_run1": table.column("supernet_acc_run1"),
            "supernet_acc_run2": table.column("supernet_acc_run2"),
            "flops": cost[:, 0], "params": cost[:, 1]}
    gt_all = table.column("gt_acc")
    lab = np.flatnonzero(np.isfinite(gt_all))
    rest = np.setdiff1d(np.arange(len(archs)), lab)
    pre_idx = np.r_[lab, np.random.default_rng(0).choice(rest, args.cvpr_pre_archs - len(lab),
                                                        replace=False)]
    rank = f"_rank{args.pre_rank_weight:g}" if args.pre_rank_weight else ""
    rank += f"_s{args.pre_seed}" if args.pre_seed else ""
    rank += f"_{args.encoder}" if args.encoder != "dgcnn" else ""
    ckpt = work / (f"pretrained_cvpr_{args.cvpr_pre_archs}_e{args.cvpr_pre_epochs}"
                   f"_b{args.pre_batch}{rank}.pt")
    if not ckpt.exists():
        pre = RankingPredictor(space, device=args.device, seed=args.pre_seed,
                               encoder=args.encoder)
        t0 = time.time()
        pre.pretrain([archs[i] for i in pre_idx], {k: v[pre_idx] for k, v in weak.items()},
                     epochs=args.cvpr_pre_epochs, batch_size=args.pre_batch,
                     rank_weight=args.pre_rank_weight)
        pre.save(ckpt)
        print(f"pretrained in {time.time() - t0:.0f}s", flush=True)
    plain = RankingPredictor.load(ckpt, space=space, device=args.device)
    lab_archs = [archs[i] for i in lab]
    hybrid = plain.as_hybrid(lab_archs, {k: v[lab] for k, v in weak.items()})
    gt = gt_all[lab]
    feats = np.log(np.stack([weak[k][lab] for k in weak], axis=1))
    out = work / args.cvpr_out
    done = {json.loads(line)["seed"] for line in out.read_text().splitlines()} if out.exists() else set()
    for seed in parse_seeds(args.seeds):
        if seed in done:
            continue
        perm = np.random.default_rng(seed).permutation(len(lab))
        tr, te = perm[:100], perm[100:]
        rec = {"seed": seed, "supernet_mean": kendall_tau(
            gt[te], weak["supernet_acc_run1"][lab][te] + weak["supernet_acc_run2"][lab][te])}
        mu, sd = feats[tr].mean(0), feats[tr].std(0)
        ridge = Ridge(alpha=10.0).fit((feats[tr] - mu) / sd, gt[tr])
        rec["ridge_measured"] = kendall_tau(gt[te], ridge.predict((feats[te] - mu) / sd))
        for method in args.cvpr_methods:
            t0 = time.time()
            p = finetuned(method, plain, hybrid, seed, [lab_archs[i] for i in tr], gt[tr], args)
            scores = p.predict([lab_archs[i] for i in te])
            rec[method] = kendall_tau(gt[te], scores)
            rec[f"{method}_seconds"] = time.time() - t0
            if args.save_scores:  # for offline combinations of runs (same split = same te)
                folder = work / (Path(args.cvpr_out).stem + "_scores")
                folder.mkdir(exist_ok=True)
                np.savez(folder / f"{seed}_{method}.npz", test_index=lab[te], scores=scores,
                         truth=gt[te])
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    rows = [r for r in rows if r["seed"] in set(parse_seeds(args.seeds))]
    for k in [k for k in rows[0] if k != "seed" and not k.endswith("seconds")]:
        v = [r[k] for r in rows if k in r]
        print(f"| {k} | {len(v)} | {np.mean(v):.3f} ± {np.std(v):.3f} | {min(v):.3f} |")


E2E_METHODS = ["rf", "pre_start", "pre_lr", "pre_margin", "hyb_lr", "hyb_margin"]


def _e2e_labels(tables, keys: list[str]) -> dict[str, np.ndarray]:
    """Every label column of ``tables`` at ``keys``, cleaned: non-finite values (the all-none
    cell's proxies) -> the column minimum, the proxies spanning decades log-scaled, constant
    columns dropped. A key missing from a table is an error (nothing is silently dropped)."""
    labels: dict[str, np.ndarray] = {}
    for table in tables:
        missing = [k for k in keys if k not in table]
        if missing:
            raise SystemExit(f"{len(missing)} cells have no row in a label table with columns "
                             f"{table.names}, e.g. {missing[0]}")
        for name in table.names:
            col = table.column(name)[[table.index(k) for k in keys]].astype(np.float64)
            bad = ~np.isfinite(col)
            if bad.all():
                continue
            col[bad] = col[~bad].min()
            if name in ("zc_synflow", "zc_snip"):  # span decades
                col = np.sign(col) * np.log1p(np.abs(col))
            if np.ptp(col) > 0:
                labels[name] = col
    return labels


def run_e2e(args: argparse.Namespace) -> None:
    """See the module docstring (``--e2e``)."""
    from sklearn.ensemble import RandomForestRegressor

    from nasrank.search.groundtruth import read_groundtruth
    from nasrank.spaces.labels import LabelTable, rank_average
    from nasrank.spaces.nb201 import OPS, NB201Space

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    space = NB201Space()
    gt = read_groundtruth(args.e2e_truth)
    keys = gt.keys
    truth = np.nanmean(gt.matrix("valid_acc"), axis=1)
    archs = [space.parse(k) for k in keys]
    tables = [LabelTable.read_csv(args.e2e_weak, space="nb201")]
    if args.e2e_proxies:
        tables.append(LabelTable.read_csv(args.e2e_proxies, space="nb201"))
    labels = _e2e_labels(tables, keys)  # at the truth's cells: the baselines and the forest
    onehot = np.array([[float(op == o) for op in a.ops for o in OPS] for a in archs])
    feats = np.concatenate([onehot, np.stack(list(labels.values()), axis=1)], axis=1)
    if args.e2e_pretrain_on == "all":  # every cell labelled in all the tables
        pre_keys = [k for k in tables[0].keys if all(k in t for t in tables[1:])]
        pre_labels = _e2e_labels(tables, pre_keys)
        pre_archs = [space.parse(k) for k in pre_keys]
    else:
        pre_keys, pre_labels, pre_archs = keys, labels, archs
    if list(pre_labels) != list(labels):
        raise SystemExit(f"label columns differ between the truth's cells {list(labels)} and "
                         f"the pretraining cells {list(pre_labels)}")
    tag = f"{args.e2e_pretrain_on}_e{args.e2e_pre_epochs}_b{args.e2e_pre_batch}"
    tag += f"_{args.encoder}" if args.encoder != "dgcnn" else ""
    ckpt = work / f"pretrained_e2e_{tag}.pt"
    if not ckpt.exists():
        pre = RankingPredictor(space, device=args.device, seed=0, encoder=args.encoder)
        t0 = time.time()
        pre.pretrain(pre_archs, pre_labels, epochs=args.e2e_pre_epochs,
                     batch_size=args.e2e_pre_batch)
        pre.save(ckpt)
        (work / f"pretrain_e2e_{tag}.json").write_text(json.dumps(
            {"seconds": time.time() - t0, "cells": len(pre_keys), "labels": list(pre_labels)}))
    plain = RankingPredictor.load(ckpt, space=space, device=args.device)
    hybrid = plain.as_hybrid(archs, labels)
    out = work / args.e2e_out
    done = set()
    if out.exists():
        done = {(r["n"], r["seed"], r["method"], r.get("pretrain", "truth"))
                for r in map(json.loads, out.read_text().splitlines())}
    fused = {}  # rank averages of the supernet's label with each proxy (issue 13's advice)
    if "ws_acc" in labels:
        at_truth = LabelTable(keys, labels, space="nb201")
        for name in labels:
            if name.startswith("zc_"):
                col = f"ws_acc+{name}"
                fused[col] = rank_average([at_truth], ["ws_acc", name]).column(col)
    for n in args.ns:
        for seed in parse_seeds(args.seeds):
            perm = np.random.default_rng(seed).permutation(len(keys))
            tr, te = perm[:n], perm[n:]
            recs = [{"n": n, "seed": seed, "method": f"label:{name}", "pretrain": "-",
                     "kendall_tau": kendall_tau(truth[te], col[te])}
                    for name, col in {**labels, **fused}.items()]
            for method in args.e2e_methods:
                tag_m = "-" if method == "rf" else args.e2e_pretrain_on
                if (n, seed, method, tag_m) in done:
                    continue
                t0 = time.time()
                if method == "rf":
                    rf = RandomForestRegressor(n_estimators=200, random_state=seed, n_jobs=1)
                    scores = rf.fit(feats[tr], truth[tr]).predict(feats[te])
                else:
                    p = finetuned(method, plain, hybrid, seed, [archs[i] for i in tr], truth[tr],
                                  args, plain_select=None)
                    scores = p.predict([archs[i] for i in te])
                recs.append({"n": n, "seed": seed, "method": method, "pretrain": tag_m,
                             "kendall_tau": kendall_tau(truth[te], scores),
                             "seconds": time.time() - t0})
            with open(out, "a") as f:
                for r in recs:
                    key = (r["n"], r["seed"], r["method"], r["pretrain"])
                    if key not in done:
                        f.write(json.dumps(r) + "\n")
                        done.add(key)
            print(json.dumps(recs[-1]), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    table = defaultdict(list)
    for r in rows:
        if r["seed"] in set(parse_seeds(args.seeds)):
            table[(r["method"], r.get("pretrain", "truth"), r["n"])].append(r["kendall_tau"])
    print("| method | pretrained on | " + " | ".join(f"N = {n}" for n in args.ns) + " |")
    for m, pre in sorted({k[:2] for k in table}):
        print(f"| {m} | {pre} | " + " | ".join(
            f"{np.mean(table[(m, pre, n)]):.3f} ± {np.std(table[(m, pre, n)]):.3f}"
            if table[(m, pre, n)] else "-" for n in args.ns) + " |")


def report(args: argparse.Namespace) -> None:
    groups = defaultdict(list)
    for line in (Path(args.work) / args.out).read_text().splitlines():
        r = json.loads(line)
        if r["seed"] in set(parse_seeds(args.seeds)):
            groups[(r["target"], r["n"], r["method"])].append(r)
    print("| target | N | method | seeds | Kendall tau | NDCG_exp@10 | NDCG_lin@10 | precision@1% | s/run |")
    print("|---|---|---|---|---|---|---|---|---|")

    def cell(rs: list, m: str) -> str:
        v = [r[m] for r in rs]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    for key in sorted(groups, key=lambda g: (g[0], g[1], METHODS.index(g[2]))):
        rs = groups[key]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {cell(rs, 'kendall_tau')} | "
              f"{cell(rs, 'ndcg_exp@10')} | {cell(rs, 'ndcg_lin@10')} | {cell(rs, 'precision@1%')} "
              f"| {np.mean([r['seconds'] for r in rs]):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/nb201/nb201.csv")
    ap.add_argument("--work", default="runs/bench_cheap")
    ap.add_argument("--out", default="nb201_cheap.jsonl")
    ap.add_argument("--targets", nargs="+", default=["cifar10_valid", "cifar100_test"])
    ap.add_argument("--ns", nargs="+", type=int, default=[100])
    ap.add_argument("--seeds", nargs="+", default=["0-9"])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--ft-epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=50)
    ap.add_argument("--ft-lr", type=float, default=None,
                    help="fine-tuning learning rate (default: fit's, 3e-5 after pretraining)")
    ap.add_argument("--pre-epochs", type=int, default=100)
    ap.add_argument("--pre-batch", type=int, default=128)
    ap.add_argument("--pre-seed", type=int, default=0, help="seed of the pretraining run")
    ap.add_argument("--encoder", choices=ENCODERS, default="dgcnn",
                    help="graph encoder of every pretrained predictor (checkpoints get a suffix)")
    ap.add_argument("--pre-rank-weight", type=float, default=0.0,
                    help="pretrain(rank_weight=...): RankNet on each label beside the MSE")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:i")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--cvpr", action="store_true", help="the CVPR 2021 channel-space benchmark")
    ap.add_argument("--cvpr-data", default="../shared/data/cvpr2021_track1/archs.csv")
    ap.add_argument("--cvpr-pre-archs", type=int, default=10_000)
    ap.add_argument("--cvpr-pre-epochs", type=int, default=40)
    ap.add_argument("--cvpr-out", default="cvpr2021_cheap.jsonl",
                    help="results file in --work (a seed already in it is skipped)")
    ap.add_argument("--save-scores", action="store_true",
                    help="also save each seed's test scores per method (npz, in <out>_scores next to "
                         "--out / --cvpr-out) for combine_cvpr_scores.py")
    ap.add_argument("--pre-ensemble-seeds", nargs="+", type=int, default=None,
                    help="NB201: the pre_* methods fine-tune a PretrainingEnsemble of the "
                         "checkpoints pretrained with these --pre-seed values")
    ap.add_argument("--pre-ensemble-encoders", nargs="+", default=None,
                    choices=ENCODERS,
                    help="the encoder of each --pre-ensemble-seeds member (default: --encoder)")
    ap.add_argument("--extra-labels", nargs="+", default=None,
                    help="NB201: label tables of every canonical cell (e.g. our own supernet's "
                         "weak labels and proxies) added to the 13 proxies for pretraining, the "
                         "hybrid head and the forest")
    ap.add_argument("--lambda-mu", type=float, default=0.0,
                    help="LambdaRank's NDCG-Loss2++ weight mu for every LambdaRank method (fit(mu=))")
    ap.add_argument("--cvpr-methods", nargs="+", default=_FINETUNED, choices=CVPR_METHODS)
    ap.add_argument("--e2e", action="store_true", help="our own weak labels, Fashion-MNIST truth")
    ap.add_argument("--e2e-truth", default="data/nb201_fmnist_gt.csv")
    ap.add_argument("--e2e-weak", help="weak-label table (ws_acc...) of the truth's cells")
    ap.add_argument("--e2e-proxies", default=None,
                    help="zero-cost proxy table of the truth's cells (optional: the weak-label "
                         "table may hold the proxy columns itself)")
    ap.add_argument("--e2e-pre-epochs", type=int, default=300)
    ap.add_argument("--e2e-pre-batch", type=int, default=20)
    ap.add_argument("--e2e-pretrain-on", choices=["truth", "all"], default="truth",
                    help="pretrain on the truth's cells only, or on every cell the label "
                         "tables hold (e.g. all canonical NB201 cells)")
    ap.add_argument("--e2e-out", default="e2e_fmnist.jsonl", help="results file in --work")
    ap.add_argument("--e2e-methods", nargs="+", default=E2E_METHODS, choices=E2E_METHODS)
    args = ap.parse_args()
    if args.e2e:
        run_e2e(args)
    elif args.cvpr:
        run_cvpr(args)
    elif args.report:
        report(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
