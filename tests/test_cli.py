"""CLI: one-line errors with exit code 2, TOML options overridden by flags."""

from __future__ import annotations

import pytest

from search.cli import main, parse_args


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_spaces_lists_sizes(capsys):
    code, out, _ = run_cli(capsys, "spaces")
    assert code == 0
    assert "15,625" in out  # NB201 size


@pytest.mark.parametrize("argv, needle", [
    (["search", "--budget", "-3"], "'-3'"),
    (["search", "--budget", "x"], "'x'"),
    (["benchmark", "--name", "nb201", "--data", "/definitely/missing.csv"], "missing.csv"),
    (["benchmark", "--name", "nb999", "--data", "x.csv"], "'nb999'"),
    (["benchmark", "--name", "nb201"], "--data is required"),
    (["proxies", "--shard", "3/2"], "'3/2'"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("nasrank: error:") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_toml_config_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 7\n[search]\nbudget = 33\nmetric = "cifar100_test"\n')
    args = parse_args(["--config", str(cfg), "search"])
    assert (args.seed, args.budget, args.metric) == (7, 33, "cifar100_test")
    args = parse_args(["--config", str(cfg), "search", "--budget", "5"])
    assert args.budget == 5 and args.seed == 7


@pytest.mark.parametrize("content, needle", [
    ("budget = \n", "not valid TOML"),
    ("[search]\nbudgett = 3\n", "'budgett'"),
    ("[search]\nbudget = -1\n", "'-1'"),
])
def test_bad_toml(tmp_path, capsys, content, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(content)
    code, _, err = run_cli(capsys, "--config", str(cfg), "search")
    assert code == 2 and needle in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "--config", str(tmp_path / "none.toml"), "search")
    assert code == 2 and "none.toml" in err
