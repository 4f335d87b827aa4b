"""Commands that describe what is installed: ``nasrank spaces`` and ``nasrank benchmark``."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.registry import option
from nasrank.search.registry import COMMANDS

from . import Command, Console, require


@COMMANDS.register("spaces")
@dataclass(frozen=True)
class SpacesCommand(Command):
    """List the search spaces with their sizes."""

    examples = "  nasrank spaces\n  nasrank spaces | head -3\n"

    def run(self, console: Console) -> None:
        from nasrank.spaces.registry import SPACES

        print(f"{'space':<10} {'architectures':>16}  {'graph nodes':>11}  description")
        for name, doc in SPACES.describe().items():
            space = SPACES.make(name).build()
            size = f"{space.size:,}" if space.size is not None else "unbounded"
            print(f"{name:<10} {size:>16}  {space.max_nodes:>11}  {doc}")


@COMMANDS.register("benchmark")
@dataclass(frozen=True)
class BenchmarkCommand(Command):
    """Summarize a benchmark table (size, columns, best architectures)."""

    examples = ("  nasrank benchmark --name nb201 --data ../shared/data/nb201/nb201.csv\n"
                "  nasrank benchmark --name cvpr2021 --data ../shared/data/cvpr2021_track1/archs.csv\n")

    benchmark: str = option("nb201", "benchmark (nb201, cvpr2021, nb101, nbsuite-zero...)",
                            flag="name")
    data: str | None = option(None, "path to the benchmark file")
    top: int = option(5, "how many best architectures to list", low=1)

    def run(self, console: Console) -> None:
        from nasrank.search.report import summarize_benchmark
        from nasrank.spaces.registry import BENCHMARKS

        require(self, "data")
        bench = BENCHMARKS.make(self.benchmark, {"path": self.data}).build()
        print(summarize_benchmark(bench, top=self.top))
