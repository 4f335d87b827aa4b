"""One command per pipeline stage: ``supernet-train``, ``weak-labels``, ``proxies``,
``pretrain``, ``finetune``, ``predict`` (each calls :mod:`nasrank.search.pipeline`)."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.predictor.registry import COMPILE_MODES
from nasrank.registry import Config, component, option
from nasrank.search.registry import COMMANDS

from . import Command, Console, require, resolve_device


# registries named as "module:NAME": imported on use, so `nasrank --help` imports no torch
SPACES = "nasrank.spaces.registry:SPACES"
SUPERNETS = "nasrank.supernet.registry:SUPERNETS"
SAMPLERS = "nasrank.supernet.registry:SAMPLERS"
STEP_STRATEGIES = "nasrank.supernet.registry:STEP_STRATEGIES"
RANKING_LOSSES = "nasrank.predictor.registry:RANKING_LOSSES"


def _supernet_for_space(cmd: object) -> str | None:
    from nasrank.search.stages import supernet_for

    return supernet_for(cmd.space.name)  # type: ignore[attr-defined]


SEED = "random seed (every stage draws its own stream from it)"
DEVICE = "auto | cpu | cuda | cuda:i (auto: cuda when available)"
OUT = "output folder; rerunning with the same folder resumes"
DATASET = "digits (embedded) | fashion-mnist | cifar10 | cifar100"
DATA_ROOT = "folder with the dataset files (Fashion-MNIST IDX or CIFAR python format)"
IMAGE_SIZE = "resize images to this side (default: the dataset's own)"
PROXIES_ALL = ("synflow", "nwot", "jacov", "snip", "grad_norm", "params", "flops")


@COMMANDS.register("supernet-train")
@dataclass(frozen=True)
class SupernetTrainCommand(Command):
    """Train a weight-sharing supernet (any registered supernet, sampler and step strategy)."""

    examples = ("  nasrank supernet-train --out runs/sn --epochs 5\n"
                "  nasrank supernet-train --sampler fair --dataset fashion-mnist --data-root DIR\n"
                "  nasrank supernet-train --space cvpr2021 --supernet.conv independent\n")

    out: str = option("runs/supernet", OUT)
    dataset: str = option("digits", DATASET)
    data_root: str | None = option(None, DATA_ROOT)
    image_size: int | None = option(None, IMAGE_SIZE, low=4)
    space: Config = component(SPACES, "nb201", "search space")
    supernet: Config | None = component(SUPERNETS, "auto", "weight-sharing supernet",
                                        auto=_supernet_for_space)
    sampler: Config = component(SAMPLERS, "uniform", "which paths a training step visits")
    strategy: Config = component(STEP_STRATEGIES, "ce", "the loss of each visited path")
    epochs: int = option(5, "training epochs", low=1)
    batch_size: int = option(64, "images per batch", low=1)
    lr: float = option(0.05, "SGD learning rate (cosine schedule)", low=0.0, low_open=True)
    same_batch: bool = option(True, "every path of a training step on one batch (NCS); "
                                     "--no-same-batch: each path on its own batch")
    preset: str | None = option(None, "a named training setting of nasrank.supernet.distill."
                                      "PRESETS (ncs_best, rdnas); it sets --supernet (when it "
                                      "names one), --sampler, --strategy and --same-batch")
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def check(self) -> None:
        from nasrank.search.stages import check_supernet_space

        check_supernet_space(self.space, self.supernet)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        pipeline.supernet_train_command(self, console, device=resolve_device(self.device))


@COMMANDS.register("weak-labels")
@dataclass(frozen=True)
class WeakLabelsCommand(Command):
    """Evaluate architectures with a trained supernet (+ optional zero-cost proxies)."""

    examples = ("  nasrank weak-labels --out runs/sn --num-archs 300\n"
                "  nasrank weak-labels --out runs/sn --proxies synflow,nwot --shard 0/4\n"
                "  nasrank weak-labels --out runs/sn --all-archs --shard 1/2\n")

    out: str = option("runs/supernet", "folder of `nasrank supernet-train` (labels go there)")
    num_archs: int = option(300, "architectures to label", low=1)
    all_archs: bool = option(False, "label every architecture of the space instead (canonical "
                             "ones once; spaces of at most 1,000,000, e.g. all 9,445 NB201 cells)")
    proxies: tuple[str, ...] = option((), "comma-separated zero-cost proxies to add")
    shard: str = option("0/1", "i/n: this process's share of the architectures")
    dataset: str | None = option(None, "dataset to evaluate on (default: the supernet's; "
                                 "another one writes weak_labels-<dataset>.csv)")
    data_root: str | None = option(None, DATA_ROOT + " (default: the supernet's)")
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def check(self) -> None:
        from nasrank.search.stages import parse_shard

        parse_shard(self.shard)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        pipeline.weak_labels_command(self, console, device=resolve_device(self.device))


@COMMANDS.register("proxies")
@dataclass(frozen=True)
class ProxiesCommand(Command):
    """Score architectures with zero-cost proxies into a label table."""

    examples = "  nasrank proxies --out runs/zc --num-archs 100 --proxies synflow,nwot,jacov\n"

    out: str = option("runs/proxies", "output folder (proxies.csv, or proxies-<i>of<n>.csv)")
    space: Config = component(SPACES, "nb201", "search space")
    supernet: Config | None = component(
        SUPERNETS, "auto", "networks are sized like this supernet's paths (as in weak labels)",
        auto=_supernet_for_space, none="the space's own default network size")
    dataset: str = option("digits", DATASET)
    data_root: str | None = option(None, DATA_ROOT)
    image_size: int | None = option(None, IMAGE_SIZE, low=4)
    num_archs: int = option(100, "architectures to score", low=1)
    proxies: tuple[str, ...] = option(PROXIES_ALL, "comma-separated zero-cost proxies")
    batch_size: int = option(128, "images in the proxies' batch (weak labels use 128)", low=1)
    shard: str = option("0/1", "i/n: this process's share of the architectures")
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def check(self) -> None:
        from nasrank.search.stages import check_supernet_space, parse_shard

        parse_shard(self.shard)
        check_supernet_space(self.space, self.supernet)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        pipeline.proxies_command(self, console, device=resolve_device(self.device))


@COMMANDS.register("pretrain")
@dataclass(frozen=True)
class PretrainCommand(Command):
    """Pretrain the DGCNN predictor on a weak-label table (multi-task MSE)."""

    examples = "  nasrank pretrain --labels runs/sn/weak_labels.csv --out runs/pred\n"

    labels: str | None = option(None, "label table CSV")
    out: str = option("runs/predictor", "output folder (predictor.pt)")
    space: Config = component(SPACES, "nb201", "search space of the table")
    columns: tuple[str, ...] = option((), "comma-separated label columns (default: all usable)")
    epochs: int = option(300, "pretraining epochs", low=1)
    hybrid: bool = option(False, "the ranking head also reads each arch's measured weak labels "
                                 "(predicted ones for archs outside the table)")
    encoder: str = option("dgcnn", "graph encoder: dgcnn (AceNAS's), gin (sum aggregation) or "
                          "transformer (attention over neighbours)",
                          choices=("dgcnn", "gin", "transformer"))
    compile: str = option("off", "torch.compile the training step (dense graphs only; pays off "
                          "on long runs; reduce-overhead = CUDA graphs on a GPU)",
                          choices=("off", *COMPILE_MODES))
    rank_weight: float = option(0.0, "add this weight x RankNet on each label's order in the "
                                "batch to the MSE (ranking-aware pretraining)", low=0)
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        require(self, "labels")
        pipeline.pretrain_command(self, console, device=resolve_device(self.device))


@COMMANDS.register("finetune")
@dataclass(frozen=True)
class FinetuneCommand(Command):
    """Fine-tune the predictor with a ranking loss on ground-truth labels."""

    examples = ("  nasrank finetune --labels gt.csv --metric val_acc --out runs/pred\n"
                "  nasrank finetune --benchmark nb201 --data nb201.csv --metric cifar10_valid "
                "--n 100\n")

    labels: str | None = option(None, "label table CSV with the ground truth")
    benchmark: str | None = option(None, "or a benchmark (nb201, cvpr2021, nb101...)")
    data: str | None = option(None, "benchmark file")
    metric: str | None = option(None, "ground-truth column")
    n: int = option(100, "training architectures (benchmark mode)", low=1)
    loss: Config = component(RANKING_LOSSES, "lambdarank", "ranking loss")
    epochs: int = option(300, "fine-tuning epochs", low=1)
    ensemble: int = option(1, "fine-tune this many members (own validation split, batch order "
                           "and dropout each) and average their standardised scores", low=1)
    select: str = option("auto", "early stopping keeps the lowest validation loss or the highest "
                         "validation Kendall tau (auto: kendall, loss for mse)",
                         choices=("auto", "loss", "kendall"))
    space: Config = component(SPACES, "nb201", "search space of --labels")
    out: str = option("runs/predictor", "folder of predictor.pt (written: predictor_finetuned.pt)")
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        require(self, "metric")
        pipeline.finetune_command(self, console, device=resolve_device(self.device))


@COMMANDS.register("predict")
@dataclass(frozen=True)
class PredictCommand(Command):
    """Score architectures with a saved predictor."""

    examples = ("  nasrank predict --checkpoint runs/pred/predictor.pt --archs archs.txt\n"
                "  nasrank predict --checkpoint runs/pred/predictor.pt --all --top 10\n")

    checkpoint: str | None = option(None, "predictor checkpoint")
    archs: str | None = option(None, "text file, one architecture string a line")
    all: bool = option(False, "score the whole (finite) space")
    top: int = option(10, "best architectures printed", low=1)
    out: str | None = option(None, "folder for predictions.csv (default: print only)")
    device: str = option("auto", DEVICE)

    def run(self, console: Console) -> None:
        from nasrank.search import pipeline

        require(self, "checkpoint")
        pipeline.predict_command(self, console, device=resolve_device(self.device))
