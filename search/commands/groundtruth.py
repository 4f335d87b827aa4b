"""``nasrank groundtruth`` (stand-alone trainings of N archs x K seeds) and ``nasrank
supernet-eval`` (a supernet's or any weak label's ranking quality against such a table)."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.registry import option
from nasrank.search.registry import COMMANDS

from . import Command, Console, require, resolve_device
from .stages import DATA_ROOT, DEVICE

#: the fields of nasrank.search.groundtruth.Recipe (the command's fields of the same names)
_RECIPE_FIELDS = ("space", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                  "image_size", "in_channels", "train_subset", "valid_fraction", "test_subset",
                  "data_seed", "width", "cells")


@COMMANDS.register("groundtruth")
@dataclass(frozen=True)
class GroundTruthCommand(Command):
    """Train N architectures x K seeds stand-alone: the ground truth that judges a supernet.

    One CSV row per (arch, seed) with valid/test accuracy and loss and seconds, appended as each
    training ends (plus <out>.meta.json with the recipe and the arch list). Rerunning the same
    command resumes; --shard i/n trains every n-th job into <out stem>.shard<i>-of-<n>.csv, and
    --merge combines the finished shard files into --out.
    """

    examples = (
        "  nasrank groundtruth --space nb201 --dataset fashion-mnist --data-root "
        "../shared/data/fashion-mnist \\\n      --archs 300 --seeds 2 --epochs 3 --lr 0.1 "
        "--image-size 8 --in-channels 3 --train-subset 4000 \\\n      --valid-fraction 0.05 "
        "--test-subset 2000 --width 8 --cells 1 --out gt.csv\n"
        "  nasrank groundtruth ... --out gt.csv --shard 0/2    # and --shard 1/2 elsewhere\n"
        "  nasrank groundtruth ... --out gt.csv --merge gt.shard0-of-2.csv,gt.shard1-of-2.csv\n")

    # named ``table`` (flag --out) since --out of other commands is a folder the CLI locks;
    # this file is locked by run_groundtruth itself (one writer per table or shard file)
    table: str = option("groundtruth.csv", "output CSV; rerunning with it resumes", flag="out")
    space: str = option("nb201", "search space (nb201, cvpr2021, nb101)")
    dataset: str = option("fashion-mnist", "digits | fashion-mnist | cifar10 | cifar100")
    data_root: str | None = option(None, DATA_ROOT)
    archs: int | None = option(None, "architectures: sampled uniformly (distinct canonical "
                               "keys), or the first N of --arch-file", low=1)
    arch_seed: int = option(0, "seed of the architecture sample", low=0)
    arch_sample: str = option("uniform", "how --archs N are sampled: uniform, or width "
                              "(narrow to wide, log-uniform width; channel spaces)",
                              choices=("uniform", "width"))
    arch_file: str | None = option(None, "file listing the architectures (one per line, or a "
                                   "CSV with an arch/key column)")
    seeds: int = option(2, "training seeds per architecture (0..K-1)", low=1)
    epochs: int = option(3, "training epochs", low=1)
    batch_size: int = option(64, "batch size", low=1)
    lr: float = option(0.1, "peak learning rate (SGD momentum, cosine)", low=0.0, low_open=True)
    momentum: float = option(0.9, "SGD momentum", low=0.0, high=1.0)
    weight_decay: float = option(5e-4, "weight decay", low=0.0)
    image_size: int | None = option(None, "resize images to this side", low=1)
    in_channels: int | None = option(None, "image channels fed to the net (1 or 3)",
                                     choices=(1, 3))
    train_subset: int | None = option(None, "seeded stratified training subset size", low=1)
    valid_fraction: float = option(0.1, "share of the training images held out for validation",
                                   low=0.0, low_open=True, high=0.9)
    test_subset: int | None = option(None, "seeded stratified test subset size", low=10)
    data_seed: int = option(0, "seed of the data split and subsets", low=0)
    width: int | None = option(None, "NB201 stem width C", low=1)
    cells: int | None = option(None, "NB201 cells per stage N", low=1)
    shard: str | None = option(None, "i/n: train every n-th job starting at job i")
    merge: tuple[str, ...] = option((), "shard files to merge into --out (no training)")
    device: str = option("auto", DEVICE)

    def recipe(self):
        from nasrank.search.groundtruth import Recipe

        return Recipe(**{f: getattr(self, f) for f in _RECIPE_FIELDS})

    def run(self, console: Console) -> None:
        from nasrank.search.groundtruth import (build_groundtruth, merge_groundtruth,
                                                noise_ceiling)

        if self.merge:
            gt = merge_groundtruth(list(self.merge), self.table)
        else:
            if self.archs is None and self.arch_file is None:
                from nasrank.errors import ConfigError

                raise ConfigError("nasrank groundtruth: give --archs N (sampled) or "
                                  "--arch-file FILE")
            gt = build_groundtruth(
                self.recipe(), self.table, archs=self.archs, arch_seed=self.arch_seed,
                arch_sample=self.arch_sample, arch_file=self.arch_file, seeds=self.seeds,
                data_root=self.data_root, shard=self.shard, device=resolve_device(self.device),
                progress=console.progress)
        done = int(gt.complete_mask().sum())
        secs = sum(r["seconds"] for r in gt.rows)
        console.say(f"{len(gt.rows)} trainings in {gt.path} ({done} of {len(gt.archs)} archs "
                    f"with all {len(gt.seeds)} seeds; {secs:.0f} s of training)")
        if len(gt.seeds) > 1 and done > 1:
            console.say(f"noise ceiling (Kendall tau between seeds, valid_acc): "
                        f"{noise_ceiling(gt):.3f}")


@COMMANDS.register("supernet-eval")
@dataclass(frozen=True)
class SupernetEvalCommand(Command):
    """How well a supernet (or any weak-label column) ranks the archs of a ground truth.

    Kendall tau, Spearman, Pearson, precision@top-10%, top-1/top-5 regret against the
    seed-averaged ground truth, each with a bootstrap 95% interval over architectures, the
    truth's noise ceiling (Kendall tau between its seeds) and tau / ceiling. --supernet
    evaluates a trained supernet checkpoint on the truth's archs first (weak labels written to
    <out>/weak_labels.csv, on the validation split of the truth's recipe). A column "a+b" judges
    the rank average of columns a and b, from one or several tables (--labels x.csv,y.csv).
    """

    examples = (
        "  nasrank supernet-eval --truth gt.csv --labels weak.csv --column ws_acc --out ev\n"
        "  nasrank supernet-eval --truth gt.csv --supernet runs/sn/supernet --data-root "
        "../shared/data/fashion-mnist --out ev\n"
        "  nasrank supernet-eval --truth gt.csv --labels weak.csv,proxies.csv "
        "--column ws_acc+zc_jacov --out ev\n")

    truth: str | None = option(None, "ground-truth CSV (from nasrank groundtruth)")
    labels: tuple[str, ...] = option((), "weak-label tables (comma-separated CSVs with a key "
                                     "column); --column a+b judges the rank average of a and b")
    supernet: str | None = option(None, "supernet checkpoint (supernet.pt or its folder)")
    column: str = option("ws_acc", "weak-label column to judge (larger = better), or columns "
                         "joined by + (their rank average, e.g. ws_acc+zc_jacov)")
    metric: str = option("valid_acc", "ground-truth metric (valid_acc, test_acc, ...)")
    data_root: str | None = option(None, DATA_ROOT + " (with --supernet)")
    out: str | None = option(None, "folder for supernet_eval.json, scatter.png (and the weak "
                             "labels of --supernet)")
    bootstrap: int = option(1000, "bootstrap resamples of the architectures", low=0)
    seed: int = option(0, "seed of the bootstrap and of the BN recalibration batches", low=0)
    bn_batches: int = option(8, "BatchNorm recalibration batches per arch (--supernet)", low=1)
    device: str = option("auto", DEVICE)

    def run(self, console: Console) -> None:
        import tempfile
        from pathlib import Path

        from nasrank.errors import ConfigError
        from nasrank.search.evaluate import supernet_eval, weak_labels_for_truth
        from nasrank.search.groundtruth import read_groundtruth

        require(self, "truth")
        if not self.labels and self.supernet is None:
            raise ConfigError("nasrank supernet-eval: give --labels, --supernet or both (both: "
                              "the supernet's weak labels next to the tables, e.g. to judge "
                              "--column ws_acc+zc_jacov)")
        gt = read_groundtruth(self.truth)
        labels: list = list(self.labels)
        if self.supernet is not None:
            folder = Path(self.out) if self.out is not None else Path(tempfile.mkdtemp())
            labels.insert(0, weak_labels_for_truth(
                gt, self.supernet, folder / "weak_labels.csv", data_root=self.data_root,
                bn_batches=self.bn_batches, device=resolve_device(self.device), seed=self.seed,
                progress=console.progress))
        res = supernet_eval(gt, labels, self.column, metric=self.metric, n_boot=self.bootstrap,
                            seed=self.seed, out_dir=self.out)
        console.say(f"{self.column} vs stand-alone {self.metric} over {res.n_archs} archs "
                    f"({res.seeds} seeds; 95% bootstrap intervals, {self.bootstrap} resamples)")
        for name, v in res.metrics.items():
            console.say(f"  {name:<14} {v['value']:8.4f}  [{v['low']:.4f}, {v['high']:.4f}]")
        c = res.noise_ceiling
        console.say(f"  {'noise ceiling':<14} {c['value']:8.4f}  [{c['low']:.4f}, "
                    f"{c['high']:.4f}]")
        console.say(f"  {'tau / ceiling':<14} {res.tau_over_ceiling:8.4f}")
        if self.out is not None:
            console.say(f"wrote {Path(self.out) / 'supernet_eval.json'} and scatter.png")
