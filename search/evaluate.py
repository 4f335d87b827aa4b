"""How well a cheap score ranks architectures: a weak-label column against a ground truth.

The headline of the supernet papers: Kendall tau between weight-sharing accuracy and stand-alone
accuracy. Here any weak-label column (``ws_acc``, ``ws_neg_loss``, a zero-cost proxy, a
predictor's score; larger = better) is compared with the seed-averaged metric of a ground-truth
table (:mod:`nasrank.search.groundtruth`) over the architectures both hold:

* Kendall tau, Spearman, Pearson, precision@top-10 % and top-1 / top-5 regret (the true best
  minus the best true value among the score's top 1 / top 5), each with a percentile bootstrap
  95 % interval over architectures (seeded resampling of the archs, the same resamples for every
  metric);
* the ground truth's **noise ceiling**, Kendall tau between its training seeds over the same
  archs (mean over seed pairs beyond two): a score cannot be expected to agree with the truth
  better than the truth agrees with itself; and tau / ceiling.

The metrics come from :mod:`nasrank.predictor.metrics` (scipy / sklearn underneath).
:func:`weak_labels_for_truth` evaluates a trained supernet checkpoint on the ground truth's
architectures first (BatchNorm recalibrated per architecture, validation split of the truth's
own recipe).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import LabelTableError, NasrankError, SpaceMismatchError
from nasrank.spaces.labels import LabelTable, rank_average, table_with_column

from .groundtruth import GroundTruth, load_recipe_data, read_groundtruth, seed_agreement

def _orderable(p: np.ndarray) -> np.ndarray:
    """``p`` with -inf / +inf moved just past the finite extremes: the same order, so rank
    metrics see an infinite score as the worst / best (scipy's kendalltau returns NaN on inf)."""
    inf = np.isinf(p)
    if not inf.any():
        return p
    finite = p[~inf]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    return np.where(p == -np.inf, lo - 1.0, np.where(p == np.inf, hi + 1.0, p))


def _ranked(name: str, *args: Any):
    """``nasrank.predictor.metrics.<name>(t, p, *args)`` on :func:`_orderable` scores; the
    predictor package (torch) is imported at the first call, not with this module (``nasrank
    search --help`` loads every module of ``nasrank.search``)."""

    def fn(t: np.ndarray, p: np.ndarray) -> float:
        from nasrank.predictor import metrics

        return getattr(metrics, name)(t, _orderable(p), *args)

    return fn


def _pearson(t: np.ndarray, p: np.ndarray) -> float:
    """Pearson's r (NaN when a score is not finite); scipy.stats is imported at the first call
    (it costs seconds, and ``nasrank search --help`` loads this module)."""
    if not np.isfinite(p).all():
        return math.nan
    from scipy import stats

    return float(stats.pearsonr(t, p).statistic)


#: metric name -> function(y_true, score)
METRIC_FUNCS = {
    "kendall_tau": _ranked("kendall_tau"),
    "spearman": _ranked("spearman"),
    "pearson": _pearson,
    "precision@10%": _ranked("precision_at_k", 0.1),
    "regret@1": _ranked("top_k_regret", 1),
    "regret@5": _ranked("top_k_regret", 5),
}


@dataclass
class Aligned:
    """The archs a ground truth and a score table share, in ground-truth order."""

    keys: list[str]
    truth: np.ndarray  # seed-averaged metric
    per_seed: np.ndarray  # (archs, seeds)
    score: np.ndarray
    n_truth: int  # archs of the truth with every seed trained
    n_labels: int
    nan_as_worst: int = 0  # NaN scores ranked last (nan_policy="worst")


@dataclass
class SupernetEval:
    """The result of :func:`evaluate_scores` (``metrics[name] = {"value", "low", "high"}``)."""

    column: str
    truth_metric: str
    n_archs: int
    n_truth: int
    n_labels: int
    seeds: int
    metrics: dict[str, dict[str, float]]
    noise_ceiling: dict[str, float]
    tau_over_ceiling: float
    bootstrap: dict[str, Any] = field(default_factory=dict)
    space: str = ""
    truth_path: str = ""
    nan_as_worst: int = 0
    #: the weak-label tables judged (file paths; "<LabelTable of N rows>" for objects)
    label_sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def align(truth: GroundTruth, labels: LabelTable, column: str, *,
          metric: str = "valid_acc", nan_policy: str = "refuse") -> Aligned:
    """Pair the truth's complete archs with ``labels[column]`` by canonical key.

    Refuses tables of different spaces and no overlap. A NaN score on a shared arch is refused
    (``nan_policy="refuse"``) or ranked last and counted in ``nan_as_worst`` (``"worst"``: a
    proxy that is undefined for a network, e.g. jacob_cov of a constant output). An infinite
    score is kept: it ranks first or last (synflow of a cell whose ops are all ``none`` is
    log 0 = -inf, a real "worst"); Pearson is then undefined and reported as NaN."""
    if labels.space and truth.space and labels.space != truth.space:
        raise SpaceMismatchError(f"the weak labels are for space {labels.space!r}, the ground "
                                 f"truth for {truth.space!r}")
    scores = labels.column(column)  # raises naming the column and the available ones
    m = truth.matrix(metric)
    complete = np.isfinite(m).all(axis=1)
    idx = [i for i, k in enumerate(truth.archs) if complete[i] and k in labels]
    if not idx:
        raise LabelTableError(
            f"the weak labels ({len(labels)} archs) and the ground truth ({int(complete.sum())} "
            f"fully trained archs of space {truth.space!r}) share no architecture; expected "
            f"weak labels of the ground truth's archs (same canonical keys)")
    keys = [truth.archs[i] for i in idx]
    sc = np.array([scores[labels.index(k)] for k in keys], dtype=np.float64)
    if nan_policy not in ("refuse", "worst"):
        raise NasrankError(f"nan_policy {nan_policy!r}: expected 'refuse' or 'worst'")
    bad = np.flatnonzero(np.isnan(sc))
    if bad.size and nan_policy == "worst":
        sc[bad] = -np.inf
    elif bad.size:
        k = keys[int(bad[0])]
        note = labels.notes[labels.index(k)]
        raise LabelTableError(f"weak-label column {column!r} is NaN for {bad.size} shared "
                              f"archs, first {k!r} ({sc[bad[0]]}){': ' + note if note else ''}")
    per_seed = m[idx]
    return Aligned(keys, per_seed.mean(axis=1), per_seed, sc, int(complete.sum()), len(labels),
                   nan_as_worst=int(bad.size) if nan_policy == "worst" else 0)


def _safe(fn, *args) -> float:
    try:
        v = float(fn(*args))
    except NasrankError:
        return math.nan
    return v


def evaluate_scores(aligned: Aligned, *, column: str = "score", truth_metric: str = "valid_acc",
                    n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> SupernetEval:
    """Every metric with its percentile bootstrap interval (``n_boot`` resamples of the archs
    from ``numpy.random.default_rng(seed)``), the noise ceiling and tau / ceiling."""
    t, p, per_seed = aligned.truth, aligned.score, aligned.per_seed
    n = len(t)
    if n < 3:
        raise NasrankError(f"need at least 3 shared architectures to rank, got {n}")
    if int(n_boot) < 0:
        raise NasrankError(f"n_boot must be >= 0, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise NasrankError(f"level must be in (0, 1), got {level!r}")
    point = {name: _safe(fn, t, p) for name, fn in METRIC_FUNCS.items()}
    ceiling = seed_agreement(per_seed)
    rng = np.random.default_rng(seed)
    boot = {name: [] for name in [*METRIC_FUNCS, "noise_ceiling", "tau_over_ceiling"]}
    for _ in range(int(n_boot)):
        i = rng.integers(0, n, n)
        for name, fn in METRIC_FUNCS.items():
            boot[name].append(_safe(fn, t[i], p[i]))
        c = seed_agreement(per_seed[i])
        boot["noise_ceiling"].append(c)
        boot["tau_over_ceiling"].append(boot["kendall_tau"][-1] / c if c > 0 else math.nan)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(name: str, value: float) -> dict[str, float]:
        vals = np.asarray(boot[name], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            return {"value": value, "low": math.nan, "high": math.nan}
        return {"value": value, "low": float(np.percentile(vals, lo_q)),
                "high": float(np.percentile(vals, hi_q))}

    ratio = point["kendall_tau"] / ceiling if ceiling > 0 else math.nan
    return SupernetEval(
        column=column, truth_metric=truth_metric, n_archs=n, n_truth=aligned.n_truth,
        n_labels=aligned.n_labels, seeds=int(per_seed.shape[1]), nan_as_worst=aligned.nan_as_worst,
        metrics={name: interval(name, v) for name, v in point.items()},
        noise_ceiling=interval("noise_ceiling", ceiling),
        tau_over_ceiling=ratio,
        bootstrap={"resamples": int(n_boot), "seed": int(seed), "level": level,
                   "method": "percentile, archs resampled with replacement",
                   "tau_over_ceiling": interval("tau_over_ceiling", ratio)})


LabelSource = LabelTable | str | os.PathLike


def _label_items(labels: LabelSource | Sequence[LabelSource]) -> list[LabelSource]:
    return [labels] if isinstance(labels, (LabelTable, str, os.PathLike)) else list(labels)


def fused_labels(labels: LabelSource | Sequence[LabelSource], column: str) -> LabelTable:
    """The one table holding ``column`` among ``labels`` (tables or CSV paths), or, for
    ``column = "a+b+..."``, the rank average of those columns (:func:`rank_average`)."""
    tables = [t if isinstance(t, LabelTable) else LabelTable.read_csv(t)
              for t in _label_items(labels)]
    if not tables:
        raise LabelTableError("no weak-label table given")
    if "+" in column:
        return rank_average(tables, column.split("+"))
    if len(tables) == 1:
        return tables[0]  # align() names the column if it is missing
    return table_with_column(tables, column)


def supernet_eval(truth: GroundTruth | str | os.PathLike,
                  labels: LabelSource | Sequence[LabelSource],
                  column: str = "ws_acc", *, metric: str = "valid_acc", n_boot: int = 1000,
                  seed: int = 0, out_dir: str | os.PathLike | None = None,
                  plot: bool = True) -> SupernetEval:
    """Evaluate ``labels[column]`` against ``truth`` (objects or file paths). ``labels`` may be
    several tables; ``column = "ws_acc+zc_jacov"`` judges the rank average of those columns
    (:func:`fused_labels`). With ``out_dir``, write ``supernet_eval.json`` and (``plot``)
    ``scatter.png`` there."""
    gt = truth if isinstance(truth, GroundTruth) else read_groundtruth(truth)
    lab = fused_labels(labels, column)
    aligned = align(gt, lab, column, metric=metric)
    res = evaluate_scores(aligned, column=column, truth_metric=metric, n_boot=n_boot, seed=seed)
    res.space = gt.space
    res.truth_path = str(gt.path) if gt.path is not None else ""
    res.label_sources = [f"<LabelTable of {len(t)} rows>" if isinstance(t, LabelTable) else str(t)
                         for t in _label_items(labels)]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "supernet_eval.json.tmp"
        tmp.write_text(json.dumps(res.to_dict(), indent=2, allow_nan=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, out / "supernet_eval.json")
        if plot:
            from .plots import scatter_predicted_vs_true

            tau = res.metrics["kendall_tau"]
            scatter_predicted_vs_true(
                out / "scatter.png", aligned.score, aligned.truth, top_k=5,
                title=(f"{column} vs stand-alone {metric} ({res.n_archs} archs)\n"
                       f"Kendall tau {tau['value']:.3f} [{tau['low']:.3f}, {tau['high']:.3f}], "
                       f"ceiling {res.noise_ceiling['value']:.3f}"),
                xlabel=column, ylabel=f"stand-alone {metric}, mean of {res.seeds} seeds")
    return res


# ----------------------------------------------------------------------------- supernets
def supernet_from_checkpoint(checkpoint: str | os.PathLike):
    """Rebuild the supernet a :func:`~nasrank.supernet.trainer.train_supernet` checkpoint (file
    or its folder) was trained as, and load its weights."""
    import torch

    from nasrank.supernet.trainer import checkpoint_path, load_supernet

    path = Path(checkpoint)
    if path.is_dir():
        path = checkpoint_path(path)
    if not path.is_file():
        raise NasrankError(f"supernet checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = dict(state["config"]["supernet"])
    except Exception as err:  # corrupt or foreign file: torch raises many types
        raise NasrankError(f"{str(path)!r} is not a supernet checkpoint: {err}") from None
    cls = cfg.get("class")
    if cls == "NB201Supernet":
        from nasrank.supernet.nb201_supernet import NB201Supernet

        sn = NB201Supernet(num_classes=cfg["num_classes"], C=cfg["C"], N=cfg["N"],
                           in_channels=cfg["in_channels"])
    elif cls == "ChannelSupernet":
        from nasrank.supernet.channel import ChannelSupernet

        sn = ChannelSupernet(cfg["sharing"], num_classes=cfg["num_classes"],
                             in_channels=cfg["in_channels"])
    else:
        raise NasrankError(f"{str(path)!r} holds a supernet of class {cls!r}; expected "
                           f"NB201Supernet or ChannelSupernet")
    load_supernet(sn, path)
    return sn


def weak_labels_for_truth(
    truth: GroundTruth, supernet: Any, out_path: str | os.PathLike, *,
    data_root: str | os.PathLike | None = None, data: Any = None, bn_batches: int = 8,
    batch_size: int = 128, device: str = "cpu", seed: int = 0, progress: bool = False,
    proxies: Sequence[str] | None = None, eval_batches: int | None = None,
) -> LabelTable:
    """Weak labels (``ws_acc``, ``ws_neg_loss``, ...) of the truth's archs from ``supernet`` (an
    object or a checkpoint path), on the validation split of the truth's own recipe (its first
    ``eval_batches`` batches when given: a large split made to measure the truth precisely can
    cost more to label than the supernet's training); resumable (``generate_weak_labels``
    appends to ``out_path``)."""
    from nasrank.supernet.weak_labels import generate_weak_labels

    from .groundtruth import Recipe

    sn = supernet if not isinstance(supernet, (str, os.PathLike)) else \
        supernet_from_checkpoint(supernet)
    if sn.space.name != truth.space:
        raise SpaceMismatchError(f"the supernet serves space {sn.space.name!r}, the ground truth "
                                 f"is for {truth.space!r}")
    if data is None:
        data = load_recipe_data(Recipe(**truth.recipe), data_root)
    archs = [sn.space.parse(k) for k in truth.archs]
    return generate_weak_labels(sn, archs, data, out_path, bn_batches=bn_batches,
                                eval_batches=eval_batches, batch_size=batch_size, device=device,
                                seed=seed, proxies=proxies, progress=progress)
