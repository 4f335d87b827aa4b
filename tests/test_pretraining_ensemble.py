"""PretrainingEnsemble: the standardised mean of separately fine-tuned pretrained predictors."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nasrank.errors import NasrankError
from nasrank.predictor import PretrainingEnsemble, RankingPredictor
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


class OtherSpace(NB201Space):
    name = "other"


@pytest.fixture(scope="module")
def setup():
    space = NB201Space()
    rng = np.random.default_rng(1)
    cells = list({space.key(a): a for a in (space.sample(rng) for _ in range(80))}.values())[:50]
    flops = np.array([space.cost(a)[0] for a in cells])
    members = []
    for seed in (0, 1):
        p = RankingPredictor(space, seed=seed, **SMALL)
        p.pretrain(cells, {"flops": flops, "noise": rng.normal(size=len(cells))}, epochs=2)
        members.append(p)
    y = flops[:20] + np.random.default_rng(2).normal(0, flops.std() * 0.3, 20)
    return space, cells, members, y


@pytest.mark.parametrize("loss", ["lambdarank", "mse"])
def test_predict_is_the_standardised_mean_of_the_separately_fitted_members(setup, loss):
    space, cells, members, y = setup
    # five fit architectures given twice: each counts once in a member's mean and std
    fit_archs, fit_y = cells[:20] + cells[:5], np.r_[y, y[:5]]
    alone = [copy.deepcopy(m).fit(fit_archs, fit_y, loss=loss, epochs=3) for m in members]
    ens = PretrainingEnsemble([copy.deepcopy(m) for m in members])
    assert ens.fit(fit_archs, fit_y, loss=loss, epochs=3) is ens
    want = np.zeros(30)
    for m in alone:
        fit_scores, test_scores = m.predict(cells[:20]), m.predict(cells[20:])
        mean, std = (0.0, 1.0) if loss == "mse" else (fit_scores.mean(), fit_scores.std())
        want += (test_scores - mean) / std / 2
    np.testing.assert_allclose(ens.predict(cells[20:]), want, rtol=1e-5, atol=1e-6)
    # a score does not depend on what else is scored with it
    np.testing.assert_allclose(ens.predict(cells[20:22]), want[:2], rtol=1e-5, atol=1e-6)


def test_bad_members_and_predict_before_fit_are_refused(setup):
    space, cells, members, y = setup
    with pytest.raises(NasrankError, match="at least one predictor"):
        PretrainingEnsemble([])
    with pytest.raises(NasrankError, match="member 1 is a str"):
        PretrainingEnsemble([members[0], "model.pt"])
    other = RankingPredictor(OtherSpace(), seed=0, **SMALL)
    with pytest.raises(NasrankError, match=r"different spaces \['nb201', 'other'\]"):
        PretrainingEnsemble([members[0], other])
    with pytest.raises(NasrankError, match="before fit"):
        PretrainingEnsemble(members).predict(cells[:3])


def test_load_reads_every_checkpoint(setup, tmp_path):
    space, cells, members, y = setup
    for k, m in enumerate(members):
        m.save(tmp_path / f"m{k}.pt")
    ens = PretrainingEnsemble.load([tmp_path / "m0.pt", tmp_path / "m1.pt"], space=space)
    assert [m.seed for m in ens.members] == [0, 1]
    np.testing.assert_allclose(ens.members[1].predict(cells[:5]), members[1].predict(cells[:5]),
                               rtol=1e-6)
