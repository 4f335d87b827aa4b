"""`nasrank supernet-train --preset` / `--same-batch` (issue 13): the NCS best setting and RD-NAS
from the CLI, each path on its own batch, and refusals that leave nothing behind."""

from __future__ import annotations

import json

import pytest
import torch

from nasrank.search.cli import main, parse_args
from nasrank.search.pipeline import SUPERNET_SETTINGS, apply_training_preset

TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--supernet.channels", "4",
        "--image-size", "8", "--seed", "5", "--device", "cpu", "--quiet"]


def test_ncs_best_preset_is_the_papers_best_setting():
    """NCS (CVPR 2021 NAS workshop): FullConv + EndBN + IndependentFC, fair sampling of
    n = 18 paths on one batch, running-teacher distillation."""
    cfg = apply_training_preset(parse_args(["supernet-train", "--space", "cvpr2021",
                                            "--preset", "ncs_best"]))
    assert cfg.supernet.name == "cvpr2021"
    assert (cfg.supernet.conv, cfg.supernet.bn, cfg.supernet.fc) == ("full", "end", "independent")
    assert cfg.sampler.name == "fair" and cfg.sampler.arch_batch == 18
    assert cfg.strategy.name == "running_teacher" and cfg.same_batch is True


def test_rdnas_preset_keeps_the_spaces_supernet():
    cfg = apply_training_preset(parse_args(["supernet-train", "--preset", "rdnas"]))
    assert cfg.supernet.name == "nb201"
    assert (cfg.sampler.name, cfg.strategy.name) == ("rdnas", "rdnas")


@pytest.mark.parametrize("argv, needle", [
    (["--preset", "ncs_best"], "use it with --space cvpr2021, not 'nb201'"),
    (["--preset", "nope"], "unknown training preset 'nope'"),
])
def test_bad_presets_are_refused_before_any_work(tmp_path, capsys, argv, needle):
    out = tmp_path / "sn"
    assert main(["supernet-train", "--out", str(out), *TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (out / "supernet").exists()


def test_no_same_batch_reaches_the_trainer_and_is_recorded(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "sn"
    assert main(["supernet-train", "--out", str(out), *TINY, "--sampler", "fair",
                 "--sampler.arch-batch", "2", "--no-same-batch"]) == 0
    settings = json.loads((out / "supernet" / SUPERNET_SETTINGS).read_text())
    assert settings["same_batch"] is False
    ckpt = torch.load(next((out / "supernet").glob("*.pt")), map_location="cpu", weights_only=False)
    assert ckpt["config"]["same_batch"] is False
    default = tmp_path / "sn2"  # the default is not recorded: folders from before still resume
    assert main(["supernet-train", "--out", str(default), *TINY]) == 0
    assert "same_batch" not in json.loads((default / "supernet" / SUPERNET_SETTINGS).read_text())
