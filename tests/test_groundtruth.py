"""Ground-truth tables: resumable after a kill, shardable, and rows equal to direct trainings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from nasrank.errors import ConfigError, LabelTableError, NasrankError
from nasrank.search.groundtruth import (
    COLUMNS, GroundTruth, Recipe, job_list, load_recipe_data, merge_groundtruth, noise_ceiling,
    parse_shard, read_groundtruth, run_groundtruth, select_archs, shard_path,
)
from nasrank.spaces import get_space
from nasrank.spaces.cvpr2021 import CHOICES
from nasrank.supernet.train import train_standalone

RECIPE = Recipe(space="nb201", dataset="digits", epochs=1, batch_size=32, lr=0.05,
                train_subset=200, test_subset=100, width=4, cells=1)
SEEDS = [0, 3]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    space = get_space("nb201")
    archs = select_archs(space, n=3, seed=5)
    data = load_recipe_data(RECIPE, None)
    return space, archs, data


@pytest.fixture(scope="module")
def full(setup, tmp_path_factory):
    _, archs, data = setup
    out = tmp_path_factory.mktemp("gt") / "full.csv"
    return run_groundtruth(RECIPE, archs, SEEDS, out, data=data, progress=False)


def _strip(t: GroundTruth) -> list[tuple]:
    """Rows without the wall-clock column (the one value that differs between runs)."""
    return [tuple(r[c] for c in COLUMNS if c != "seconds") for r in t.rows]


def test_rows_equal_direct_trainings(setup, full):
    space, archs, data = setup
    assert len(full.rows) == 6 and full.space == "nb201"
    assert [(r["index"], r["seed"]) for r in full.rows] == [(a, s) for a in range(3) for s in SEEDS]
    r = full.rows[3]  # arch 1, seed 3
    ref = train_standalone((space, archs[1]), data, epochs=1, batch_size=32, lr=0.05, seed=3,
                           build_kwargs={"C": 4, "N": 1})
    assert (r["valid_acc"], r["test_acc"], r["valid_loss"], r["test_loss"]) == (
        ref.valid_acc, ref.test_acc, ref.valid_loss, ref.test_loss)
    assert r["key"] == space.key(archs[1]) and r["arch"] == space.format(archs[1])
    # the test split was cut to the stratified subset asked for: 10 images per digit
    assert len(data.test) == 100
    assert torch.bincount(data.test.tensors[1]).tolist() == [10] * 10


def test_kill_and_resume_give_the_uninterrupted_table(setup, full, tmp_path):
    _, archs, data = setup
    out = tmp_path / "gt.csv"

    class Killed(Exception):
        pass

    def kill_after_two(row):
        if row["index"] == 0 and row["seed"] == 3:
            raise Killed

    with pytest.raises(Killed):
        run_groundtruth(RECIPE, archs, SEEDS, out, data=data, on_row=kill_after_two)
    assert len(read_groundtruth(out).rows) == 2
    # a kill in the middle of the next write leaves a torn last line
    with open(out, "a") as f:
        f.write("1,|nor_conv_3x3~0|+|none~0|no")
    trained = []
    resumed = run_groundtruth(RECIPE, archs, SEEDS, out, data=data,
                              on_row=lambda r: trained.append((r["index"], r["seed"])))
    assert trained == [(1, 0), (1, 3), (2, 0), (2, 3)]  # only the missing jobs ran
    assert _strip(resumed) == _strip(full)
    assert out.read_text().count("\n") == 7  # header + 6 rows, the torn line is gone
    # a second rerun trains nothing
    again = run_groundtruth(RECIPE, archs, SEEDS, out, data=data, on_row=lambda r: 1 / 0)
    assert _strip(again) == _strip(full)


def test_shards_merge_to_the_unsharded_table(setup, full, tmp_path):
    _, archs, data = setup
    out = tmp_path / "gt.csv"
    paths = []
    for i in (2, 0, 1):  # any order
        p = shard_path(out, (i, 3))
        run_groundtruth(RECIPE, archs, SEEDS, p, data=data, shard=f"{i}/3")
        paths.append(p)
    assert [p.name for p in paths] == ["gt.shard2-of-3.csv", "gt.shard0-of-3.csv",
                                       "gt.shard1-of-3.csv"]
    assert [(r["index"], r["seed"]) for r in read_groundtruth(paths[1]).rows] == [(0, 0), (1, 3)]
    merged = merge_groundtruth(paths, out)
    assert _strip(merged) == _strip(full)
    assert merged.shard == (0, 1)
    meta = json.loads((tmp_path / "gt.csv.meta.json").read_text())
    assert meta["archs"] == full.archs and meta["seeds"] == SEEDS
    with pytest.raises(LabelTableError, match="exactly once"):
        merge_groundtruth(paths[:2], tmp_path / "bad.csv")


def test_incomplete_shards_are_refused(setup, tmp_path):
    _, archs, data = setup
    p0, p1 = shard_path(tmp_path / "g.csv", (0, 2)), shard_path(tmp_path / "g.csv", (1, 2))
    run_groundtruth(RECIPE, archs, SEEDS, p0, data=data, shard=(0, 2))
    run_groundtruth(RECIPE, archs, SEEDS, p1, data=data, shard=(1, 2), max_jobs=1)
    with pytest.raises(LabelTableError, match="hold 4 of 6 trainings"):
        merge_groundtruth([p0, p1], tmp_path / "g.csv")


def test_resume_with_other_arguments_is_refused(setup, full, tmp_path):
    _, archs, data = setup
    out = tmp_path / "gt.csv"
    run_groundtruth(RECIPE, archs, SEEDS, out, data=data, max_jobs=1)
    other = Recipe(**{**RECIPE.to_json(), "epochs": 2})
    with pytest.raises(LabelTableError, match=r"other recipe \(epochs: file 1, this run 2\)"):
        run_groundtruth(other, archs, SEEDS, out, data=data)
    with pytest.raises(LabelTableError, match="other seeds"):
        run_groundtruth(RECIPE, archs, [0, 1], out, data=data)
    with pytest.raises(LabelTableError, match="other archs"):
        run_groundtruth(RECIPE, archs[:2], SEEDS, out, data=data)


def test_select_archs_is_seeded_canonical_and_reads_files(tmp_path):
    space = get_space("nb201")
    a, b = select_archs(space, n=20, seed=1), select_archs(space, n=20, seed=1)
    assert a == b and a != select_archs(space, n=20, seed=2)
    assert all(space.format(x) == space.key(x) for x in a)  # canonical form is what is trained
    f = tmp_path / "archs.txt"
    cell = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    f.write_text(f"# two cells\n{cell}\n\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    got = select_archs(space, arch_file=f)
    assert [space.format(x) for x in got][0] == space.key(space.parse(cell))
    assert len(got) == 2
    f.write_text(f"{cell}\n{cell}\n")
    with pytest.raises(NasrankError, match="share the canonical key"):
        select_archs(space, arch_file=f)
    with pytest.raises(NasrankError, match="entry 1"):
        f.write_text("|bogus~0|\n")
        select_archs(space, arch_file=f)


def test_select_archs_width_sample_spans_the_channel_space():
    space = get_space("cvpr2021")
    got = select_archs(space, n=30, seed=3, sample="width")
    assert got == space.sample_width_stratified(30, np.random.default_rng(3))
    total = [sum(a.widths) for a in got]  # the narrowest network first, wide ones last
    assert total[0] <= sum(min(c) for c in CHOICES) + 8 and max(total[-3:]) > 500
    with pytest.raises(ConfigError, match="space 'nb201' has no widths"):
        select_archs(get_space("nb201"), n=3, sample="width")
    with pytest.raises(ConfigError, match="without --arch-file"):
        select_archs(space, arch_file="x.txt", sample="width")
    with pytest.raises(ConfigError, match="got 'flops'"):
        select_archs(space, n=3, sample="flops")


def test_shard_helpers_and_recipe_checks():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)
    jobs = [j for i in range(3) for j in job_list(4, [0, 1], (i, 3))]
    assert sorted(jobs) == job_list(4, [0, 1]) and len(jobs) == 8
    with pytest.raises(ConfigError, match="width/cells"):
        Recipe(space="cvpr2021", width=8)
    with pytest.raises(ConfigError, match="unknown dataset 'mnist'"):
        Recipe(dataset="mnist")


def test_noise_ceiling_is_kendall_tau_between_seeds():
    rng = np.random.default_rng(0)
    vals = rng.random((8, 3))
    rows = [{"index": a, "key": f"k{a}", "arch": f"k{a}", "seed": s, "valid_acc": vals[a, j],
             "test_acc": 0.0, "valid_loss": 0.0, "test_loss": 0.0, "seconds": 0.0}
            for a in range(8) for j, s in enumerate([0, 1, 2])]
    gt = GroundTruth("nb201", {}, [f"k{a}" for a in range(8)], [0, 1, 2], (0, 1), rows)
    pairs = [(0, 1), (0, 2), (1, 2)]
    expect = np.mean([stats.kendalltau(vals[:, i], vals[:, j]).statistic for i, j in pairs])
    assert noise_ceiling(gt) == pytest.approx(expect)
    # two seeds, hand-computed: seed 1 swaps one adjacent pair of 4 -> tau = (5 - 1) / 6
    two = GroundTruth("nb201", {}, ["a", "b", "c", "d"], [0, 1], (0, 1), [
        {"index": i, "key": k, "arch": k, "seed": s, "valid_acc": v, "test_acc": 0.0,
         "valid_loss": 0.0, "test_loss": 0.0, "seconds": 0.0}
        for i, (k, v0, v1) in enumerate(zip("abcd", [1, 2, 3, 4], [2, 1, 3, 4]))
        for s, v in ((0, v0), (1, v1))])
    assert noise_ceiling(two) == pytest.approx(4 / 6)
    keys, mean = two.mean()
    assert keys == list("abcd") and mean.tolist() == [1.5, 1.5, 3.0, 4.0]


def test_cli_writes_the_library_table(full, tmp_path, capsys):
    from nasrank.search.cli import main

    out = tmp_path / "cli.csv"
    argv = ["groundtruth", "--space", "nb201", "--dataset", "digits", "--archs", "3",
            "--arch-seed", "5", "--seeds", "2", "--epochs", "1", "--batch-size", "32",
            "--lr", "0.05", "--train-subset", "200", "--test-subset", "100", "--width", "4",
            "--cells", "1", "--device", "cpu", "--out", str(out)]
    # seeds 0,1 here, 0,3 in `full`: compare the seed-0 rows and the recipe
    assert main(argv) == 0
    got = read_groundtruth(out)
    assert got.recipe == full.recipe and got.archs == full.archs and got.seeds == [0, 1]
    assert [t for t in _strip(got) if t[3] == 0] == [t for t in _strip(full) if t[3] == 0]
    assert "6 trainings" in capsys.readouterr().out
    assert main(argv + ["--shard", "3/2"]) == 2
    assert "shard" in capsys.readouterr().err


def test_second_writer_is_refused(setup, tmp_path):
    from nasrank.errors import OutputLockedError
    from nasrank.search.groundtruth import _writer_lock

    _, archs, data = setup
    out = tmp_path / "gt.csv"
    with _writer_lock(out):
        with pytest.raises(OutputLockedError, match="another process"):
            run_groundtruth(RECIPE, archs, SEEDS, out, data=data)
