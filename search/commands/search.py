"""``nasrank search``: one search on a benchmark table (the benchmark is the oracle)."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.errors import ConfigError
from nasrank.registry import Config, component, option
from nasrank.search.registry import COMMANDS

SEARCH_METHODS = "nasrank.search.registry:SEARCH_METHODS"  # imported on use

from . import Command, Console, resolve_device


@COMMANDS.register("search")
@dataclass(frozen=True)
class SearchCommand(Command):
    """Search a benchmark table with a surrogate (benchmark oracle)."""

    examples = ("  nasrank search --benchmark nb201 --data nb201.csv --metric cifar100_test "
                "--budget 50\n"
                "  nasrank search --benchmark nb201 --data nb201.csv --metric cifar10_valid "
                "--report cifar10_test --method re --method.population-size 30\n"
                "  nasrank search --benchmark nb101 --data nb101.json --metric valid_acc "
                "--method greedy --method.proxy params\n")

    benchmark: str = option("nb201", "benchmark (nb201, cvpr2021, nb101, nbsuite-zero...)")
    data: str | None = option(None, "benchmark file")
    metric: str = option("cifar10_valid", "column the search maximises")
    report: str | None = option(None, "column reported for the result (default: --metric)")
    method: Config = component(SEARCH_METHODS, "iterative", "search method")
    budget: int = option(50, "queries of the benchmark", low=1)
    checkpoint: str | None = option(None, "pretrained predictor (nasrank pretrain) for the "
                                    "predictor methods")
    fit_epochs: int = option(100, "fine-tuning epochs of each predictor fit", low=1)
    fit_ensemble: int = option(1, "fine-tuned members averaged at each predictor fit", low=1)
    out: str | None = option(None, "output folder (default: runs/search-<benchmark>-...)")
    seed: int = option(0, "random seed", low=0)
    device: str = option("auto", "auto | cpu | cuda | cuda:i")
    storage: str | None = option(None, "Optuna storage shared by the workers of one study "
                                 "(--method optuna): sqlite:///study.db, "
                                 "postgresql://user:pw@host/db, mysql+pymysql://user:pw@host/db "
                                 "or journal:///path/study.log; --budget is then this worker's "
                                 "share")
    study_name: str | None = option(None, "study in --storage (default: "
                                    "search-<benchmark>-<metric>)")
    worker: str = option("0", "this worker's id in the study (one process per id; a restarted "
                         "worker resumes under its old id)")

    def check(self) -> None:
        super().check()
        self.method.check_budget(self.budget)
        if self.checkpoint is not None and not getattr(self.method, "uses_predictor", False):
            raise ConfigError(f"nasrank search: --checkpoint {self.checkpoint!r} would be ignored: "
                              f"--method {self.method.name} fits no predictor (use iterative, "
                              f"surrogate-re or optuna)")
        if self.storage is None:
            if self.study_name is not None or self.worker != "0":
                raise ConfigError("nasrank search: --study-name and --worker need --storage URL")
        elif self.method.name != "optuna":
            raise ConfigError(f"nasrank search: --storage needs --method optuna, got --method "
                              f"{self.method.name}")
        elif not self.worker:
            raise ConfigError("nasrank search: --worker must not be empty")

    def method_inputs(self) -> dict:
        """The shared-study inputs handed to ``method.build`` (none without --storage)."""
        if self.storage is None:
            return {}
        return {"storage": self.storage, "worker": self.worker,
                "study_name": self.study_name or f"search-{self.benchmark}-{self.metric}"}

    def default_out(self) -> str:
        """The folder written without ``--out`` (one per benchmark, method, metric, budget,
        seed and shared-study worker)."""
        shared = self.method_inputs()
        return (f"runs/search-{self.benchmark}-{self.method.name}-{self.metric}-"
                f"b{self.budget}-s{self.seed}" + (f"-w{shared['worker']}" if shared else ""))

    def run(self, console: Console) -> dict:
        from nasrank.search import pipeline

        if self.out:  # locked by the CLI (nasrank.locking.command_lock)
            return pipeline.search_command(self, console, device=resolve_device(self.device))
        from dataclasses import replace

        from nasrank.locking import output_lock

        out = self.default_out()
        with output_lock(out):  # the default folder: one writer too
            return pipeline.search_command(replace(self, out=out), console,
                                           device=resolve_device(self.device))
