"""Hybrid head (issue 15) and early stopping on the validation Kendall tau.

The facts checked are built by hand: a label that is pure per-arch noise cannot be predicted
from the graph, so only a head that reads the *measured* label can rank by it; a start with a
perfect validation ranking cannot be beaten, so ``select="kendall"`` must keep it.
"""

from __future__ import annotations

import numpy as np
import pytest

from nasrank.errors import LabelTableError, NasrankError
from nasrank.predictor import RankingPredictor, kendall_tau
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


@pytest.fixture(scope="module")
def space():
    return NB201Space()


@pytest.fixture(scope="module")
def cells(space):
    rng = np.random.default_rng(1)
    seen, out = set(), []
    while len(out) < 80:
        a = space.sample(rng)
        if space.key(a) not in seen:
            seen.add(space.key(a))
            out.append(a)
    return out


@pytest.fixture(scope="module")
def labels(space, cells):
    """params (learnable from the graph) and a seeded noise label (not learnable)."""
    noise = np.random.default_rng(5).normal(size=len(cells))
    return {"params": np.array([space.cost(a)[1] for a in cells]), "noise": noise}


def test_hybrid_head_ranks_by_a_measured_label_the_graph_cannot_predict(space, cells, labels):
    y = 3.0 * labels["noise"] + 1.0  # the target is the measured noise label itself
    tr, te = slice(0, 40), slice(40, 80)
    hybrid = RankingPredictor(space, seed=0, hybrid=True, **SMALL)
    hybrid.pretrain(cells, labels, epochs=3, batch_size=16)
    hybrid.fit(cells[tr], y[tr], loss="margin", epochs=5, select="kendall")
    assert kendall_tau(y[te], hybrid.predict(cells[te])) > 0.9
    plain = RankingPredictor(space, seed=0, **SMALL)
    plain.pretrain(cells, labels, epochs=3, batch_size=16)
    plain.fit(cells[tr], y[tr], loss="margin", epochs=5, select="kendall")
    assert abs(kendall_tau(y[te], plain.predict(cells[te]))) < 0.5


def test_unmeasured_archs_fall_back_to_the_predicted_labels(space, cells, labels):
    p = RankingPredictor(space, seed=0, hybrid=True, **SMALL)
    p.pretrain(cells[:60], {k: v[:60] for k, v in labels.items()}, epochs=3, batch_size=16)
    p.fit(cells[:40], labels["noise"][:40], loss="margin", epochs=3)
    new = cells[60:70]
    before = p.predict(new)
    # measured labels equal to the heads' own predictions: nothing changes
    p.add_measured_labels(new, p.predict_labels(new))
    np.testing.assert_allclose(p.predict(new), before, rtol=1e-5, atol=1e-5)
    # measured labels that differ: the scores follow them (the skip weight on noise is > 0)
    p.add_measured_labels(new, {k: v[60:70] for k, v in labels.items()})
    after = p.predict(new)
    assert not np.allclose(after, before)
    assert kendall_tau(labels["noise"][60:70], after) > kendall_tau(labels["noise"][60:70], before)


def test_as_hybrid_keeps_the_pretrained_weights_and_checkpoint_round_trip(space, cells, labels, tmp_path):
    plain = RankingPredictor(space, seed=0, **SMALL)
    plain.pretrain(cells, labels, epochs=2, batch_size=16)
    hyb = plain.as_hybrid(cells, labels)
    assert not plain.hybrid and hyb.hybrid
    np.testing.assert_array_equal(  # the pretraining heads are untouched
        np.stack(list(plain.predict_labels(cells).values())),
        np.stack(list(hyb.predict_labels(cells).values())))
    hyb.fit(cells[:40], labels["noise"][:40], loss="lambdarank", epochs=2)
    hyb.save(tmp_path / "h.pt")
    back = RankingPredictor.load(tmp_path / "h.pt", space=space)
    assert back.hybrid
    np.testing.assert_array_equal(back.predict(cells), hyb.predict(cells))
    plain.save(tmp_path / "p.pt")  # a plain checkpoint loads as plain
    assert not RankingPredictor.load(tmp_path / "p.pt", space=space).hybrid


def test_kendall_selection_keeps_a_start_with_a_perfect_validation_ranking(space, cells, labels):
    y = labels["noise"][:40]
    a = RankingPredictor(space, seed=3, hybrid=True, **SMALL)
    a.pretrain(cells, labels, epochs=3, batch_size=16)
    # margin's targets are y itself (z-scored), so the ridge start can match them exactly
    a.fit(cells[:40], y, loss="margin", epochs=1, lr=0.0, valid_fraction=0.5,
          probe_alpha=1e-6)
    start_scores = a.predict(cells)
    # the ridge start reads the measured noise label: its validation tau is 1 (checked below)
    assert kendall_tau(y, start_scores[:40]) > 0.99
    # a destructive learning rate: every epoch is worse or equal, so the start must be kept
    a.fit(cells[:40], y, loss="margin", epochs=5, lr=1.0, valid_fraction=0.5,
          probe_alpha=1e-6, select="kendall")
    np.testing.assert_array_equal(a.predict(cells), start_scores)


def test_bad_hybrid_use_is_refused_with_a_clear_message(space, cells, labels):
    with pytest.raises(NasrankError, match="hybrid must be True or False"):
        RankingPredictor(space, hybrid="yes")
    p = RankingPredictor(space, hybrid=True, **SMALL)
    with pytest.raises(NasrankError, match="pretrain"):
        p.fit(cells[:10], labels["noise"][:10])
    with pytest.raises(NasrankError, match="select must be one of"):
        RankingPredictor(space, **SMALL).fit(cells[:10], labels["noise"][:10], select="ndcg")
    p.pretrain(cells, labels, epochs=1, batch_size=32)
    with pytest.raises(LabelTableError, match="lack \\['noise'\\]"):
        p.add_measured_labels(cells[:3], {"params": [1.0, 2.0, 3.0]})


def test_cli_pretrain_hybrid_and_finetune_select(tmp_path, capsys):
    """`nasrank pretrain --hybrid` writes a hybrid checkpoint; `finetune --select kendall` on a
    ground truth equal to a measured noise label ranks held-out table archs by it (--n is
    the benchmark-mode size: --labels mode trains on all 25 rows, fewer than the default 100)."""
    from nasrank.search.cli import main
    from nasrank.spaces import LabelTable
    from nasrank.spaces import sample_unique

    sp = NB201Space()
    archs = sample_unique(sp, 40, np.random.default_rng(0))
    keys = [sp.key(a) for a in archs]
    noise = np.random.default_rng(1).normal(size=40)
    LabelTable(keys, {"flops": [sp.cost(a)[0] for a in archs], "noise": noise},
               space="nb201").to_csv(tmp_path / "w.csv")
    LabelTable(keys[:25], {"acc": 2.0 * noise[:25] + 50.0}, space="nb201").to_csv(tmp_path / "gt.csv")
    assert main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--epochs", "2", "--hybrid",
                 "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 0
    assert RankingPredictor.load(tmp_path / "p" / "predictor.pt", space=sp).hybrid
    assert main(["finetune", "--labels", str(tmp_path / "gt.csv"), "--metric", "acc",
                 "--loss", "margin", "--epochs", "3", "--select", "kendall",
                 "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 0
    ft = RankingPredictor.load(tmp_path / "p" / "predictor_finetuned.pt", space=sp)
    assert kendall_tau(noise[25:], ft.predict(archs[25:])) > 0.9  # archs it was not tuned on
    capsys.readouterr()


def test_cli_finetune_passes_the_lambdarank_gain(tmp_path, capsys, monkeypatch):
    import nasrank.predictor.losses as losses
    from nasrank.search.cli import main
    from nasrank.spaces import LabelTable, sample_unique

    seen = []
    real = losses.lambdarank_loss
    monkeypatch.setitem(losses.LOSSES, "lambdarank",
                        lambda *a, **kw: seen.append((kw.get("gain"), kw.get("mu", 0.0)))
                        or real(*a, **kw))
    sp = NB201Space()
    archs = sample_unique(sp, 30, np.random.default_rng(2))
    keys = [sp.key(a) for a in archs]
    LabelTable(keys, {"flops": [sp.cost(a)[0] for a in archs]}, space="nb201").to_csv(tmp_path / "w.csv")
    LabelTable(keys[:20], {"acc": np.arange(20.0)}, space="nb201").to_csv(tmp_path / "gt.csv")
    assert main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--epochs", "1",
                 "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 0
    common = ["finetune", "--labels", str(tmp_path / "gt.csv"), "--metric", "acc", "--epochs", "2",
              "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet", "--loss", "lambdarank"]
    assert main(common + ["--loss.gain", "linear"]) == 0
    assert seen and set(seen) == {("linear", 0.0)}
    seen.clear()
    assert main(common + ["--loss.mu", "7.5"]) == 0
    assert seen and set(seen) == {("exp", 7.5)}
    capsys.readouterr()
    assert main(common + ["--loss.gain", "square"]) != 0
    assert "square" in capsys.readouterr().err
    assert main(common + ["--loss.mu", "-1"]) != 0
    assert "-1" in capsys.readouterr().err
