"""Stand-alone training: it learns, a killed run resumes to identical weights, bad input."""

from __future__ import annotations

import pytest
import torch

from nasrank.spaces import NasrankError
from nasrank.spaces.nb201 import NB201Space
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.train import CheckpointError, train_standalone

SPACE = NB201Space()
ARCH = SPACE.parse(
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
SMALL = {"C": 4, "N": 1}


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", seed=0, subset=400, channels=3)


def test_learns_digits_far_above_chance(digits):
    r = train_standalone((SPACE, ARCH), digits, epochs=4, batch_size=32, lr=0.05,
                         build_kwargs=SMALL)
    assert r.epochs == 4 and r.seconds > 0
    assert r.test_acc > 0.7 and r.valid_acc > 0.7  # chance is 0.1
    assert r.test_loss < 1.5  # chance-level cross-entropy is ln 10 = 2.30


class Kill(Exception):
    pass


def _kill_after_first(epoch: int) -> None:
    if epoch == 0:
        raise Kill


def test_killed_run_resumes_to_identical_weights(digits, tmp_path):
    net_a = SPACE.build(ARCH, 10, **SMALL)
    net_b = SPACE.build(ARCH, 10, **SMALL)
    net_b.load_state_dict(net_a.state_dict())
    full = train_standalone(net_a, digits, epochs=2, batch_size=64, lr=0.05,
                            checkpoint=tmp_path / "a.pt")
    with pytest.raises(Kill):
        train_standalone(net_b, digits, epochs=2, batch_size=64, lr=0.05,
                         checkpoint=tmp_path / "b.pt", on_epoch_end=_kill_after_first)
    fresh = SPACE.build(ARCH, 10, **SMALL)  # other initial weights: the checkpoint must win
    resumed = train_standalone(fresh, digits, epochs=2, batch_size=64, lr=0.05,
                               checkpoint=tmp_path / "b.pt")
    for (k, va), vb in zip(net_a.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(va, vb), k
    assert resumed.test_acc == full.test_acc and resumed.valid_loss == full.valid_loss
    # a finished checkpoint returns its result without training again
    again = train_standalone(SPACE.build(ARCH, 10, **SMALL), digits, epochs=2, batch_size=64,
                             lr=0.05, checkpoint=tmp_path / "b.pt")
    assert again == resumed


def test_checkpoint_of_another_run_is_refused_and_kept(digits, tmp_path):
    ckpt = tmp_path / "c.pt"
    train_standalone((SPACE, ARCH), digits, epochs=1, batch_size=64, lr=0.05,
                     build_kwargs=SMALL, checkpoint=ckpt)
    before = ckpt.read_bytes()
    other = SPACE.parse("|none~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|none~2|")
    with pytest.raises(CheckpointError, match="arch"):
        train_standalone((SPACE, other), digits, epochs=1, batch_size=64, lr=0.05,
                         build_kwargs=SMALL, checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="lr"):
        train_standalone((SPACE, ARCH), digits, epochs=1, batch_size=64, lr=0.1,
                         build_kwargs=SMALL, checkpoint=ckpt)
    assert ckpt.read_bytes() == before
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        train_standalone((SPACE, ARCH), digits, epochs=1, batch_size=64, lr=0.05,
                         build_kwargs=SMALL, checkpoint=junk)
    assert junk.read_text() == "not a checkpoint"


def test_bad_input(digits):
    with pytest.raises(NasrankError, match="4-8-12"):
        train_standalone((SPACE, "4-8-12"), digits, epochs=1, batch_size=8, lr=0.1)
    with pytest.raises(NasrankError, match="epochs"):
        train_standalone((SPACE, ARCH), digits, epochs=0, batch_size=8, lr=0.1)
