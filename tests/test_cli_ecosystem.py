"""Issue 19, CLI behaviour: `nasrank spaces` output, provenance in written JSON, --config
placement and --print-config, the evolution budget warning, extending a search."""

from __future__ import annotations

import subprocess
import sys

from nasrank.search.cli import main


# ----------------------------------------------------------------------------- 1. spaces
def test_spaces_table_fits_and_describes(capsys):
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 160 for line in lines[:1])
    rows = {line.split()[0]: line for line in lines[1:]}
    # the CVPR 2021 channel space has 2**60 configs: shown compactly, not 25 digits wide
    assert "1.15e18" in rows["cvpr2021"] and "1,152,921" not in rows["cvpr2021"]
    # NAS-Bench-101 has 423,624 unique cells (Ying et al. 2019)
    assert rows["nb101"].split()[1] == "423,624"
    assert "unbounded" not in "\n".join(lines)
    assert "see module docstring" not in "\n".join(lines)
    # every space has a description of a few words
    for name, line in rows.items():
        assert len(line.split(None, 3)[3].split()) >= 4, name
    # columns aligned: the size column ends at the same place on every line
    ends = {line.index(line.split()[1]) + len(line.split()[1]) for line in lines[1:]}
    assert len(ends) == 1


def test_spaces_into_closed_pipe_has_no_traceback():
    code = ("import sys; from nasrank.search.cli import main; "
            "sys.exit(main(['spaces']))")
    proc = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("space")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


# ----------------------------------------------------------------------------- 2. provenance
def test_config_json_records_versions_outside_the_settings_comparison(tmp_path):
    import json
    from importlib import metadata

    import pytest

    from nasrank.search.pipeline import OutputDirError, prepare_out

    prepare_out(tmp_path, {"seed": 1, "budget": 5})
    saved = json.loads((tmp_path / "config.json").read_text())
    prov = saved["provenance"]
    assert prov["torch"] == metadata.version("torch")
    assert prov["torch_geometric"] == metadata.version("torch-geometric")
    assert prov["optuna"] == metadata.version("optuna")
    assert prov["nasrank"] == metadata.version("nasrank")
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    # a run made with other library versions is still this run (resumable)...
    saved["provenance"] = {"torch": "0.0.1", "git_commit": "0" * 40}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    prepare_out(tmp_path, {"seed": 1, "budget": 5})
    # ...while other settings are refused
    with pytest.raises(OutputDirError, match="seed"):
        prepare_out(tmp_path, {"seed": 2, "budget": 5})


def test_git_commit_is_none_outside_a_repository(tmp_path):
    from nasrank.provenance import _git_commit

    assert _git_commit(tmp_path) is None
    assert _git_commit(tmp_path / "missing") is None


# ----------------------------------------------------------------------------- 3. --config
TOML = """seed = 7
[search]
budget = 20
[search.method]
name = "re"
population_size = 10
"""


def _print_config(argv, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_config_before_or_after_the_command_and_print_config(tmp_path, capsys):
    import tomllib

    cfg = tmp_path / "my.toml"
    cfg.write_text(TOML)
    before = _print_config(["--config", str(cfg), "search", "--budget", "30",
                            "--print-config"], capsys)
    after = _print_config(["search", "--budget", "30", "--config", str(cfg),
                           "--print-config"], capsys)
    assert before == after
    got = tomllib.loads(before)["search"]
    # top-level seed from the file, budget: the flag over the file, method table merged
    assert got["seed"] == 7 and got["budget"] == 30
    assert got["method"] == {"name": "re", "population_size": 10, "sample_size": 5,
                             "crossover_prob": 0.0}
    # the printed settings read back as a --config give the same settings
    again = tmp_path / "again.toml"
    again.write_text(before)
    assert _print_config(["search", "--config", str(again), "--print-config"], capsys) == before


def test_a_flag_the_command_would_ignore_is_an_error(capsys):
    assert main(["spaces", "--seed", "1"]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["search", "--method", "random", "--method.population-size", "3"]) == 2
    assert "population_size" in capsys.readouterr().err
    assert main(["search", "--method", "random", "--checkpoint", "p.pt", "--data", "x"]) == 2
    assert "--checkpoint" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 4. RE budget
def test_re_warns_when_the_budget_never_lets_evolution_start(caplog):
    import logging

    from test_search_fixtures import TableOracle

    from nasrank.search import regularized_evolution
    from nasrank.search.registry import SEARCH_METHODS

    # population and tournament sizes are options of the method (--method.population-size,
    # --method.sample-size)
    cfg = SEARCH_METHODS.make("re", {"population_size": 4, "sample_size": 2})
    assert (cfg.population_size, cfg.sample_size) == (4, 2)
    oracle = TableOracle()
    with caplog.at_level(logging.WARNING, logger="nasrank.search.evolution"):
        regularized_evolution(space=oracle.space, oracle=oracle, budget=4, seed=0,
                              population_size=4, sample_size=2)
    assert any("budget 4 <= population_size 4" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nasrank.search.evolution"):
        regularized_evolution(space=oracle.space, oracle=oracle, budget=6, seed=0,
                              population_size=4, sample_size=2)
    assert not caplog.records


# ----------------------------------------------------------------------------- 5. extend
def test_search_is_extended_by_a_larger_budget_on_the_same_out(tmp_path, capsys, monkeypatch):
    import json
    from pathlib import Path

    import pytest

    from nasrank.search.oracles import BenchmarkOracle

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv"
    if not data.is_file():
        pytest.skip(f"{data} missing")
    calls = []
    real = BenchmarkOracle.evaluate
    monkeypatch.setattr(BenchmarkOracle, "evaluate",
                        lambda self, arch: calls.append(arch) or real(self, arch))
    out = tmp_path / "s"
    argv = ["search", "--benchmark", "nb201", "--data", str(data), "--method", "re",
            "--method.population-size", "3", "--method.sample-size", "2", "--out", str(out),
            "--device", "cpu", "--quiet"]
    assert main(argv + ["--budget", "5"]) == 0
    first = json.loads((out / "result.json").read_text())
    first_keys = [line.split(",")[1] for line in
                  (out / "queries.csv").read_text().splitlines()[1:]]
    assert len(calls) == 5 and len(first_keys) == 5
    assert main(argv + ["--budget", "12"]) == 0
    assert len(calls) == 12  # 5 replayed from the record, only the 7 new ones evaluated
    second = json.loads((out / "result.json").read_text())
    lines = [json.loads(x) for x in (out / "record.jsonl").read_text().splitlines()]
    keys = [e["key"] for e in lines if e["type"] == "query"]
    assert len(keys) == len(set(keys)) == 12
    # the first five queries are those of the first run, in order (a replay, not a new search)
    assert keys[:5] == first_keys
    assert second["best_value"] >= first["best_value"]
    assert second["provenance"]["torch"]  # result.json carries the versions (item 2)
    # another seed is still another run: refused
    assert main(argv + ["--budget", "12", "--seed", "1"]) == 2
    assert "another run configuration" in capsys.readouterr().err


def test_a_folder_from_before_a_component_gained_an_option_still_resumes(tmp_path):
    import json

    import pytest

    from nasrank.search.pipeline import OutputDirError, prepare_out
    from nasrank.search.registry import COMMANDS

    cfg = COMMANDS.make("run", {"out": str(tmp_path)})
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "out", "device")}
    prepare_out(tmp_path, settings, cfg)
    saved = json.loads((tmp_path / "config.json").read_text())
    method = saved["method"]
    assert method["name"] == "iterative" and method["rounds"] == 3
    option = next(k for k in method if k not in ("name", "rounds"))
    # an older version's record lacks that option: it counts as its default, so this resumes
    del saved["method"][option]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    prepare_out(tmp_path, settings, cfg)
    # without the config to read defaults from, the records differ and the run is refused
    with pytest.raises(OutputDirError, match="method"):
        prepare_out(tmp_path, settings)
    # a recorded value that differs from this run's is still refused
    saved["method"]["rounds"] = 4
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(OutputDirError, match="method"):
        prepare_out(tmp_path, settings, cfg)
