"""Metrics against hand-computed values and scipy / sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from nasrank.predictor.metrics import (
    kendall_tau,
    ndcg_at_k,
    ndcg_exp_at_k,
    ndcg_lin_at_k,
    precision_at_k,
    spearman,
    summary,
    top_k_regret,
)
from nasrank.errors import NasrankError


def test_kendall_and_spearman_hand_computed():
    y_true, y_pred = [1, 2, 3, 4], [1, 2, 4, 3]
    # 6 pairs, 5 concordant, 1 discordant
    assert kendall_tau(y_true, y_pred) == pytest.approx(4 / 6)
    # rank differences 0, 0, 1, 1: 1 - 6 * 2 / (4 * (16 - 1))
    assert spearman(y_true, y_pred) == pytest.approx(1 - 12 / 60)


def test_kendall_and_spearman_agree_with_scipy_with_ties():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 40), rng.normal(size=40)
    assert kendall_tau(t, p) == pytest.approx(stats.kendalltau(t, p).statistic)
    assert spearman(t, p) == pytest.approx(stats.spearmanr(t, p).statistic)


def test_ndcg_lin_hand_computed_with_acenas_relevance():
    y_true = [10.0, 20.0, 30.0, 40.0, 50.0]
    # 20th percentile = 18 -> relevance (clip(y, 18) - 18) / 32 * 20
    rel = [0.0, 1.25, 7.5, 13.75, 20.0]
    y_pred = [5.0, 4.0, 1.0, 3.0, 2.0]  # predicted order: items 0, 1, 3, 4, 2
    order = [0, 1, 3, 4, 2]
    for k in (2, 3, 5):
        dcg = sum(rel[i] / math.log2(r + 2) for r, i in enumerate(order[:k]))
        ideal = sorted(rel, reverse=True)
        idcg = sum(ideal[r] / math.log2(r + 2) for r in range(k))
        assert ndcg_at_k(y_true, y_pred, k, gain="lin") == pytest.approx(dcg / idcg)
        assert ndcg_lin_at_k(y_true, y_pred, k) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(y_true, y_true, 3, gain="lin") == pytest.approx(1.0)


# y_true chosen so the AceNAS relevance is whole: 20th percentile of [0, 0, 5, 10, 20] is 0,
# max 20 -> rel = y. Predicted order (descending y_pred): items 0, 1, 3, 4, 2.
Y_TRUE = [0.0, 0.0, 5.0, 10.0, 20.0]
Y_PRED = [5.0, 4.0, 1.0, 3.0, 2.0]


def test_ndcg_exp_small_case_by_hand():
    # gains 2^rel - 1 of items 0..4: 0, 0, 31, 1023, 1048575
    # @3: DCG = 0 + 0/log2(3) + 1023/log2(4) = 511.5
    #     IDCG = 1048575/1 + 1023/log2(3) + 31/2
    idcg3 = 1048575 + 1023 / math.log2(3) + 15.5
    assert ndcg_exp_at_k(Y_TRUE, Y_PRED, 3) == pytest.approx(511.5 / idcg3)
    assert ndcg_exp_at_k(Y_TRUE, Y_PRED, 3) == pytest.approx(4.8750e-4, rel=1e-4)
    # @5: DCG adds 1048575/log2(5) + 31/log2(6); IDCG adds 0 + 0
    dcg5 = 511.5 + 1048575 / math.log2(5) + 31 / math.log2(6)
    assert ndcg_exp_at_k(Y_TRUE, Y_PRED, 5) == pytest.approx(dcg5 / idcg3)
    # the linear gain on the same case: @3 DCG = 10/2 = 5, IDCG = 20 + 10/log2(3) + 5/2
    assert ndcg_lin_at_k(Y_TRUE, Y_PRED, 3) == pytest.approx(5 / (22.5 + 10 / math.log2(3)))
    assert ndcg_lin_at_k(Y_TRUE, Y_PRED, 3) == pytest.approx(0.17356, rel=1e-4)


def test_ndcg_default_is_the_papers_exponential_gain():
    assert ndcg_at_k(Y_TRUE, Y_PRED, 3) == pytest.approx(ndcg_exp_at_k(Y_TRUE, Y_PRED, 3))
    assert ndcg_at_k(Y_TRUE, Y_PRED, 3) != pytest.approx(ndcg_lin_at_k(Y_TRUE, Y_PRED, 3))
    with pytest.raises(NasrankError, match="'log'.*'exp'"):
        ndcg_at_k(Y_TRUE, Y_PRED, 3, gain="log")


def test_summary_reports_both_gains_by_name():
    m = summary(Y_TRUE, Y_PRED)
    assert "ndcg@10" not in m
    assert m["ndcg_exp@10"] == pytest.approx(ndcg_exp_at_k(Y_TRUE, Y_PRED, 5))  # k capped at n
    assert m["ndcg_lin@10"] == pytest.approx(ndcg_lin_at_k(Y_TRUE, Y_PRED, 5))


def test_precision_at_k_hand_computed():
    y_true = [5, 4, 3, 2, 1]
    y_pred = [5, 1, 4, 2, 3]  # predicted top-2 = items 0, 2; true top-2 = items 0, 1
    assert precision_at_k(y_true, y_pred, 2) == 0.5
    assert precision_at_k(y_true, y_pred, 0.4) == 0.5  # 40 % of 5 = 2
    assert precision_at_k(y_true, y_pred, 1) == 1.0
    assert precision_at_k(y_true, y_pred, 5) == 1.0
    assert precision_at_k(list(range(200)), list(range(200))[::-1], 0.01) == 0.0


def test_top_k_regret_hand_computed():
    y_true, y_pred = [5.0, 4.0, 3.0], [0.0, 1.0, 2.0]
    assert top_k_regret(y_true, y_pred, 1) == 2.0
    assert top_k_regret(y_true, y_pred, 2) == 1.0
    assert top_k_regret(y_true, y_pred, 3) == 0.0


@pytest.mark.parametrize("fn", [kendall_tau, spearman, lambda t, p: ndcg_at_k(t, p, 2),
                                lambda t, p: precision_at_k(t, p, 1), top_k_regret])
def test_metrics_reject_bad_input(fn):
    with pytest.raises(NasrankError, match="3 values.*2"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(NasrankError, match="non-finite.*\\[1\\]"):
        fn([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])


def test_bad_k_is_named():
    with pytest.raises(NasrankError, match="k must be >= 1, got 0"):
        precision_at_k([1, 2], [1, 2], 0)
    with pytest.raises(NasrankError, match="1.5"):
        ndcg_at_k([1, 2], [1, 2], 1.5)
