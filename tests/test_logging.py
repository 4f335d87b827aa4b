"""Issue 19: library code logs through ``logging`` (never ``print``); stages that train real
architectures log one line per architecture; the CLI shows INFO on stderr, WARNING under --quiet."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("nasrank", "spaces", "supernet", "predictor", "search")
#: the command line itself: its handlers' user-facing output may go to stdout
CLI = {Path("search/cli.py"), Path("search/commands")}

NB201_ARCHS = [
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
]


def _is_cli(rel: Path) -> bool:
    return any(rel == c or c in rel.parents for c in CLI)


def test_library_modules_do_not_print():
    offenders = []
    for pkg in LIBRARY:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if _is_cli(rel):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(rel))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "print"):
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], f"print() in library code (use logging): {offenders}"


def _trained_lines(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.getMessage().startswith("trained ")]


def test_training_oracle_logs_one_line_per_architecture(caplog):
    from nasrank.search.oracles import BudgetedOracle, TrainingOracle
    from nasrank.spaces.nb201 import NB201Space
    from nasrank.supernet.datasets import load_dataset

    torch.set_num_threads(1)
    space = NB201Space()
    data = load_dataset("digits", subset=120, seed=0)
    oracle = BudgetedOracle(TrainingOracle(space, data, epochs=1, batch_size=64, lr=0.05, seed=1,
                                           train_kwargs={"build_kwargs": {"C": 4, "N": 1}}),
                            budget=2)
    archs = [space.parse(a) for a in NB201_ARCHS]
    with caplog.at_level(logging.INFO, logger="nasrank"):
        values = [oracle.query(a) for a in (archs[0], archs[1], archs[0])]  # 3rd: memo, no training
    lines = _trained_lines(caplog, "nasrank.search.oracles")
    assert len(lines) == 2
    for line, arch, v in zip(lines, archs, values):
        assert space.format(arch) in line and f"valid_acc {v:.4f}" in line


def test_groundtruth_logs_one_line_per_training(tmp_path, caplog):
    from nasrank.search.groundtruth import Recipe, load_recipe_data, run_groundtruth
    from nasrank.spaces import get_space

    torch.set_num_threads(1)
    recipe = Recipe(space="nb201", dataset="digits", epochs=1, batch_size=32, lr=0.05,
                    train_subset=120, test_subset=50, width=4, cells=1)
    space = get_space("nb201")
    archs = [space.parse(a) for a in NB201_ARCHS]
    data = load_recipe_data(recipe, None)
    with caplog.at_level(logging.INFO, logger="nasrank"):
        gt = run_groundtruth(recipe, archs, [0, 1], tmp_path / "gt.csv", data=data,
                             progress=False)
    lines = _trained_lines(caplog, "nasrank.search.groundtruth")
    assert len(lines) == len(gt.rows) == 4  # 2 archs x 2 seeds
    for line, row in zip(lines, gt.rows):
        assert row["arch"] in line and f"seed {row['seed']}:" in line
        assert f"valid_acc {row['valid_acc']:.4f}" in line


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_shows_training_lines_on_stderr_unless_quiet(tmp_path, capsys, quiet):
    from nasrank.search.cli import main

    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(NB201_ARCHS) + "\n")
    argv = ["groundtruth", "--space", "nb201", "--dataset", "digits", "--arch-file", str(archs),
            "--seeds", "1", "--epochs", "1", "--batch-size", "32", "--train-subset", "120",
            "--test-subset", "50", "--width", "4", "--cells", "1", "--device", "cpu",
            "--out", str(tmp_path / "gt.csv")]
    assert main((["--quiet"] if quiet else []) + argv) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("nasrank: trained ")]
    assert len(lines) == (0 if quiet else 2), err
    assert logging.getLogger("nasrank").level == (logging.WARNING if quiet else logging.INFO)
