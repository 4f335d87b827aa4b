"""CVPR 2021 track-1 predictor benchmark (issue 3): real supernet weak labels.

Pretrain the DGCNN on all 50,000 archs' supernet accuracies (both published runs) + FLOPs +
params (``space.cost``); then for each split seed, fine-tune on 100 of the 500 archs with a
stand-alone ground truth and report Kendall tau on the other 400, next to the tau of each
supernet column (and their mean) on the same 400 archs.

  python benchmarks/bench_predictor_cvpr2021.py --data ../shared/data/cvpr2021_track1/archs.csv \
      --work runs/bench_predictor_cvpr --seeds 0-9
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from nasrank.predictor import PRETRAINED_FINETUNE_LR, RankingPredictor, kendall_tau
from nasrank.spaces.cvpr2021 import load_cvpr2021_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/cvpr2021_track1/archs.csv")
    ap.add_argument("--work", default="runs/bench_predictor_cvpr")
    ap.add_argument("--seeds", type=int, nargs=2, default=[0, 9], metavar=("FIRST", "LAST"))
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--pre-epochs", type=int, default=300)
    ap.add_argument("--pre-batch", type=int, default=20)
    ap.add_argument("--ft-epochs", type=int, default=300)
    ap.add_argument("--ft-lr", type=float, default=PRETRAINED_FINETUNE_LR)
    ap.add_argument("--losses", nargs="+", default=["lambdarank", "margin"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:i")
    ap.add_argument("--pretrain-only", action="store_true",
                    help="stop after writing the pretrained checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    bench = load_cvpr2021_csv(args.data)
    space, table = bench.space, bench.table
    archs = [bench.archs[k] for k in table.keys]
    ckpt = work / "pretrained_cvpr2021.pt"
    if not ckpt.exists():
        t0 = time.time()
        cost = np.array([space.cost(a) for a in archs])
        weak = {"supernet_acc_run1": table.column("supernet_acc_run1"),
                "supernet_acc_run2": table.column("supernet_acc_run2"),
                "flops": cost[:, 0], "params": cost[:, 1]}
        pre = RankingPredictor(space, device=args.device, seed=0)
        hist = pre.pretrain(archs, weak, epochs=args.pre_epochs, batch_size=args.pre_batch,
                            progress=True)
        pre.save(ckpt)
        secs = time.time() - t0
        (work / "pretrain_log.json").write_text(json.dumps(
            {"seconds": secs, "epochs": args.pre_epochs, "batch_size": args.pre_batch,
             "n": len(archs), "device": args.device, "loss": hist["loss"]}))
        print(f"pretrained on {len(archs)} archs x {args.pre_epochs} epochs in {secs:.0f}s", flush=True)
    if args.pretrain_only:
        return
    pre = RankingPredictor.load(ckpt, space=space, device=args.device)

    labelled = bench.labelled("gt_acc")
    gt = np.array([table.column("gt_acc")[table.index(k)] for k in labelled])
    sup = {c: np.array([table.column(c)[table.index(k)] for k in labelled])
           for c in ("supernet_acc_run1", "supernet_acc_run2")}
    sup["supernet_mean"] = (sup["supernet_acc_run1"] + sup["supernet_acc_run2"]) / 2
    out = work / "cvpr2021.jsonl"
    for seed in range(args.seeds[0], args.seeds[1] + 1):
        perm = np.random.default_rng(seed).permutation(len(labelled))
        tr, te = perm[:args.n_train], perm[args.n_train:]
        rec = {"seed": seed, "n_train": len(tr), "n_test": len(te)}
        for c, v in sup.items():
            rec[c] = kendall_tau(gt[te], v[te])
        for loss in args.losses:
            t0 = time.time()
            p = copy.deepcopy(pre)
            p.seed = seed
            p.fit([bench.archs[labelled[i]] for i in tr], gt[tr], loss=loss,
                  epochs=args.ft_epochs, lr=args.ft_lr)
            rec[f"pre_{loss}"] = kendall_tau(gt[te], p.predict([bench.archs[labelled[i]] for i in te]))
            rec[f"pre_{loss}_seconds"] = time.time() - t0
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for k in [k for k in rows[0] if k.startswith(("supernet", "pre_")) and not k.endswith("seconds")]:
        v = [r[k] for r in rows]
        print(f"{k}: {np.mean(v):.4f} ± {np.std(v):.4f} over {len(v)} splits")


if __name__ == "__main__":
    main()
