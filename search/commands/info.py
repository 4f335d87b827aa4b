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

        rows = []
        for name in SPACES.names():
            space = SPACES.make(name).build()
            size = space.size if space.size is not None else KNOWN_SIZES.get(name)
            rows.append((name, format_size(size), str(space.max_nodes),
                         summary(SPACES.get(name).__doc__)))
        w = max(len("space"), *(len(r[0]) for r in rows))
        print(f"{'space':<{w}}  {'architectures':>13}  {'nodes':>5}  description")
        for name, size, nodes, doc in rows:
            print(f"{name:<{w}}  {size:>13}  {nodes:>5}  {doc}")


#: sizes of spaces that are not enumerated here; NAS-Bench-101: 423,624 unique cells after
#: graph-isomorphism deduplication (Ying et al., ICML 2019, section 2.1)
KNOWN_SIZES = {"nb101": 423_624}


def format_size(size: int | None) -> str:
    """Exact with thousands separators up to 1e9, else 3 significant digits (``1.15e18``)."""
    if size is None:
        return "unbounded"
    if size < 10**9:
        return f"{size:,}"
    mant, exp = f"{size:.2e}".split("e")
    return f"{mant}e{int(exp)}"


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line (a wrapped first sentence stays whole)."""
    para = (doc or "").strip().split("\n\n")[0]
    return " ".join(para.split())


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
