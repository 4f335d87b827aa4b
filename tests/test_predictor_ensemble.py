"""Ensemble fine-tuning (issue 15): ``fit(ensemble=K)`` and what ``predict`` does with it.

The reference is built independently: each member is reproduced as a plain ``fit`` of a copy of
the same pretrained predictor with the member's seed, its scores standardised by hand on the fit
set, and the mean compared with the ensemble's ``predict``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from nasrank.errors import NasrankError
from nasrank.predictor import RankingPredictor
from nasrank.spaces.base import sample_unique
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


@pytest.fixture(scope="module")
def space():
    return NB201Space()


@pytest.fixture(scope="module")
def cells(space):
    return sample_unique(space, 60, np.random.default_rng(3))


@pytest.fixture(scope="module")
def pretrained(space, cells):
    p = RankingPredictor(space, seed=0, **SMALL)
    params = np.array([space.cost(a)[1] for a in cells])
    p.pretrain(cells, {"params": params, "noise": np.random.default_rng(0).normal(size=60)},
               epochs=2, batch_size=16)
    return p


def _target(cells):
    return np.random.default_rng(7).normal(size=len(cells)) + np.arange(len(cells)) * 0.05


@pytest.mark.parametrize("loss", ["margin", "mse"])
def test_ensemble_predict_is_the_mean_of_standardised_members(pretrained, cells, loss):
    tr, te = cells[:40], cells[40:]
    y = _target(cells)[:40]
    ens = copy.deepcopy(pretrained).fit(tr, y, loss=loss, epochs=4, ensemble=3)
    assert ens.ensemble_size == 3
    parts = []
    for k in range(3):
        m = copy.deepcopy(pretrained)
        m.seed = ens._member_seed(k)
        m.fit(tr, y, loss=loss, epochs=4)
        s = m.predict(te)
        if loss == "mse":  # members are in the units of y: the plain mean
            parts.append(s)
        else:
            on_fit = m.predict(tr)
            parts.append((s - on_fit.mean()) / on_fit.std())
    np.testing.assert_allclose(ens.predict(te), np.mean(parts, axis=0), rtol=1e-5, atol=1e-5)
    # the members differ (own split, batch order, dropout): an ensemble is not one model 3 times
    assert np.std([p[0] for p in parts]) > 1e-4


def test_member_zero_is_the_plain_fit_and_one_member_changes_nothing(pretrained, cells):
    tr, y = cells[:40], _target(cells)[:40]
    plain = copy.deepcopy(pretrained).fit(tr, y, loss="margin", epochs=3)
    one = copy.deepcopy(pretrained).fit(tr, y, loss="margin", epochs=3, ensemble=1)
    assert one.ensemble_size == 1
    np.testing.assert_array_equal(one.predict(cells), plain.predict(cells))
    ens = copy.deepcopy(pretrained).fit(tr, y, loss="margin", epochs=3, ensemble=2)
    for a, b in zip(ens.net.state_dict().values(), plain.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_score_does_not_depend_on_what_else_is_scored(pretrained, cells):
    ens = copy.deepcopy(pretrained).fit(cells[:40], _target(cells)[:40], loss="margin",
                                        epochs=3, ensemble=3)
    together = ens.predict(cells[40:])
    alone = np.array([ens.predict([a])[0] for a in cells[40:45]])
    np.testing.assert_allclose(alone, together[:5], rtol=1e-5, atol=1e-6)


def test_ensemble_checkpoint_round_trip_and_refit_and_pretrain_clear_members(
        pretrained, cells, tmp_path):
    tr, y = cells[:40], _target(cells)[:40]
    ens = copy.deepcopy(pretrained).fit(tr, y, loss="lambdarank", epochs=3, ensemble=3)
    ens.save(tmp_path / "ens.pt")
    back = RankingPredictor.load(tmp_path / "ens.pt")
    assert back.ensemble_size == 3
    np.testing.assert_array_equal(back.predict(cells), ens.predict(cells))
    back.fit(tr, y, loss="lambdarank", epochs=2)  # a plain refit forgets the old members
    assert back.ensemble_size == 1
    ens.pretrain(cells, {"params": np.arange(60.0)}, epochs=1, batch_size=16)
    assert ens.ensemble_size == 1


def test_checkpoint_without_members_loads_as_one_model(pretrained, cells, tmp_path):
    """A checkpoint written before ensembles (no ``members`` keys) loads and predicts as before."""
    p = copy.deepcopy(pretrained).fit(cells[:40], _target(cells)[:40], loss="margin", epochs=2)
    p.save(tmp_path / "p.pt")
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    del ckpt["members"], ckpt["member_scale"]
    torch.save(ckpt, tmp_path / "old.pt")
    old = RankingPredictor.load(tmp_path / "old.pt")
    assert old.ensemble_size == 1
    np.testing.assert_array_equal(old.predict(cells), p.predict(cells))


def test_damaged_member_scales_are_refused(pretrained, cells, tmp_path):
    ens = copy.deepcopy(pretrained).fit(cells[:40], _target(cells)[:40], loss="margin",
                                        epochs=2, ensemble=2)
    ens.save(tmp_path / "e.pt")
    ckpt = torch.load(tmp_path / "e.pt", weights_only=True)
    ckpt["member_scale"] = ckpt["member_scale"][:1]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(NasrankError, match="2 ensemble members but 1 member scales"):
        RankingPredictor.load(tmp_path / "bad.pt")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_ensemble_size_is_named(pretrained, cells, bad):
    with pytest.raises(NasrankError, match=f"ensemble must be an int >= 1, got {bad!r}"):
        copy.deepcopy(pretrained).fit(cells[:40], _target(cells)[:40], ensemble=bad)


def test_cli_finetune_ensemble_writes_an_ensemble_checkpoint(space, tmp_path, capsys):
    from nasrank.search.cli import main
    from nasrank.spaces import LabelTable

    archs = sample_unique(space, 30, np.random.default_rng(4))
    keys = [space.key(a) for a in archs]
    LabelTable(keys, {"flops": [space.cost(a)[0] for a in archs]}, space="nb201").to_csv(tmp_path / "w.csv")
    LabelTable(keys[:20], {"acc": np.arange(20.0)}, space="nb201").to_csv(tmp_path / "gt.csv")
    assert main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--epochs", "1",
                 "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]) == 0
    common = ["finetune", "--labels", str(tmp_path / "gt.csv"), "--metric", "acc", "--epochs", "2",
              "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet"]
    assert main(common + ["--ensemble", "3"]) == 0
    ft = RankingPredictor.load(tmp_path / "p" / "predictor_finetuned.pt", space=space)
    assert ft.ensemble_size == 3
    capsys.readouterr()
    assert main(common + ["--ensemble", "0"]) != 0
    assert "ensemble" in capsys.readouterr().err


def test_surrogate_factory_fits_ensembles(space, cells, pretrained, tmp_path):
    from nasrank.search import ranking_predictor_factory

    pretrained.save(tmp_path / "pre.pt")
    factory = ranking_predictor_factory(space, checkpoint=tmp_path / "pre.pt",
                                        fit_kwargs={"epochs": 2, "ensemble": 2})
    surrogate = factory(0)
    surrogate.fit(cells[:20], _target(cells)[:20])
    assert surrogate.model.ensemble_size == 2
    assert factory.config["fit_kwargs"]["ensemble"] == "2"


NB201 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201.csv"


def test_cli_search_fit_ensemble_reaches_the_surrogate(space, tmp_path, capsys):
    """`--fit-ensemble 2` is recorded in the search's surrogate config (so a resume with another
    size is refused); the default 1 leaves the config as older versions wrote it."""
    from nasrank.search.cli import main

    if not NB201.exists():
        pytest.skip("shared NB201 data not available")
    common = ["search", "--benchmark", "nb201", "--data", str(NB201), "--method", "iterative",
              "--method.rounds", "2", "--method.pool-size", "30", "--budget", "4",
              "--fit-epochs", "1", "--device", "cpu", "--quiet"]
    assert main(common + ["--fit-ensemble", "2", "--out", str(tmp_path / "e")]) == 0
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert '"ensemble": "2"' in (tmp_path / "e" / "record.jsonl").read_text()
    assert '"ensemble"' not in (tmp_path / "one" / "record.jsonl").read_text()
    capsys.readouterr()
    assert main(common + ["--fit-ensemble", "3", "--out", str(tmp_path / "e")]) != 0
    assert "another run configuration" in capsys.readouterr().err
