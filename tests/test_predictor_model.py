"""RankingPredictor: reproducibility, checkpoints, bad input, and that it learns real labels.

Small networks and few epochs keep this file fast on a shared 2-core CPU.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from nasrank.predictor import RankingPredictor, kendall_tau
from nasrank.errors import LabelTableError, NasrankError, SpaceMismatchError
from nasrank.spaces.labels import LabelTable
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


class OtherSpace(NB201Space):
    """Same graphs, another name: a checkpoint must still refuse to load into it."""

    name = "other"


@pytest.fixture(scope="module")
def space():
    return NB201Space()


@pytest.fixture(scope="module")
def cells(space):
    rng = np.random.default_rng(0)
    seen, out = set(), []
    while len(out) < 60:
        a = space.sample(rng)
        if space.key(a) not in seen:
            seen.add(space.key(a))
            out.append(a)
    return out


def params_label(space, archs):
    """A real, exactly known label: NB201 parameter count (millions) from the space's cost()."""
    return np.array([space.cost(a)[1] for a in archs])


def test_same_seed_same_predictions_and_fit_restarts(space, cells):
    y = params_label(space, cells[:30])
    a = RankingPredictor(space, seed=7, **SMALL).fit(cells[:30], y, epochs=3)
    b = RankingPredictor(space, seed=7, **SMALL).fit(cells[:30], y, epochs=3)
    pa, pb = a.predict(cells), b.predict(cells)
    np.testing.assert_array_equal(pa, pb)
    a.fit(cells[:30], y, epochs=3)  # a second fit starts again from the same weights
    np.testing.assert_array_equal(a.predict(cells), pa)
    c = RankingPredictor(space, seed=8, **SMALL).fit(cells[:30], y, epochs=3)
    assert not np.array_equal(c.predict(cells), pa)


def test_predict_accepts_strings_duplicates_and_equivalent_cells(space, cells):
    p = RankingPredictor(space, seed=0, **SMALL)
    archs = [cells[0], space.format(cells[1]), cells[0]]
    s = p.predict(archs, batch_size=2)
    assert s.shape == (3,) and s[0] == s[2]
    assert s[1] == p.predict([cells[1]])[0]
    # an op made unreachable by `none` edges does not change the cell's key, nor its score
    dead = space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    live = space.parse("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    dead_variant = space.parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    sd, sl, sv = p.predict([dead, live, dead_variant])
    assert sd == sv and sd != sl


def test_save_load_identical_predictions_and_other_space_refused(space, cells, tmp_path):
    p = RankingPredictor(space, seed=1, **SMALL)
    labels = {"params": params_label(space, cells), "convs": np.array(
        [sum(op.startswith("nor_conv") for op in a.ops) for a in cells], dtype=float)}
    p.pretrain(cells, labels, epochs=2)
    p.fit(cells[:20], params_label(space, cells[:20]), loss="mse", epochs=2)
    path = tmp_path / "pred.pt"
    p.save(path)
    q = RankingPredictor.load(path, space=space)
    np.testing.assert_array_equal(q.predict(cells), p.predict(cells))
    for name in labels:
        np.testing.assert_array_equal(q.predict_labels(cells)[name], p.predict_labels(cells)[name])
    # the loaded predictor fine-tunes from the same pretrained weights
    p.fit(cells[:20], params_label(space, cells[:20]), loss="margin", epochs=2)
    q.fit(cells[:20], params_label(space, cells[:20]), loss="margin", epochs=2)
    np.testing.assert_array_equal(q.predict(cells), p.predict(cells))
    with pytest.raises(SpaceMismatchError, match="'nb201'.*'other'"):
        RankingPredictor.load(path, space=OtherSpace())
    with pytest.raises(NasrankError, match="does not exist"):
        RankingPredictor.load(tmp_path / "missing.pt")


def test_bad_fit_input_raises_naming_the_value(space, cells):
    p = RankingPredictor(space, **SMALL)
    y = params_label(space, cells[:10])
    with pytest.raises(NasrankError, match="empty"):
        p.fit([], [])
    with pytest.raises(NasrankError, match="10 architectures but 9 labels"):
        p.fit(cells[:10], y[:9])
    y_nan = y.copy()
    y_nan[4] = np.nan
    with pytest.raises(NasrankError, match=r"y\[4\] = nan"):
        p.fit(cells[:10], y_nan)
    with pytest.raises(NasrankError, match="'listmle'"):
        p.fit(cells[:10], y, loss="listmle")
    with pytest.raises(NasrankError, match="epochs.*0"):
        p.fit(cells[:10], y, epochs=0)
    with pytest.raises(NasrankError, match="'|nope~0|'"):
        p.predict(["|nope~0|"])


def test_bad_pretrain_labels_raise_naming_the_value(space, cells):
    p = RankingPredictor(space, **SMALL)
    keys = [space.key(a) for a in cells[:5]]
    table = LabelTable(keys, {"acc": [1.0, 2.0, np.nan, 4.0, 5.0]}, space="nb201")
    with pytest.raises(LabelTableError, match=f"'acc' is nan.*{re.escape(keys[2])}"):
        p.pretrain(cells[:5], table, epochs=1)
    with pytest.raises(LabelTableError, match="is not in the label table"):
        p.pretrain(cells[:6], table.with_columns(["acc"]), epochs=1)
    with pytest.raises(SpaceMismatchError, match="'cvpr2021'"):
        p.pretrain(cells[:5], LabelTable(keys, {"a": np.ones(5)}, space="cvpr2021"), epochs=1)
    with pytest.raises(LabelTableError, match="'flops' has 4 values for 5"):
        p.pretrain(cells[:5], {"flops": np.ones(4)}, epochs=1)
    with pytest.raises(LabelTableError, match="unknown label 'zc_x'"):
        p.pretrain(cells[:5], {"flops": np.ones(5)}, columns=["zc_x"], epochs=1)


def test_pretraining_and_ranking_learn_real_nb201_labels(nb201_bench):
    """Pretrained on the published NB201 parameter counts of 300 cells, the multi-task head
    ranks 300 unseen cells' parameter counts well; a LambdaRank fit on 60 cells' real CIFAR-10
    accuracies ranks unseen cells far better than chance."""
    from nasrank.spaces.benchmarks import canonical_subset

    torch.set_num_threads(1)
    bench = canonical_subset(nb201_bench)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(bench.table), 600, replace=False)
    keys = [bench.table.keys[i] for i in idx]
    archs = [bench.archs[k] for k in keys]
    table = bench.table.select(keys)
    p = RankingPredictor(bench.space, seed=0, **SMALL)
    hist = p.pretrain(archs[:300], table, columns=["zc_params"], epochs=15, lr=3e-3)
    assert hist["loss"][-1] < 0.3 * hist["loss"][0]
    pred = p.predict_labels(archs[300:])["zc_params"]
    assert kendall_tau(table.column("zc_params")[300:], pred) > 0.8
    acc = table.column("cifar10_valid")
    p.fit(archs[:60], acc[:60], epochs=30, valid_fraction=0.0)
    assert kendall_tau(acc[300:], p.predict(archs[300:])) > 0.4


def test_fit_on_a_tiny_set_trains_without_a_validation_split(space, cells):
    y = params_label(space, cells[:3])
    p = RankingPredictor(space, seed=0, **SMALL).fit(cells[:3], y, epochs=2)
    assert np.all(np.isfinite(p.predict(cells[:3])))
    with pytest.raises(NasrankError, match="at least 2 architectures to rank, got 1"):
        p.fit(cells[:1], y[:1])


def test_fit_passes_the_lambdarank_gain_to_the_loss(space, cells, monkeypatch):
    import nasrank.predictor.losses as losses

    seen = []
    real = losses.lambdarank_loss

    def spy(*args, **kw):
        seen.append(kw.get("gain"))
        return real(*args, **kw)

    monkeypatch.setitem(losses.LOSSES, "lambdarank", spy)
    y = params_label(space, cells[:12])
    fits = {g: RankingPredictor(space, seed=0, **SMALL).fit(cells[:12], y, epochs=3, gain=g)
            for g in ("exp", "linear")}
    assert set(seen) == {"exp", "linear"}
    assert not np.allclose(fits["exp"].predict(cells[12:20]), fits["linear"].predict(cells[12:20]))
    with pytest.raises(NasrankError, match="gain must be one of .*'square'"):
        RankingPredictor(space, seed=0, **SMALL).fit(cells[:12], y, gain="square")


def test_fit_passes_mu_to_lambdarank_and_refuses_it_elsewhere(space, cells, monkeypatch):
    import nasrank.predictor.losses as losses

    seen = []
    real = losses.lambdarank_loss

    def spy(*args, **kw):
        seen.append(kw.get("mu", 0.0))
        return real(*args, **kw)

    monkeypatch.setitem(losses.LOSSES, "lambdarank", spy)
    y = params_label(space, cells[:12])
    fits = {mu: RankingPredictor(space, seed=0, **SMALL).fit(cells[:12], y, epochs=3, mu=mu,
                                                             lr=1e-2)
            for mu in (0.0, 50.0)}
    assert set(seen) == {0.0, 50.0}
    assert not np.allclose(fits[0.0].predict(cells[12:20]), fits[50.0].predict(cells[12:20]))
    p = RankingPredictor(space, seed=0, **SMALL)
    for bad in (-0.5, float("nan"), True):
        with pytest.raises(NasrankError, match="mu must be a finite float >= 0"):
            p.fit(cells[:12], y, mu=bad)
    with pytest.raises(NasrankError, match="mu=2.0 weighs LambdaRank's pairs; loss 'margin'"):
        p.fit(cells[:12], y, loss="margin", mu=2.0)


def test_probe_reads_out_a_label_the_pretrained_head_predicts(space, cells):
    """Before any fine-tuning step (lr 0) the ranking head is the ridge read-out of the
    pretrained head's hidden layer. A target that is exactly linear in that layer (one of the
    head's own label predictions) is recovered on architectures the read-out never saw."""
    p = RankingPredictor(space, seed=0, **SMALL)
    conv3 = np.array([float(space.key(a).count("nor_conv_3x3")) for a in cells])
    p.pretrain(cells, {"params": params_label(space, cells), "conv3": conv3}, epochs=5,
               batch_size=16)
    y = p.predict_labels(cells)["params"]
    p.fit(cells[:40], y[:40], loss="mse", lr=0.0, epochs=1, valid_fraction=0.0,
          probe_alpha=1e-9)
    np.testing.assert_allclose(p.predict(cells[40:]), y[40:], rtol=1e-3, atol=1e-4)
    with pytest.raises(NasrankError, match="probe_alpha"):
        p.fit(cells[:40], y[:40], probe_alpha=-1.0)


def test_early_stopping_keeps_the_starting_read_out_when_training_only_hurts(space, cells):
    """With a validation split, the starting weights (the ridge read-out) compete: a run whose
    every epoch is worse on validation (a huge lr) ends where it started, i.e. with the same
    predictions as a run that never moves (lr 0)."""
    p = RankingPredictor(space, seed=0, **SMALL)
    p.pretrain(cells, {"params": params_label(space, cells)}, epochs=5, batch_size=16)
    y = params_label(space, cells)
    start = p.fit(cells[:40], y[:40], loss="margin", lr=0.0, epochs=2).predict(cells)
    wild = p.fit(cells[:40], y[:40], loss="margin", lr=1e3, epochs=3).predict(cells)
    np.testing.assert_array_equal(wild, start)


def test_head_dropout_option_acenas_value_seeded_and_old_checkpoints(space, cells, tmp_path):
    """Issue 18: AceNAS's heads drop out half the hidden units (0.5); the option is seeded, the
    weights and state-dict keys do not depend on it, and a checkpoint without the key loads
    with no dropout (the behaviour before the option)."""
    from nasrank.predictor.encoder import ACENAS_HEAD_DROPOUT, ACENAS_PRESET, SeededDropout

    assert ACENAS_HEAD_DROPOUT == 0.5 and ACENAS_PRESET == {"head_dropout": 0.5}
    drop = SeededDropout(0.5, seed=3).train()
    out = drop(torch.ones(20000))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    assert abs(float((out == 0).float().mean()) - 0.5) < 0.02  # binomial sd 0.0035
    assert torch.equal(drop.eval()(torch.ones(5)), torch.ones(5))

    y = params_label(space, cells[:30])
    plain = RankingPredictor(space, seed=7, **SMALL)
    a = RankingPredictor(space, seed=7, head_dropout=0.5, **SMALL)
    sd_plain, sd_a = plain.net.state_dict(), a.net.state_dict()
    assert sd_plain.keys() == sd_a.keys() and all(torch.equal(sd_plain[k], sd_a[k]) for k in sd_a)
    kw = {"epochs": 3, "valid_fraction": 0.0, "loss": "mse"}  # no early stop: every step counts
    a.fit(cells[:30], y, **kw)
    b = RankingPredictor(space, seed=7, head_dropout=0.5, **SMALL).fit(cells[:30], y, **kw)
    np.testing.assert_array_equal(a.predict(cells), b.predict(cells))  # same seed, same masks
    pa = a.predict(cells)
    a.fit(cells[:30], y, **kw)
    np.testing.assert_array_equal(a.predict(cells), pa)  # a refit restarts the masks too
    assert not np.array_equal(plain.fit(cells[:30], y, **kw).predict(cells), pa)

    path = tmp_path / "old.pt"
    plain.save(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["hparams"]["head_dropout"]  # what a checkpoint of the code before the option has
    torch.save(ckpt, path)
    old = RankingPredictor.load(path, space=space)
    assert old.hparams_cfg["head_dropout"] == 0.0
    assert not any(isinstance(m, SeededDropout) for m in old.net.modules())
    np.testing.assert_array_equal(old.predict(cells), plain.predict(cells))
    for bad in (1.0, -0.1):
        with pytest.raises(NasrankError, match="head_dropout"):
            RankingPredictor(space, head_dropout=bad, **SMALL)
