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
    args = parse_args(["--config", str(cfg), "search", "--budget", "8"])
    assert args.budget == 8 and args.seed == 7


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


NB101 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb101" / "nb101_1k.json"


@pytest.mark.parametrize("method", [
    ["--method", "greedy", "--method.proxy", "params"],
    ["--method", "iterative", "--method.rounds", "2", "--fit-epochs", "3"],
])
def test_nb101_searches_run_on_the_nb101_table(tmp_path, capsys, method):
    """NB101 keys are hashes that do not parse back: greedy reads the architectures, not the
    keys, and every query is a labelled architecture of the table."""
    if not NB101.exists():
        pytest.skip("shared NB101 data not available")
    out = tmp_path / "s"
    code, stdout, err = run_cli(capsys, "search", "--benchmark", "nb101", "--data", str(NB101),
                                "--metric", "108_final_validation_accuracy", "--budget", "6",
                                "--out", str(out), "--device", "cpu", *method)
    assert code == 0, err
    res = json.loads((out / "result.json").read_text())
    from nasrank.spaces.nb101 import load_nb101_json
    bench = load_nb101_json(NB101)
    col = bench.table.column("108_final_validation_accuracy")
    assert len(res["queries"]) == 6 and len({q[0] for q in res["queries"]}) == 6
    for key, value, _ in res["queries"]:
        assert value == pytest.approx(col[bench.table.index(key)])
    if method[1] == "greedy":  # the 6 largest by params, found independently from the table
        params = bench.table.column("params")
        top = {bench.table.keys[i] for i in np.argsort(-params, kind="stable")[:6]}
        assert {q[0] for q in res["queries"]} == top


# ----------------------------------------------------------------------------- generated CLI
def test_component_flags_pick_entry_and_its_options():
    cmd = parse_args(["run", "--sampler", "fair", "--sampler.arch-batch", "18",
                      "--method", "re", "--method.population-size", "7"])
    assert (cmd.sampler.name, cmd.sampler.arch_batch) == ("fair", 18)
    assert (cmd.method.name, cmd.method.population_size, cmd.method.sample_size) == ("re", 7, 5)
    # defaults: the space's own supernet, the run's own default options of its method
    assert cmd.space.name == "nb201" and cmd.supernet.name == "nb201"
    default = parse_args(["run"])
    assert (default.method.name, default.method.rounds) == ("iterative", 3)
    assert parse_args(["run", "--space", "cvpr2021"]).supernet.name == "cvpr2021"
    assert parse_args(["run", "--space", "nb101"]).supernet is None
    assert parse_args(["run", "--supernet.channels", "4"]).supernet.channels == 4
    d = cmd.to_dict()  # what config.json records
    assert d["sampler"] == {"name": "fair", "arch_batch": 18}


@pytest.mark.parametrize("argv, needle", [
    (["run", "--sampler.arch-batch", "18"], "'arch_batch'"),      # uniform has no arch_batch
    (["run", "--sampler", "nosuch"], "'nosuch'"),
    (["run", "--space", "cvpr2021", "--supernet", "nb201"], "'nb201'"),
    (["run", "--space", "nb101", "--supernet.channels", "4"], "channels"),
    (["run", "--method", "re", "--method.sample-size", "30"], "sample_size"),
])
def test_component_errors_are_one_line(capsys, argv, needle):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.startswith("nasrank: error:") and err.count("\n") == 1, err
    assert needle in err


def test_toml_component_table_and_top_level_keys(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 3\nbudget = 9\n[run.sampler]\nname = "fair"\narch-batch = 6\n'
                   '[run.method]\nname = "re"\npopulation_size = 4\nsample_size = 2\n')
    cmd = parse_args(["--config", str(cfg), "run"])
    assert (cmd.seed, cmd.budget, cmd.sampler.name, cmd.sampler.arch_batch) == (3, 9, "fair", 6)
    assert (cmd.method.name, cmd.method.population_size) == ("re", 4)
    # a flag naming another entry replaces the file's table; options of the same entry add up
    assert parse_args(["--config", str(cfg), "run", "--sampler", "uniform"]).sampler.name == \
        "uniform"
    cmd = parse_args(["--config", str(cfg), "run", "--method.sample-size", "3"])
    assert (cmd.method.population_size, cmd.method.sample_size) == (4, 3)
    # top-level keys apply only to commands that have them ('spaces' has neither)
    assert parse_args(["--config", str(cfg), "spaces"]).name == "spaces"


def test_toml_unknown_top_level_key_or_table(tmp_path, capsys):
    for content, needle in (("sead = 3\n", "'sead'"), ("[serch]\nbudget = 1\n", "[serch]")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(content)
        code, _, err = run_cli(capsys, "--config", str(cfg), "search")
        assert code == 2 and needle in err and err.count("\n") == 1


def test_version_and_quiet(capsys):
    from nasrank import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    code, out, _ = run_cli(capsys, "--quiet", "spaces")
    assert code == 0 and "15,625" in out  # the listing is the output, not a progress line


def test_help_is_fast_and_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from nasrank.search.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_broken_pipe_is_quiet():
    import subprocess
    import sys

    p = subprocess.run(f"{sys.executable} -m nasrank.search.cli spaces | head -1", shell=True,
                       capture_output=True, text=True, timeout=300)
    assert p.stdout.startswith("space") and "Traceback" not in p.stderr


def test_stage_streams_are_independent():
    """Regression: the search's first random round must not replay the weak-label sample (both
    used default_rng(seed))."""
    from nasrank.search.stages import Seeds
    from nasrank.spaces.nb201 import NB201Space

    sp, seeds = NB201Space(), Seeds(0)
    weak = [sp.key(a) for a in sample_unique(sp, 20, seeds.rng("weak_label_archs"))]
    first_round = [sp.key(a) for a in sample_unique(sp, 20,
                                                    np.random.default_rng(seeds.int("search")))]
    assert len(set(weak) & set(first_round)) < 5   # 20 of 15,625: overlap ~0, not 20
    assert Seeds(0).int("search") == seeds.int("search") != Seeds(1).int("search")
    old = [sp.key(a) for a in sample_unique(sp, 20, np.random.default_rng(0))]
    assert old != weak
