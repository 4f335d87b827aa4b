"""Epoch time over a long predictor pretraining (issue 16): does an epoch late in the run cost
what an early one costs?

Pretrains on the 13 published zero-cost proxies of all 9,445 canonical NB201 cells (the issue-15
labels) and prints the wall time of every epoch, the mean of the first and of the last
``--window`` epochs, and how many subnormal float32 values the weights hold at the end.
``--flush-every 0`` switches off ``FlatAdam``'s periodic flush of vanishing weights and moments
(``nasrank.predictor.optim.FLUSH_VANISHING_EVERY``) to measure the run without it; run both side by
side so that they see the same machine:

    python benchmarks/bench_long_pretrain.py --data ../shared/data/nb201/nb201.csv --epochs 300 --flush-every 16
    python benchmarks/bench_long_pretrain.py --data ../shared/data/nb201/nb201.csv --epochs 300 --flush-every 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="nb201.csv of ../shared/data/nb201")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--encoder", choices=("dgcnn", "gin"), default="dgcnn")
    ap.add_argument("--flush-every", type=int, default=16, help="0: no periodic flush")
    ap.add_argument("--window", type=int, default=20, help="epochs averaged at each end")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the per-epoch times")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import nasrank.predictor.optim as optim
    from bench_predictor_cheap import cheap_labels
    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.benchmarks import canonical_subset, load_nb201

    optim.FLUSH_VANISHING_EVERY = args.flush_every
    bench = canonical_subset(load_nb201(args.data))
    archs = [bench.archs[k] for k in bench.table.keys]
    labels = cheap_labels(bench.table)
    model = RankingPredictor(bench.space, encoder=args.encoder)
    stamps: list[float] = []

    # one pretrain call, timed per epoch: the scheduler steps once per batch, so count batches
    steps_per_epoch = -(-len(archs) // args.batch)
    real_step = optim.FlatAdam._after_step
    count = [0]

    def timed_after_step(self: optim.FlatAdam) -> None:
        real_step(self)
        count[0] += 1
        if count[0] % steps_per_epoch == 0:
            stamps.append(time.perf_counter())

    optim.FlatAdam._after_step = timed_after_step
    t0 = time.perf_counter()
    hist = model.pretrain(archs, labels, epochs=args.epochs, batch_size=args.batch)
    optim.FlatAdam._after_step = real_step
    epochs = np.diff([t0, *stamps])
    tiny = torch.finfo(torch.float32).tiny
    subnormal = sum(int(((w.abs() < tiny) & (w != 0)).sum()) for w in model.net.parameters())
    w = args.window
    res = {"encoder": args.encoder, "flush_every": args.flush_every, "epochs": args.epochs,
           "batch": args.batch, "total_s": time.perf_counter() - t0,
           f"first_{w}_mean_s": float(epochs[:w].mean()), f"last_{w}_mean_s": float(epochs[-w:].mean()),
           "last_over_first": float(epochs[-w:].mean() / epochs[:w].mean()),
           "subnormal_weights_at_end": subnormal, "loss_last": hist["loss"][-1]}
    print(json.dumps(res))
    if args.out:
        Path(args.out).write_text(json.dumps({**res, "epoch_s": epochs.tolist()}))


if __name__ == "__main__":
    main()
