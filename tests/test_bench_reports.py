"""The benchmark report scripts' statistics on hand-computed cases (issues 13-14)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def reports(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import report_ennas_teachers
    import report_strategies_heldout

    yield report_ennas_teachers, report_strategies_heldout
    for name in ("report_ennas_teachers", "report_strategies_heldout"):
        sys.modules.pop(name, None)


def test_sign_flip_p_by_hand(reports):
    ennas, _ = reports
    import numpy as np

    # [1, 2]: the 4 sign patterns give means 1.5, 0.5, -0.5, -1.5; two reach |1.5| -> p = 0.5
    assert "sign-flip p = 0.500" in ennas.paired(np.array([1.0, 2.0]))
    # [1, 2, 3]: only +++ and --- reach |2| among 8 patterns -> p = 0.25; all 3 higher
    text = ennas.paired(np.array([1.0, 2.0, 3.0]))
    assert "sign-flip p = 0.250" in text and "higher in 3/3" in text


def _write_runs(tmp: Path) -> dict[str, Path]:
    strat = tmp / "strategies"
    strat.mkdir()
    runs = {"spos": [0.1, 0.2, 0.3], "rdnas": [0.2, 0.2, 0.5], "proxy:jacov": [0.15, 0.25, 0.35]}
    (strat / "summary.json").write_text(json.dumps({"runs": {
        name: {"seeds": [{"seed": s, "kendall_tau": t} for s, t in zip((6, 7, 8), taus)]}
        for name, taus in runs.items()}}))
    fs = tmp / "fewshot"
    fs.mkdir()
    rows = [{"run": "fs_b2_d1", "metric": "jacov", "seed": s, "kendall_tau": t}
            for s, t in zip((6, 7, 8), (0.1, 0.3, 0.2))]
    rows += [{"run": "fs_b2_d1", "seed": 6, "kendall_tau": 0.9},  # gm (no metric key): ignored
             {"run": "spos", "seed": 6, "kendall_tau": 0.9}]
    (fs / "results.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ennas = []
    for s, t in ((6, 0.0), (7, 0.4)):  # seed 8 missing: left out of every comparison
        d = tmp / f"ennas_{s}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(
            {"args": {"seed": s}, "runs": {"ennas_diversity": {"kendall_tau": t}}}))
        ennas.append(d)
    return {"strategies": strat, "fewshot": fs, "ennas": ennas}


def test_heldout_report_pairs_by_seed(reports, tmp_path, capsys):
    _, heldout = reports
    p = _write_runs(tmp_path)
    rep = heldout.main(["--seeds", "6-8", "--strategies", str(p["strategies"]),
                        "--fewshot", str(p["fewshot"]),
                        "--ennas", *map(str, p["ennas"])])
    out = capsys.readouterr().out
    assert "left out" in out and "[8]" in out
    assert rep["seeds"] == [6, 7]
    d = rep["paired"]
    assert d["rdnas - spos"]["mean"] == pytest.approx(0.05)  # (0.1 + 0.0) / 2
    assert d["rdnas - teacher jacov"]["mean"] == pytest.approx(0.0)  # (0.05 - 0.05) / 2
    assert d["few-shot b2 d1 (jacov) - spos"]["mean"] == pytest.approx(0.05)  # (0.0 + 0.1) / 2
    assert d["ennas (diversity) - spos"]["mean"] == pytest.approx(0.05)  # (-0.1 + 0.2) / 2
    assert rep["runs"]["teacher jacov"] == pytest.approx([0.15, 0.25])


def test_heldout_report_reads_the_paper_cost_run_from_several_folders(reports, tmp_path):
    _, heldout = reports
    p = _write_runs(tmp_path)
    for name, rows in (("fs_a", [(6, 0.3)]), ("fs_b", [(7, 0.1), (8, 0.6)])):
        d = tmp_path / name
        d.mkdir()
        lines = [{"run": "fs_b2_d1_paper", "metric": "gm", "seed": s, "kendall_tau": t}
                 for s, t in rows]
        lines.append({"run": "fs_b2_d1", "metric": "gm", "seed": 7, "kendall_tau": 0.9})
        (d / "results.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    rep = heldout.main(["--seeds", "6-8", "--strategies", str(p["strategies"]),
                        "--fewshot", str(tmp_path / "fs_a"), str(tmp_path / "fs_b"),
                        "--fewshot-run", "fs_b2_d1_paper", "--fewshot-metric", "gm"])
    assert rep["seeds"] == [6, 7, 8]
    # (0.3 - 0.1) + (0.1 - 0.2) + (0.6 - 0.3) = 0.4 over 3 seeds
    assert rep["paired"]["few-shot b2 d1 paper (gm) - spos"]["mean"] == pytest.approx(0.4 / 3)


def test_heldout_report_merges_strategy_folders(reports, tmp_path):
    _, heldout = reports
    p = _write_runs(tmp_path)
    halves = []
    for name, seeds in (("half_a", {6: 0.5}), ("half_b", {7: 0.1, 8: 0.2})):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"runs": {"spos": {"seeds": [
            {"seed": s, "kendall_tau": t} for s, t in seeds.items()]}}}))
        halves.append(str(d))
    rep = heldout.main(["--seeds", "6-8", "--strategies", *halves,
                        "--fewshot", str(p["fewshot"])])
    assert rep["runs"]["spos"] == pytest.approx([0.5, 0.1, 0.2])
    # few-shot (jacov) 0.1, 0.3, 0.2 minus 0.5, 0.1, 0.2
    assert rep["paired"]["few-shot b2 d1 (jacov) - spos"]["mean"] == pytest.approx(-0.2 / 3)


def test_heldout_report_refuses_a_seed_twice_with_two_taus(reports, tmp_path):
    _, heldout = reports
    p = _write_runs(tmp_path)
    twice = tmp_path / "fs_twice"
    twice.mkdir()
    (twice / "results.jsonl").write_text(json.dumps(
        {"run": "fs_b2_d1", "metric": "jacov", "seed": 6, "kendall_tau": 0.5}) + "\n")
    with pytest.raises(SystemExit, match=r"seed 6 .* appears twice"):
        heldout.main(["--seeds", "6-8", "--strategies", str(p["strategies"]),
                      "--fewshot", str(p["fewshot"]), str(twice)])


def test_heldout_report_refuses_too_few_seeds(reports, tmp_path):
    _, heldout = reports
    p = _write_runs(tmp_path)
    with pytest.raises(SystemExit, match=r"need >= 2 seeds"):
        heldout.main(["--seeds", "8", "--strategies", str(p["strategies"]),
                      "--ennas", *map(str, p["ennas"])])


def test_label_fusion_report_by_hand(monkeypatch, tmp_path):
    """Two seeds of 5 archs: per seed, tau of each label and of the rank averages."""
    import numpy as np

    from nasrank.search.groundtruth import GroundTruth, write_groundtruth
    from nasrank.spaces import get_space
    from nasrank.spaces.labels import LabelTable

    monkeypatch.syspath_prepend(str(BENCH))
    import report_label_fusion

    nb = get_space("nb201")
    keys = sorted({nb.key(nb.sample(np.random.default_rng(i))) for i in range(40)})[:5]
    rows = [{"index": a, "key": k, "arch": k, "seed": 0, "valid_acc": float(a + 1),
             "test_acc": 0.5, "valid_loss": 1.0, "test_loss": 1.0, "seconds": 1.0}
            for a, k in enumerate(keys)]
    write_groundtruth(GroundTruth("nb201", {"space": "nb201"}, keys, [0], (0, 1), rows),
                      tmp_path / "gt.csv")
    runs = tmp_path / "runs"
    # truth order 1..5; spos swaps the two worst, the teacher the two best, rdnas is exact
    for s in (6, 7):
        for name, col, vals in (("spos", "ws_acc", [2, 1, 3, 4, 5]),
                                ("rdnas", "ws_acc", [1, 2, 3, 4, 5]),
                                ("proxy_jacov", "teacher", [1, 2, 3, 5, 4])):
            d = runs / f"{name}_s{s}"
            d.mkdir(parents=True)
            LabelTable(keys, {col: np.array(vals, float)}, space="nb201").to_csv(d / "labels.csv")
    rep = report_label_fusion.main(["--truth", str(tmp_path / "gt.csv"), "--runs", str(runs),
                                    "--seeds", "6-7"])
    sys.modules.pop("report_label_fusion", None)
    r = rep["runs"]
    assert r["spos"] == pytest.approx([0.8, 0.8])  # 1 discordant pair of 10
    assert r["rdnas"] == pytest.approx([1.0, 1.0])
    assert r["teacher jacov"] == pytest.approx([0.8, 0.8])
    # spos + teacher: mean ranks 1.5 1.5 3 4.5 4.5 -> tau-b 8 / sqrt(10 * 8)
    assert r["spos+jacov"] == pytest.approx([8 / np.sqrt(80)] * 2)
    # rdnas + teacher: 1 2 3 4.5 4.5 -> 9 concordant, 1 tie: 9 / sqrt(10 * 9)
    assert r["rdnas+jacov"] == pytest.approx([9 / np.sqrt(90)] * 2)
    assert rep["paired"]["spos+jacov - teacher jacov"]["mean"] == pytest.approx(
        8 / np.sqrt(80) - 0.8)
    import shutil

    for s in (6, 7):  # without RD-NAS labels: SPOS, the teacher and their fusion only
        shutil.rmtree(runs / f"rdnas_s{s}")
    import report_label_fusion

    rep = report_label_fusion.main(["--truth", str(tmp_path / "gt.csv"), "--runs", str(runs),
                                    "--seeds", "6-7"])
    sys.modules.pop("report_label_fusion", None)
    assert list(rep["runs"]) == ["spos", "teacher jacov", "spos+jacov"]
    assert rep["runs"]["spos+jacov"] == pytest.approx([8 / np.sqrt(80)] * 2)


def test_combined_cvpr_scores_hand_computed(tmp_path, monkeypatch):
    import math

    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    import combine_cvpr_scores

    truth = np.array([1.0, 2.0, 3.0, 4.0])
    idx = np.array([7, 8, 9, 10])
    runs = []
    for name, scores in (("a", [1.0, 2.0, 4.0, 3.0]), ("b", [20.0, 10.0, 30.0, 40.0])):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "3_m.npz", test_index=idx, scores=np.array(scores), truth=truth)
        runs.append(tmp_path / name)
    comb, each = combine_cvpr_scores.split_taus(*combine_cvpr_scores.combined_scores(runs, 3, "m"))
    # each run swaps one pair: tau = (5 - 1) / 6; standardised, the two runs' means are
    # -0.894 -0.894 0.894 0.894: four concordant pairs, two tied in the scores
    # (tau-b = 4 / sqrt((6 - 2) * 6))
    assert each == pytest.approx([4 / 6, 4 / 6])
    assert comb == pytest.approx(4 / math.sqrt(24))
    # run a standardised: (s - 2.5) / sqrt(1.25); run b: (s - 25) / sqrt(125)
    _, mean, _ = combine_cvpr_scores.combined_scores(runs, 3, "m")
    z = 2 / math.sqrt(5)  # (1.5 + 0.5) / 2 / sqrt(1.25)
    assert mean == pytest.approx([-z, -z, z, z])
    np.savez(tmp_path / "b" / "4_m.npz", test_index=idx[::-1], scores=truth, truth=truth)
    np.savez(tmp_path / "a" / "4_m.npz", test_index=idx, scores=truth, truth=truth)
    with pytest.raises(SystemExit, match="split 4 has other test archs"):
        combine_cvpr_scores.combined_scores(runs, 4, "m")


def test_e2e_labels_cleaned_by_hand(monkeypatch):
    import math

    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    pytest.importorskip("torch")
    import bench_predictor_cheap as bpc

    from nasrank.spaces.labels import LabelTable

    weak = LabelTable(["a", "b", "c"], {"ws_acc": [0.5, 0.7, 0.6], "flops": [1.0, 1.0, 1.0]})
    zc = LabelTable(["c", "b", "a", "d"], {"zc_synflow": [math.e - 1, float("nan"), 0.0, 5.0],
                                          "zc_jacov": [-3.0, float("-inf"), -1.0, 0.0]})
    got = bpc._e2e_labels([weak, zc], ["a", "b", "c"])
    assert list(got) == ["ws_acc", "zc_synflow", "zc_jacov"]  # constant flops dropped
    np.testing.assert_allclose(got["ws_acc"], [0.5, 0.7, 0.6])
    # synflow at a, b, c: 0, NaN -> the column minimum 0, e - 1 -> log1p = 1
    np.testing.assert_allclose(got["zc_synflow"], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(got["zc_jacov"], [-1.0, -3.0, -3.0])  # -inf -> minimum -3
    with pytest.raises(SystemExit, match="1 cells have no row"):
        bpc._e2e_labels([weak, zc], ["a", "d"])


def test_ennas_team_scores_by_hand(monkeypatch):
    """Two members, each right on one of two images: the equal-weight and the CE-optimal
    teachers are right on both. CE(w) = log(1 + e^(1-4w)) + log(1 + e^(3w-2)) has its
    minimum where -4 s(1-4w) + 3 s(3w-2) = 0, which is negative at w = 1/4 and positive at
    w = 2/3, so the solved w is inside (1/4, 2/3), where both images are classed right."""
    import torch

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt

    a = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    y = torch.tensor([0, 0])
    z = torch.stack([a, b]).double()
    s = bt.team_scores(z[:, None], y[None], z, y)
    assert s == {"members": 0.5, "teacher_in": 1.0, "teacher_out": 1.0, "mean_logits": 1.0}
    # the equal-weight teacher errs where one member is confidently wrong
    b2 = torch.tensor([[0.0, 5.0], [2.0, 0.0]])
    s2 = bt.team_scores(torch.stack([a, b2]).double()[:, None], y[None],
                        torch.stack([a, b2]).double(), y)
    assert s2["mean_logits"] == 0.5 and s2["members"] == 0.5
    sys.modules.pop("bench_ennas_teams", None)


def test_ennas_distinct_team_differs_on_every_edge(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt
    from nasrank.supernet.nb201_supernet import NB201Supernet

    net = NB201Supernet(10, C=4, N=1)
    rng = np.random.default_rng(0)
    counts = np.zeros((6, 5))
    for _ in range(400):
        team = bt.distinct_team(net, 3, rng)
        for e in range(6):
            ops = [t.ops[e] for t in team]
            assert len(set(ops)) == 3, ops
            for o in ops:
                counts[e, net.decisions()[e].index(o)] += 1
    # each op is in a team with probability 3/5: 240 of 400 teams, binomial sd ~ 9.8
    assert np.all(np.abs(counts - 240) < 50), counts
    with pytest.raises(SystemExit, match="--m 6"):
        bt.distinct_team(net, 6, rng)
    sys.modules.pop("bench_ennas_teams", None)


def test_ennas_team_diversity_by_hand(monkeypatch):
    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt
    from nasrank.supernet.nb201_supernet import NB201Supernet

    net = NB201Supernet(10, C=4, N=1)
    d = np.full((5, 5), 0.5)
    np.fill_diagonal(d, 0.0)
    d[1, 4] = d[4, 1] = 0.2
    a = net.arch_from_choices([1] * 6)
    b = net.arch_from_choices([4] * 6)
    c = net.arch_from_choices([1, 1, 1, 2, 2, 2])
    assert bt.team_diversity(net, [d] * 6, [a, a]) == 0.0
    assert bt.team_diversity(net, [d] * 6, [a, b]) == pytest.approx(0.2)
    # edges 0-2: pairs (a,b)=0.2 (a,c)=0 (b,c)=0.2; edges 3-5: 0.2, 0.5, 0.5 -> mean of 18
    assert bt.team_diversity(net, [d] * 6, [a, b, c]) == pytest.approx((3 * 0.4 + 3 * 1.2) / 18)
    sys.modules.pop("bench_ennas_teams", None)


def _ennas_summary(folder: Path, seed: int, runs: dict[str, tuple[float, float, float]]) -> Path:
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"args": {"seed": seed}, "runs": {
        name: {"curve": [{"teacher_acc": 0.0, "student_acc": 0.0},
                         {"teacher_acc": t, "student_acc": s}], "kendall_tau": k}
        for name, (t, s, k) in runs.items()}}))
    return folder


def test_ennas_report_merges_the_runs_of_a_seed_across_folders(reports, tmp_path, capsys):
    ennas, _ = reports
    a = _ennas_summary(tmp_path / "a", 0, {"ennas_diversity": (0.70, 0.60, 0.2)})
    b = _ennas_summary(tmp_path / "b", 0, {"ennas_uniform": (0.65, 0.62, 0.1)})
    c = _ennas_summary(tmp_path / "c", 1, {"ennas_diversity": (0.68, 0.61, 0.3),
                                           "ennas_uniform": (0.66, 0.60, 0.3)})
    ennas.main([str(a), str(b), str(c)])
    out = capsys.readouterr().out
    assert "| 0 | 0.700 | 0.650 | 0.600 | 0.620 | 0.200 | 0.100 |" in out
    assert "| 1 | 0.680 | 0.660 | 0.610 | 0.600 | 0.300 | 0.300 |" in out
    # teacher differences +0.05, +0.02: both higher, mean +0.035; p = 2/4 = 0.5
    assert "teacher accuracy, diversity - uniform: mean +0.0350" in out
    assert "higher in 2/2, sign-flip p = 0.500" in out
    d = _ennas_summary(tmp_path / "d", 0, {"ennas_uniform": (0.64, 0.62, 0.1)})
    with pytest.raises(SystemExit, match="second, different 'ennas_uniform'"):
        ennas.main([str(a), str(b), str(d)])
    with pytest.raises(SystemExit, match=r"seed 0: no \['ennas_uniform'\]"):
        ennas.main([str(a), str(c)])


def test_ennas_max_diversity_sets(monkeypatch):
    import itertools

    import numpy as np

    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt
    from nasrank.supernet.ennas import _step_weights, calibrate

    # pairs {0,1} and {2,3} are the only diverse ones: half the teams each, by hand
    d = np.zeros((4, 4))
    d[0, 1] = d[1, 0] = d[2, 3] = d[3, 2] = 1.0
    sets, p = bt.max_diversity_sets(d, 2)
    got = {t: round(float(q), 9) for t, q in zip(sets, p) if q > 1e-12}
    assert got == {(0, 1): 0.5, (2, 3): 0.5}
    # a random matrix: every op in 3/5 of the teams, and no feasible sampler is more diverse,
    # neither uniform without replacement nor EnNAS's calibrated sequential draw (enumerated)
    rng = np.random.default_rng(3)
    r = rng.uniform(size=(5, 5))
    d = (r + r.T) / 2
    np.fill_diagonal(d, 0.0)
    sets, p = bt.max_diversity_sets(d, 3)
    for o in range(5):
        assert sum(q for t, q in zip(sets, p) if o in t) == pytest.approx(0.6, abs=1e-9)
    value = lambda t: np.mean([d[i, j] for i, j in itertools.combinations(t, 2)])  # noqa: E731
    best = sum(q * value(t) for t, q in zip(sets, p))
    assert best >= np.mean([value(t) for t in sets]) - 1e-12
    pi = calibrate(d, 3)
    seq = 0.0
    for order in itertools.permutations(range(5), 3):
        prob, drawn = 1.0, []
        for o in order:
            w = _step_weights(d, pi, drawn)
            prob *= w[o] / w.sum()
            drawn.append(o)
        seq += prob * value(order)
    assert best >= seq - 1e-12
    sys.modules.pop("bench_ennas_teams", None)


def test_ennas_teams_paired_gain_by_hand(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt

    def row(div_members, div_teacher, dist_members, dist_teacher):
        r = {f"{s}.{k}": 0.5 for s in bt.SAMPLERS for k in (*bt.METRICS, "team_diversity")}
        r.update({"diversity.members": div_members, "diversity.teacher_in": div_teacher,
                  "distinct.members": dist_members, "distinct.teacher_in": dist_teacher})
        return r

    # gains: diversity 0.10, 0.05; distinct 0.04, 0.07 -> differences +0.06, -0.02: mean +0.02
    rows = [row(0.60, 0.70, 0.62, 0.66), row(0.58, 0.63, 0.60, 0.67)]
    (tmp_path / "r.json").write_text(json.dumps({"rows": rows}))
    rep = bt.main(["--summarize", str(tmp_path / "r.json")])["paired"]
    assert rep["diversity-distinct.gain_in"]["mean"] == pytest.approx(0.02)
    assert rep["diversity-distinct.gain_in"]["higher"] == 1
    assert rep["diversity-distinct.teacher_in"]["mean"] == pytest.approx(0.0)
    assert rep["diversity-distinct.gain_in"]["p"] == 1.0  # 4 sign patterns, all reach |0.02|
    assert "diversity-distinct.gain_in" in capsys.readouterr().out
    sys.modules.pop("bench_ennas_teams", None)


def test_ennas_report_compares_any_two_runs(reports, tmp_path, capsys):
    ennas, _ = reports
    a = _ennas_summary(tmp_path / "a", 0, {"ennas_diversity": (0.70, 0.60, 0.2),
                                           "ennas_fair": (0.66, 0.61, 0.25)})
    ennas.main([str(a), "--pair", "ennas_fair", "ennas_diversity"])
    out = capsys.readouterr().out
    assert "| seed | teacher, fair | teacher, diversity |" in out
    assert "| 0 | 0.660 | 0.700 | 0.610 | 0.600 | 0.250 | 0.200 |" in out
    assert "teacher accuracy, fair - diversity: mean -0.0400" in out
    with pytest.raises(SystemExit, match=r"seed 0: no \['ennas_uniform'\]"):
        ennas.main([str(a), "--pair", "ennas_fair", "ennas_uniform"])


def test_ennas_teams_across_pairs_by_seed(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_ennas_teams as bt

    def row(seed, teacher):
        r = {f"{s}.{k}": 0.5 for s in bt.SAMPLERS for k in (*bt.METRICS, "team_diversity")}
        r.update({"seed": seed, "distinct.teacher_in": teacher})
        return r

    (tmp_path / "a1.json").write_text(json.dumps({"rows": [row(1, 0.70)]}))
    (tmp_path / "a2.json").write_text(json.dumps({"rows": [row(2, 0.64), row(3, 0.9)]}))
    (tmp_path / "b.json").write_text(json.dumps({"rows": [row(2, 0.60), row(1, 0.66)]}))
    rep = bt.main(["--across", f"{tmp_path}/a1.json,{tmp_path}/a2.json", str(tmp_path / "b.json")])
    # seed 3 has no partner: seeds 1 and 2 give +0.04 and +0.04
    assert rep["across"]["distinct.teacher_in"]["mean"] == pytest.approx(0.04)
    assert rep["across"]["distinct.teacher_in"]["n"] == 2
    assert rep["across"]["uniform.teacher_in"]["mean"] == pytest.approx(0.0)
    with pytest.raises(SystemExit, match=">= 2 seeds"):
        bt.main(["--across", str(tmp_path / "a1.json"), str(tmp_path / "b.json")])
    sys.modules.pop("bench_ennas_teams", None)
