"""Ranking losses against brute-force references written with plain Python loops and
hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasrank.predictor.losses import (
    LOSS_NAMES,
    acenas_relevance,
    get_loss,
    lambdarank_loss,
    margin_ranking_loss,
    mse_loss,
    ranknet_loss,
)
from nasrank.errors import NasrankError


# ---------------------------------------------------------------- brute-force LambdaRank
def _ndcg_of_ranking(ranking: list[int], rel: list[float], gain: str = "exp") -> float:
    """NDCG of the items listed in ``ranking`` (best first), gains 2^rel - 1 (or rel)."""
    g = (lambda r: 2.0 ** r - 1.0) if gain == "exp" else (lambda r: r)
    dcg = 0.0
    for pos, item in enumerate(ranking, start=1):
        dcg += g(rel[item]) / math.log2(pos + 1)
    ideal = sorted(rel, reverse=True)
    idcg = 0.0
    for pos, r in enumerate(ideal, start=1):
        idcg += g(r) / math.log2(pos + 1)
    return dcg / idcg


def _reference_lambdarank(scores: list[float], rel: list[float],
                          gain: str = "exp") -> tuple[float, list[float]]:
    """Loss and gradient of one list: for each pair with rel_i > rel_j, |delta NDCG| (found by
    actually swapping i and j in the ranking by scores) times log2(1 + exp(-(s_i - s_j)))."""
    n = len(scores)
    ranking = sorted(range(n), key=lambda i: -scores[i])
    base = _ndcg_of_ranking(ranking, rel, gain)
    loss, grad = 0.0, [0.0] * n
    for i in range(n):
        for j in range(n):
            if not rel[i] > rel[j]:
                continue
            swapped = list(ranking)
            pi, pj = swapped.index(i), swapped.index(j)
            swapped[pi], swapped[pj] = j, i
            w = abs(_ndcg_of_ranking(swapped, rel, gain) - base)
            d = scores[i] - scores[j]
            loss += w * math.log2(1.0 + math.exp(-d))
            lam = w * (1.0 / (1.0 + math.exp(d))) / math.log(2.0)  # -dL/ds_i
            grad[i] -= lam
            grad[j] += lam
    return loss, grad


def test_lambdarank_gradient_matches_brute_force_per_pair_reference():
    rng = np.random.default_rng(3)
    B, L = 4, 6
    scores = rng.normal(size=(B, L))
    rel = rng.integers(0, 4, size=(B, L)).astype(float)  # ties in relevance on purpose
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    loss = lambdarank_loss(s, torch.tensor(rel))
    loss.backward()
    ref_losses, ref_grads = zip(*(_reference_lambdarank(list(scores[b]), list(rel[b]))
                                  for b in range(B)))
    assert float(loss.detach()) == pytest.approx(sum(ref_losses) / B, rel=1e-10)
    np.testing.assert_allclose(s.grad.numpy(), np.array(ref_grads) / B, rtol=1e-9, atol=1e-12)


def test_lambdarank_linear_gain_matches_brute_force_and_weighs_the_bottom_more():
    rng = np.random.default_rng(4)
    B, L = 3, 6
    scores = rng.normal(size=(B, L))
    rel = rng.uniform(0, 20, size=(B, L))  # AceNAS relevance range
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    loss = lambdarank_loss(s, torch.tensor(rel), gain="linear")
    loss.backward()
    ref_losses, ref_grads = zip(*(_reference_lambdarank(list(scores[b]), list(rel[b]), "linear")
                                  for b in range(B)))
    assert float(loss.detach()) == pytest.approx(sum(ref_losses) / B, rel=1e-10)
    np.testing.assert_allclose(s.grad.numpy(), np.array(ref_grads) / B, rtol=1e-9, atol=1e-12)
    # on a 0-20 list, what swapping the bottom pair costs relative to swapping the top pair:
    # gains 2^4 - 1 and 2^0.5 - 1 against 2^20 - 1 (~1e-6) vs 4 and 0.5 against 20 (~0.1)
    rel6 = torch.tensor([[20.0, 16.0, 12.0, 8.0, 4.0, 0.5]])
    ordered = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    top = torch.tensor([[5.0, 6.0, 4.0, 3.0, 2.0, 1.0]])
    bottom = torch.tensor([[6.0, 5.0, 4.0, 3.0, 1.0, 2.0]])
    ratio = {}
    for g in ("exp", "linear"):
        base = float(lambdarank_loss(ordered, rel6, gain=g))
        ratio[g] = ((float(lambdarank_loss(bottom, rel6, gain=g)) - base)
                    / (float(lambdarank_loss(top, rel6, gain=g)) - base))
    assert ratio["exp"] < 1e-4 and ratio["linear"] > 0.05
    with pytest.raises(ValueError, match="'log'"):
        lambdarank_loss(bottom, rel6, gain="log")


def _reference_ndcg_loss2_term(scores: list[float], rel: list[float], gain: str) -> float:
    """LambdaLoss's NDCG-Loss2 term of one list (Wang et al. 2018, eq. for delta_ij): for each
    pair with rel_i > rel_j at ranks p_i, p_j (by scores, 1-based), |G_i - G_j| / IDCG *
    |1/log2(1 + d) - 1/log2(2 + d)| with d = |p_i - p_j|, times log2(1 + exp(-(s_i - s_j)))."""
    g = (lambda r: 2.0 ** r - 1.0) if gain == "exp" else (lambda r: r)
    n = len(scores)
    ranking = sorted(range(n), key=lambda i: -scores[i])
    rank = {item: pos for pos, item in enumerate(ranking, start=1)}
    idcg = sum(g(r) / math.log2(p + 1) for p, r in enumerate(sorted(rel, reverse=True), 1))
    total = 0.0
    for i in range(n):
        for j in range(n):
            if rel[i] > rel[j]:
                d = abs(rank[i] - rank[j])
                w = abs(g(rel[i]) - g(rel[j])) / idcg * abs(1 / math.log2(1 + d) - 1 / math.log2(2 + d))
                total += w * math.log2(1.0 + math.exp(-(scores[i] - scores[j])))
    return total


@pytest.mark.parametrize("gain", ["exp", "linear"])
def test_lambdarank_mu_adds_the_ndcg_loss2_term_by_brute_force(gain):
    rng = np.random.default_rng(5)
    B, L, mu = 3, 7, 2.5
    scores = rng.normal(size=(B, L))
    rel = rng.integers(0, 5, size=(B, L)).astype(float)  # ties included
    s = torch.tensor(scores, dtype=torch.float64)
    got = float(lambdarank_loss(s, torch.tensor(rel), gain=gain, mu=mu))
    want = sum(_reference_lambdarank(list(scores[b]), list(rel[b]), gain)[0]
               + mu * _reference_ndcg_loss2_term(list(scores[b]), list(rel[b]), gain)
               for b in range(B)) / B
    assert got == pytest.approx(want, rel=1e-10)
    assert float(lambdarank_loss(s, torch.tensor(rel), gain=gain, mu=0.0)) == pytest.approx(
        float(lambdarank_loss(s, torch.tensor(rel), gain=gain)), rel=1e-12)


def test_lambdarank_mu_weighs_a_bottom_swap_more_and_refuses_bad_values():
    # linear gains 5..0: swapping the bottom pair vs the top pair. Plain LambdaRank: the
    # discount difference at ranks 5/6 is far smaller than at 1/2; the NDCG-Loss2 term depends
    # on the pair's distance (1 in both) only, so a large mu brings the ratio towards 1
    rel6 = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    ordered = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    top = torch.tensor([[5.0, 6.0, 4.0, 3.0, 2.0, 1.0]])
    bottom = torch.tensor([[6.0, 5.0, 4.0, 3.0, 1.0, 2.0]])

    def ratio(mu):
        base = float(lambdarank_loss(ordered, rel6, gain="linear", mu=mu))
        return ((float(lambdarank_loss(bottom, rel6, gain="linear", mu=mu)) - base)
                / (float(lambdarank_loss(top, rel6, gain="linear", mu=mu)) - base))

    assert ratio(0.0) < 0.25 < ratio(10.0) and ratio(1000.0) > 0.9
    for bad in (-1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(NasrankError, match="mu"):
            lambdarank_loss(ordered, rel6, mu=bad)


def test_lambdarank_with_padding_equals_the_unpadded_list():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=5)
    rel = np.array([3.0, 0.0, 2.0, 1.0, 2.5])
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    # pad to length 8 with values that would matter if they were not masked out
    padded_s = torch.cat([s, torch.tensor([9.0, -9.0, 0.0], dtype=torch.float64)]).unsqueeze(0)
    padded_r = torch.tensor(list(rel) + [10.0, 10.0, 0.0], dtype=torch.float64).unsqueeze(0)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    loss = lambdarank_loss(padded_s, padded_r, mask)
    loss.backward()
    ref_loss, ref_grad = _reference_lambdarank(list(scores), list(rel))
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(s.grad.numpy(), ref_grad, rtol=1e-9, atol=1e-12)


def test_swapping_the_top_pair_costs_more_than_swapping_the_bottom_pair():
    rel = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])
    ordered = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    top = torch.tensor([[5.0, 6.0, 4.0, 3.0, 2.0, 1.0]])
    bottom = torch.tensor([[6.0, 5.0, 4.0, 3.0, 1.0, 2.0]])
    l_top, l_bottom = lambdarank_loss(top, rel), lambdarank_loss(bottom, rel)
    assert float(l_top) > float(l_bottom) > 0
    assert float(lambdarank_loss(torch.tensor([ordered]), rel)) < float(l_bottom)
    # RankNet weighs every pair alike: the two swaps cost the same
    assert float(ranknet_loss(top, rel)) == pytest.approx(float(ranknet_loss(bottom, rel)))


def _grad(fn, scores, rel, **kw):
    s = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    loss = fn(s, torch.tensor(rel, dtype=torch.float64), **kw)
    loss.backward()
    return float(loss), s.grad


def test_margin_loss_is_zero_with_zero_gradient_on_a_well_separated_ordered_list():
    loss, g = _grad(margin_ranking_loss, [[3.0, 2.0, 1.0, 0.0]], [[4.0, 3.0, 2.0, 1.0]], margin=0.5)
    assert loss == 0.0
    assert torch.count_nonzero(g) == 0


def test_mse_is_zero_with_zero_gradient_on_exact_scores():
    loss, g = _grad(mse_loss, [[0.3, -1.0, 2.0]], [[0.3, -1.0, 2.0]])
    assert loss == 0.0 and torch.count_nonzero(g) == 0


@pytest.mark.parametrize("name", ["lambdarank", "ranknet", "margin"])
def test_pairwise_losses_have_no_gradient_when_all_relevance_ties(name):
    loss, g = _grad(get_loss(name), [[0.2, -0.4, 1.3]], [[2.0, 2.0, 2.0]])
    assert loss == 0.0 and torch.count_nonzero(g) == 0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_padding_gets_no_gradient_and_a_misordered_list_pushes_the_right_way(name):
    s = torch.tensor([[0.0, 1.0, 5.0]], requires_grad=True)  # best item scored lowest
    rel = torch.tensor([[3.0, 0.0, 7.0]])
    mask = torch.tensor([[True, True, False]])
    get_loss(name)(s, rel, mask).backward()
    assert s.grad[0, 2] == 0
    assert s.grad[0, 0] < 0 < s.grad[0, 1]  # gradient descent raises item 0, lowers item 1


def test_margin_loss_hand_computed():
    s = torch.tensor([[1.0, 0.5, 0.8]])
    rel = torch.tensor([[3.0, 2.0, 1.0]])
    # pairs (0,1): max(0, .1 - .5) = 0; (0,2): max(0, .1 - .2) = 0; (1,2): max(0, .1 + .3) = .4
    assert float(margin_ranking_loss(s, rel, margin=0.1)) == pytest.approx(0.4 / 3)
    # label gaps as margins: (0,1): max(0, 1 - .5) = .5; (0,2): max(0, 2 - .2) = 1.8;
    # (1,2): max(0, 1 + .3) = 1.3
    assert float(margin_ranking_loss(s, rel, margin="gap")) == pytest.approx((0.5 + 1.8 + 1.3) / 3)


def test_ranknet_and_mse_hand_computed():
    assert float(ranknet_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))) == \
        pytest.approx(math.log(2.0))
    assert float(ranknet_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))) == \
        pytest.approx(math.log(1.0 + math.exp(-1.0)))
    assert float(mse_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))) == pytest.approx(2.5)


def test_acenas_relevance_hand_computed():
    y = np.arange(10.0)  # 20th percentile (linear interpolation) = 1.8
    rel = acenas_relevance(y)
    assert rel[0] == 0.0 and rel[1] == 0.0 and rel[9] == pytest.approx(20.0)
    assert rel[5] == pytest.approx((5 - 1.8) / (9 - 1.8) * 20)
    torch.testing.assert_close(acenas_relevance(torch.tensor(y)), torch.tensor(rel))
    assert np.all(acenas_relevance(np.full(4, 93.0)) == 0)


def test_bad_loss_inputs_raise_nasrank_errors_naming_the_value():
    with pytest.raises(NasrankError, match="'listnet'"):
        get_loss("listnet")
    with pytest.raises(NasrankError, match="-1"):
        margin_ranking_loss(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 3.0]]), margin=-1)
    with pytest.raises(NasrankError, match=r"\(1, 3\).*\(1, 4\)"):
        lambdarank_loss(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(NasrankError, match="nan"):
        acenas_relevance(np.array([1.0, np.nan]))
