"""Split distances of few-shot splitting trees on NB201 (the paper's Figures 1 and 2).

For every seed and every split metric (gradient matching and the seven zero-cost proxies) one
splitting tree is built with the constant policy (depth 3, b = 2 by default) on a freshly
initialised NB201 supernet (initial weights, probe batch and sampled paths all from the seed).
Per depth it reports the mean split distance (Definition 1) *internal* to a tree (between the
splits made at that depth within one tree) and *external* (between the splits at that depth of
trees from different seeds), plus the fraction of those pairs that split the same edge and
their mean distance. A ``random`` row (``--random-trees`` trees with a random unsplit edge and a
random balanced partition at every node) gives the chance level. Splits of different edges are
``5`` apart (every op moves, see :func:`~supernet.fewshot.split_distance`). Each tree is
stored as JSON under ``--out``; a rerun skips the trees already built.

    nice -n 10 .venv/bin/python benchmarks/bench_fewshot.py --out /tmp/bench_fewshot
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.supernet.datasets import load_dataset  # noqa: E402
from nasrank.supernet.fewshot import (METRICS, ConstantPolicy, Node, RestrictedUniformSampler,  # noqa: E402
                                      Split, build_tree, full_allowed, set_partitions,
                                      split_distance)
from nasrank.supernet.nb201_supernet import NB201Supernet  # noqa: E402
from nasrank.supernet.trainer import train_supernet  # noqa: E402


def random_tree(allowed, depth: int, b: int, rng: np.random.Generator, d0: int = 0,
                done: frozenset = frozenset()) -> Node:
    """Chance level: a random unsplit edge and a random balanced partition at every node."""
    node = Node(allowed, d0)
    if d0 >= depth:
        return node
    edges = [d for d, a in enumerate(allowed) if d not in done and len(a) >= b]
    d = edges[int(rng.integers(len(edges)))]
    opts = allowed[d]
    parts = [p for p in set_partitions(len(opts), b)
             if max(map(len, p)) - min(map(len, p)) <= 1]
    groups = parts[int(rng.integers(len(parts)))]
    node.split = Split(d, tuple(tuple(opts[i] for i in g) for g in groups))
    for g in node.split.groups:
        child = tuple(tuple(g) if i == d else a for i, a in enumerate(allowed))
        node.children.append(random_tree(child, depth, b, rng, d0 + 1, done | {d}))
    return node


def summarise(trees: list[Node], depth: int) -> dict:
    out = {}
    for k in range(depth):
        internal = [(split_distance(a, c), a.decision == c.decision)
                    for t in trees for a, c in itertools.combinations(t.splits_at(k), 2)]
        external = [(split_distance(a, c), a.decision == c.decision)
                    for t1, t2 in itertools.combinations(trees, 2)
                    for a in t1.splits_at(k) for c in t2.splits_at(k)]
        row = {}
        for name, pairs in (("internal", internal), ("external", external)):
            if pairs:
                d = np.array([p[0] for p in pairs], dtype=float)
                same = [p[0] for p in pairs if p[1]]
                row[name] = {"mean": float(d.mean()), "std": float(d.std()), "pairs": len(d),
                             "same_edge": float(np.mean([p[1] for p in pairs])),
                             "mean_if_same_edge": float(np.mean(same)) if same else None}
        out[k] = row
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                         / "fashion-mnist"))
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--branching", type=int, default=2)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed-start", type=int, default=0,
                   help="first seed built (another process may build the others into --out)")
    p.add_argument("--metrics", nargs="+", default=list(METRICS))
    p.add_argument("--paths", type=int, default=1, help="sampled paths per split metric")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--gm-batches", type=int, default=2)
    p.add_argument("--gm-warmup-epochs", type=int, default=1,
                   help="epochs of restricted training before each gradient-matching split")
    p.add_argument("--summarise-only", action="store_true",
                   help="build nothing: summarise every tree already in --out, per metric")
    p.add_argument("--random-trees", type=int, default=100, help="trees of the chance level")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, None if args.dataset == "digits" else args.root, seed=0,
                        subset=args.subset, image_size=args.image_size, channels=3)
    x_all, y_all = data.train.tensors
    policy = ConstantPolicy(args.depth, args.branching)
    timings: dict[str, float] = {}
    trees: dict[str, list[Node]] = {m: [] for m in [*args.metrics, "random"]}
    for seed in range(args.seeds):
        if args.summarise_only:
            for metric in args.metrics:
                path = out / f"{metric}_seed{seed}.json"
                if path.exists():
                    trees[metric].append(Node.from_dict(json.loads(path.read_text())))
            continue
        if seed < args.seed_start and not all((out / f"{m}_seed{seed}.json").exists()
                                              for m in args.metrics):
            continue  # another process builds it; summarised when present
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(y_all), generator=g)
        batches = [(x_all[idx[i * args.batch_size:(i + 1) * args.batch_size]],
                    y_all[idx[i * args.batch_size:(i + 1) * args.batch_size]])
                   for i in range(args.gm_batches)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = NB201Supernet(data.num_classes, C=args.C, N=args.N)
        for metric in args.metrics:
            path = out / f"{metric}_seed{seed}.json"
            if path.exists():
                trees[metric].append(Node.from_dict(json.loads(path.read_text())))
                continue
            t0 = time.perf_counter()
            warmup = None
            if metric == "gm" and args.gm_warmup_epochs > 0:
                def warmup(sn, allowed, seed=seed):
                    train_supernet(sn, data, RestrictedUniformSampler(sn, allowed),
                                   epochs=args.gm_warmup_epochs, batch_size=64, lr=0.05,
                                   seed=seed, progress=False)
            tree = build_tree(net, policy, metric, batches if metric == "gm" else batches[0],
                              paths=args.paths, seed=seed, warmup=warmup)
            timings[f"{metric}_seed{seed}"] = time.perf_counter() - t0
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(tree.to_dict()))
            tmp.replace(path)  # atomic: a concurrent process never reads half a tree
            trees[metric].append(tree)
            print(f"seed {seed} {metric}: root {tree.split} "
                  f"({timings[f'{metric}_seed{seed}']:.1f} s)", flush=True)

    # chance level from many random trees (cheap), not only from the seeds built
    allowed = full_allowed(NB201Supernet(10, C=1, N=1))
    trees["random"] = [random_tree(allowed, args.depth, args.branching,
                                   np.random.default_rng([s, 99])) for s in range(args.random_trees)]
    summary = {m: summarise(ts, args.depth) for m, ts in trees.items()}
    lines = ["| metric | depth | internal: mean ± std (same-edge pairs, their mean) | external: mean ± std (same-edge pairs, their mean) |",
             "|---|---|---|---|"]
    for m, rows in summary.items():
        for k, row in rows.items():
            cells = []
            for name in ("internal", "external"):
                r = row.get(name)
                same = "" if r is None or r["mean_if_same_edge"] is None else \
                    f", {r['mean_if_same_edge']:.2f} if same"
                cells.append("—" if r is None else
                             f"{r['mean']:.2f} ± {r['std']:.2f} ({r['same_edge']:.0%} same edge"
                             f"{same})")
            lines.append(f"| {m} | {k} | {cells[0]} | {cells[1]} |")
    report = "\n".join(lines)
    print(report)
    result = {"args": vars(args), "summary": summary, "seconds": timings,
              "trees": {m: len(ts) for m, ts in trees.items()}}
    print("trees per metric:", result["trees"])
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    (out / "report.md").write_text(report + "\n")
    return result


if __name__ == "__main__":
    main()
