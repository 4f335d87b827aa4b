"""The stages behind the ``nasrank`` commands, and the whole pipeline (``nasrank run``).

Each stage writes into one output folder and resumes from what is already there:

====================  =====================================================================
``config.json``       the run's settings; a rerun with other settings is refused (nothing lost)
``supernet/``         supernet checkpoint (``supernet.pt``, written every epoch)
``weak_labels.csv``   label table: ``ws_acc``, ``ws_neg_loss``, ``flops``, ``params``, ``zc_*``
``predictor.pt``      DGCNN predictor pretrained on the weak labels
``trainings/``        one checkpoint per stand-alone training (shared by search and baseline)
``search.jsonl``      every query of the predictor-guided search, in order (resumable record)
``random.jsonl``      the same for the random baseline with the same budget
``results.json``      summary: best architectures, accuracies, curves, correlations, timings
``queries.csv``       every trained architecture: method, order, weak labels, predicted score,
                      measured valid/test accuracy
``*.png``             predicted vs. true scatter, best-so-far curves, weak-label heatmap
====================  =====================================================================
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.spaces import LabelTable, NasrankError, get_space, sample_unique
from nasrank.spaces.benchmarks import load_benchmark

from .report import format_table


class OutputDirError(NasrankError):
    """An output folder that holds a run with other settings."""


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare_out(out: str | os.PathLike, settings: Mapping[str, Any]) -> Path:
    """Create ``out`` and record ``settings``; refuse a folder holding another run's settings."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    cfg_file = path / "config.json"
    clean = json.loads(json.dumps(dict(settings), default=str))
    if cfg_file.exists():
        try:
            old = json.loads(cfg_file.read_text())
        except json.JSONDecodeError:
            raise OutputDirError(f"{str(cfg_file)!r} is not valid JSON; use another --out") from None
        diff = sorted(k for k in set(old) | set(clean) if old.get(k) != clean.get(k))
        if diff:
            k = diff[0]
            raise OutputDirError(
                f"--out {str(path)!r} holds a run with {k}={old.get(k)!r}, this run has "
                f"{k}={clean.get(k)!r}; use another --out (nothing was changed)")
    else:
        cfg_file.write_text(json.dumps(clean, indent=2))
    return path


# ----------------------------------------------------------------------------- stages
def make_supernet(space_name: str, *, num_classes: int, in_channels: int, channels: int,
                  cells: int):
    if space_name == "nb201":
        from nasrank.supernet.nb201_supernet import NB201Supernet

        return NB201Supernet(num_classes=num_classes, C=channels, N=cells,
                             in_channels=in_channels)
    if space_name == "cvpr2021":
        from nasrank.supernet.channel import ChannelSupernet

        return ChannelSupernet(num_classes=num_classes, in_channels=in_channels)
    raise NasrankError(f"no supernet for space {space_name!r}; expected nb201 or cvpr2021")


def make_sampler(supernet: Any, name: str):
    from nasrank.supernet.base import StrictFairSampler, UniformSampler

    if name == "uniform":
        return UniformSampler(supernet)
    if name == "fair":
        return StrictFairSampler(supernet)
    raise NasrankError(f"unknown sampler {name!r}; expected uniform or fair")


def load_data(dataset: str, data_root: str | None, *, seed: int, image_size: int | None,
              subset: int | None = None, valid_fraction: float = 0.2):
    """The dataset as 3-channel images (what the NB201 and ResNet builders take). A 20%
    validation split by default: on digits 10% would be only ~140 images, too coarse to rank."""
    from nasrank.supernet.datasets import load_dataset

    return load_dataset(dataset, data_root, seed=seed, image_size=image_size, channels=3,
                        subset=subset, valid_fraction=valid_fraction)


def train_supernet_stage(out: Path, *, space: str, dataset: str, data_root: str | None,
                         sampler: str, epochs: int, batch_size: int, lr: float, channels: int,
                         cells: int, image_size: int | None, seed: int, device: str):
    """Train (or resume, or reload when finished) the supernet under ``out/supernet``."""
    from nasrank.supernet.trainer import train_supernet

    data = load_data(dataset, data_root, seed=seed, image_size=image_size)
    net = make_supernet(space, num_classes=data.num_classes, in_channels=data.input_shape[0],
                        channels=channels, cells=cells)
    stats = train_supernet(net, data, make_sampler(net, sampler), epochs=epochs,
                           batch_size=batch_size, lr=lr, device=device, seed=seed,
                           checkpoint_dir=out / "supernet", progress=True)
    return net, data, stats


def weak_label_stage(out: Path, net: Any, data: Any, *, num_archs: int, proxies: Sequence[str],
                     seed: int, device: str, shard: tuple[int, int] = (0, 1)) -> LabelTable:
    """Weak labels of ``num_archs`` distinct random architectures (seeded)."""
    from nasrank.supernet.weak_labels import generate_weak_labels

    archs = sample_unique(net.space, num_archs, np.random.default_rng(seed))
    return generate_weak_labels(net, archs, data, out / "weak_labels.csv", device=device,
                                seed=seed, proxies=list(proxies) or None, shard=shard,
                                progress=True)


def pretrain_stage(out: Path, space: Any, table: LabelTable, *, epochs: int, seed: int,
                   device: str, columns: Sequence[str] | None = None):
    """Pretrain the predictor on the weak labels, or load it when ``predictor.pt`` exists."""
    from nasrank.predictor import RankingPredictor

    ckpt = out / "predictor.pt"
    if ckpt.exists():
        _say(f"[pretrain] reusing {ckpt}")
        return RankingPredictor.load(ckpt, space=space, device=device), ckpt
    cols = list(columns) if columns else [n for n in table.names
                                          if np.isfinite(table.column(n)).all()
                                          and np.ptp(table.column(n)) > 0]
    if not cols:
        raise NasrankError(f"no usable weak-label column in {table.names} (all constant or NaN)")
    archs = [space.parse(k) for k in table.keys]
    model = RankingPredictor(space, device=device, seed=seed)
    model.pretrain(archs, table, columns=cols, epochs=epochs, progress=True)
    model.save(ckpt)
    return model, ckpt


# ----------------------------------------------------------------------------- nasrank run
def run_pipeline(
    *, out: str | os.PathLike = "runs/nasrank-run", dataset: str = "digits",
    data_root: str | None = None, seed: int = 0, device: str = "cpu",
    supernet_epochs: int = 6, sampler: str = "uniform", archs: int = 300,
    proxies: Sequence[str] = ("synflow", "nwot", "jacob_cov"), pretrain_epochs: int = 60,
    budget: int = 12, rounds: int = 3, epochs: int = 3, channels: int = 8, cells: int = 1,
    image_size: int | None = 16, batch_size: int = 64, lr: float = 0.05,
    finetune_epochs: int = 100,
) -> dict[str, Any]:
    """NB201 end to end: supernet -> weak labels (+ proxies) -> pretrained predictor ->
    iterative sampling with real stand-alone training as the oracle, next to random search with
    the same budget and training. Returns (and writes) the summary."""
    from .baselines import random_search
    from .iterative import iterative_sampling
    from .oracles import TrainingOracle
    from .surrogates import ranking_predictor_factory

    settings = dict(space="nb201", dataset=dataset, data_root=data_root, seed=seed,
                    supernet_epochs=supernet_epochs, sampler=sampler, archs=archs,
                    proxies=list(proxies), pretrain_epochs=pretrain_epochs, budget=budget,
                    rounds=rounds, epochs=epochs, channels=channels, cells=cells,
                    image_size=image_size, batch_size=batch_size, lr=lr,
                    finetune_epochs=finetune_epochs)
    outp = prepare_out(out, settings)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    _say(f"[1/5] supernet: NB201 C={channels} N={cells} on {dataset}, {sampler} sampling, "
         f"{supernet_epochs} epochs")
    net, data, sn_stats = train_supernet_stage(
        outp, space="nb201", dataset=dataset, data_root=data_root, sampler=sampler,
        epochs=supernet_epochs, batch_size=batch_size, lr=lr, channels=channels, cells=cells,
        image_size=image_size, seed=seed, device=device)
    timings["supernet_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(f"[2/5] weak labels for {archs} architectures (+ proxies: {', '.join(proxies) or 'none'})")
    table = weak_label_stage(outp, net, data, num_archs=archs, proxies=proxies, seed=seed,
                             device=device)
    timings["weak_labels_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(f"[3/5] pretraining the predictor on {len(table)} weak labels")
    space = net.space
    pretrained, ckpt = pretrain_stage(outp, space, table, epochs=pretrain_epochs, seed=seed,
                                      device=device)
    timings["pretrain_s"] = time.perf_counter() - t

    train_kw = dict(epochs=epochs, batch_size=batch_size, lr=lr, device=device, seed=seed,
                    checkpoint_dir=outp / "trainings",
                    train_kwargs={"build_kwargs": {"C": channels, "N": cells}})
    t = time.perf_counter()
    _say(f"[4/5] iterative sampling: {budget} real trainings of {epochs} epochs in {rounds} rounds")
    factory = ranking_predictor_factory(space, checkpoint=ckpt, device=device,
                                        # fit's lr default after pretraining
                                        fit_kwargs={"epochs": finetune_epochs,
                                                    "valid_fraction": 0.0})
    found = iterative_sampling(space=space, oracle=TrainingOracle(space, data, **train_kw),
                               budget=budget, seed=seed, predictor_factory=factory,
                               rounds=rounds, record=outp / "search.jsonl")
    timings["search_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _say(f"[5/5] random baseline: {budget} random architectures trained the same way")
    rand = random_search(space=space, oracle=TrainingOracle(space, data, **train_kw),
                         budget=budget, seed=seed + 1, record=outp / "random.jsonl")
    timings["random_s"] = time.perf_counter() - t

    summary = write_run_report(outp, space, table, pretrained, {"predictor search": found,
                                                                "random": rand}, timings)
    return summary


def _scores(model: Any, archs: Sequence[Any]) -> np.ndarray:
    return np.asarray(model.predict(list(archs)), dtype=np.float64)


def write_run_report(out: Path, space: Any, table: LabelTable, pretrained: Any,
                     results: Mapping[str, Any], timings: Mapping[str, float]) -> dict[str, Any]:
    """results.json, queries.csv, the three PNG plots, and a printed summary table."""
    from nasrank.predictor.metrics import kendall_tau, spearman

    from .plots import best_so_far_curves, correlation_heatmap, scatter_predicted_vs_true

    rows, trained = [], {}
    for method, res in results.items():
        for i, ((key, value, seconds), reported) in enumerate(zip(res.queries, res.reported)):
            trained.setdefault(key, (value, reported))
            rows.append((method, i + 1, key, value, reported, seconds))
    keys = list(trained)
    archs = [space.parse(k) for k in keys]
    pred = _scores(pretrained, archs)
    valid = np.array([trained[k][0] for k in keys])
    pred_of = dict(zip(keys, pred))

    with open(out / "queries.csv", "w") as f:
        weak_names = table.names
        f.write(",".join(["method", "order", "key", "valid_acc", "test_acc", "seconds",
                          "predicted", *weak_names]) + "\n")
        for method, order, key, v, r, s in rows:
            row = table.row(key) if key in table else {}
            weak = [repr(row[n]) if row else "" for n in weak_names]
            f.write(",".join([method, str(order), key, repr(v), repr(r), f"{s:.3f}",
                              repr(float(pred_of[key])), *weak]) + "\n")

    scatter_predicted_vs_true(out / "predicted_vs_true.png", pred, valid, top_k=3,
                              title="pretrained predictor vs stand-alone accuracy",
                              ylabel="stand-alone validation accuracy")
    best_so_far_curves(out / "best_so_far.png",
                       {m: r.best_so_far for m, r in results.items()},
                       ylabel="best validation accuracy so far")
    heat_cols = {n: table.column(n) for n in table.names}
    heat_cols["standalone_acc"] = np.array([trained[k][0] if k in trained else math.nan
                                            for k in table.keys])
    corr = correlation_heatmap(out / "weak_label_correlation.png", heat_cols)

    summary: dict[str, Any] = {"methods": {}, "timings_s": dict(timings)}
    for method, res in results.items():
        summary["methods"][method] = {
            "best_arch": res.best_arch, "best_valid_acc": res.best_value,
            "best_test_acc": res.best_reported, "queries": len(res.queries),
            "best_so_far": list(res.best_so_far),
        }
    if len(keys) > 2:
        summary["pretrained_predictor_vs_standalone"] = {
            "kendall_tau": kendall_tau(valid, pred), "spearman": spearman(valid, pred),
            "n": len(keys)}
    names = list(heat_cols)
    j = names.index("standalone_acc")
    summary["weak_label_spearman_with_standalone"] = {
        n: (None if not np.isfinite(corr[i, j]) else float(corr[i, j]))
        for i, n in enumerate(names) if n != "standalone_acc"}
    (out / "results.json").write_text(json.dumps(summary, indent=2))

    _say("")
    _say(format_table(
        ["method", "trainings", "best valid acc", "its test acc", "best architecture"],
        [[m, s["queries"], s["best_valid_acc"], s["best_test_acc"], s["best_arch"]]
         for m, s in summary["methods"].items()]))
    if "pretrained_predictor_vs_standalone" in summary:
        c = summary["pretrained_predictor_vs_standalone"]
        _say(f"\npretrained predictor vs stand-alone accuracy on the {c['n']} trained archs: "
             f"Kendall tau {c['kendall_tau']:.3f}, Spearman {c['spearman']:.3f}")
    _say("time per stage: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in timings.items()))
    _say(f"outputs in {out}/: results.json, queries.csv, weak_labels.csv, predictor.pt, "
         f"predicted_vs_true.png, best_so_far.png, weak_label_correlation.png")
    return summary


# ----------------------------------------------------------------------------- single stages
def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise NasrankError(f"{what} {str(path)!r} does not exist; run the earlier stage first")
    return json.loads(path.read_text())


def supernet_train_command(*, out: str | None, space: str, dataset: str, data_root: str | None,
                           sampler: str, epochs: int, batch_size: int, lr: float, channels: int,
                           cells: int, image_size: int | None = None, seed: int,
                           device: str) -> None:
    """``nasrank supernet-train``: train (or resume) a supernet into ``out/supernet``."""
    outp = Path(out or "runs/supernet")
    settings = dict(space=space, dataset=dataset, data_root=data_root, sampler=sampler,
                    epochs=epochs, batch_size=batch_size, lr=lr, channels=channels,
                    cells=cells, image_size=image_size, seed=seed)
    prepare_out(outp / "supernet", settings).joinpath("settings.json").write_text(
        json.dumps(settings, indent=2))
    _, _, stats = train_supernet_stage(outp, device=device, **settings)
    _say(f"supernet trained: {stats.epochs} epochs, {stats.images_per_second:.0f} images/s, "
         f"last loss {stats.last_loss:.3f}; checkpoint {outp / 'supernet' / 'supernet.pt'}")


def weak_labels_command(*, out: str | None, num_archs: int, proxies: Sequence[str],
                        shard: tuple[int, int], seed: int, device: str,
                        dataset: str | None = None, data_root: str | None = None) -> None:
    """``nasrank weak-labels``: evaluate archs with the supernet trained in ``out``."""
    from nasrank.supernet.trainer import load_supernet

    outp = Path(out or "runs/supernet")
    s = _read_json(outp / "supernet" / "settings.json", "supernet settings")
    data = load_data(s["dataset"], data_root or s["data_root"], seed=s["seed"],
                     image_size=s["image_size"])
    net = make_supernet(s["space"], num_classes=data.num_classes,
                        in_channels=data.input_shape[0], channels=s["channels"], cells=s["cells"])
    load_supernet(net, outp / "supernet")
    table = weak_label_stage(outp, net, data, num_archs=num_archs, proxies=proxies, seed=seed,
                             device=device, shard=shard)
    _say(f"{len(table)} rows in {outp / 'weak_labels.csv'} (columns {', '.join(table.names)})")


def pretrain_command(*, out: str | None, labels: str, space: str, columns: Sequence[str],
                     epochs: int, seed: int, device: str) -> None:
    """``nasrank pretrain``: multi-task pretraining on a label table -> ``out/predictor.pt``."""
    sp = get_space(space)
    table = LabelTable.read_csv(labels, space=sp.name)
    for c in columns:
        table.column(c)  # names an unknown column before any work
    outp = Path(out or "runs/predictor")
    outp.mkdir(parents=True, exist_ok=True)
    _, ckpt = pretrain_stage(outp, sp, table, epochs=epochs, seed=seed, device=device,
                             columns=columns or None)
    _say(f"pretrained predictor written to {ckpt}")


def finetune_command(*, out: str | None, labels: str | None, benchmark: str | None,
                     data: str | None, metric: str, n: int, loss: str, epochs: int, space: str,
                     seed: int, device: str) -> None:
    """``nasrank finetune``: fit the predictor (``out/predictor.pt`` when it exists, else from
    scratch) on ground truth; with a benchmark, train on ``n`` random archs and report ranking
    metrics on the rest."""
    from nasrank.predictor import RankingPredictor, summary

    outp = Path(out or "runs/predictor")
    outp.mkdir(parents=True, exist_ok=True)
    if benchmark:
        if not data:
            raise NasrankError("finetune --benchmark needs --data PATH to the benchmark file")
        bench = load_benchmark(benchmark, data)
        sp, col = bench.space, bench.table.column(metric)
        rows = [i for i, v in enumerate(col) if np.isfinite(v)]
        canonical = [i for i in rows
                     if bench.space.key(bench.archs[bench.table.keys[i]]) == bench.table.keys[i]]
        rows = canonical or rows  # one row per distinct function where the space can tell
        archs_all = [bench.archs[bench.table.keys[i]] for i in rows]
        y_all = col[rows]
    elif labels:
        sp = get_space(space)
        table = LabelTable.read_csv(labels, space=sp.name)
        y_all = table.column(metric)
        table.require_finite([metric])
        archs_all = [sp.parse(k) for k in table.keys]
    else:
        raise NasrankError("finetune needs --labels FILE or --benchmark NAME --data PATH")
    if n > len(archs_all):
        raise NasrankError(f"--n {n} exceeds the {len(archs_all)} labelled architectures")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(archs_all))
    tr = idx[:n] if benchmark else idx
    ckpt = outp / "predictor.pt"
    model = (RankingPredictor.load(ckpt, space=sp, device=device) if ckpt.exists()
             else RankingPredictor(sp, device=device, seed=seed))
    model.fit([archs_all[i] for i in tr], y_all[tr], loss=loss, epochs=epochs, progress=True)
    model.save(outp / "predictor_finetuned.pt")
    _say(f"fine-tuned predictor written to {outp / 'predictor_finetuned.pt'}")
    if benchmark and len(idx) > n:
        te = idx[n:]
        m = summary(y_all[te], model.predict([archs_all[i] for i in te]))
        (outp / "finetune_metrics.json").write_text(json.dumps(m, indent=2))
        _say(format_table(["metric", "held-out value"], [[k, float(v)] for k, v in m.items()]))


def predict_command(*, out: str | None, checkpoint: str, archs: str | None, all_archs: bool,
                    top: int, device: str) -> None:
    """``nasrank predict``: score archs from a file (one string a line) or the whole space."""
    from nasrank.predictor import RankingPredictor

    model = RankingPredictor.load(checkpoint, device=device)
    sp = model.space
    if all_archs:
        if sp.size is None:
            raise NasrankError(f"space {sp.name!r} cannot be enumerated; pass --archs FILE")
        seen: dict[str, Any] = {}
        for a in sp.enumerate():
            seen.setdefault(sp.key(a), a)
        cand = list(seen.values())
    elif archs:
        p = Path(archs)
        if not p.is_file():
            raise NasrankError(f"architecture file {archs!r} does not exist")
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        if not lines:
            raise NasrankError(f"architecture file {archs!r} is empty")
        cand = [sp.parse(ln) for ln in lines]
    else:
        raise NasrankError("predict needs --archs FILE or --all")
    scores = _scores(model, cand)
    order = np.argsort(-scores, kind="stable")
    if out:
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        LabelTable([sp.format(cand[i]) for i in order], {"score": scores[order]},
                   space=sp.name).to_csv(outp / "predictions.csv")
        _say(f"{len(cand)} predictions written to {outp / 'predictions.csv'}")
    _say(format_table(["rank", "score", "architecture"],
                      [[r + 1, float(scores[i]), sp.format(cand[i])]
                       for r, i in enumerate(order[:top])]))


SEARCH_METHODS = ("iterative", "re", "surrogate-re", "random", "greedy", "optuna")


def search_command(*, out: str | None, benchmark: str, data: str | None, metric: str,
                   report: str | None, method: str, budget: int, proxy: str, seed: int,
                   device: str, checkpoint: str | None = None) -> dict[str, Any]:
    """``nasrank search``: one search on a benchmark table (the benchmark oracle)."""
    from .baselines import greedy_by_proxy, random_search
    from .evolution import regularized_evolution, surrogate_evolution
    from .iterative import iterative_sampling
    from .optuna_search import optuna_sampler_search
    from .oracles import BenchmarkOracle
    from .surrogates import ranking_predictor_factory

    if not data:
        raise NasrankError("search needs --data PATH to the benchmark file")
    if method not in SEARCH_METHODS:
        raise NasrankError(f"unknown search method {method!r}; expected one of {SEARCH_METHODS}")
    bench = load_benchmark(benchmark, data)
    oracle = BenchmarkOracle(bench, metric=metric, report_metric=report)
    sp = bench.space
    outp = Path(out or f"runs/search-{benchmark}-{method}-{metric}-b{budget}-s{seed}")
    outp.mkdir(parents=True, exist_ok=True)
    record = outp / "record.jsonl"
    common = dict(space=sp, oracle=oracle, budget=budget, seed=seed, record=record)
    fit_kw: dict[str, Any] = {"epochs": 100}  # lr: fit's default, lower after pretraining
    factory = ranking_predictor_factory(sp, checkpoint=checkpoint, device=device,
                                        fit_kwargs=fit_kw)
    if method == "iterative":
        res = iterative_sampling(predictor_factory=factory, **common)
    elif method == "re":
        res = regularized_evolution(**common)
    elif method == "surrogate-re":
        res = surrogate_evolution(predictor_factory=factory, **common)
    elif method == "random":
        res = random_search(**common)
    elif method == "greedy":
        res = greedy_by_proxy(labels=bench.table, column=proxy, **common)
    else:
        res = optuna_sampler_search(predictor_factory=factory, **common)
    res.to_csv(outp / "queries.csv")
    (outp / "result.json").write_text(json.dumps(res.to_dict(), indent=2, default=str))
    rep = report or metric
    _say(format_table(["method", "queries", f"best {metric}", f"its {rep}", "architecture"],
                      [[method, len(res.queries), res.best_value, res.best_reported,
                        res.best_arch]]))
    _say(f"record: {record}; queries: {outp / 'queries.csv'}")
    return res.to_dict()


def proxies_command(*, out: str | None, space: str, dataset: str, data_root: str | None,
                    num_archs: int, proxies: Sequence[str], batch_size: int,
                    shard: tuple[int, int], seed: int, device: str,
                    image_size: int | None = None) -> None:
    """``nasrank proxies``: zero-cost proxies of ``num_archs`` seeded random architectures on one
    real batch of ``dataset`` -> ``out/proxies.csv`` (or ``proxies-<i>of<n>.csv`` per shard)."""
    from nasrank.supernet.proxies import available_proxies
    from nasrank.supernet.scoring import score_space
    from nasrank.supernet.train import epoch_order, get_batch

    if not proxies:
        raise NasrankError(f"--proxies is empty; choose from {available_proxies()}")
    unknown = [p for p in proxies if p not in available_proxies()]
    if unknown:
        raise NasrankError(f"unknown proxy {unknown[0]!r}; expected one of {available_proxies()}")
    sp = get_space(space)
    data = load_data(dataset, data_root, seed=seed, image_size=image_size)
    idx = epoch_order(len(data.train), seed, 0)[:batch_size]
    batch = get_batch(data.train, idx, "cpu")
    archs = sample_unique(sp, num_archs, np.random.default_rng(seed))
    outp = Path(out or "runs/proxies")
    name = "proxies.csv" if shard == (0, 1) else f"proxies-{shard[0]}of{shard[1]}.csv"
    table = score_space(sp, archs, batch, proxies, outp / name, device=device, seed=seed,
                        shard=shard, num_classes=data.num_classes,
                        input_shape=data.input_shape)
    _say(f"{len(table)} rows in {outp / name} (columns {', '.join(table.names)})")
