"""``pretrain(compile=...)`` (issue 16): the compiled training step computes what the eager one
does. The reference is the eager run itself (same seed, same batches): losses and weights must
agree to float rounding (inductor fuses and reorders float32 arithmetic, so not bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrank.errors import NasrankError
from nasrank.predictor import RankingPredictor
from nasrank.spaces.base import sample_unique
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16, "num_layers": 2}


@pytest.fixture(scope="module")
def space():
    return NB201Space()


def _data(space, n: int = 50):
    cells = sample_unique(space, n, np.random.default_rng(5))
    rng = np.random.default_rng(1)
    labels = {"params": np.array([space.cost(a)[1] for a in cells], dtype=float),
              "noise": rng.normal(size=len(cells))}
    return cells, labels


@pytest.fixture(scope="module")
def data(space):
    return _data(space)


@pytest.fixture
def two_threads():
    """Inductor's CPU kernels depend on the thread count; the suite runs with one thread
    (conftest). torch 2.13 miscompiled ``unfold``'s backward for two threads only (an out-of-bounds
    write: heap corruption), so these tests run with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# NB201 with AceNAS's head dropout (its seeded masks are drawn outside the compiled graph) at the
# default sizes; NB101, small, without dropout: its graphs have 2-7 nodes, so the padded batches
# carry a node mask
@pytest.mark.parametrize("space_name, head_dropout, sizes", [("nb201", 0.5, {}),
                                                             ("nb101", 0.0, SMALL)])
def test_compiled_pretraining_matches_eager(space_name, head_dropout, sizes, two_threads):
    from torch._dynamo.utils import counters

    from nasrank.spaces.nb101 import NB101Space

    space = NB201Space() if space_name == "nb201" else NB101Space()
    cells, labels = _data(space)
    if space_name == "nb101":  # some graphs are padded: the masked code path is compiled
        probe = RankingPredictor(space, seed=0, dense=True, **sizes)
        assert probe._batch(probe._keys(cells, "probe")).mask is not None
    runs = {}
    graphs_before = counters["stats"]["unique_graphs"]
    for mode in (False, True):
        p = RankingPredictor(space, seed=0, dense=True, head_dropout=head_dropout, **sizes)
        # 50 cells at batch 16: three full batches and a tail of 2, so both shapes compile
        hist = p.pretrain(cells, labels, epochs=2, batch_size=16, compile=mode)
        # the whole step (forward, gradient, Adam) is one graph unless dropout draws masks
        assert p._compiled_whole_step == (mode and head_dropout == 0)
        runs[mode] = (hist["loss"], p.net.state_dict(), p.predict(cells))
    assert counters["stats"]["unique_graphs"] > graphs_before  # dynamo did compile the step
    (l0, s0, y0), (l1, s1, y1) = runs[False], runs[True]
    np.testing.assert_allclose(l1, l0, rtol=1e-4)
    assert l0[1] < l0[0]  # it trained
    for k, v in s0.items():
        if v.is_floating_point():
            torch.testing.assert_close(s1[k], v, rtol=0, atol=1e-4, msg=k)
    np.testing.assert_allclose(y1, y0, atol=1e-4)


def test_compile_needs_the_dense_path(space, data):
    cells, labels = data
    p = RankingPredictor(space, seed=0, dense=False, **SMALL)
    with pytest.raises(NasrankError, match="dense path"):
        p.pretrain(cells, labels, epochs=1, compile=True)
    assert not p.pretrained


@pytest.mark.parametrize("bad", ["fast", 1, "cudagraphs"])
def test_compile_rejects_unknown_modes(space, data, bad):
    cells, labels = data
    with pytest.raises(NasrankError, match=repr(bad).replace("'", ".")):
        RankingPredictor(space, seed=0, **SMALL).pretrain(cells, labels, epochs=1, compile=bad)


def test_cli_pretrain_refuses_an_unknown_compile_mode(capsys, tmp_path):
    from nasrank.search.cli import main

    try:
        code = main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--compile", "fastest"])
    except SystemExit as e:  # argparse's refusal of a value outside the choices
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "fastest" in err


@pytest.mark.parametrize("flag, expected", [([], False), (["--compile", "default"], "default"),
                                            (["--compile", "reduce-overhead"], "reduce-overhead")])
def test_cli_pretrain_passes_the_compile_mode(pretrain_cli, flag, expected):
    assert pretrain_cli(*flag)["compile"] == expected


@pytest.mark.parametrize("p, kernel", [(4, 4), (7, 3), (5, 1)])
def test_compiled_windows_equal_unfold(p, kernel, monkeypatch):
    """The slices ``_windows`` stacks under torch.compile are ``unfold``'s windows, in the same
    order, for any number of windows."""
    from nasrank.predictor import dense

    z = torch.randn(3, p, 5)
    eager = z.unfold(1, kernel, 1).flatten(2)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.equal(dense._windows(z, kernel), eager)
