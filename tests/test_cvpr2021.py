"""CVPR 2021 ResNet-20 channel space: the 50,000 published archs, exact cost against a brute-force
count and a hand-computed ResNet-20, bad input; plus a data sanity check of the published
supernet columns (their Kendall tau checks the shared file, not our code)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr

from nasrank.spaces import (
    InvalidArchitectureError,
    LabelTableError,
    NasrankError,
)
from nasrank.spaces.cvpr2021 import (
    CHOICES,
    NODE_FEATURES,
    CVPR2021Arch,
    CVPR2021Space,
    load_cvpr2021_csv,
)
from conftest import data_path

SPACE = CVPR2021Space()
arch_strategy = st.tuples(*[st.sampled_from(c) for c in CHOICES]).map(CVPR2021Arch)


@pytest.fixture(autouse=True)
def one_thread():
    """Small convs on a shared 2-core machine: one thread avoids contention (10x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bench():
    return load_cvpr2021_csv(data_path("cvpr2021_track1", "archs.csv"))


def brute_force_cost(net: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(MACs of conv + linear layers from forward hooks, sum of p.numel())."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs += out[0].numel() * mod.in_channels * k // mod.groups
        else:
            macs += mod.in_features * mod.out_features

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    net(x)
    return macs, sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- real data
def test_all_50000_published_archs_parse_and_round_trip(bench):
    path = data_path("cvpr2021_track1", "archs.csv")
    with open(path, newline="") as f:
        raw = [row["arch"] for row in csv.DictReader(f)]
    assert len(raw) == 50000
    assert [SPACE.format(SPACE.parse(s)) for s in raw] == raw
    assert bench.table.keys == raw and len(bench.archs) == 50000


def test_loader_columns_and_published_ranking(bench):
    t = bench.table
    assert bench.name == "cvpr2021" and bench.metrics == ("gt_acc",) and t.space == "cvpr2021"
    assert set(t.names) == {"supernet_acc_run1", "supernet_acc_run2", "gt_acc"}
    # first and 500th rows of the file, read by eye
    assert t.row("16-4-12-16-8-16-16-24-12-8-16-4-32-52-52-52-20-40-8-44") == pytest.approx(
        {"supernet_acc_run1": 41.57, "supernet_acc_run2": 39.06, "gt_acc": 0.539})
    assert t.row("12-16-4-8-16-16-12-32-28-8-28-16-12-56-60-36-60-8-56-60")["gt_acc"] == 0.6371
    labelled = bench.labelled("gt_acc")
    assert len(labelled) == 500 and labelled == t.keys[:500]
    assert np.isnan(t.column("gt_acc")[500:]).all()
    assert bench.value(labelled[0], "gt_acc") == 0.539


def test_data_sanity_published_supernet_columns_rank_ground_truth_at_tau_086(bench):
    """A check of the shared data file, not of our code: the published supernet columns (the
    competition's first-place supernet) rank the 500 labelled archs at Kendall tau ~0.86 against
    ground truth, as the data README says. It guards against a wrong or truncated file."""
    t = bench.table
    idx = [t.index(k) for k in bench.labelled("gt_acc")]
    for col in ("supernet_acc_run1", "supernet_acc_run2"):
        tau = kendalltau(t.column(col)[idx], t.column("gt_acc")[idx]).statistic
        assert 0.83 <= tau <= 0.89, (col, tau)


def test_forward_on_published_archs_has_right_shape(bench):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(bench.table), size=4, replace=False):
        net = SPACE.build(bench.archs[bench.table.keys[i]])
        with torch.no_grad():
            assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)


# ----------------------------------------------------------------------------- cost
def test_widest_arch_is_resnet20_hand_count():
    # ResNet-20 16/32/64 with 1x1-conv projection shortcuts, counted by hand:
    # stem 464, stage 1 14,016, stage 2 51,648, stage 3 205,696, fc(10) 650 -> 272,474 params;
    # MACs: stem 442,368 + stage 1 14,155,776 + stages 2 and 3 13,107,200 each + fc 640
    flops, params = SPACE.cost(SPACE.largest(), num_classes=10)
    assert round(params * 1e6) == 272_474
    assert round(flops * 1e6) == 442_368 + 14_155_776 + 2 * 13_107_200 + 640


@pytest.mark.parametrize("text, shape, classes", [
    ("16-4-12-16-8-16-16-24-12-8-16-4-32-52-52-52-20-40-8-44", (3, 32, 32), 100),
    ("4-4-4-4-4-4-4-4-4-4-4-4-4-4-4-4-4-4-4-4", (3, 32, 32), 100),
    ("16-16-16-16-16-16-16-32-32-32-32-32-32-64-64-64-64-64-64-64", (1, 15, 13), 7),
    ("8-16-8-16-12-16-4-32-28-8-28-16-12-56-60-36-60-64-4-60", (2, 9, 9), 3),
])
def test_cost_equals_brute_force_count(text, shape, classes):
    arch = SPACE.parse(text)
    net = SPACE.build(arch, num_classes=classes, in_channels=shape[0])
    macs, n_params = brute_force_cost(net, torch.randn(1, *shape))
    flops, params = SPACE.cost(arch, shape, num_classes=classes)
    assert n_params == round(params * 1e6)
    assert macs == round(flops * 1e6)


def test_module_structure_for_supernet_slicing():
    arch = SPACE.parse("8-16-8-16-8-16-4-32-28-8-28-16-12-56-60-36-60-64-4-60")
    net = SPACE.build(arch)
    assert net.stem[0].out_channels == 8 and isinstance(net.stem[1], torch.nn.BatchNorm2d)
    assert len(net.blocks) == 9 and net.fc.in_features == 4
    for b, block in enumerate(net.blocks):
        assert block.conv1.out_channels == arch.widths[1 + 2 * b]
        assert block.conv2.out_channels == arch.widths[2 + 2 * b]
        assert block.conv1.stride == ((2, 2) if b in (3, 6) else (1, 1))
        needs_proj = block.conv1.in_channels != block.conv2.out_channels or b in (3, 6)
        assert isinstance(block.shortcut, torch.nn.Identity) != needs_proj
    # block 1 keeps 8 channels at stride 1 (c3 = 8 -> c5 = 8): identity shortcut
    assert isinstance(net.blocks[1].shortcut, torch.nn.Identity)


def test_last_number_has_no_layer_but_is_part_of_the_key():
    a = SPACE.parse("16-4-12-16-8-16-16-24-12-8-16-4-32-52-52-52-20-40-8-44")
    b = SPACE.parse("16-4-12-16-8-16-16-24-12-8-16-4-32-52-52-52-20-40-8-4")
    assert SPACE.key(a) != SPACE.key(b)
    assert SPACE.cost(a) == SPACE.cost(b)
    assert torch.equal(SPACE.to_graph(a).x, SPACE.to_graph(b).x)


# ----------------------------------------------------------------------------- encoding
def test_graph_features_hand_case():
    arch = SPACE.parse("8-16-8-16-12-16-4-32-28-8-28-16-12-56-60-36-60-64-4-60")
    g = SPACE.to_graph(arch)
    assert g.num_nodes == 19 == SPACE.max_nodes and g.x.shape == (19, len(NODE_FEATURES))
    assert g.x[0, 0] == pytest.approx(8 / 64) and g.x[0, 1] == pytest.approx(8 / 16)
    assert g.x[18, 0] == pytest.approx(4 / 64) and g.x[18, 6] == 1.0
    # stage one-hots: node 0 stem, 1-6 stage 1, 7-12 stage 2, 13-18 stage 3
    assert g.x[:, 2:6].argmax(1).tolist() == [0] + [1] * 6 + [2] * 6 + [3] * 6
    assert torch.nonzero(g.x[:, 7]).flatten().tolist() == [7, 13]  # stride-2 convs
    edges = set(map(tuple, g.edge_index.t().tolist()))
    assert {(i, i + 1) for i in range(18)} <= edges
    assert {(0, 2), (2, 4), (16, 18)} <= edges and len(edges) == 18 + 9


@given(arch_strategy, st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_mutate_changes_one_position_within_its_choices(arch, seed):
    child = SPACE.mutate(arch, np.random.default_rng(seed))
    diff = [i for i, (x, y) in enumerate(zip(arch.widths, child.widths)) if x != y]
    assert len(diff) == 1 and child.widths[diff[0]] in CHOICES[diff[0]]
    assert SPACE.key(child) != SPACE.key(arch)


def test_crossover_takes_each_position_from_a_parent():
    rng = np.random.default_rng(1)
    for _ in range(50):
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        c = SPACE.crossover(a, b, rng)
        assert all(x in (y, z) for x, y, z in zip(c.widths, a.widths, b.widths))


def test_sampling_reproducible_and_covers_every_choice():
    assert [SPACE.sample(np.random.default_rng(5)) for _ in range(3)] == \
           [SPACE.sample(np.random.default_rng(5)) for _ in range(3)]
    rng = np.random.default_rng(0)
    seen = {(i, w) for _ in range(400) for i, w in enumerate(SPACE.sample(rng).widths)}
    assert seen == {(i, w) for i, c in enumerate(CHOICES) for w in c}


def test_width_stratified_sample_spans_narrow_to_wide():
    space = CVPR2021Space()
    archs = space.sample_width_stratified(100, np.random.default_rng(0))
    keys = [space.key(a) for a in archs]
    assert len(set(keys)) == 100
    for a in archs:  # every width is one of its position's choices
        assert all(w in c for w, c in zip(a.widths, CHOICES))
    # width level = mean over positions of (choice index / (choices - 1))
    level = np.array([np.mean([c.index(w) / (len(c) - 1) for w, c in zip(a.widths, CHOICES)])
                      for a in archs])
    # stratum k draws t in [k/100, (k+1)/100] and the level (16^t - 1) / 15; Binomial(m, p) / m
    # has mean p, and 20 positions average it: first and last strata sit near 0 and 1, the
    # median near (16^0.5 - 1) / 15 = 0.2, and the levels rise with k
    assert level[0] < 0.1 and level[-1] > 0.9
    assert abs(np.median(level) - 0.2) < 0.05
    assert spearmanr(level, np.arange(100))[0] > 0.97
    assert space.sample_width_stratified(100, np.random.default_rng(0)) == archs
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        space.sample_width_stratified(0, np.random.default_rng(0))


def test_size_and_lazy_enumeration():
    assert SPACE.size == 4**7 * 8**6 * 16**7
    it = SPACE.enumerate()
    first, second = next(it), next(it)
    assert SPACE.format(first) == "-".join(["4"] * 20)
    assert SPACE.format(second) == "-".join(["4"] * 19 + ["8"])
    assert SPACE.hparam_dim == 0 and SPACE.hparams(first).numel() == 0


# ----------------------------------------------------------------------------- bad input
GOOD = "16-4-12-16-8-16-16-24-12-8-16-4-32-52-52-52-20-40-8-44"


@pytest.mark.parametrize("bad, needles", [
    ("16-4-12", ["3", "expected 20"]),
    (GOOD + "-4", ["21"]),
    ("20" + GOOD[2:], ["position 1", "20", "(4, 8, 12, 16)"]),
    (GOOD[:-2] + "68", ["position 20", "68"]),
    (GOOD[:-2] + "46", ["position 20", "46"]),
    (GOOD[:-2] + "4x", ["position 20", "'4x'"]),
    (GOOD.replace("-24-", "-24.0-"), ["position 8", "'24.0'"]),
    (GOOD.replace("-24-", "--"), ["position 8", "''"]),
    (GOOD.replace("-24-", "-2\u00b2-"), ["position 8", "'2\u00b2'"]),
    ("garbage", ["garbage"]),
    ("", ["''"]),
])
def test_malformed_strings_name_the_bad_value(bad, needles):
    with pytest.raises(InvalidArchitectureError) as exc:
        SPACE.parse(bad)
    assert isinstance(exc.value, NasrankError)
    for needle in needles:
        assert needle in str(exc.value), (needle, str(exc.value))


def test_bad_arch_values_and_choices():
    with pytest.raises(InvalidArchitectureError, match="19"):
        CVPR2021Arch((4,) * 19)
    with pytest.raises(InvalidArchitectureError, match="position 9 .* 36"):
        CVPR2021Arch((4,) * 8 + (36,) + (4,) * 11)
    with pytest.raises(InvalidArchitectureError, match="'c7'"):
        SPACE.from_choices({f"c{i}": 4 for i in range(1, 7)})
    with pytest.raises(InvalidArchitectureError, match="123"):
        SPACE.key(123)


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(LabelTableError, match="does not exist"):
        load_cvpr2021_csv(tmp_path / "nope.csv")
    p = tmp_path / "archs.csv"
    p.write_text("arch_id,arch,supernet_acc_run1,gt_acc\narch1," + GOOD + ",41.5,0.5\n")
    with pytest.raises(LabelTableError, match="supernet_acc_run2"):
        load_cvpr2021_csv(p)
    head = "arch_id,arch,supernet_acc_run1,supernet_acc_run2,gt_acc\n"
    p.write_text(head + "arch1," + GOOD[:-2] + "99,41.5,40.0,\n")
    with pytest.raises(LabelTableError, match="line 2.*position 20.*99"):
        load_cvpr2021_csv(p)
    p.write_text(head + "arch1," + GOOD + ",41.5,forty,\n")
    with pytest.raises(LabelTableError, match="line 2.*'forty'"):
        load_cvpr2021_csv(p)
    p.write_text(head + "arch1," + GOOD + ",41.5\n")
    with pytest.raises(LabelTableError, match="line 2"):
        load_cvpr2021_csv(p)
    p.write_text(head + "arch1," + GOOD + ",41.5,40.0,\n")
    b = load_cvpr2021_csv(tmp_path)  # a folder holding archs.csv
    assert math.isnan(b.value(GOOD, "gt_acc")) and b.value(GOOD, "supernet_acc_run2") == 40.0
