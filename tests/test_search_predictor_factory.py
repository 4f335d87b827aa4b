"""ranking_predictor_factory: a pretrained checkpoint as a search surrogate, and the prior that
ranks by a pretrained weak-label head before the first fit."""

from __future__ import annotations

import numpy as np
import pytest

from nasrank.predictor import RankingPredictor, kendall_tau
from nasrank.search import ranking_predictor_factory
from nasrank.spaces.base import sample_unique
from nasrank.errors import NasrankError
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    space = NB201Space()
    cells = sample_unique(space, 80, np.random.default_rng(0))
    conv3 = np.array([float(space.key(a).count("nor_conv_3x3")) for a in cells])  # hand-countable
    params = np.array([space.cost(a)[1] for a in cells])
    p = RankingPredictor(space, seed=0, **SMALL)
    p.pretrain(cells, {"params": params, "conv3": conv3}, epochs=30, batch_size=16)
    path = tmp_path_factory.mktemp("ckpt") / "pre.pt"
    p.save(path)
    return space, cells, conv3, path


def test_prior_scores_by_the_pretrained_head_until_the_first_fit(pretrained):
    space, cells, conv3, path = pretrained
    factory = ranking_predictor_factory(space, checkpoint=path, prior_label="conv3",
                                        fit_kwargs={"epochs": 2})
    surrogate = factory(0)
    before = surrogate.predict(cells)
    np.testing.assert_array_equal(
        before, RankingPredictor.load(path, space=space).predict_labels(cells)["conv3"])
    assert kendall_tau(conv3, before) > 0.7  # the head learnt the label it was pretrained on
    surrogate.fit(cells[:20], conv3[:20])
    np.testing.assert_array_equal(surrogate.predict(cells), surrogate.model.predict(cells))
    assert factory.config["prior_label"] == "conv3"


def test_prior_needs_a_checkpoint_with_that_label(pretrained):
    space, _, _, path = pretrained
    with pytest.raises(NasrankError, match="'acc12'.*'params', 'conv3'"):
        ranking_predictor_factory(space, checkpoint=path, prior_label="acc12")
    with pytest.raises(NasrankError, match="needs a pretrained checkpoint"):
        ranking_predictor_factory(space, prior_label="conv3")


def test_several_checkpoints_make_a_pretraining_ensemble(pretrained, tmp_path):
    from nasrank.predictor import PretrainingEnsemble

    space, cells, conv3, path = pretrained
    other = RankingPredictor(space, seed=1, **SMALL)
    other.pretrain(cells, {"params": np.array([space.cost(a)[1] for a in cells]),
                           "conv3": conv3}, epochs=5, batch_size=16)
    other.save(tmp_path / "pre1.pt")
    factory = ranking_predictor_factory(space, checkpoint=[path, tmp_path / "pre1.pt"],
                                        fit_kwargs={"epochs": 2})
    surrogate = factory(0)
    assert isinstance(surrogate.model, PretrainingEnsemble) and len(surrogate.model.members) == 2
    surrogate.fit(cells[:20], conv3[:20])
    reference = PretrainingEnsemble.load([path, tmp_path / "pre1.pt"], space=space)
    reference.fit(cells[:20], conv3[:20], epochs=2)
    np.testing.assert_allclose(surrogate.predict(cells[20:]), reference.predict(cells[20:]),
                               rtol=1e-5, atol=1e-6)
    assert isinstance(factory.config["checkpoint"], list) and len(factory.config["checkpoint"]) == 2
    # one checkpoint keeps the record's single-identity form
    assert not isinstance(ranking_predictor_factory(space, checkpoint=path).config["checkpoint"],
                          list)
    with pytest.raises(NasrankError, match="reads one pretrained head; got 2 checkpoints"):
        ranking_predictor_factory(space, checkpoint=[path, path], prior_label="conv3")
    with pytest.raises(NasrankError, match="'acc12' is not a label of checkpoint .*pre.pt"):
        ranking_predictor_factory(space, checkpoint=[path], prior_label="acc12")
    with pytest.raises(NasrankError, match="empty list"):
        ranking_predictor_factory(space, checkpoint=[])
