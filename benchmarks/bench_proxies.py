"""Zero-cost proxy benchmark on NB201: agreement with NAS-Bench-Suite-Zero and speed.

    # agreement of params / flops / synflow with the published values (data-free, cheap)
    python benchmarks/bench_proxies.py agree --data ../shared/data --cells 300 --out runs/zc_agree.jsonl
    # speed (and the data-dependent proxies on the same cells)
    python benchmarks/bench_proxies.py speed --data ../shared/data --cells 20 --alone 5 \
        --out runs/zc_speed.jsonl
    # rank correlations of every proxy but ntk and grasp on more cells
    python benchmarks/bench_proxies.py quality --data ../shared/data --cells 60 --threads 1 \
        --out runs/zc_quality.jsonl
    python benchmarks/bench_proxies.py report --data ../shared/data --agree runs/zc_agree.jsonl \
        --speed runs/zc_speed.jsonl --quality runs/zc_quality.jsonl

Inputs of the data-dependent proxies: 64 Fashion-MNIST training images (the first 64 of a seeded
permutation), 28x28 zero-padded to 32x32, the grey channel repeated 3 times, normalised with
the training set's mean and std; labels are the Fashion-MNIST classes. The published values
were computed on CIFAR-10. Each run appends one JSON line per cell, so a killed run keeps what
it measured and ``report`` works on partial files.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.spaces.nb201 import NB201Space  # noqa: E402
from nasrank.supernet.proxies import score_with_notes  # noqa: E402

CLASSIC = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov"]
ALL = CLASSIC + ["nwot", "epe_nas", "zen", "ntk", "linear_regions", "l2_norm", "plain", "flops",
                 "params"]
# our name -> NAS-Bench-Suite-Zero column
PUBLISHED = {p: f"zc_{p}" for p in ALL if p not in ("jacob_cov", "ntk", "linear_regions")}
PUBLISHED["jacob_cov"] = "zc_jacov"


def read_nb201(data: Path) -> list[dict]:
    space = NB201Space()
    rows = []
    with open(data / "nb201" / "nb201.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["zc_params"] in ("", "nan") or space.key(space.parse(r["arch_str"])) != r["arch_str"]:
                continue
            rows.append(r)
    return rows


def fashion_batch(data: Path, n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    root = data / "fashion-mnist"
    with gzip.open(root / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(root / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x_all = images.astype(np.float32) / 255.0
    mean, std = float(x_all.mean()), float(x_all.std())
    idx = np.random.default_rng(seed).permutation(len(labels))[:n]
    x = (torch.from_numpy(x_all[idx]) - mean) / std
    x = F.pad(x, (2, 2, 2, 2), value=(0.0 - mean) / std)[:, None].repeat(1, 3, 1, 1)
    return x.contiguous(), torch.from_numpy(labels[idx].astype(np.int64))


def pick(rows: list[dict], n: int, seed: int) -> list[dict]:
    return [rows[i] for i in np.random.default_rng(seed).choice(len(rows), n, replace=False)]


def build(space: NB201Space, arch_str: str, seed: int):
    torch.manual_seed(seed)
    return space.build(space.parse(arch_str))


def cmd_agree(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    space = NB201Space()
    rows = pick(read_nb201(args.data), args.cells, args.seed)
    x, y = fashion_batch(args.data, 2, args.seed)  # flops only need the shapes of one pass
    done = _done(args.out)
    with open(args.out, "a") as out:
        for r in rows:
            if r["arch_str"] in done:
                continue
            net = build(space, r["arch_str"], args.seed)
            vals, notes = score_with_notes(net, (x, y), ["params", "flops", "synflow"],
                                           seed=args.seed)
            flops, params = space.cost(space.parse(r["arch_str"]))
            out.write(json.dumps({"arch": r["arch_str"], "ours": vals, "notes": notes,
                                  "cost": [flops, params]}) + "\n")
            out.flush()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cmd_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    space = NB201Space()
    rows = pick(read_nb201(args.data), args.cells, args.seed + 1)
    x, y = fashion_batch(args.data, 64, args.seed)
    done = _done(args.out)
    warm = build(space, rows[0]["arch_str"], args.seed)
    F.cross_entropy(warm(x), y).backward()  # one-time library initialisation, not timed
    with open(args.out, "a") as out:
        for k, r in enumerate(rows):
            if r["arch_str"] in done:
                continue
            net = build(space, r["arch_str"], args.seed)

            def floor() -> None:
                F.cross_entropy(net(x), y).backward()
                net.zero_grad(set_to_none=True)

            rec: dict = {"arch": r["arch_str"], "time": {}}
            rec["time"]["floor"] = timed(floor)
            res: dict = {}
            rec["time"]["classic6"] = timed(
                lambda: res.update(classic=score_with_notes(net, (x, y), CLASSIC, seed=args.seed)))
            if args.classic_only:  # floor and the classic six only: cheap enough for 20 cells
                rec["time"]["floor_again"] = timed(floor)
                rec["ours"], rec["notes"] = res["classic"]
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(k, {n: round(t, 2) for n, t in rec["time"].items()}, flush=True)
                continue
            rec["time"]["all15"] = timed(
                lambda: res.update(all=score_with_notes(net, (x, y), ALL, seed=args.seed)))
            rec["time"]["floor_again"] = timed(floor)
            if k < args.alone:
                for p in ALL:
                    rec["time"][p] = timed(lambda p=p: score_with_notes(net, (x, y), [p],
                                                                        seed=args.seed))
            rec["ours"], rec["notes"] = res["all"]
            out.write(json.dumps(rec) + "\n")
            out.flush()
            print(k, {n: round(t, 2) for n, t in rec["time"].items()}, flush=True)


def cmd_quality(args: argparse.Namespace) -> None:
    """Every proxy but ntk and grasp (the two slowest; or ``--proxies``) on more cells, for rank
    correlations."""
    torch.set_num_threads(args.threads)
    space = NB201Space()
    rows = pick(read_nb201(args.data), args.cells, args.seed + 2)
    x, y = fashion_batch(args.data, 64, args.seed)
    names = args.proxies or [p for p in ALL if p not in ("ntk", "grasp")]
    done = _done(args.out)
    with open(args.out, "a") as out:
        for r in rows:
            if r["arch_str"] in done:
                continue
            net = build(space, r["arch_str"], args.seed)
            vals, notes = score_with_notes(net, (x, y), names, seed=args.seed)
            out.write(json.dumps({"arch": r["arch_str"], "ours": vals, "notes": notes}) + "\n")
            out.flush()


def _done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["arch"] for line in path.read_text().splitlines() if line.strip()}


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rho(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok])[0]) if ok.sum() > 2 else math.nan


def cmd_report(args: argparse.Namespace) -> None:
    pub = {r["arch_str"]: r for r in read_nb201(args.data)}
    if args.agree and args.agree.exists():
        recs = _load(args.agree)
        p = [pub[r["arch"]] for r in recs]
        ours_params = np.array([r["ours"]["params"] for r in recs])
        pub_params = np.array([float(q["zc_params"]) for q in p])
        exact = np.array([float(f"{v:.6g}") for v in ours_params]) == pub_params
        print(f"agreement on {len(recs)} canonical cells (random, seed {args.seed})")
        print(f"- params equal published zc_params after rounding to 6 significant digits: "
              f"{exact.sum()}/{len(recs)}; max |diff| {np.abs(ours_params - pub_params).max():.2e}")
        cost_ok = sum(abs(r["ours"]["flops"] - r["cost"][0]) < 1e-9 and
                      abs(r["ours"]["params"] - r["cost"][1]) < 1e-12 for r in recs)
        print(f"- flops/params equal NB201Space.cost() exactly: {cost_ok}/{len(recs)}")
        print(f"- flops Spearman with published zc_flops: "
              f"{_rho([r['ours']['flops'] for r in recs], [float(q['zc_flops']) for q in p]):.4f}")
        syn = [r["ours"]["synflow"] for r in recs]
        print(f"- synflow Spearman with published zc_synflow: "
              f"{_rho(syn, [float(q['zc_synflow']) for q in p]):.4f} "
              f"(non-finite: {sum(not math.isfinite(v) for v in syn)})")
    scored = {}
    for path in (args.classic, args.speed, args.quality):
        if path and path.exists():
            scored.update({r["arch"]: r["ours"] for r in _load(path)})
    if scored:
        print(f"\nrank correlations, Fashion-MNIST batch of 64 (one call per cell)")
        print("| proxy | cells | ours vs published | ours vs cifar10_valid | published vs "
              "cifar10_valid (these cells) | non-finite |")
        print("|---|---|---|---|---|---|")
        for name in ALL:
            archs = [a for a, v in scored.items() if name in v]
            p = [pub[a] for a in archs]
            acc = [float(q["cifar10_valid"]) for q in p]
            ours = [scored[a][name] for a in archs]
            col = PUBLISHED.get(name)
            pv = [float(q[col]) for q in p] if col else None
            nonfin = sum(not math.isfinite(v) for v in ours)
            print(f"| {name} | {len(archs)} | {_rho(ours, pv) if pv else math.nan:.3f} | {_rho(ours, acc):.3f} | "
                  f"{_rho(pv, acc) if pv else math.nan:.3f} | {nonfin} |")
    for path in (args.classic, args.speed):
        if not (path and path.exists()):
            continue
        recs = _load(path)
        print(f"\n{path.name}: median seconds per network (2 torch threads)")
        print("| what | cells | median s | median / floor (same cells) |")
        print("|---|---|---|---|")
        keys = ["floor", "floor_again", "classic6", "all15", *ALL]
        for key in keys:
            ts = [(r["time"][key], r["time"]["floor"]) for r in recs if key in r["time"]]
            if ts:
                print(f"| {key} | {len(ts)} | {statistics.median(t for t, _ in ts):.2f} | "
                      f"{statistics.median(t / f for t, f in ts):.2f} |")
        both = [r for r in recs if all(p in r["time"] for p in ALL)]
        if both:
            one_by_one = [sum(r["time"][p] for p in CLASSIC) for r in both]
            print(f"| classic six one by one (sum of alone) | {len(both)} | "
                  f"{statistics.median(one_by_one):.2f} | |")
            print(f"| all 15 one by one (sum of alone) | {len(both)} | "
                  f"{statistics.median(sum(r['time'][p] for p in ALL) for r in both):.2f} | |")
            slowest = [max(r["time"][p] for p in ALL) for r in both]
            print(f"\nall15 / slowest alone, median over cells: "
                  f"{statistics.median(r['time']['all15'] / s for r, s in zip(both, slowest)):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["agree", "speed", "quality", "report"])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--alone", type=int, default=5, help="cells on which each proxy runs alone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classic-only", action="store_true",
                    help="speed: time only the floor and the classic six together")
    ap.add_argument("--proxies", nargs="+", default=None,
                    help="quality: these proxies only (default: all but ntk and grasp)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--agree", type=Path)
    ap.add_argument("--speed", type=Path)
    ap.add_argument("--quality", type=Path)
    ap.add_argument("--classic", type=Path, help="output of speed --classic-only")
    args = ap.parse_args()
    {"agree": cmd_agree, "speed": cmd_speed, "quality": cmd_quality,
     "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
