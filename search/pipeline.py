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

import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dataclasses import dataclass

import numpy as np

from nasrank.errors import ConfigError, NasrankError
from nasrank.spaces.labels import LabelTable

from . import stages
from .report import format_table

logger = logging.getLogger(__name__)


class OutputDirError(NasrankError):
    """An output folder that holds a run with other settings."""


def prepare_out(out: str | os.PathLike, settings: Mapping[str, Any],
                cfg: Any = None) -> Path:
    """Create ``out`` and record ``settings``; refuse a folder holding another run's settings.
    ``cfg`` (the config ``settings`` came from) lets a folder written before a component gained
    an option resume: the option missing there counts as its default."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    cfg_file = path / "config.json"
    from nasrank.provenance import KEY, versions, without_provenance

    clean = without_provenance(json.loads(json.dumps(dict(settings), default=str)))
    # an empty config.json is a write cut short (full disk) before any stage ran: rewritten
    if cfg_file.exists() and cfg_file.read_bytes().strip():
        try:
            old = json.loads(cfg_file.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict):
            raise OutputDirError(
                f"{str(cfg_file)!r} is not a JSON object of settings (damaged?); delete it to "
                f"reuse --out {str(path)!r} with this run's settings, or use another --out")
        old = without_provenance(old)  # versions differ after an upgrade: still this run
        if cfg is not None:
            old = _with_new_option_defaults(old, cfg)
        old, new = _canonical_proxies(old), _canonical_proxies(clean)  # jacob_cov == jacov
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            k = diff[0]
            raise OutputDirError(
                f"--out {str(path)!r} holds a run with {k}={old.get(k)!r}, this run has "
                f"{k}={clean.get(k)!r}; use another --out (nothing was changed)")
    else:
        from nasrank.safeio import disk_full_guard

        tmp = cfg_file.with_name(cfg_file.name + ".tmp")
        with disk_full_guard(cfg_file):  # atomic: never an empty config.json again
            tmp.write_text(json.dumps({**clean, KEY: versions()}, indent=2), encoding="utf-8")
            os.replace(tmp, cfg_file)
    return path


def _with_new_option_defaults(old: Mapping[str, Any], cfg: Any) -> dict[str, Any]:
    """``old`` settings where each component of ``cfg`` recorded under the same name gets the
    options it lacks at their defaults (e.g. LambdaRank's ``mu``, added in a later version), so
    that such a folder is still the same run. A non-default value still differs."""
    import dataclasses

    from nasrank.registry import Config, field_specs

    out = dict(old)
    for f in dataclasses.fields(cfg):
        key, comp = f.name, getattr(cfg, f.name)
        rec = out.get(key)
        if isinstance(comp, Config) and isinstance(rec, dict) and rec.get("name") == comp.name:
            missing = {spec.name: spec.default for spec in field_specs(type(comp))
                       if not spec.required and spec.name not in rec}
            out[key] = {**rec, **json.loads(json.dumps(missing, default=str))}
    return out


def _canonical_proxies(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with its ``proxies`` list in canonical names, so that a run recorded with an
    alias (``jacob_cov``, before issue 19) is the same run as one naming ``jacov``."""
    from nasrank.proxy_names import canonical_proxy

    out = dict(settings)
    if isinstance(out.get("proxies"), list):
        out["proxies"] = [canonical_proxy(p) if isinstance(p, str) else p
                          for p in out["proxies"]]
    return out


# ----------------------------------------------------------------------------- nasrank run
def run_pipeline(cfg: Any, console: Any, *, device: str) -> dict[str, Any]:
    """Any registered space end to end (``cfg``: the ``run`` command's config): supernet (when
    one serves the space) -> weak labels (supernet accuracy/loss + cost + proxies; proxies and
    cost alone without a supernet) -> pretrained predictor -> the chosen search with real
    stand-alone training as the oracle, next to random search with the same budget and
    training. Returns (and writes) the summary."""
    from nasrank.search.registry import SEARCH_METHODS

    from .oracles import TrainingOracle
    from .surrogates import ranking_predictor_factory

    say = console.say
    outp = Path(cfg.out)
    _check_proxies(cfg.proxies)  # before any training
    ctx = stages.StageContext(outp, device, stages.Seeds(cfg.seed), console.progress)
    space = cfg.space.build()
    net_kw = stages.network_kwargs(cfg.space, cfg.supernet)
    timings: dict[str, float] = {}
    data = stages.load_data(cfg.dataset, cfg.data_root, seed=ctx.seeds.int("data"),
                            image_size=cfg.image_size)
    # config.json is written once the inputs are known good: a refused run leaves nothing.
    # Under torchrun every rank trains the supernet; rank 0 alone writes and runs the rest.
    from nasrank.launch import launched_rank

    rank = launched_rank()[0]
    if rank == 0:
        prepare_out(outp, {k: v for k, v in cfg.to_dict().items()
                           if k not in ("name", "out", "device")}, cfg)

    t = time.perf_counter()
    sn = None
    if cfg.supernet is None:
        say(f"[1/5] supernet: none serves space {space.name!r}; weak labels from proxies and cost")
    else:
        say(f"[1/5] supernet {cfg.supernet.name!r} ({_opts(cfg.supernet)}) on {cfg.dataset}, "
            f"{cfg.sampler.name} sampling, {cfg.strategy.name} loss, {cfg.supernet_epochs} epochs")
        sn = stages.train_supernet_stage(_SupernetPlan.of(cfg), space, data, ctx)
    timings["supernet_s"] = time.perf_counter() - t
    if rank != 0:  # the later stages are not distributed
        return {}

    t = time.perf_counter()
    say(f"[2/5] weak labels for {cfg.archs} architectures "
        f"(+ proxies: {', '.join(cfg.proxies) or 'none'})")
    weak = stages.weak_label_stage(_WeakPlan(cfg.archs, tuple(cfg.proxies)), space, data, sn, ctx,
                                   net_kwargs=net_kw)
    table = weak.table
    timings["weak_labels_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[3/5] pretraining the predictor on {len(table)} weak labels")
    pre = stages.pretrain_stage(cfg, space, table, ctx, archs=weak.archs)
    if pre.reused:
        say(f"      reusing {pre.checkpoint}")
    timings["pretrain_s"] = time.perf_counter() - t

    train_kw = dict(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=device,
                    seed=ctx.seeds.int("trainings"), checkpoint_dir=outp / "trainings",
                    train_kwargs={"build_kwargs": net_kw})
    t = time.perf_counter()
    method = stages.method_for_run(cfg.method, space, cfg.space)  # the space's CPU-sized pool
    say(f"[4/5] {method.name} search ({_opts(method)}): {cfg.budget} real trainings of "
        f"{cfg.epochs} epochs")
    factory = ranking_predictor_factory(space, checkpoint=pre.checkpoint, device=device,
                                        # fit's lr default after pretraining
                                        fit_kwargs={"epochs": cfg.finetune_epochs,
                                                    "valid_fraction": 0.0})
    book = stages.ArchBook(outp / "trained_archs.jsonl", space)
    search = method.build(space=space, labels=table, predictor_factory=factory)
    found = search(oracle=stages.BookedOracle(TrainingOracle(space, data, **train_kw), book),
                   budget=cfg.budget,
                   seed=ctx.seeds.int("search"), record=outp / "search.jsonl")
    timings["search_s"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[5/5] random baseline: {cfg.budget} random architectures trained the same way")
    rand = SEARCH_METHODS.make("random").build(space=space)(
        oracle=stages.BookedOracle(TrainingOracle(space, data, **train_kw), book),
        budget=cfg.budget, seed=ctx.seeds.int("random_baseline"), record=outp / "random.jsonl")
    timings["random_s"] = time.perf_counter() - t

    return write_run_report(outp, space, table, pre.model, {"predictor search": found,
                                                            "random": rand}, timings,
                            archs={**weak.archs, **book.archs}, say=say)


def _opts(cfg: Any) -> str:
    d = {k: v for k, v in cfg.to_dict().items() if k != "name"}
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "defaults"


@dataclass(frozen=True)
class _SupernetPlan:
    """What the supernet stage needs, from a ``run`` or ``supernet-train`` config."""

    supernet: Any
    sampler: Any
    strategy: Any
    epochs: int
    batch_size: int
    lr: float
    same_batch: bool = True

    @classmethod
    def of(cls, cfg: Any) -> _SupernetPlan:
        epochs = getattr(cfg, "supernet_epochs", None) or cfg.epochs
        return cls(cfg.supernet, cfg.sampler, cfg.strategy, epochs, cfg.batch_size, cfg.lr,
                   bool(getattr(cfg, "same_batch", True)))


@dataclass(frozen=True)
class _WeakPlan:
    num_archs: int
    proxies: tuple[str, ...]
    all_archs: bool = False


def _scores(model: Any, archs: Sequence[Any]) -> np.ndarray:
    return np.asarray(model.predict(list(archs)), dtype=np.float64)


def write_run_report(out: Path, space: Any, table: LabelTable, pretrained: Any,
                     results: Mapping[str, Any], timings: Mapping[str, float], *,
                     archs: Mapping[str, Any] | None = None,
                     say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """results.json, queries.csv, the three PNG plots, and a summary table told to ``say``
    (default: this module's logger at INFO). ``archs``: the architecture of each trained key
    (default: parsed from the key)."""
    if say is None:
        say = logger.info
    from nasrank.predictor.metrics import kendall_tau, spearman

    from .plots import best_so_far_curves, correlation_heatmap, scatter_predicted_vs_true

    rows, trained = [], {}
    for method, res in results.items():
        for i, ((key, value, seconds), reported) in enumerate(zip(res.queries, res.reported)):
            trained.setdefault(key, (value, reported))
            rows.append((method, i + 1, key, value, reported, seconds))
    keys = list(trained)
    archs = archs or {}
    pred = _scores(pretrained, [archs[k] if k in archs else space.parse(k) for k in keys])
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
    from nasrank.provenance import KEY, versions

    (out / "results.json").write_text(json.dumps({**summary, KEY: versions()}, indent=2))

    say("")
    say(format_table(
        ["method", "trainings", "best valid acc", "its test acc", "best architecture"],
        [[m, s["queries"], s["best_valid_acc"], s["best_test_acc"], s["best_arch"]]
         for m, s in summary["methods"].items()]))
    if "pretrained_predictor_vs_standalone" in summary:
        c = summary["pretrained_predictor_vs_standalone"]
        say(f"\npretrained predictor vs stand-alone accuracy on the {c['n']} trained archs: "
             f"Kendall tau {c['kendall_tau']:.3f}, Spearman {c['spearman']:.3f}")
    say("time per stage: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in timings.items()))
    say(f"outputs in {out}/: results.json, queries.csv, weak_labels.csv, predictor.pt, "
         f"predicted_vs_true.png, best_so_far.png, weak_label_correlation.png")
    return summary


# ----------------------------------------------------------------------------- single stages
def _check_proxies(names: Sequence[str]) -> None:
    """Unknown zero-cost proxy names are refused before any work (not after the supernet)."""
    if not names:
        return
    from nasrank.proxy_names import PROXY_ALIASES, canonical_proxy
    from nasrank.supernet.proxies import available_proxies

    unknown = [p for p in names if canonical_proxy(p) not in available_proxies()]
    if unknown:
        raise ConfigError(f"unknown proxy {unknown[0]!r}; expected one of {available_proxies()} "
                          f"(aliases: {PROXY_ALIASES})")


def _read_json(path: Path, what: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object written by an earlier stage; unreadable, not an object, or lacking a
    ``required`` key: one error naming the file and the stage to rerun."""
    if not path.is_file():
        raise NasrankError(f"{what} {str(path)!r} does not exist; run the earlier stage first")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NasrankError(f"{what} {str(path)!r} is not valid JSON ({err}); rerun the stage "
                           f"that wrote it, or restore the file") from None
    if not isinstance(data, dict):
        raise NasrankError(f"{what} {str(path)!r} holds a {type(data).__name__}, expected a "
                           f"JSON object; rerun the stage that wrote it")
    missing = [k for k in required if k not in data]
    if missing:
        raise NasrankError(f"{what} {str(path)!r} lacks {missing}; rerun the stage that wrote "
                           f"it, or restore the file")
    return data


SUPERNET_SETTINGS = "settings.json"


def supernet_train_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank supernet-train``: train (or resume) a supernet into ``out/supernet``; its
    settings (every config as ``to_dict()``) go to ``out/supernet/settings.json``."""

    outp = Path(cfg.out)
    if cfg.preset is not None:
        cfg = apply_training_preset(cfg)
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "out", "device")}
    for key, default in (("same_batch", True), ("preset", None)):  # recorded only when set:
        if settings.get(key, default) == default:                  # older folders resume
            settings.pop(key, None)
    ctx = stages.StageContext(outp, device, stages.Seeds(cfg.seed), console.progress)
    space = cfg.space.build()
    if cfg.supernet is None:
        raise ConfigError(f"no supernet serves space {space.name!r}")
    data = stages.load_data(cfg.dataset, cfg.data_root, seed=ctx.seeds.int("data"),
                            image_size=cfg.image_size)
    # written once the inputs are known good: a refused command leaves nothing behind; under
    # torchrun by rank 0 alone (the other ranks train with it and write nothing)
    from nasrank.launch import launched_rank

    if launched_rank()[0] == 0:
        folder = prepare_out(outp / "supernet", settings, cfg)
        (folder / SUPERNET_SETTINGS).write_text(json.dumps(settings, indent=2))
    console.say(f"supernet {cfg.supernet.name!r} ({_opts(cfg.supernet)}): {cfg.epochs} epochs, "
                f"{cfg.sampler.name} sampling, {cfg.strategy.name} loss")
    res = stages.train_supernet_stage(_SupernetPlan.of(cfg), space, data, ctx)
    st = res.stats
    console.say(f"supernet trained: {st.epochs} epochs, {st.images_per_second:.0f} images/s, "
                f"last loss {st.last_loss:.3f}; checkpoint {res.checkpoint / 'supernet.pt'}")


def apply_training_preset(cfg: Any) -> Any:
    """``cfg`` with its supernet (when the preset names one), sampler, strategy and
    ``same_batch`` replaced by those of the preset ``cfg.preset``; a preset for another space's
    supernet is refused."""
    import dataclasses

    from nasrank.supernet.distill import get_preset
    from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS

    preset = get_preset(cfg.preset)
    supernet = cfg.supernet
    if preset.supernet is not None:
        supernet = SUPERNETS.make(preset.supernet, dict(preset.supernet_options))
        try:
            stages.check_supernet_space(cfg.space, supernet)
        except ConfigError:
            raise ConfigError(f"preset {cfg.preset!r} trains the {preset.supernet!r} supernet; "
                              f"use it with --space {preset.supernet}, not "
                              f"{cfg.space.name!r}") from None
    return dataclasses.replace(
        cfg, supernet=supernet,
        sampler=SAMPLERS.make(preset.sampler, dict(preset.sampler_options)),
        strategy=STEP_STRATEGIES.make(preset.strategy, dict(preset.strategy_options)),
        same_batch=preset.same_batch)


def weak_labels_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank weak-labels``: evaluate archs with the supernet trained in ``out``, on its own
    dataset (``out/weak_labels.csv``) or on ``--dataset`` (``out/weak_labels-<dataset>.csv``
    when it differs, so that the tables of two datasets never mix on resume)."""
    from nasrank.spaces.registry import SPACES
    from nasrank.supernet.registry import SUPERNETS

    outp = Path(cfg.out)
    _check_proxies(cfg.proxies)
    s = _read_json(outp / "supernet" / SUPERNET_SETTINGS, "supernet settings",
                   ("space", "supernet", "seed", "dataset", "data_root", "image_size"))
    space_cfg, sn_cfg = SPACES.from_dict(s["space"]), SUPERNETS.from_dict(s["supernet"])
    train_seeds = stages.Seeds(s["seed"])
    dataset = cfg.dataset or s["dataset"]
    data = stages.load_data(dataset,
                            cfg.data_root if cfg.data_root is not None else s["data_root"],
                            seed=train_seeds.int("data"), image_size=s["image_size"])
    space = space_cfg.build()
    sn = stages.load_supernet_stage(space, sn_cfg, data, outp / "supernet", train_seeds)
    ctx = stages.StageContext(outp, device, stages.Seeds(cfg.seed), console.progress)
    plan = _WeakPlan(cfg.num_archs, tuple(cfg.proxies), cfg.all_archs)
    weak = stages.weak_label_stage(plan, space, data, sn, ctx, shard=stages.parse_shard(cfg.shard),
                                   stem=("weak_labels" if dataset == s["dataset"]
                                         else f"weak_labels-{dataset}"))
    console.say(f"{len(weak.table)} rows in {weak.path} (columns {', '.join(weak.table.names)})")


def proxies_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank proxies``: zero-cost proxies of ``num_archs`` seeded random architectures on
    one real batch -> ``out/proxies.csv`` (or ``proxies-<i>of<n>.csv`` per shard). The same
    seed gives the same ``zc_*`` values as ``nasrank weak-labels --proxies`` (same network
    initialisation, same batch, canonical representative)."""
    from nasrank.spaces import sample_unique

    shard = stages.parse_shard(cfg.shard)
    if not cfg.proxies:
        from nasrank.supernet.proxies import available_proxies

        raise ConfigError(f"--proxies is empty; choose from {available_proxies()}")
    seeds = stages.Seeds(cfg.seed)
    space = cfg.space.build()
    data = stages.load_data(cfg.dataset, cfg.data_root, seed=seeds.int("data"),
                            image_size=cfg.image_size)
    archs = sample_unique(space, cfg.num_archs, seeds.rng("weak_label_archs"))
    outp = Path(cfg.out)
    name = "proxies.csv" if shard == (0, 1) else f"proxies-{shard[0]}of{shard[1]}.csv"
    ctx = stages.StageContext(outp, device, seeds, console.progress)
    table = stages.proxy_stage(space, archs, data, list(cfg.proxies), outp / name, ctx,
                               batch_size=cfg.batch_size, shard=shard,
                               net_kwargs=stages.network_kwargs(cfg.space, cfg.supernet))
    console.say(f"{len(table)} rows in {outp / name} (columns {', '.join(table.names)})")


def pretrain_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank pretrain``: multi-task pretraining on a label table -> ``out/predictor.pt``."""
    space = cfg.space.build()
    table = LabelTable.read_csv(cfg.labels, space=space.name)
    for c in cfg.columns:
        table.column(c)  # names an unknown column before any work
    outp = Path(cfg.out)
    outp.mkdir(parents=True, exist_ok=True)
    ctx = stages.StageContext(outp, device, stages.Seeds(cfg.seed), console.progress)
    from .provenance import check_or_record, pretrain_settings

    cols = list(cfg.columns) or stages.usable_columns(table)
    if cols:  # else the stage names the problem
        settings = pretrain_settings(table, cols, space=space.name, epochs=cfg.epochs,
                                     seed=cfg.seed)
        if cfg.hybrid:  # only when set: folders pretrained before the option still resume
            settings["hybrid"] = True
        if cfg.rank_weight:  # likewise
            settings["rank_weight"] = cfg.rank_weight
        if cfg.encoder != "dgcnn":  # likewise
            settings["encoder"] = cfg.encoder
        check_or_record(outp, settings)
    plan = _PretrainPlan(cfg.epochs, cfg.hybrid, False if cfg.compile == "off" else cfg.compile,
                         cfg.rank_weight, cfg.encoder)
    res = stages.pretrain_stage(plan, space, table, ctx, columns=list(cfg.columns) or None)
    console.say(f"pretrained predictor {'reused' if res.reused else 'written'}: {res.checkpoint}")


@dataclass(frozen=True)
class _PretrainPlan:
    pretrain_epochs: int
    hybrid: bool = False
    pretrain_compile: bool | str = False
    pretrain_rank_weight: float = 0.0
    encoder: str = "dgcnn"


def finetune_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank finetune``: fit the predictor (``out/predictor.pt`` when it exists, else from
    scratch) on ground truth; with a benchmark, train on ``n`` random archs and report ranking
    metrics on the rest."""
    from nasrank.predictor import RankingPredictor, summary
    from nasrank.spaces.registry import BENCHMARKS

    outp = Path(cfg.out)
    outp.mkdir(parents=True, exist_ok=True)
    seeds = stages.Seeds(cfg.seed)
    if cfg.benchmark:
        if not cfg.data:
            raise ConfigError("finetune --benchmark needs --data PATH to the benchmark file")
        bench = BENCHMARKS.make(cfg.benchmark, {"path": cfg.data}).build()
        sp, col = bench.space, bench.table.column(cfg.metric)
        rows = [i for i, v in enumerate(col) if np.isfinite(v)]
        canonical = [i for i in rows
                     if bench.space.key(bench.archs[bench.table.keys[i]]) == bench.table.keys[i]]
        rows = canonical or rows  # one row per distinct function where the space can tell
        archs_all = [bench.archs[bench.table.keys[i]] for i in rows]
        y_all = col[rows]
    elif cfg.labels:
        sp = cfg.space.build()
        table = LabelTable.read_csv(cfg.labels, space=sp.name)
        y_all = table.column(cfg.metric)
        table.require_finite([cfg.metric])
        archs_all = stages.table_archs(sp, table)
    else:
        raise ConfigError("finetune needs --labels FILE or --benchmark NAME --data PATH")
    if cfg.benchmark and cfg.n > len(archs_all):  # --labels mode trains on every row
        raise ConfigError(f"--n {cfg.n} exceeds the {len(archs_all)} labelled architectures")
    idx = seeds.rng("finetune_split").permutation(len(archs_all))
    tr = idx[:cfg.n] if cfg.benchmark else idx
    ckpt = outp / "predictor.pt"
    model = (RankingPredictor.load(ckpt, space=sp, device=device) if ckpt.exists()
             else RankingPredictor(sp, device=device, seed=seeds.int("predictor")))
    model.fit([archs_all[i] for i in tr], y_all[tr], epochs=cfg.epochs, progress=console.progress,
              ensemble=cfg.ensemble, select=None if cfg.select == "auto" else cfg.select, **cfg.loss.fit_kwargs())
    model.save(outp / "predictor_finetuned.pt")
    console.say(f"fine-tuned predictor written to {outp / 'predictor_finetuned.pt'}")
    if cfg.benchmark and len(idx) > cfg.n:
        te = idx[cfg.n:]
        m = summary(y_all[te], model.predict([archs_all[i] for i in te]))
        (outp / "finetune_metrics.json").write_text(json.dumps(m, indent=2))
        console.say(format_table(["metric", "held-out value"],
                                 [[k, float(v)] for k, v in m.items()]))


def predict_command(cfg: Any, console: Any, *, device: str) -> None:
    """``nasrank predict``: score archs from a file (one string a line) or the whole space."""
    from nasrank.predictor import RankingPredictor

    model = RankingPredictor.load(cfg.checkpoint, device=device)
    sp = model.space
    if cfg.all:
        if sp.size is None:
            raise ConfigError(f"space {sp.name!r} cannot be enumerated; pass --archs FILE")
        seen: dict[str, Any] = {}
        for a in sp.enumerate():
            seen.setdefault(sp.key(a), a)
        cand = list(seen.values())
    elif cfg.archs:
        p = Path(cfg.archs)
        if not p.is_file():
            raise ConfigError(f"architecture file {cfg.archs!r} does not exist")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise NasrankError(f"architecture file {cfg.archs!r} is not UTF-8 text (byte "
                               f"{err.start}); expected one architecture string a line") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise ConfigError(f"architecture file {cfg.archs!r} is empty")
        cand = [sp.parse(ln) for ln in lines]
    else:
        raise ConfigError("predict needs --archs FILE or --all")
    scores = _scores(model, cand)
    order = np.argsort(-scores, kind="stable")
    if cfg.out:
        outp = Path(cfg.out)
        outp.mkdir(parents=True, exist_ok=True)
        LabelTable([sp.format(cand[i]) for i in order], {"score": scores[order]},
                   space=sp.name).to_csv(outp / "predictions.csv")
        console.say(f"{len(cand)} predictions written to {outp / 'predictions.csv'}")
    console.result(format_table(["rank", "score", "architecture"],
                                [[r + 1, float(scores[i]), sp.format(cand[i])]
                                 for r, i in enumerate(order[:cfg.top])]))


def search_command(cfg: Any, console: Any, *, device: str) -> dict[str, Any]:
    """``nasrank search``: one search on a benchmark table (the benchmark oracle)."""
    from nasrank.spaces.registry import BENCHMARKS

    from .oracles import BenchmarkOracle
    from .surrogates import ranking_predictor_factory

    if not cfg.data:
        raise ConfigError("search needs --data PATH to the benchmark file")
    bench = BENCHMARKS.make(cfg.benchmark, {"path": cfg.data}).build()
    kw: dict[str, Any] = {}
    if "restrict" in inspect.signature(BenchmarkOracle).parameters:
        kw["restrict"] = True  # a partly labelled benchmark (NB101 sample): search its archs
    oracle = BenchmarkOracle(bench, metric=cfg.metric, report_metric=cfg.report, **kw)
    sp = oracle.space
    method = cfg.method
    shared = cfg.method_inputs()  # one worker of a shared Optuna study (--storage)
    outp = Path(cfg.out or f"runs/search-{cfg.benchmark}-{method.name}-{cfg.metric}-"
                          f"b{cfg.budget}-s{cfg.seed}"
                          + (f"-w{shared['worker']}" if shared else ""))
    outp.mkdir(parents=True, exist_ok=True)
    record = outp / "record.jsonl"
    factory = None
    if getattr(method, "uses_predictor", False):
        # lr: fit's default, lower after pretraining
        factory = ranking_predictor_factory(sp, checkpoint=cfg.checkpoint, device=device,
                                            # ensemble only when asked: a search record
                                            # of an earlier version still resumes
                                            fit_kwargs={"epochs": cfg.fit_epochs, **(
                                                {"ensemble": cfg.fit_ensemble}
                                                if cfg.fit_ensemble > 1 else {})})
    search = method.build(space=sp, labels=_ArchTable(bench), predictor_factory=factory,
                          **shared)
    res = search(oracle=oracle, budget=cfg.budget, seed=cfg.seed, record=record)
    res.to_csv(outp / "queries.csv")
    from nasrank.provenance import KEY, versions

    (outp / "result.json").write_text(json.dumps({**res.to_dict(), KEY: versions()}, indent=2,
                                                 default=str))
    rep = cfg.report or cfg.metric
    console.result(format_table(["method", "queries", f"best {cfg.metric}", f"its {rep}",
                                "architecture"],
                                [[method.name, len(res.queries), res.best_value,
                                  res.best_reported, res.best_arch]]))
    console.say(f"record: {record}; queries: {outp / 'queries.csv'}")
    return res.to_dict()


class _ArchTable(LabelTable):
    """A benchmark's table whose keys are the formatted architectures (NB101's own keys are
    hashes that do not parse back), for methods that read architectures from labels."""

    def __init__(self, bench: Any) -> None:
        t = bench.table
        texts = [bench.space.format(bench.archs[k]) for k in t.keys]
        if len(set(texts)) != len(texts):  # two keys, one string: keep the table's first rows
            first: dict[str, int] = {}
            for i, x in enumerate(texts):
                first.setdefault(x, i)
            rows = sorted(first.values())
        else:
            rows = list(range(len(texts)))
        super().__init__([texts[i] for i in rows], {n: t.column(n)[rows] for n in t.names},
                         space=t.space)
