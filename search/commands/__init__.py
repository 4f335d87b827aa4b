"""``nasrank`` subcommands: each is a :data:`~nasrank.search.registry.COMMANDS` entry.

A command is a frozen dataclass deriving from :class:`Command`; its fields are its flags and its
TOML keys (``search/cli.py`` generates both, help text from the field help, defaults shown), and
``run(console)`` does the work. A new command is one module in this folder, registered like this
(no edit anywhere else; the COMMANDS loader imports every module here)::

    from dataclasses import dataclass

    from nasrank.registry import Config, component, option
    from nasrank.search.commands import Command, Console
    from nasrank.search.registry import COMMANDS
    from nasrank.supernet.registry import SUPERNETS   # light: registries import no torch


    @COMMANDS.register("supernet-eval")
    @dataclass(frozen=True)
    class SupernetEvalCommand(Command):
        \"\"\"Rank architectures with a trained supernet.  (first line: the command's help)

        Longer description shown by ``nasrank supernet-eval --help``.
        \"\"\"

        examples = "  nasrank supernet-eval --out runs/sn --num-archs 100\\n"

        out: str = option("runs/sn", "folder of the trained supernet")
        num_archs: int = option(100, "architectures to evaluate", low=1)   # --num-archs
        seed: int = option(0, "random seed", low=0)
        device: str = option("auto", "auto | cpu | cuda | cuda:i")
        supernet: Config = component(SUPERNETS, "nb201", "the supernet")  # --supernet NAME
                                                       # and --supernet.channels 16 style flags

        def run(self, console: Console) -> None:
            from nasrank.supernet.trainer import load_supernet   # heavy imports inside run()
            console.say(f"evaluating {self.num_archs} archs")
            ...

Rules: keep module-level imports light (``nasrank --help`` imports every command module and must
stay fast): import torch, PyG, optuna... inside ``run``. Raise a
:class:`~nasrank.errors.NasrankError` subclass for bad input (the CLI prints one line, exit 2).
Print through ``console.say`` (silent under ``--quiet``) or ``console.result`` (the command's
result, also under ``--quiet``), log per-item progress with ``logging``, and pass ``console.progress`` as the
``progress=`` of library calls (tqdm bars only on a terminal). Field types: int, float, str,
bool (``--flag/--no-flag``), ``tuple[str, ...]`` (comma-separated), ``X | None``, and
:func:`~nasrank.registry.component` fields (a registered entry chosen by name).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, ClassVar

from nasrank.errors import ConfigError
from nasrank.registry import Config

__all__ = ["Command", "Console", "resolve_device", "require"]


class Console:
    """Where a command reports: one line per stage on stdout (nothing under ``--quiet``), tqdm
    progress bars only when stderr is a terminal (in CI logs every bar update would be a line)."""

    def __init__(self, quiet: bool = False, *, progress: bool | None = None) -> None:
        self.quiet = bool(quiet)
        self._progress = progress

    @property
    def progress(self) -> bool:
        """Whether library calls should draw progress bars."""
        if self._progress is not None:
            return self._progress and not self.quiet
        return not self.quiet and sys.stderr.isatty()

    def say(self, msg: str = "") -> None:
        """One progress line on stdout (nothing under ``--quiet``)."""
        if not self.quiet:
            print(msg, flush=True)

    def result(self, msg: str = "") -> None:
        """The command's result on stdout (a table the user asked for): printed even under
        ``--quiet``. Library modules never print; they log (``logging``) or return values."""
        print(msg, flush=True)


@dataclasses.dataclass(frozen=True)
class Command(Config):
    """Base of every ``nasrank`` subcommand (see the module docstring)."""

    #: usage examples shown under ``--help`` (indented lines)
    examples: ClassVar[str] = ""

    def run(self, console: Console) -> Any:  # pragma: no cover - every command overrides it
        raise NotImplementedError


def resolve_device(text: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; others are checked."""
    import torch

    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return text
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text!r} asked for, but no CUDA device is available")
        return text
    raise ConfigError(f"--device {text!r}: expected auto, cpu, cuda or cuda:i")


def require(cmd: Command, *names: str) -> None:
    """Fields a command needs in this mode (``--data`` of ``benchmark``...)."""
    for n in names:
        if getattr(cmd, n) in (None, ""):
            raise ConfigError(f"nasrank {cmd.name}: --{n.replace('_', '-')} is required")
