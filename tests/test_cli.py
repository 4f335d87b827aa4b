"""CLI: one-line errors with exit code 2, TOML options overridden by flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nasrank.search.cli import main, parse_args
from nasrank.spaces import sample_unique


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


NB201 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201.csv"


def _need_nb201():
    if not NB201.exists():
        pytest.skip("shared NB201 data not available")


def test_search_on_benchmark_writes_record_and_reports(tmp_path, capsys):
    _need_nb201()
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, "search", "--benchmark", "nb201", "--data", str(NB201),
                                "--metric", "cifar10_valid", "--report", "cifar10_test",
                                "--method", "re", "--budget", "15", "--out", str(out))
    assert code == 0, err
    res = json.loads((out / "result.json").read_text())
    assert len(res["queries"]) == 15 and len({q[0] for q in res["queries"]}) == 15
    # the reported value is the benchmark's test accuracy of the best-by-validation arch
    from nasrank.spaces.benchmarks import load_nb201
    bench = load_nb201(NB201)
    assert res["best_reported"] == pytest.approx(bench.value(res["best_arch"], "cifar10_test"))
    assert res["best_value"] == max(q[1] for q in res["queries"])
    assert "cifar10_test" in stdout


@pytest.mark.parametrize("extra, needle", [
    (["--metric", "cifar11_valid"], "'cifar11_valid'"),
    (["--method", "genetic"], "'genetic'"),
])
def test_search_bad_metric_or_method(tmp_path, capsys, extra, needle):
    _need_nb201()
    out = tmp_path / "s"
    code, _, err = run_cli(capsys, "search", "--data", str(NB201), "--out", str(out), *extra)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_stage_commands_bad_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "predict", "--checkpoint", str(tmp_path / "no.pt"), "--all")
    assert code == 2 and "no.pt" in err
    code, _, err = run_cli(capsys, "pretrain", "--labels", str(tmp_path / "none.csv"))
    assert code == 2 and "none.csv" in err
    labels = tmp_path / "l.csv"
    labels.write_text("# nasrank label table; space=cvpr2021\nkey,acc,note\nx,1,\n")
    code, _, err = run_cli(capsys, "pretrain", "--labels", str(labels), "--space", "nb201")
    assert code == 2 and "'cvpr2021'" in err
    code, _, err = run_cli(capsys, "weak-labels", "--out", str(tmp_path / "nothing"))
    assert code == 2 and "settings" in err
    code, _, err = run_cli(capsys, "proxies", "--proxies", "synflw", "--out", str(tmp_path))
    assert code == 2 and "'synflw'" in err
    code, _, err = run_cli(capsys, "run", "--dataset", "fashion-mnist", "--data-root",
                           str(tmp_path / "nofm"), "--out", str(tmp_path / "r"))
    assert code == 2 and "nofm" in err


def test_pretrain_predict_commands(tmp_path, capsys):
    from nasrank.spaces import LabelTable
    from nasrank.spaces.nb201 import NB201Space

    sp = NB201Space()
    rng = np.random.default_rng(0)
    archs = sample_unique(sp, 30, rng)
    flops = [sp.cost(a)[0] for a in archs]
    LabelTable([sp.key(a) for a in archs], {"flops": flops}, space="nb201").to_csv(
        tmp_path / "w.csv")
    code, _, err = run_cli(capsys, "pretrain", "--labels", str(tmp_path / "w.csv"),
                           "--epochs", "60", "--out", str(tmp_path / "p"))
    assert code == 0, err
    (tmp_path / "a.txt").write_text("\n".join(sp.format(a) for a in archs[:10]) + "\n")
    code, out, err = run_cli(capsys, "predict", "--checkpoint", str(tmp_path / "p/predictor.pt"),
                             "--archs", str(tmp_path / "a.txt"), "--out", str(tmp_path / "q"))
    assert code == 0, err
    pred = LabelTable.read_csv(tmp_path / "q/predictions.csv")
    assert len(pred) == 10
    # pretrained on FLOPs alone, its ranking of those archs should follow FLOPs closely
    from scipy.stats import spearmanr
    true = [sp.cost(sp.parse(k))[0] for k in pred.keys]
    assert spearmanr(true, pred.column("score")).statistic > 0.8
