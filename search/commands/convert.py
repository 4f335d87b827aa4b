"""``nasrank convert``: build the NB201 benchmark CSV or a label table from the public downloads."""

from __future__ import annotations

from dataclasses import dataclass

from nasrank.registry import option
from nasrank.search.registry import COMMANDS

from . import Command, Console


@COMMANDS.register("convert")
@dataclass(frozen=True)
class ConvertCommand(Command):
    """Build nasrank's NB201 tables from the public benchmark files you downloaded.

    With an accuracy source (--nats-bench, or --nas-bench-201) it writes the NB201 benchmark
    CSV, one row per cell in official index order, in the layout `nasrank benchmark --name
    nb201` and `nasrank search` read; --nbsuite-zero and --hw-nas-bench add the zero-cost
    proxy and hardware columns. Without one it writes a label table (plain CSV + .meta.json)
    of the NAS-Bench-Suite-Zero and/or HW-NAS-Bench columns, one row per cell. Published
    failure sentinels (-1e8 proxies, -1 Edge TPU latency) are read as NaN with a note. The
    NATS-Bench and NAS-Bench-201 APIs are optional: pip install 'nasrank[convert]'.
    """

    examples = (
        "  nasrank convert --nats-bench NATS-tss-v1_0-3ffb9-simple \\\n"
        "      --nbsuite-zero zc_nasbench201.json --hw-nas-bench HW-NAS-Bench-v1_0.pickle "
        "--out nb201.csv\n"
        "  nasrank convert --nas-bench-201 NAS-Bench-201-v1_1-096897.pth --out nb201.csv\n"
        "  nasrank convert --nbsuite-zero zc_nasbench201.json --dataset cifar100 --out zc.csv\n")

    # named ``table`` (flag --out) since --out of other commands is a folder the CLI locks
    table: str = option(help="output CSV (the benchmark, or a label table)", flag="out")
    nats_bench: str | None = option(None, "NATS-Bench topology file (NATS-tss-v1_0-3ffb9"
                                    ".pickle.pbz2) or folder (NATS-tss-v1_0-3ffb9-simple); "
                                    "needs pip install nats-bench")
    nas_bench_201: str | None = option(None, "NAS-Bench-201 file (NAS-Bench-201-v1_1-096897"
                                       ".pth); needs pip install nas-bench-201")
    nbsuite_zero: str | None = option(None, "NAS-Bench-Suite-Zero json (zc_nasbench201.json)")
    hw_nas_bench: str | None = option(None, "HW-NAS-Bench pickle (HW-NAS-Bench-v1_0.pickle)")
    dataset: str = option("cifar10", "dataset of the proxy and hardware columns",
                          choices=("cifar10", "cifar100", "ImageNet16-120"))

    def run(self, console: Console) -> None:
        from nasrank.errors import ConfigError
        from nasrank.spaces.convert import build_label_table, build_nb201_benchmark

        if all(v is None for v in (self.nats_bench, self.nas_bench_201, self.nbsuite_zero,
                                   self.hw_nas_bench)):
            raise ConfigError("nasrank convert: nothing to convert; give --nats-bench or "
                              "--nas-bench-201 (the benchmark CSV), and/or --nbsuite-zero, "
                              "--hw-nas-bench")
        if self.nats_bench is not None and self.nas_bench_201 is not None:
            raise ConfigError("nasrank convert: give one accuracy source, --nats-bench or "
                              "--nas-bench-201, not both")
        if self.nats_bench is not None or self.nas_bench_201 is not None:
            bench = build_nb201_benchmark(
                self.table, nats_bench=self.nats_bench, nas_bench_201=self.nas_bench_201,
                nbsuite_zero=self.nbsuite_zero, hw_nas_bench=self.hw_nas_bench,
                dataset=self.dataset, progress=console.progress)
            table, what = bench.table, "NB201 benchmark"
        else:
            table = build_label_table(self.table, nbsuite_zero=self.nbsuite_zero,
                                      hw_nas_bench=self.hw_nas_bench, dataset=self.dataset)
            what = "label table"
        cleared = sum(1 for n in table.notes if "published failure sentinel" in n)
        console.say(f"{what} {self.table}: {len(table)} cells, {len(table.names)} columns "
                    f"({', '.join(table.names)})")
        if cleared:
            console.say(f"{cleared} of {len(table)} cells carry a published failure sentinel, "
                        f"read as NaN with a note")
