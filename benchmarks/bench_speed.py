"""Speed ratios of issue 16, side by side in one run (not a test: timings depend on the machine).

(a) Predictor pretraining: one epoch over the 9,445 canonical NB201 cells (four 12-epoch
    accuracies as weak labels) at batch 20 and 512, the old path (sparse message passing,
    per-tensor Adam: what ``RankingPredictor`` did before the dense path) against the new one
    (dense batched path, fused Adam). Targets: new batch-20 epoch >= 3x faster than the old
    one, and <= 2x the new batch-512 epoch. Also the new path with ``pretrain(compile=True)``
    (forward, gradient and Adam as one ``torch.compile`` graph; compiled once for both batch
    sizes before the timed runs, the compile time reported), and at batch 20 the earlier
    compiled path that ``pretrain`` keeps for dropout (forward and loss compiled only:
    ``compiled_loss_b20``); ``--no-compile`` skips these configs.
(b) Weak labels: ``generate_weak_labels`` throughput (architectures/s) at the ``nasrank run``
    default sizes (NB201 supernet C=8 N=1, 16x16 digits as 3 channels, 20% validation split,
    batch 128, 8 BN batches) against its floor: the forward passes it must do anyway (the BN
    recalibration batches + the evaluation batches of each architecture), timed on the same
    architectures; without proxies and with the default proxies (synflow, nwot, jacob_cov).
    Target: total <= 1.5x the floor. The supernet is left untrained: speed does not depend on
    the weights' values.
(c) With ``--zc-reference DIR``: the classic six zero-cost proxies, ours against the SamsungLabs
    reference (``foresight.pruners.predictive.find_measures``, imported from DIR, not part of
    nasrank) on the same NB201 networks and batch; time ratio and largest value differences.
    Target: reference >= 3x ours.
(e) With ``--device cuda``: the accelerator targets (pretraining at batch 20 on 10,000 cells,
    extrapolated to 300 epochs; weak labels on the device vs the CPU); see ``bench_device``.
(d) With ``--run-stages``: ``nasrank run`` with default settings, wall seconds per stage and each
    stage's share; ``--compare-pythonpath DIR`` alternates with an older checkout (before/after).

Every figure is the best of ``--repeats`` runs (wall-clock and process CPU seconds), next to the
1-minute load average, because the machine may be shared. Run under ``nice -n 10``:

  nice -n 10 python benchmarks/bench_speed.py --data ../shared/data/nb201/nb201.csv
  nice -n 10 python benchmarks/bench_speed.py --skip-weak --threads 1 --repeats 3
  python benchmarks/bench_speed.py --skip-pretrain --skip-weak --run-stages --compare-pythonpath OLD
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

LABELS = ("cifar10_valid_12ep", "cifar100_valid_12ep", "cifar10_test_12ep", "cifar100_test_12ep")


def timed(fn: Callable[[], Any]) -> dict[str, float]:
    load = os.getloadavg()[0]
    w, c = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "load1": load}


def best(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The best run's figures, plus every run's wall time (the spread between repeats)."""
    i = int(np.argmin([r["wall_s"] for r in runs]))
    return {"wall_s": runs[i]["wall_s"], "cpu_s": min(r["cpu_s"] for r in runs),
            "load1": runs[i]["load1"], "all_wall_s": [round(r["wall_s"], 3) for r in runs]}


# ----------------------------------------------------------------------------- (a) predictor
def bench_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    import nasrank.predictor.model as model
    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.benchmarks import canonical_subset, load_nb201

    bench = canonical_subset(load_nb201(args.data))
    archs = [bench.archs[k] for k in bench.table.keys]
    labels = {n: bench.table.column(n) for n in LABELS}
    fused_adam = model._adam

    class PlainAdam:  # the optimizer before the speed work: per-tensor Adam, grads set to None
        def __init__(self, params: Any, **kw: Any) -> None:
            self.optimizer = torch.optim.Adam(params, **kw)

        def zero_grad(self) -> None:
            self.optimizer.zero_grad(set_to_none=True)

        def step(self) -> None:
            self.optimizer.step()

        def release(self) -> None:
            pass

    plain_adam = PlainAdam

    preds = {d: RankingPredictor(bench.space, seed=0, dense=d) for d in (False, True)}
    for p in preds.values():
        p.predict(archs)  # graph conversion outside the timed part
    configs = [("old_b20", False, 20, False), ("new_b20", True, 20, False),
               ("old_b512", False, 512, False), ("new_b512", True, 512, False)]
    # "loss": the sixth session's compiled path (forward and loss compiled, autograd's backward
    # and FlatAdam.step eager), which pretrain now takes only when dropout draws masks
    draws_dropout = model._draws_dropout
    loss_only = lambda net: True  # noqa: E731
    if not args.no_compile:
        configs += [("compiled_b20", True, 20, True), ("compiled_b512", True, 512, True),
                    ("compiled_loss_b20", True, 20, "loss")]
        t0 = time.perf_counter()
        for bs in (20, 512):  # compile each batch shape (full and tail) outside the timed runs
            preds[True].pretrain(archs, labels, epochs=1, batch_size=bs, compile=True)
        compile_s = time.perf_counter() - t0
        model._draws_dropout = loss_only
        try:
            preds[True].pretrain(archs, labels, epochs=1, batch_size=20, compile=True)
        finally:
            model._draws_dropout = draws_dropout
    runs: dict[str, list[dict[str, float]]] = {c[0]: [] for c in configs}
    try:
        for _ in range(args.repeats):  # interleaved, so that a load change hits every config
            for name, dense, bs, comp in configs:
                model._adam = fused_adam if dense else plain_adam
                model._draws_dropout = loss_only if comp == "loss" else draws_dropout
                runs[name].append(timed(lambda d=dense, b=bs, c=bool(comp): preds[d].pretrain(
                    archs, labels, epochs=1, batch_size=b, compile=c)))
    finally:
        model._adam = fused_adam
        model._draws_dropout = draws_dropout
    res: dict[str, Any] = {"archs": len(archs), **{n: best(r) for n, r in runs.items()}}
    pairs = [("old_b20", "new_b20"), ("new_b20", "new_b512"), ("new_b20", "old_b512")]
    if not args.no_compile:
        res["compile_s_two_epochs"] = compile_s
        pairs += [("old_b20", "compiled_b20"), ("compiled_b20", "compiled_b512"),
                  ("compiled_b20", "new_b512"), ("new_b20", "compiled_b20"),
                  ("old_b20", "compiled_loss_b20"), ("compiled_loss_b20", "compiled_b20")]
    for a, b in pairs:
        for unit in ("wall_s", "cpu_s"):
            res[f"ratio_{a}_over_{b}_{unit}"] = res[a][unit] / res[b][unit]
        # the same ratio within each interleaved repeat, then the median: less luck than best/best
        paired = [ra["wall_s"] / rb["wall_s"] for ra, rb in zip(runs[a], runs[b])]
        res[f"ratio_{a}_over_{b}_paired_median_wall"] = float(np.median(paired))
    return res


# ----------------------------------------------------------------------------- (b) weak labels
def bench_weak_labels(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from nasrank.spaces.base import sample_unique
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.nb201_supernet import NB201SupernetConfig
    from nasrank.supernet.train import evaluate
    from nasrank.supernet.weak_labels import generate_weak_labels, recalibrate_bn

    data = load_dataset("digits", seed=0, image_size=16, channels=3, valid_fraction=0.2)
    sn = NB201SupernetConfig(channels=8, cells=1).build(
        NB201Space(), num_classes=data.num_classes, in_channels=3, seed=0)
    archs = sample_unique(sn.space, args.weak_archs, np.random.default_rng(0))
    bs, bn_batches = 128, 8

    def floor() -> None:
        for a in archs:
            recalibrate_bn(sn, a, data, batches=bn_batches, batch_size=bs, seed=0)
            sn.eval()
            evaluate(lambda x, a=a: sn(x, a), data.valid, batch_size=bs, device="cpu")

    def weak(proxies: list[str] | None) -> Callable[[], None]:
        def run() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                generate_weak_labels(sn, archs, data, os.path.join(tmp, "w.csv"),
                                     bn_batches=bn_batches, batch_size=bs, seed=0,
                                     proxies=proxies, progress=False)
        return run

    runs: dict[str, list[dict[str, float]]] = {"floor": [], "weak_no_proxies": [],
                                               "weak_3_proxies": []}
    all_archs, archs = archs, archs[:3]  # warm-up: first calls allocate and import; untimed
    floor(), weak(["synflow", "nwot", "jacob_cov"])()
    archs = all_archs
    for _ in range(args.repeats):
        runs["floor"].append(timed(floor))
        runs["weak_no_proxies"].append(timed(weak(None)))
        runs["weak_3_proxies"].append(timed(weak(["synflow", "nwot", "jacob_cov"])))
    res: dict[str, Any] = {"archs": len(archs), **{n: best(r) for n, r in runs.items()}}
    for n in runs:
        res[n]["archs_per_s"] = len(archs) / res[n]["wall_s"]
    for n in ("weak_no_proxies", "weak_3_proxies"):
        res[f"ratio_{n}_over_floor_wall"] = res[n]["wall_s"] / res["floor"]["wall_s"]
        res[f"ratio_{n}_over_floor_cpu"] = res[n]["cpu_s"] / res["floor"]["cpu_s"]
    return res


# ----------------------------------------------------------------------------- on an accelerator
def bench_device(args: argparse.Namespace) -> dict[str, Any]:
    """The accelerator targets of issue 16, on ``--device`` (e.g. ``cuda``), in one run:

    * predictor: ``--device-epochs`` pretraining epochs on 10,000 NB201 cells (seeded sample of
      all 15,625; four labels) at batch 20, timed with the device synchronised; the 300-epoch
      default is extrapolated from the mean epoch after a warm-up epoch (target: <= 180 s),
      eager and with ``pretrain(compile=...)`` (``default``; on CUDA also ``reduce-overhead``,
      i.e. CUDA graphs);
    * weak labels: ``generate_weak_labels`` on ``--weak-archs`` archs at the ``nasrank run``
      sizes with synflow, nwot and jacov, on the device and on the CPU (``--threads``), in
      architectures per second (target: device >= 10x CPU).
    Runs on the CPU as well (``--device cpu``), which is how the code path is tested here."""
    import tempfile

    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.base import sample_unique
    from nasrank.spaces.benchmarks import load_nb201
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.nb201_supernet import NB201SupernetConfig
    from nasrank.supernet.weak_labels import generate_weak_labels

    dev = torch.device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    bench = load_nb201(args.data)
    keys = list(bench.table.keys)
    pick = np.random.default_rng(0).choice(len(keys), min(10_000, len(keys)), replace=False)
    archs = [bench.archs[keys[i]] for i in pick]
    labels = {n: bench.table.column(n)[pick] for n in LABELS}
    pred = RankingPredictor(bench.space, seed=0, device=dev)
    pred.predict(archs[:64])  # graph conversion and device set-up, untimed
    res: dict[str, Any] = {"device": str(dev), "pretrain_archs": len(archs)}
    compiled = ["default", "reduce-overhead"] if dev.type == "cuda" else ["default"]
    for mode in ([] if args.no_compile else compiled) + ["off"]:
        epoch_s = []
        for _ in range(args.device_epochs + 1):  # the first epoch is the warm-up (and compiles)
            sync()
            t = time.perf_counter()
            pred.pretrain(archs, labels, epochs=1, batch_size=20,
                          compile=False if mode == "off" else mode)
            sync()
            epoch_s.append(time.perf_counter() - t)
        mean_epoch = float(np.mean(epoch_s[1:])) if len(epoch_s) > 1 else epoch_s[0]
        tag = "" if mode == "off" else f"_compile_{mode}"
        res[f"pretrain_epoch_s{tag}"] = epoch_s
        res[f"pretrain_300_epochs_extrapolated_s{tag}"] = 300 * mean_epoch

    data = load_dataset("digits", seed=0, image_size=16, channels=3, valid_fraction=0.2)
    sn = NB201SupernetConfig(channels=8, cells=1).build(
        NB201Space(), num_classes=data.num_classes, in_channels=3, seed=0)
    weak_archs = sample_unique(sn.space, args.weak_archs, np.random.default_rng(0))
    proxies = ["synflow", "nwot", "jacob_cov"]

    def weak(where: torch.device, which: list) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            sync()
            t = time.perf_counter()
            generate_weak_labels(sn, which, data, os.path.join(tmp, "w.csv"), bn_batches=8,
                                 batch_size=128, seed=0, proxies=proxies, device=where,
                                 progress=False)
            sync()
            return time.perf_counter() - t

    for where in (dev, torch.device("cpu")):
        weak(where, weak_archs[:3])  # warm-up
    dev_s, cpu_s = weak(dev, weak_archs), weak(torch.device("cpu"), weak_archs)
    res.update({"weak_archs": len(weak_archs), "weak_device_s": dev_s, "weak_cpu_s": cpu_s,
                "weak_device_archs_per_s": len(weak_archs) / dev_s,
                "weak_cpu_archs_per_s": len(weak_archs) / cpu_s,
                "ratio_weak_device_over_cpu_archs_per_s": cpu_s / dev_s})
    sn.to("cpu")
    return res


# ----------------------------------------------------------------------------- (c) proxies vs reference
CLASSIC6 = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacob_cov"]


def bench_zero_cost_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The classic six proxies, ours (one :func:`score` call) against the reference
    ``foresight.pruners.predictive.find_measures`` (SamsungLabs zero-cost-nas, imported from
    ``--zc-reference DIR``; never shipped with nasrank) on the same networks and batch: NB201
    stand-alone networks (C = 16, N = 5, 10 classes) of ``--zc-cells`` seeded cells, 64 digits
    images at 32x32 x 3 channels. The order of the two alternates from cell to cell; the first
    cell is a warm-up for both and untimed. Also reports each proxy's largest relative
    difference between the two (synflow: ours is the log of the reference's sum)."""
    import math
    import sys

    from nasrank.spaces.base import sample_unique
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.proxies import score

    sys.path.insert(0, os.path.abspath(args.zc_reference))
    from foresight.pruners import predictive  # the reference, from --zc-reference

    data = load_dataset("digits", seed=0, image_size=32, channels=3, valid_fraction=0.2)
    x, y = data.train.tensors[0][:64].contiguous(), data.train.tensors[1][:64].contiguous()
    space = NB201Space()
    archs = sample_unique(space, args.zc_cells + 1, np.random.default_rng(0))

    def ours(net: torch.nn.Module) -> dict[str, float]:
        return score(net, (x, y), CLASSIC6, seed=0)

    def reference(net: torch.nn.Module) -> dict[str, float]:
        import warnings

        with warnings.catch_warnings():  # its fisher uses the deprecated register_backward_hook
            warnings.simplefilter("ignore")
            return predictive.find_measures(net, [(x, y)], ("random", 1, data.num_classes), "cpu",
                                            measure_names=CLASSIC6)

    times: dict[str, list[float]] = {"ours": [], "reference": []}
    worst = {p: 0.0 for p in CLASSIC6}
    for k, arch in enumerate(archs):
        torch.manual_seed(k)
        net = space.build(arch)
        order = [("ours", ours), ("reference", reference)]
        vals = {}
        for name, fn in (order if k % 2 else order[::-1]):
            t = time.perf_counter()
            vals[name] = fn(net)
            if k > 0:
                times[name].append(time.perf_counter() - t)
        for p in CLASSIC6:
            a, b = vals["ours"]["jacov" if p == "jacob_cov" else p], float(vals["reference"][p])
            if p == "synflow":
                b = math.log(b)
            worst[p] = max(worst[p], abs(a - b) / max(abs(b), 1e-12))
    res = {"cells": len(archs) - 1, "ours_s": times["ours"], "reference_s": times["reference"],
           "ours_total_s": sum(times["ours"]), "reference_total_s": sum(times["reference"]),
           "max_rel_diff": worst}
    res["ratio_reference_over_ours"] = res["reference_total_s"] / res["ours_total_s"]
    return res


# ----------------------------------------------------------------------------- (d) nasrank run
STAGES = ("supernet_s", "weak_labels_s", "pretrain_s", "search_s", "random_s")


def bench_run_stages(args: argparse.Namespace) -> dict[str, Any]:
    """``nasrank run`` with default settings in a fresh process per repeat: wall time per
    stage (the pipeline's own ``timings_s``) and each stage's share. With ``--compare-pythonpath
    DIR`` (an older checkout laid out as an importable ``nasrank`` package) the two versions
    alternate, so both see the same machine."""
    import subprocess
    import sys
    import tempfile

    versions = {"current": None}
    if args.compare_pythonpath:
        versions = {"compare": args.compare_pythonpath, "current": None}
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in versions}
    for _ in range(args.repeats):
        for name, path in versions.items():
            env = dict(os.environ)
            if path:
                env["PYTHONPATH"] = os.path.abspath(path)
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "run")
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "nasrank", "--quiet", "run", "--out", out],
                               check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
                total = time.perf_counter() - t0
                with open(os.path.join(out, "results.json")) as f:
                    stages = json.load(f)["timings_s"]
            runs[name].append({"total_process_s": total, **{k: stages[k] for k in STAGES}})
    res: dict[str, Any] = {}
    for name, rs in runs.items():
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("total_process_s", *STAGES)}
        staged = sum(mean[k] for k in STAGES)
        res[name] = {"mean_s": mean, "share_of_stages": {k: mean[k] / staged for k in STAGES},
                     "runs": rs}
    if "compare" in res:
        res["speedup_per_stage"] = {k: res["compare"]["mean_s"][k] / res["current"]["mean_s"][k]
                                    for k in ("total_process_s", *STAGES)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/nb201/nb201.csv", help="nb201.csv or its folder")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op and BLAS threads (default: the libraries' own)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per figure; the best is reported")
    ap.add_argument("--weak-archs", type=int, default=300, help="architectures for (b) (`nasrank run`: 300)")
    ap.add_argument("--skip-pretrain", action="store_true")
    ap.add_argument("--skip-weak", action="store_true")
    ap.add_argument("--no-compile", action="store_true",
                    help="(a) without the torch.compile configs (they compile for ~1 min first)")
    ap.add_argument("--run-stages", action="store_true",
                    help="(d): time `nasrank run` with default settings per stage (minutes)")
    ap.add_argument("--compare-pythonpath", default=None,
                    help="with --run-stages: alternate with the nasrank package found here")
    ap.add_argument("--device", default="cpu",
                    help="an accelerator (cuda, cuda:1...): also run its targets (see bench_device)")
    ap.add_argument("--device-epochs", type=int, default=3, help="timed pretraining epochs there")
    ap.add_argument("--device-check", action="store_true",
                    help="run the accelerator section on --device cpu too (tests its code path)")
    ap.add_argument("--zc-reference", default=None,
                    help="(c): folder holding the reference `foresight` package (zero-cost-nas)")
    ap.add_argument("--zc-cells", type=int, default=10, help="timed NB201 networks for (c)")
    ap.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        from threadpoolctl import threadpool_limits  # numpy's BLAS too (jacov's corrcoef)

        threadpool_limits(args.threads)
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "uptime_load_before": os.getloadavg(),
    }
    if not args.skip_pretrain:
        res["a_pretrain_epoch_nb201"] = bench_pretrain(args)
        print(json.dumps({"a_pretrain_epoch_nb201": res["a_pretrain_epoch_nb201"]}, indent=1), flush=True)
    if not args.skip_weak:
        res["b_weak_labels"] = bench_weak_labels(args)
        print(json.dumps({"b_weak_labels": res["b_weak_labels"]}, indent=1), flush=True)
    if args.device != "cpu" or args.device_check:
        res["device_targets"] = bench_device(args)
        print(json.dumps({"device_targets": res["device_targets"]}, indent=1), flush=True)
    if args.zc_reference:
        res["c_zero_cost_vs_reference"] = bench_zero_cost_reference(args)
    else:
        res["c_zero_cost_vs_reference"] = ("not measured: pass --zc-reference DIR, a checkout of "
                                           "SamsungLabs zero-cost-nas (its foresight package)")
    if args.run_stages:
        res["d_run_stages"] = bench_run_stages(args)
        print(json.dumps({"d_run_stages": res["d_run_stages"]}, indent=1), flush=True)
    res["uptime_load_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in res.items() if not k.startswith(("a_", "b_"))}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
