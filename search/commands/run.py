"""``nasrank run``: the whole pipeline on any registered search space."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.registry import Config, component, option
from nasrank.search.registry import COMMANDS

from . import Command, Console, resolve_device
from .stages import (DATA_ROOT, DATASET, DEVICE, SAMPLERS, SEED, SPACES, STEP_STRATEGIES,
                     SUPERNETS, _supernet_for_space)

SEARCH_METHODS = "nasrank.search.registry:SEARCH_METHODS"


@COMMANDS.register("run")
@dataclass(frozen=True)
class RunCommand(Command):
    """The whole pipeline: supernet -> weak labels -> predictor -> search -> report.

    Any registered space (--space); its supernet is picked automatically (--supernet auto), and
    a space without one (nb101) is weak-labelled by zero-cost proxies and cost alone. Rerunning
    with the same --out resumes; other settings in that folder are refused.

    The search ranks a candidate pool sized for the CPU unless --method.pool-size is given: the
    whole space when it is finite with at most 20,000 cells (nb201), else 2,000 seeded random
    architectures (cvpr2021, mbconv, nb101; a method's own default, 100,000, is meant for
    benchmark lookups and would spend minutes per round on the CPU).
    """

    examples = ("  nasrank run                                  # NB201 on embedded digits, CPU\n"
                "  nasrank run --space cvpr2021 --out runs/cvpr\n"
                "  nasrank run --space nb101 --out runs/nb101     # no supernet: proxies + cost\n"
                "  nasrank run --sampler fair --supernet.channels 16 --supernet.cells 5 "
                "--device cuda\n"
                "  nasrank run --method re --method.population-size 10 --budget 20\n")

    out: str = option("runs/nasrank-run", "output folder; rerunning with it resumes")
    dataset: str = option("digits", DATASET)
    data_root: str | None = option(None, DATA_ROOT)
    image_size: int | None = option(16, "resize images to this side", low=4)
    space: Config = component(SPACES, "nb201", "search space")
    supernet: Config | None = component(
        SUPERNETS, "auto", "weight-sharing supernet", auto=_supernet_for_space,
        none="no supernet: weak labels from zero-cost proxies and cost")
    sampler: Config = component(SAMPLERS, "uniform", "which paths a supernet step visits")
    strategy: Config = component(STEP_STRATEGIES, "ce", "the loss of each visited path")
    supernet_epochs: int = option(6, "supernet training epochs", low=1)
    batch_size: int = option(64, "images per batch (supernet and stand-alone training)", low=1)
    lr: float = option(0.05, "SGD learning rate (supernet and stand-alone training)", low=0.0,
                       low_open=True)
    archs: int = option(300, "weak-labelled architectures (the predictor pretrains on them: "
                             "at least 2)", low=2)
    proxies: tuple[str, ...] = option(("synflow", "nwot", "jacov"),
                                      "zero-cost proxies added to the weak labels ('' for none)")
    pretrain_epochs: int = option(60, "predictor pretraining epochs", low=1)
    finetune_epochs: int = option(100, "predictor fine-tuning epochs at each fit", low=1)
    method: Config = component(SEARCH_METHODS, {"name": "iterative", "rounds": 3},
                               "search method guided by the predictor")
    budget: int = option(12, "real trainings for the search (and the random baseline)", low=1)
    epochs: int = option(3, "epochs of each real training", low=1)
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def check(self) -> None:
        from nasrank.search.stages import check_supernet_space

        check_supernet_space(self.space, self.supernet)
        self.method.check_budget(self.budget)  # before any training

    def run(self, console: Console) -> dict:
        from nasrank.search import pipeline

        return pipeline.run_pipeline(self, console, device=resolve_device(self.device))
