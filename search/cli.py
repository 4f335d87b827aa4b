"""The ``nasrank`` command: parses arguments and runs the chosen command (no logic lives here).

Every subcommand is a :data:`~nasrank.search.registry.COMMANDS` entry (``search/commands/``):
its config fields are its flags (``num_archs`` -> ``--num-archs``, help from the field help,
defaults shown) and its TOML keys. A field that picks a registered component (``--sampler fair``,
``--method re``, ``--space cvpr2021``) takes its choices from that registry, and the chosen entry's
own fields are flags ``--sampler.arch-batch 18`` (an option of another entry is an error naming
it). Only the chosen command's parser is built, so ``nasrank --help`` imports no torch.

Options also come from a TOML file (``--config FILE``; flags override it)::

    seed = 7                  # top level: applies to every command that has a 'seed'
    [run]
    budget = 20               # keys are the field names ('-' or '_')
    proxies = ["synflow", "nwot"]
    [run.sampler]             # a component: its entry name and options
    name = "fair"
    arch_batch = 18

Bad input exits with status 2 and one line ``nasrank: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nasrank.errors import ConfigError, NasrankError
from nasrank.registry import Config, FieldSpec, check_value, expected, field_specs

EPILOG_ALL = """examples:
  nasrank run                                   # the main job on the embedded digits data (CPU)
  nasrank run --space cvpr2021 --out runs/cvpr  # another search space, same pipeline
  nasrank run --sampler fair --sampler.arch-batch 5 --supernet.channels 16 --device cuda
  nasrank spaces                                # the search spaces and their sizes
  nasrank benchmark --name nb201 --data ../shared/data/nb201/nb201.csv
  nasrank search --benchmark nb201 --data ../shared/data/nb201/nb201.csv --metric cifar100_test --budget 50
  nasrank --config my.toml run                  # options from a TOML file, flags override it
  nasrank run --help                            # every option of one command
"""

_GLOBAL = ("command", "config", "quiet", "print_config")


class _Version(argparse.Action):
    """``--version``: the version is read from the package metadata only when asked for
    (``nasrank.__version__`` is lazy, so ``nasrank --help`` skips ``importlib.metadata``)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str = "show the version and exit") -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        import nasrank

        print(f"nasrank {nasrank.__version__}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _esc(text: str) -> str:
    return text.replace("%", "%%")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "''"
    if isinstance(value, Mapping):
        opts = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name')}" + (f" ({opts})" if opts else "")
    return str(value)


def _argtype(spec: FieldSpec):
    """An argparse type: the field's coercion and bounds; the error names the bad text."""

    def parse(text: str) -> Any:
        try:
            return check_value(spec, text, spec.name)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"expected {expected(spec)}, got {text!r}") from None

    return parse


_METAVAR = {int: "N", float: "X", str: "TEXT", tuple: "A,B", bool: "BOOL"}


def _add_field(p: argparse.ArgumentParser, spec: FieldSpec) -> None:
    flag = _flag(spec.flag)
    default = "required" if spec.required else f"default: {_show(spec.default)}"
    if spec.kind is bool:
        p.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                       default=argparse.SUPPRESS,
                       help=_esc(f"{spec.help} ({'default: on' if spec.default else 'default: off'})"))
    elif spec.kind is Config:
        reg = spec.registry
        assert reg is not None
        extra = (["auto"] if spec.auto else []) + (["none"] if spec.none else [])
        notes = "; ".join(f"{n}: {d}" for n, d in reg.describe().items())
        if spec.auto:
            notes += "; auto: the one that fits the other options"
        if spec.none:
            notes += f"; none: {spec.none}"
        p.add_argument(flag, dest=spec.name, metavar="NAME", choices=reg.names() + extra,
                       default=argparse.SUPPRESS,
                       help=_esc(f"{spec.help} ({default}) [{notes}]"))
    else:
        metavar = "{" + ",".join(map(str, spec.choices)) + "}" if spec.choices else \
            _METAVAR.get(spec.kind, "VALUE")
        p.add_argument(flag, dest=spec.name, type=_argtype(spec), metavar=metavar,
                       default=argparse.SUPPRESS,
                       help=_esc(f"{spec.help} ({default})"))


def _add_component_options(p: argparse.ArgumentParser, spec: FieldSpec) -> None:
    """``--field.option`` flags: the union of the options of every entry of the registry."""
    reg = spec.registry
    assert reg is not None
    helps: dict[str, list[str]] = {}
    for name in reg.names():
        for sub in field_specs(reg.get(name)):
            d = "required" if sub.required else f"default {_show(sub.default)}"
            helps.setdefault(sub.name, []).append(f"[{name}] {sub.help} ({d})")
    if not helps:
        return
    g = p.add_argument_group(f"options of the chosen {_flag(spec.flag)} "
                             f"(an option of another {reg.kind} is an error)")
    for opt, lines in helps.items():
        g.add_argument(f"{_flag(spec.flag)}.{opt.replace('_', '-')}", dest=f"{spec.name}.{opt}",
                       metavar="VALUE", default=argparse.SUPPRESS, help=_esc("; ".join(lines)))


def _command_help(cls: type) -> tuple[str, str]:
    doc = (cls.__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    return first, doc


def _populate(p: argparse.ArgumentParser, cls: type) -> None:
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="print nothing but errors (no stage lines, no progress bars)")
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                   help="TOML file of options (flags override it; before or after the command)")
    p.add_argument("--print-config", action="store_true", default=argparse.SUPPRESS,
                   help="print the merged settings (TOML + flags) as TOML and exit")
    specs = field_specs(cls)
    for spec in specs:
        _add_field(p, spec)
    for spec in specs:
        if spec.kind is Config:
            _add_component_options(p, spec)


def build_parser(command: str | None = None, *, every: bool = False) -> _Parser:
    """The ``nasrank`` parser; only ``command``'s options are added (all with ``every``)."""
    from nasrank.search.registry import COMMANDS

    parser = _Parser(prog="nasrank", description="Graph-based performance predictors for NAS.",
                     epilog=EPILOG_ALL, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--config", default=None, help="TOML file of options (flags override it)")
    parser.add_argument("--quiet", action="store_true", default=False,
                        help="print nothing but errors (no stage lines, no progress bars)")
    parser.add_argument("--print-config", action="store_true", default=False,
                        help="print the command's merged settings (TOML + flags) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS.names():
        cls = COMMANDS.get(name)
        first, doc = _command_help(cls)
        epilog = ("examples:\n" + cls.examples) if getattr(cls, "examples", "") else None
        p = sub.add_parser(name, help=first, description=doc, epilog=epilog,
                           usage=f"nasrank {name} [options]",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if every or name == command:
            _populate(p, cls)
    return parser


def _selected(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first bare word; the value of --config skipped)."""
    skip = False
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok == "--config":
            skip = True
            continue
        if tok.startswith("-"):
            continue
        return tok if tok in names else None
    return None


# ----------------------------------------------------------------------------- TOML
def _read_toml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path!r} is not UTF-8 text (byte {err.start}); "
                          f"expected TOML") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path!r} is not valid TOML: {err}") from None


def _toml_values(path: str, command: str) -> dict[str, Any]:
    """Options for ``command`` from the file: top-level keys it has, plus its ``[command]``
    table. A top-level key that no command has, an unknown table, or an unknown key in the
    command's table is an error naming it."""
    from nasrank.search.registry import COMMANDS

    data = _read_toml(path)
    every = {n: {s.flag: s for s in field_specs(COMMANDS.get(n))} for n in COMMANDS.names()}
    mine = every[command]
    values: dict[str, Any] = {}

    def take(key: str, value: Any, where: str) -> None:
        name = key.replace("-", "_")
        spec = mine[name]
        if spec.kind is not Config:
            try:
                value = check_value(spec, value, spec.name)
            except ConfigError:
                raise ConfigError(f"config file {path!r}: {where}{key}: expected "
                                  f"{expected(spec)}, got {str(value)!r}") from None
        elif isinstance(value, Mapping):
            value = {k.replace("-", "_"): v for k, v in value.items()}
        values[spec.name] = value

    for key, value in data.items():
        if isinstance(value, dict):
            if key not in every:
                raise ConfigError(f"config file {path!r}: unknown table [{key}]; expected a "
                                  f"command: {sorted(every)}")
            continue
        name = key.replace("-", "_")
        if not any(name in fields for fields in every.values()):
            raise ConfigError(f"config file {path!r}: unknown top-level option {key!r} "
                              f"(no command has it)")
        if name in mine:
            take(key, value, "")
    for key, value in data.get(command, {}).items():
        if key.replace("-", "_") not in mine:
            raise ConfigError(f"config file {path!r}: unknown option {key!r} for "
                              f"'nasrank {command}'; its options are {sorted(mine)}")
        take(key, value, f"[{command}] ")
    return values


# ----------------------------------------------------------------------------- parsing
def _merge(cls: type, file_values: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """File values overridden by flags; a component's name flag replaces the file's table of
    another entry, its ``--x.opt`` flags add options."""
    specs = {s.name: s for s in field_specs(cls)}
    values = dict(file_values)
    for dest, v in flags.items():
        if "." not in dest:
            if specs[dest].kind is Config:
                old = values.get(dest)
                if isinstance(old, Mapping) and old.get("name", v) == v:
                    values[dest] = {**old, "name": v}
                    continue
            values[dest] = v
    for dest, v in flags.items():
        if "." in dest:
            comp, opt = dest.split(".", 1)
            old = values.get(comp)
            table = dict(old) if isinstance(old, Mapping) else (
                {} if old is None else {"name": old})
            table[opt] = v
            values[comp] = table
    return values


def parse_args(argv: Sequence[str]) -> Config:
    """The chosen command's checked config (``nasrank`` alone prints the help, exit 0)."""
    return _parse(argv)[0]


def _parse(argv: Sequence[str]) -> tuple[Config, bool]:
    """(the command's config, --quiet)."""
    from nasrank.search.registry import COMMANDS

    argv = list(argv)
    parser = build_parser(_selected(argv, COMMANDS.names()))
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        raise SystemExit(0)
    cls = COMMANDS.get(ns.command)
    flags = {k: v for k, v in vars(ns).items() if k not in _GLOBAL}
    file_values = _toml_values(ns.config, ns.command) if ns.config else {}
    values = _merge(cls, file_values, flags)
    missing = [s.name for s in field_specs(cls) if s.required and s.name not in values]
    if missing:
        flag = {s.name: s.flag for s in field_specs(cls)}[missing[0]]
        raise ConfigError(f"nasrank {ns.command}: {_flag(flag)} is required")
    cmd = COMMANDS.make(ns.command, values, where=f"nasrank {ns.command}")
    if getattr(ns, "print_config", False):
        print(to_toml(cmd), end="")
        raise SystemExit(0)
    return cmd, bool(getattr(ns, "quiet", False))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(cmd: Config) -> str:
    """The command's settings as a ``[command]`` TOML table that ``--config`` reads back (an
    unset option, which TOML cannot write, is a comment)."""
    d = cmd.to_dict()
    name = d.pop("name")
    lines, tables = [f"[{name}]"], []
    for k, v in d.items():
        if isinstance(v, Mapping):
            tables.append((k, v))
        elif v is None:
            lines.append(f"# {k} = (unset)")
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, table in tables:
        lines += ["", f"[{name}.{k}]"]
        for sk, sv in table.items():
            lines.append(f"# {sk} = (unset)" if sv is None else f"{sk} = {_toml_value(sv)}")
    return "\n".join(lines) + "\n"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (pytest's capture, a
    redirected stream), one ``nasrank: message`` line per record."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("nasrank: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; always stderr
        pass


def configure_logging(quiet: bool) -> None:
    """The library logs through ``logging`` (``nasrank.*`` loggers); the command shows those
    records on stderr: INFO and above by default (one line per trained architecture...),
    WARNING and above under ``--quiet``. Calling it again replaces the earlier setting."""
    log = logging.getLogger("nasrank")
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    for h in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(h)
    log.addHandler(_StderrHandler())


def main(argv: Sequence[str] | None = None) -> int:
    from nasrank.search.commands import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cmd, quiet = _parse(argv)
        from nasrank.launch import check_launch

        # under torchrun: rank 0 reports, holds the --out lock and writes; the others only train
        rank, _ = check_launch(cmd.name)  # type: ignore[attr-defined]
        quiet = quiet or rank != 0
        configure_logging(quiet)
        from nasrank.locking import command_lock

        # one writer per --out (shards: one per shard), refused at once
        with command_lock(cmd) if rank == 0 else contextlib.nullcontext():
            cmd.run(Console(quiet=quiet))  # type: ignore[attr-defined]
        sys.stdout.flush()
        return 0
    except NasrankError as err:
        print(f"nasrank: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as err:
        print(f"nasrank: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nasrank spaces | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("nasrank: interrupted; rerun with the same --out to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
