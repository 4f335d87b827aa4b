"""Ranking-aware pretraining (issue 15): ``pretrain(rank_weight=w)`` minimises the MSE plus w x
RankNet on each weak label's order within the batch. Checked against a brute-force loop over
pairs, not against the code's own loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasrank.errors import NasrankError
from nasrank.predictor import RankingPredictor
from nasrank.predictor.losses import ranknet_per_list
from nasrank.spaces.base import sample_unique
from nasrank.spaces.nb201 import NB201Space

SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16, "num_layers": 2}


def test_ranknet_per_list_by_hand():
    # list 0: one ordered pair (rel 2 > 1), scores 1 and 0: log(1 + e^-1); list 1: a tie only
    per_list, counts = ranknet_per_list(torch.tensor([[1.0, 0.0], [0.3, 0.7]]),
                                        torch.tensor([[2.0, 1.0], [5.0, 5.0]]))
    assert counts.tolist() == [1, 0]
    assert per_list[0].item() == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)
    assert per_list[1].item() == 0.0
    # three items, all ordered: the mean over the three pairs, the wrong-way one costing most
    s, r = [0.0, 2.0, 1.0], [3.0, 2.0, 1.0]
    want = np.mean([math.log1p(math.exp(-(s[i] - s[j]))) for i in range(3) for j in range(3)
                    if r[i] > r[j]])
    got, _ = ranknet_per_list(torch.tensor([s]), torch.tensor([r]))
    assert got.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_pretraining_loss_is_mse_plus_weighted_pairwise_logistic_loss(weight):
    space = NB201Space()
    cells = sample_unique(space, 12, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    labels = {"a": rng.normal(size=12), "b": np.round(rng.normal(size=12))}  # b has ties
    p = RankingPredictor(space, seed=0, **SMALL)
    # lr 0: the network stays at its seeded start, so the one batch's loss is that start's
    hist = p.pretrain(cells, labels, epochs=1, batch_size=64, lr=0.0, weights=[1.0, 3.0],
                      rank_weight=weight)
    pred = p.predict_labels(cells)
    w = np.array([1.0, 3.0]) / 4.0
    want = 0.0
    for j, name in enumerate(["a", "b"]):
        y = (labels[name] - labels[name].mean()) / labels[name].std()
        o = (pred[name] - p.label_mean[j]) / p.label_std[j]
        want += w[j] * np.mean((o - y) ** 2)
        pairs = [math.log1p(math.exp(-(o[i] - o[k]))) for i in range(12) for k in range(12)
                 if y[i] > y[k]]
        want += weight * w[j] * np.mean(pairs)
    assert hist["loss"][0] == pytest.approx(want, rel=1e-5)


def test_rank_weight_must_be_a_nonnegative_number():
    space = NB201Space()
    cells = sample_unique(space, 4, np.random.default_rng(0))
    p = RankingPredictor(space, seed=0, **SMALL)
    with pytest.raises(NasrankError, match="rank_weight.*-1"):
        p.pretrain(cells, {"a": np.arange(4.0)}, epochs=1, rank_weight=-1)
    assert not p.pretrained


def test_cli_pretrain_passes_the_rank_weight_and_refuses_a_negative_one(pretrain_cli, capsys,
                                                                        tmp_path):
    from nasrank.search.cli import main

    assert pretrain_cli("--rank-weight", "0.5")["rank_weight"] == 0.5
    capsys.readouterr()
    try:
        code = main(["pretrain", "--labels", str(tmp_path / "w.csv"), "--out", str(tmp_path / "q"),
                     "--rank-weight", "-2"])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "-2" in capsys.readouterr().err
