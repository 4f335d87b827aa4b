"""supernet-eval: metrics against hand-computed values and scipy, bootstrap, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from nasrank.errors import LabelTableError, SpaceMismatchError
from nasrank.search.evaluate import (
    align, evaluate_scores, supernet_eval, supernet_from_checkpoint, weak_labels_for_truth,
)
from nasrank.search.groundtruth import (
    GroundTruth, Recipe, load_recipe_data, read_groundtruth, write_groundtruth,
)
from nasrank.spaces import get_space
from nasrank.spaces.labels import LabelTable

NB = get_space("nb201")
KEYS = [NB.key(a) for a in (NB.parse(f"|{a}~0|+|{b}~0|{c}~1|+|skip_connect~0|none~1|{d}~2|")
                            for a, b, c, d in [
                                ("nor_conv_3x3", "nor_conv_3x3", "none", "nor_conv_1x1"),
                                ("nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3"),
                                ("skip_connect", "nor_conv_3x3", "none", "avg_pool_3x3"),
                                ("avg_pool_3x3", "nor_conv_1x1", "none", "nor_conv_3x3"),
                                ("nor_conv_3x3", "skip_connect", "none", "skip_connect")])]


def _truth(values: np.ndarray, keys=KEYS, space="nb201") -> GroundTruth:
    """A ground truth with ``values[arch, seed]`` as valid_acc."""
    rows = [{"index": a, "key": k, "arch": k, "seed": s, "valid_acc": float(values[a, s]),
             "test_acc": 0.5, "valid_loss": 1.0, "test_loss": 1.0, "seconds": 1.0}
            for a, k in enumerate(keys) for s in range(values.shape[1])]
    return GroundTruth(space, {"space": space}, list(keys), list(range(values.shape[1])),
                       (0, 1), rows)


def test_metrics_on_a_hand_computed_case():
    # seed-averaged truth 1..5; the score swaps the two best archs
    vals = np.array([[1, 1], [2.5, 1.5], [3, 3], [4, 4], [5.5, 4.5]], dtype=float)
    labels = LabelTable(KEYS, {"ws_acc": [1, 2, 3, 5, 4]}, space="nb201")
    res = evaluate_scores(align(_truth(vals), labels, "ws_acc"), column="ws_acc", n_boot=0)
    m = {k: v["value"] for k, v in res.metrics.items()}
    assert m["kendall_tau"] == pytest.approx(8 / 10)  # 9 concordant, 1 discordant pair of 10
    assert m["spearman"] == pytest.approx(1 - 6 * 2 / (5 * 24))  # sum d^2 = 2
    assert m["pearson"] == pytest.approx(0.9)  # centred x.y = 9, |x|^2 = |y|^2 = 10
    assert m["precision@10%"] == 0.0  # top 1 of 5: true best is arch 5, score picks arch 4
    assert m["regret@1"] == pytest.approx(1.0) and m["regret@5"] == 0.0
    # noise ceiling: seeds (1, 2.5, 3, 4, 5.5) and (1, 1.5, 3, 4, 4.5) rank identically
    assert res.noise_ceiling["value"] == pytest.approx(1.0)
    assert res.tau_over_ceiling == pytest.approx(0.8)
    assert (res.n_archs, res.seeds) == (5, 2)


def test_metrics_match_scipy_and_bootstrap_matches_scipy_bootstrap():
    rng = np.random.default_rng(3)
    n = 60
    keys = [f"k{i}" for i in range(n)]
    base = rng.normal(size=n)
    vals = np.stack([base + 0.3 * rng.normal(size=n), base + 0.3 * rng.normal(size=n)], 1)
    score = base + rng.normal(size=n)
    labels = LabelTable(keys, {"s": score})
    al = align(_truth(vals, keys), labels, "s")
    res = evaluate_scores(al, column="s", n_boot=400, seed=1)
    t = vals.mean(1)
    assert res.metrics["kendall_tau"]["value"] == pytest.approx(stats.kendalltau(t, score)[0])
    assert res.metrics["spearman"]["value"] == pytest.approx(stats.spearmanr(t, score)[0])
    assert res.metrics["pearson"]["value"] == pytest.approx(stats.pearsonr(t, score)[0])
    assert res.noise_ceiling["value"] == pytest.approx(stats.kendalltau(vals[:, 0], vals[:, 1])[0])
    ref = stats.bootstrap((t, score), lambda a, b: stats.pearsonr(a, b)[0], paired=True,
                          vectorized=False, n_resamples=400, method="percentile",
                          random_state=np.random.default_rng(7)).confidence_interval
    iv = res.metrics["pearson"]
    assert iv["low"] == pytest.approx(ref.low, abs=0.05)
    assert iv["high"] == pytest.approx(ref.high, abs=0.05)
    for name, v in res.metrics.items():
        assert v["low"] <= v["value"] + 1e-12 and v["value"] <= v["high"] + 1e-12, name
    again = evaluate_scores(al, column="s", n_boot=400, seed=1)
    assert again.metrics == res.metrics  # seeded
    other = evaluate_scores(al, column="s", n_boot=400, seed=2)
    assert other.metrics["kendall_tau"]["low"] != res.metrics["kendall_tau"]["low"]


def test_refusals_and_partial_overlap(tmp_path):
    vals = np.arange(10, dtype=float).reshape(5, 2)
    gt = _truth(vals)
    cv = get_space("cvpr2021")
    other_space = LabelTable([cv.key(cv.largest())], {"ws_acc": [0.5]}, space="cvpr2021")
    with pytest.raises(SpaceMismatchError, match="'cvpr2021'.*'nb201'"):
        align(gt, other_space, "ws_acc")
    no_overlap = LabelTable(["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"],
                            {"ws_acc": [0.1]}, space="nb201")
    with pytest.raises(LabelTableError, match="share no architecture"):
        align(gt, no_overlap, "ws_acc")
    with pytest.raises(LabelTableError, match="unknown label column 'zc_x'"):
        align(gt, LabelTable(KEYS, {"ws_acc": [1, 2, 3, 4, 5]}), "zc_x")
    with pytest.raises(LabelTableError, match="is NaN for 1 shared archs"):
        align(gt, LabelTable(KEYS, {"ws_acc": [1, 2, np.nan, 4, 5]}), "ws_acc")
    # -inf (synflow of an all-none cell) is a real "worst": it ranks last, Pearson is undefined
    inf = evaluate_scores(align(gt, LabelTable(KEYS, {"s": [-np.inf, 2, 3, 4, 5]}), "s"),
                          n_boot=20)
    fin = evaluate_scores(align(gt, LabelTable(KEYS, {"s": [-99.0, 2, 3, 4, 5]}), "s"),
                          n_boot=20)
    assert inf.metrics["kendall_tau"]["value"] == fin.metrics["kendall_tau"]["value"]
    assert np.isnan(inf.metrics["pearson"]["value"])
    # NaN (a proxy undefined for that network) may be ranked last instead, and is counted
    worst = evaluate_scores(align(gt, LabelTable(KEYS, {"s": [np.nan, 2, 3, 4, 5]}), "s",
                                  nan_policy="worst"), n_boot=20)
    assert worst.metrics["kendall_tau"]["value"] == fin.metrics["kendall_tau"]["value"]
    assert worst.nan_as_worst == 1 and fin.nan_as_worst == 0
    part = align(gt, LabelTable(KEYS[1:], {"ws_acc": [2, 3, 4, 5]}), "ws_acc")
    assert part.keys == KEYS[1:] and part.truth.tolist() == [2.5, 4.5, 6.5, 8.5]
    # archs missing a seed in the truth are left out
    gt.rows = [r for r in gt.rows if not (r["index"] == 0 and r["seed"] == 1)]
    assert align(gt, LabelTable(KEYS, {"ws_acc": [1, 2, 3, 4, 5]}), "ws_acc").keys == KEYS[1:]


def test_files_json_and_plot(tmp_path):
    vals = np.array([[0.1, 0.2], [0.3, 0.2], [0.5, 0.6], [0.7, 0.6], [0.9, 0.8]])
    gt_path = tmp_path / "gt.csv"
    write_groundtruth(_truth(vals), gt_path)
    assert read_groundtruth(gt_path).matrix().tolist() == vals.tolist()
    LabelTable(KEYS, {"ws_acc": [0.1, 0.2, 0.3, 0.5, 0.4]}, space="nb201").to_csv(
        tmp_path / "weak.csv")
    res = supernet_eval(gt_path, tmp_path / "weak.csv", "ws_acc", n_boot=50,
                        out_dir=tmp_path / "ev")
    data = json.loads((tmp_path / "ev" / "supernet_eval.json").read_text())
    assert data["metrics"]["kendall_tau"]["value"] == pytest.approx(0.8)
    assert data["space"] == "nb201" and data["n_archs"] == 5
    assert res.metrics["regret@1"]["value"] == pytest.approx(0.85 - 0.65)
    png = (tmp_path / "ev" / "scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_weak_labels_from_a_supernet_checkpoint(tmp_path):
    from nasrank.supernet.base import UniformSampler
    from nasrank.supernet.nb201_supernet import NB201Supernet
    from nasrank.supernet.trainer import train_supernet

    torch.set_num_threads(1)
    recipe = Recipe(space="nb201", dataset="digits", epochs=1, train_subset=128, width=4,
                    cells=1)
    data = load_recipe_data(recipe, None)
    vals = np.array([[0.1, 0.2], [0.3, 0.2], [0.5, 0.6], [0.6, 0.5], [0.9, 0.8]])
    gt = _truth(vals)
    gt.recipe = recipe.to_json()
    sn = NB201Supernet(num_classes=10, C=4, N=1, in_channels=1)
    train_supernet(sn, data, UniformSampler(sn), epochs=1, batch_size=64, lr=0.05,
                   checkpoint_dir=tmp_path / "sn", progress=False)
    loaded = supernet_from_checkpoint(tmp_path / "sn")
    for a, b in zip(sn.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    table = weak_labels_for_truth(gt, tmp_path / "sn", tmp_path / "weak.csv", data=data,
                                  bn_batches=1, batch_size=64)
    assert table.keys == KEYS and 0.0 <= table.column("ws_acc").min() <= 1.0
    res = supernet_eval(gt, table, "ws_acc", n_boot=20)
    assert res.n_archs == 5
    # eval_batches=1: each accuracy is over the first 64 validation images, so a multiple of 1/64
    # (the whole split holds more than 64: the full-split labels are not all multiples)
    one = weak_labels_for_truth(gt, tmp_path / "sn", tmp_path / "weak1.csv", data=data,
                                bn_batches=1, batch_size=64, eval_batches=1)
    assert len(data.valid) > 64
    np.testing.assert_allclose(one.column("ws_acc") * 64, np.round(one.column("ws_acc") * 64),
                               atol=1e-9)
    wrong = _truth(vals, keys=[get_space("cvpr2021").key(get_space("cvpr2021").largest())] * 1
                   + KEYS[1:], space="cvpr2021")
    with pytest.raises(SpaceMismatchError):
        weak_labels_for_truth(wrong, sn, tmp_path / "w2.csv", data=data)


def test_cli(tmp_path, capsys):
    from nasrank.search.cli import main

    vals = np.array([[0.1, 0.2], [0.3, 0.2], [0.5, 0.6], [0.7, 0.6], [0.9, 0.8]])
    write_groundtruth(_truth(vals), tmp_path / "gt.csv")
    LabelTable(KEYS, {"ws_acc": [0.1, 0.2, 0.3, 0.5, 0.4]}, space="nb201").to_csv(
        tmp_path / "weak.csv")
    base = ["supernet-eval", "--truth", str(tmp_path / "gt.csv")]
    assert main(base + ["--labels", str(tmp_path / "weak.csv"), "--bootstrap", "20",
                        "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "kendall_tau      0.8000" in out and "noise ceiling" in out
    assert (tmp_path / "ev" / "supernet_eval.json").is_file()
    assert main(base) == 2
    assert "give --labels, --supernet or both" in capsys.readouterr().err


def test_rank_average_by_hand():
    from nasrank.spaces.labels import rank_average

    a = LabelTable(KEYS, {"ws_acc": [0.1, 0.5, 0.3, 0.3, 0.9]}, space="nb201")
    # the second table lacks KEYS[4] and holds an extra key: both are left out of the ranks
    extra = NB.key(NB.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    b = LabelTable([KEYS[3], KEYS[2], KEYS[1], KEYS[0], extra],
                   {"zc_jacob_cov": [7.0, float("nan"), 1.0, 2.0, 100.0]}, space="nb201")
    fused = rank_average([a, b], ["ws_acc", "zc_jacov"])
    assert fused.keys == KEYS[:4] and fused.names == ["ws_acc+zc_jacov"]
    # ws_acc over KEYS[:4]: 0.1 0.5 0.3 0.3 -> ranks 1, 4, 2.5, 2.5
    # jacov: KEYS[0] 2.0, KEYS[1] 1.0, KEYS[2] NaN (worst), KEYS[3] 7.0 -> ranks 3, 2, 1, 4
    assert fused.column("ws_acc+zc_jacov").tolist() == [2.0, 3.0, 1.75, 3.25]
    assert fused.notes[2] == "NaN ranked worst: zc_jacov" and fused.notes[0] == ""


def test_rank_average_refusals():
    from nasrank.spaces.labels import rank_average

    a = LabelTable(KEYS, {"ws_acc": np.arange(5.0), "flops": np.arange(5.0)}, space="nb201")
    b = LabelTable(KEYS, {"ws_acc": np.arange(5.0)}, space="nb201")
    with pytest.raises(LabelTableError, match="'ws_acc' is in 2"):
        rank_average([a, b], ["ws_acc", "flops"])
    with pytest.raises(LabelTableError, match="no label table has column 'zc_nwot'"):
        rank_average([a], ["ws_acc", "zc_nwot"])
    with pytest.raises(LabelTableError, match="at least two columns"):
        rank_average([a], ["ws_acc"])
    with pytest.raises(SpaceMismatchError):
        rank_average([a, LabelTable(KEYS, {"x": np.arange(5.0)}, space="nb101")], ["ws_acc", "x"])
    with pytest.raises(LabelTableError, match="share no key"):
        rank_average([a, LabelTable(["k1"], {"x": [1.0]}, space="nb201")], ["ws_acc", "x"])


def test_cli_judges_a_rank_average_of_two_tables(tmp_path, capsys):
    from nasrank.search.cli import main

    vals = np.array([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]], dtype=float)
    write_groundtruth(_truth(vals), tmp_path / "gt.csv")
    # each label alone swaps a different pair; their rank average is the truth's order
    LabelTable(KEYS, {"ws_acc": [2, 1, 3, 4, 5]}, space="nb201").to_csv(tmp_path / "weak.csv")
    LabelTable(KEYS, {"zc_jacov": [1, 2, 3, 5, 4.5]}, space="nb201").to_csv(tmp_path / "zc.csv")
    base = ["supernet-eval", "--truth", str(tmp_path / "gt.csv"), "--bootstrap", "0",
            "--labels", f"{tmp_path / 'weak.csv'},{tmp_path / 'zc.csv'}"]
    assert main(base + ["--column", "ws_acc"]) == 0
    assert "kendall_tau      0.8000" in capsys.readouterr().out  # 1 discordant pair of 10
    assert main(base + ["--column", "ws_acc+zc_jacov"]) == 0
    # mean ranks (1.5, 1.5, 3, 4.5, 4.5): 8 concordant pairs, 2 tied -> tau-b = 8 / sqrt(10 * 8)
    res = supernet_eval(read_groundtruth(tmp_path / "gt.csv"),
                        [tmp_path / "weak.csv", tmp_path / "zc.csv"], "ws_acc+zc_jacov", n_boot=0)
    want = stats.kendalltau([1, 2, 3, 4, 5], [1.5, 1.5, 3, 4.5, 4.5]).statistic
    assert res.metrics["kendall_tau"]["value"] == pytest.approx(want)
    assert res.label_sources == [str(tmp_path / "weak.csv"), str(tmp_path / "zc.csv")]
    assert want == pytest.approx(8 / np.sqrt(80))
    assert main(base + ["--column", "ws_acc+nope"]) == 2
    assert "no label table has column 'nope'" in capsys.readouterr().err
