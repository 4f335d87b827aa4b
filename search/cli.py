"""The ``nasrank`` command: parses arguments and calls the library (no logic lives here).

Options come from flags and from a TOML file (``--config FILE``): top-level keys apply to every
command, a ``[command]`` table (``[supernet-train]``, ``[run]``...) to one; flags override the file.
Bad input exits with status 2 and one line ``nasrank: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasrank.errors import NasrankError

EPILOG_ALL = """examples:
  nasrank run                                   # the main job on the embedded digits data (CPU, <10 min)
  nasrank run --out runs/big --epochs 10 --dataset fashion-mnist --data-root ~/data/fmnist --device cuda
  nasrank spaces                                # the search spaces and their sizes
  nasrank benchmark --name nb201 --data ../shared/data/nb201/nb201.csv
  nasrank search --benchmark nb201 --data ../shared/data/nb201/nb201.csv --metric cifar100_test --budget 50
  nasrank --config my.toml run                  # options from a TOML file, flags override it
"""


class CliError(NasrankError):
    """Bad command-line input (unknown option in the config file, bad value...)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2, no usage dump
        raise CliError(f"{self.prog}: {message}")


def _int_at_least(lowest: int, what: str):
    """An argparse type: an integer >= ``lowest``; the error names the bad text."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = lowest - 1
        if v < lowest:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shard 'i/n' like 0/4, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 0 <= i < n")
    return i, n


def _common(p: argparse.ArgumentParser, *, out: bool = True) -> None:
    p.add_argument("--seed", type=_nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto",
                   help="auto | cpu | cuda | cuda:i (default auto: cuda when available)")
    if out:
        p.add_argument("--out", default=None,
                       help="output folder; rerunning with the same folder resumes")


def _dataset_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits",
                   help="digits (embedded) | fashion-mnist | cifar10 | cifar100")
    p.add_argument("--data-root", default=None,
                   help="folder with the dataset files (Fashion-MNIST IDX or CIFAR python format)")


def build_parser() -> _Parser:
    parser = _Parser(
        prog="nasrank", description="Graph-based performance predictors for NAS.",
        epilog=EPILOG_ALL, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="TOML file of options (flags override it)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str, examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_,
                              epilog="examples:\n" + examples,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("spaces", "List the search spaces with their sizes.", "  nasrank spaces\n")
    p.set_defaults(handler="spaces")

    p = add("benchmark", "Summarize a benchmark table (size, columns, best architectures).",
            "  nasrank benchmark --name nb201 --data ../shared/data/nb201/nb201.csv\n"
            "  nasrank benchmark --name cvpr2021 --data ../shared/data/cvpr2021_track1/archs.csv\n")
    p.add_argument("--name", default="nb201", help="nb201 | cvpr2021 | nb101")
    p.add_argument("--data", required=False, default=None, help="path to the benchmark file")
    p.add_argument("--top", type=_positive_int, default=5, help="how many best archs to list")
    p.set_defaults(handler="benchmark")

    p = add("supernet-train", "Train a weight-sharing supernet (SPOS or FairNAS sampling).",
            "  nasrank supernet-train --out runs/sn --epochs 5\n"
            "  nasrank supernet-train --sampler fair --dataset fashion-mnist --data-root DIR\n")
    _common(p)
    _dataset_opts(p)
    p.add_argument("--space", default="nb201", help="nb201 | cvpr2021")
    p.add_argument("--sampler", default="uniform", choices=["uniform", "fair"])
    p.add_argument("--epochs", type=_positive_int, default=5)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--channels", type=_positive_int, default=8, help="NB201 C (paper: 16)")
    p.add_argument("--cells", type=_positive_int, default=1, help="NB201 cells per stage (paper: 5)")
    p.set_defaults(handler="supernet_train")

    p = add("weak-labels", "Evaluate architectures with a trained supernet (+ optional proxies).",
            "  nasrank weak-labels --out runs/sn --num-archs 300\n")
    _common(p)
    _dataset_opts(p)
    p.add_argument("--num-archs", type=_positive_int, default=300)
    p.add_argument("--proxies", default="", help="comma-separated zero-cost proxies to add")
    p.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: this process's share")
    p.set_defaults(handler="weak_labels")

    p = add("proxies", "Score architectures with zero-cost proxies into a label table.",
            "  nasrank proxies --out runs/zc --num-archs 100 --proxies synflow,nwot,jacob_cov\n")
    _common(p)
    _dataset_opts(p)
    p.add_argument("--space", default="nb201")
    p.add_argument("--num-archs", type=_positive_int, default=100)
    p.add_argument("--proxies", default="synflow,nwot,jacob_cov,snip,grad_norm,params,flops")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: this process's share")
    p.set_defaults(handler="proxies")

    p = add("pretrain", "Pretrain the DGCNN predictor on a weak-label table (multi-task MSE).",
            "  nasrank pretrain --labels runs/sn/weak_labels.csv --out runs/pred\n")
    _common(p)
    p.add_argument("--labels", required=False, default=None, help="label table CSV")
    p.add_argument("--space", default="nb201")
    p.add_argument("--columns", default="", help="comma-separated label columns (default all)")
    p.add_argument("--epochs", type=_positive_int, default=300)
    p.set_defaults(handler="pretrain")

    p = add("finetune", "Fine-tune the predictor with a ranking loss on ground-truth labels.",
            "  nasrank finetune --labels gt.csv --metric val_acc --out runs/pred\n"
            "  nasrank finetune --benchmark nb201 --data nb201.csv --metric cifar10_valid --n 100\n")
    _common(p)
    p.add_argument("--labels", default=None, help="label table CSV with the ground truth")
    p.add_argument("--benchmark", default=None, help="or a benchmark: nb201 | cvpr2021 | nb101")
    p.add_argument("--data", default=None, help="benchmark file")
    p.add_argument("--metric", required=False, default=None, help="ground-truth column")
    p.add_argument("--n", type=_positive_int, default=100, help="training archs (benchmark mode)")
    p.add_argument("--loss", default="lambdarank", choices=["lambdarank", "ranknet", "margin", "mse"])
    p.add_argument("--epochs", type=_positive_int, default=300)
    p.add_argument("--space", default="nb201")
    p.set_defaults(handler="finetune")

    p = add("predict", "Score architectures with a saved predictor.",
            "  nasrank predict --checkpoint runs/pred/predictor.pt --archs archs.txt\n"
            "  nasrank predict --checkpoint runs/pred/predictor.pt --all --top 10\n")
    _common(p)
    p.add_argument("--checkpoint", default=None, help="predictor checkpoint")
    p.add_argument("--archs", default=None, help="text file, one architecture string a line")
    p.add_argument("--all", action="store_true", help="score the whole (finite) space")
    p.add_argument("--top", type=_positive_int, default=10)
    p.set_defaults(handler="predict")

    p = add("search", "Search a benchmark table with a surrogate (benchmark oracle).",
            "  nasrank search --benchmark nb201 --data nb201.csv --metric cifar100_test --budget 50\n"
            "  nasrank search --benchmark nb201 --data nb201.csv --metric cifar10_valid "
            "--report cifar10_test --method re\n")
    _common(p)
    p.add_argument("--benchmark", default="nb201")
    p.add_argument("--data", default=None, help="benchmark file")
    p.add_argument("--metric", default="cifar10_valid", help="column the search maximises")
    p.add_argument("--report", default=None, help="column reported for the result (default metric)")
    p.add_argument("--method", default="iterative",
                   choices=["iterative", "re", "surrogate-re", "random", "greedy", "optuna"])
    p.add_argument("--budget", type=_positive_int, default=50)
    p.add_argument("--proxy", default="zc_jacov", help="column for --method greedy")
    p.add_argument("--checkpoint", default=None,
                   help="pretrained predictor (nasrank pretrain) for the predictor methods")
    p.set_defaults(handler="search")

    p = add("run", "The whole pipeline: supernet -> weak labels -> predictor -> search -> report.",
            "  nasrank run                                  # embedded digits, CPU, under 10 minutes\n"
            "  nasrank run --out runs/x --archs 1000 --budget 40 --epochs 8 --device cuda\n")
    _common(p)
    _dataset_opts(p)
    p.add_argument("--supernet-epochs", type=_positive_int, default=6)
    p.add_argument("--sampler", default="uniform", choices=["uniform", "fair"])
    p.add_argument("--archs", type=_positive_int, default=300, help="weak-labelled architectures")
    p.add_argument("--proxies", default="synflow,nwot,jacob_cov",
                   help="zero-cost proxies added to the weak labels ('' for none)")
    p.add_argument("--pretrain-epochs", type=_positive_int, default=60)
    p.add_argument("--budget", type=_positive_int, default=12, help="real trainings for the search")
    p.add_argument("--rounds", type=_positive_int, default=3)
    p.add_argument("--epochs", type=_positive_int, default=3, help="epochs of each real training")
    p.add_argument("--channels", type=_positive_int, default=8, help="NB201 C (paper: 16)")
    p.add_argument("--cells", type=_positive_int, default=1, help="NB201 cells per stage (paper: 5)")
    p.add_argument("--image-size", type=_positive_int, default=16)
    p.set_defaults(handler="run")
    return parser


def _load_config(path: str, parser: argparse.ArgumentParser, command: str) -> dict[str, Any]:
    """TOML options for ``command``: top-level scalars plus the ``[command]`` table."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"config file {path!r} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise CliError(f"config file {path!r} is not valid TOML: {err}") from None
    sub = _subparser(parser, command)
    known = {a.dest for a in sub._actions if a.dest not in ("help",)}
    values = {k: v for k, v in data.items() if not isinstance(v, dict)}
    values.update(data.get(command, {}))
    for k in list(values):
        dest = k.replace("-", "_")
        if dest not in known:
            raise CliError(
                f"config file {path!r}: unknown option {k!r} for 'nasrank {command}'"
            )
        values[dest] = values.pop(k)
    return values


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise CliError(f"unknown command {command!r}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        raise SystemExit(0)
    if args.config:
        values = _load_config(args.config, parser, args.command)
        sub = _subparser(parser, args.command)
        # re-parse: file values become defaults, so explicit flags still win; types are checked
        for action in sub._actions:
            if action.dest in values and action.type is not None and not isinstance(
                values[action.dest], bool
            ):
                try:
                    values[action.dest] = action.type(str(values[action.dest]))
                except (argparse.ArgumentTypeError, ValueError) as err:
                    raise CliError(f"config option {action.dest!r}: {err}") from None
        sub.set_defaults(**values)
        args = parser.parse_args(argv)
    return args


def resolve_device(text: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; others are checked."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise CliError(f"--device {text!r} asked for, but no CUDA device is available")
        return text
    raise CliError(f"--device {text!r}: expected auto, cpu, cuda or cuda:i")


def _require(args: argparse.Namespace, *names: str) -> None:
    for n in names:
        if getattr(args, n) in (None, ""):
            raise CliError(f"nasrank {args.command}: --{n.replace('_', '-')} is required")


# ----------------------------------------------------------------------------- handlers
def cmd_spaces(args: argparse.Namespace) -> None:
    from nasrank.spaces import SPACE_NAMES, get_space

    print(f"{'space':<10} {'architectures':>16}  {'graph nodes':>11}  description")
    for name in SPACE_NAMES:
        space = get_space(name)
        size = f"{space.size:,}" if space.size is not None else "unbounded"
        doc = (type(space).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<10} {size:>16}  {space.max_nodes:>11}  {doc}")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from nasrank.search.report import summarize_benchmark
    from nasrank.spaces.benchmarks import load_benchmark

    _require(args, "data")
    print(summarize_benchmark(load_benchmark(args.name, args.data), top=args.top))


HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "spaces": cmd_spaces,
    "benchmark": cmd_benchmark,
}


def _csv(text: str) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _register_pipeline_handlers() -> None:
    """Commands that wire the supernet, predictor and search stages (search/pipeline.py);
    each handler only maps flags to the library's keyword arguments."""
    from nasrank.search import pipeline

    def dev(a: argparse.Namespace) -> str:
        return resolve_device(a.device)

    HANDLERS.update({
        "supernet_train": lambda a: pipeline.supernet_train_command(
            out=a.out, space=a.space, dataset=a.dataset, data_root=a.data_root,
            sampler=a.sampler, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
            channels=a.channels, cells=a.cells, seed=a.seed, device=dev(a)),
        "weak_labels": lambda a: pipeline.weak_labels_command(
            out=a.out, num_archs=a.num_archs, proxies=_csv(a.proxies), shard=a.shard,
            seed=a.seed, device=dev(a), data_root=a.data_root),
        "proxies": lambda a: pipeline.proxies_command(
            out=a.out, space=a.space, dataset=a.dataset, data_root=a.data_root,
            num_archs=a.num_archs, proxies=_csv(a.proxies), batch_size=a.batch_size,
            shard=a.shard, seed=a.seed, device=dev(a)),
        "pretrain": lambda a: (_require(a, "labels"), pipeline.pretrain_command(
            out=a.out, labels=a.labels, space=a.space, columns=_csv(a.columns),
            epochs=a.epochs, seed=a.seed, device=dev(a))),
        "finetune": lambda a: (_require(a, "metric"), pipeline.finetune_command(
            out=a.out, labels=a.labels, benchmark=a.benchmark, data=a.data, metric=a.metric,
            n=a.n, loss=a.loss, epochs=a.epochs, space=a.space, seed=a.seed, device=dev(a))),
        "predict": lambda a: (_require(a, "checkpoint"), pipeline.predict_command(
            out=a.out, checkpoint=a.checkpoint, archs=a.archs, all_archs=a.all, top=a.top,
            device=dev(a))),
        "search": lambda a: pipeline.search_command(
            out=a.out, benchmark=a.benchmark, data=a.data, metric=a.metric, report=a.report,
            method=a.method, budget=a.budget, proxy=a.proxy, seed=a.seed, device=dev(a),
            checkpoint=a.checkpoint),
        "run": lambda a: pipeline.run_pipeline(
            out=a.out or "runs/nasrank-run", dataset=a.dataset, data_root=a.data_root,
            seed=a.seed, device=dev(a), supernet_epochs=a.supernet_epochs, sampler=a.sampler,
            archs=a.archs, proxies=_csv(a.proxies), pretrain_epochs=a.pretrain_epochs,
            budget=a.budget, rounds=a.rounds, epochs=a.epochs, channels=a.channels,
            cells=a.cells, image_size=a.image_size),
    })


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        if args.handler not in HANDLERS:
            _register_pipeline_handlers()
        HANDLERS[args.handler](args)
        return 0
    except NasrankError as err:
        print(f"nasrank: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        print(f"nasrank: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasrank: interrupted; rerun with the same --out to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
