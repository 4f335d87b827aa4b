"""``nasrank`` under ``torchrun``: rank and world from the environment, commands that do not train
across ranks refused, and `supernet-train` / `fewshot` / `run` launched on 2 CPU ranks (gloo) end
to end, where rank 0 alone holds the ``--out`` lock and writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasrank.errors import ConfigError
from nasrank.launch import check_launch, launched_rank
from nasrank.search.cli import main
from test_ddp import _free_ports

ROOT = Path(__file__).resolve().parents[1]


def test_launched_rank_from_the_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert launched_rank() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert launched_rank() == (3, 4)
    for world, rank in (("4", "4"), ("0", "0"), ("2", "-1"), ("two", "0"), ("2", "1.0")):
        monkeypatch.setenv("WORLD_SIZE", world)
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(ConfigError, match=f"WORLD_SIZE='{world}' RANK='{rank}'"):
            launched_rank()


def test_only_training_commands_run_across_ranks(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert check_launch("supernet-train") == (1, 2)
    assert check_launch("fewshot") == (1, 2)
    assert check_launch("run") == (1, 2)
    with pytest.raises(ConfigError, match="nasrank weak-labels runs in one process"):
        check_launch("weak-labels")
    assert main(["proxies", "--out", str(tmp_path / "p"), "--num-archs", "2"]) == 2
    assert "nasrank proxies runs in one process, but this is rank 1 of a launch of 2" in \
        capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before anything was written
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert check_launch("weak-labels") == (0, 1)


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    (port,) = _free_ports(1)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "nasrank", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_supernet_train_and_fewshot_under_torchrun(tmp_path):
    """Before rank 0 alone took the lock, rank 1 was refused: 'output folder ... is in use'."""
    out = tmp_path / "sn"
    run = _torchrun(["supernet-train", "--epochs", "1", "--out", str(out)], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("supernet trained: 1 epochs") == 1  # rank 0 reports, rank 1 is quiet
    assert (out / "supernet" / "supernet.pt").is_file()
    assert json.loads((out / "supernet" / "config.json").read_text())["epochs"] == 1
    # the trained folder serves the one-process stages
    assert main(["weak-labels", "--out", str(out), "--num-archs", "4", "--quiet"]) == 0
    assert (out / "weak_labels.csv").is_file()

    fs = tmp_path / "fs"
    run = _torchrun(["fewshot", "--out", str(fs), "--warmup-epochs", "1", "--epochs", "1",
                     "--num-archs", "4"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    tree = json.loads((fs / "fewshot" / "tree.json").read_text())["tree"]
    assert tree["split"] is not None and len(tree["children"]) == 2
    assert (fs / "fewshot" / "leaves" / "leaf_1" / "supernet.pt").is_file()
    assert len((fs / "fewshot" / "weak_labels.csv").read_text().strip().splitlines()) == 1 + 4

    # the whole pipeline: the supernet on both ranks, the later stages on rank 0
    r = tmp_path / "run"
    run = _torchrun(["run", "--out", str(r), "--proxies", "", "--supernet-epochs", "1",
                     "--archs", "20", "--pretrain-epochs", "1", "--budget", "4",
                     "--method.rounds", "2", "--epochs", "1", "--supernet.channels", "4",
                     "--image-size", "8"], tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("[1/5] supernet") == 1 and "[5/5] random baseline" in run.stdout
    res = json.loads((r / "results.json").read_text())
    assert {m["queries"] for m in res["methods"].values()} == {4}
