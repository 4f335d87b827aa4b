"""NB101 cell space: the official hash and trainable-parameter count of 1,000 published cells,
built networks against those counts and a brute-force MAC count, pruning, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import data_path
from hypothesis import given, settings
from hypothesis import strategies as st

from nasrank.spaces import (
    InvalidArchitectureError,
    LabelTableError,
    NasrankError,
)
from nasrank.spaces.nb101 import (
    CONV1X1,
    CONV3X3,
    INPUT,
    MAXPOOL3X3,
    NODE_TYPES,
    OPS,
    OUTPUT,
    NB101Arch,
    NB101Space,
    from_labels,
    graph_hash,
    load_nb101_json,
    prune,
    vertex_channels,
)

SPACE = NB101Space()
PAIRS = [(i, j) for i in range(7) for j in range(i + 1, 7)]


@pytest.fixture(autouse=True)
def one_thread():
    """Small convs on a shared 2-core machine: one thread avoids contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def raw():
    with open(data_path("nb101", "nb101_1k.json")) as f:
        return json.load(f)


def _arch_or_none(bits, ops):
    m = [[0] * 7 for _ in range(7)]
    for (i, j), b in zip(PAIRS, bits):
        m[i][j] = b
    try:
        return NB101Arch(tuple(map(tuple, m)), (INPUT, *ops, OUTPUT))
    except InvalidArchitectureError:
        return None


# raw 7-vertex cells (dead vertices included); about a third of the draws are valid
raw_cells = st.builds(
    _arch_or_none, st.lists(st.integers(0, 1), min_size=21, max_size=21),
    st.lists(st.sampled_from(OPS), min_size=5, max_size=5),
).filter(lambda a: a is not None)


def cell(rows: str, ops: str) -> NB101Arch:
    """Shorthand: cell("011/001/000", "c3") -> input, conv3x3, output."""
    names = {"c3": CONV3X3, "c1": CONV1X1, "mp": MAXPOOL3X3}
    inner = [names[o] for o in ops.split()] if ops else []
    return NB101Arch(tuple(tuple(int(c) for c in r) for r in rows.split("/")),
                     (INPUT, *inner, OUTPUT))


# ----------------------------------------------------------------------------- acceptance
def test_hash_equals_published_key_for_all_1000(raw):
    assert len(raw["key"]) == 1000
    for adj, ops, key in zip(raw["adjacency"], raw["operations"], raw["key"]):
        keep = [i for i, o in enumerate(ops) if o != -3]
        matrix = [[int(adj[i][j]) for j in keep] for i in keep]
        assert graph_hash(matrix, [ops[i] for i in keep]) == key
        assert SPACE.key(from_labels(adj, ops)) == key


def test_params_equal_published_trainable_parameters_for_all_1000(raw):
    for adj, ops, n in zip(raw["adjacency"], raw["operations"], raw["trainable_parameters"]):
        assert round(SPACE.cost(from_labels(adj, ops))[1] * 1e6) == n


@pytest.mark.parametrize("row", [0, 167])  # a 7-vertex and a 4-vertex published cell
def test_built_network_has_the_published_parameter_count(raw, row):
    arch = from_labels(raw["adjacency"][row], raw["operations"][row])
    net = SPACE.build(arch)
    assert sum(p.numel() for p in net.parameters()) == raw["trainable_parameters"][row]
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_loader(raw):
    b = load_nb101_json(data_path("nb101"))
    assert b.name == "nb101" and b.metrics == ("108_final_validation_accuracy",)
    assert b.table.keys == raw["key"] and b.table.space == "nb101"
    assert b.table.column("params").tolist() == [float(v) for v in raw["trainable_parameters"]]
    for e in (4, 12, 36, 108):
        col = f"{e}_final_validation_accuracy"
        assert b.table.column(col).tolist() == pytest.approx(raw[col])
    key = raw["key"][0]
    assert b.value(b.archs[key], "108_final_validation_accuracy") == pytest.approx(
        raw["108_final_validation_accuracy"][0])
    assert SPACE.key(b.archs[key]) == key


def _mini_json(path, **override):
    data = {
        "adjacency": [[[0, 1, 0], [0, 0, 1], [0, 0, 0]]], "operations": [[-1, 0, -2]],
        "trainable_parameters": [1], "key": [graph_hash([[0, 1, 0], [0, 0, 1], [0, 0, 0]],
                                                        [-1, 0, -2])],
        **{f"{e}_final_validation_accuracy": [0.5] for e in (4, 12, 36, 108)},
    }
    data.update(override)
    path.write_text(json.dumps(data))
    return path


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(LabelTableError, match="does not exist"):
        load_nb101_json(tmp_path / "nope.json")
    p = tmp_path / "nb101_1k.json"
    assert len(load_nb101_json(_mini_json(p)).table) == 1
    data = json.loads(p.read_text())
    del data["trainable_parameters"]
    p.write_text(json.dumps(data))
    with pytest.raises(LabelTableError, match="'trainable_parameters'"):
        load_nb101_json(p)
    with pytest.raises(LabelTableError, match="row 0.*'deadbeef'"):
        load_nb101_json(_mini_json(p, key=["deadbeef"]))
    with pytest.raises(LabelTableError, match="row 0.*label 7"):
        load_nb101_json(_mini_json(p, operations=[[-1, 7, -2]]))
    with pytest.raises(LabelTableError, match="not valid JSON"):
        p.write_text("{")
        load_nb101_json(p)


# ----------------------------------------------------------------------------- network and cost
@pytest.mark.parametrize("arch", [
    cell("0110001/0001000/0001000/0000100/0000010/0000001/0000000", "c3 mp c1 c3 mp"),
    cell("01111/00011/00001/00001/00000", "c3 c3 mp"),
    cell("011/001/000", "mp"),
    cell("01/00", ""),
])
def test_cost_equals_brute_force_count_on_a_small_skeleton(arch):
    kw = dict(stem_channels=6, num_cells=2, num_classes=5)
    net = SPACE.build(arch, in_channels=2, **kw)
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, torch.nn.Conv2d):
            macs += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            macs += mod.in_features * mod.out_features

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        assert net(torch.randn(1, 2, 9, 9)).shape == (1, 5)  # odd size: 'same' pooling 9->5->3
    flops, params = SPACE.cost(arch, (2, 9, 9), **kw)
    assert sum(p.numel() for p in net.parameters()) == round(params * 1e6)
    assert macs == round(flops * 1e6)


def test_vertex_channels_hand_cases():
    # 3 interior vertices feed the output: 128 split 43/43/42
    m = cell("01110/00001/00001/00001/00000", "c3 c3 c3").matrix
    assert vertex_channels(64, 128, m) == [64, 43, 43, 42, 128]
    # vertex 1 feeds only vertices 2 (43) and 3 (42): it takes the larger, 43
    m = cell("011000/000110/000001/000001/000001/000000", "c3 c3 c3 c3").matrix
    assert vertex_channels(64, 128, m) == [64, 43, 43, 43, 42, 128]
    assert vertex_channels(64, 128, cell("01/00", "").matrix) == [64, 128]


# ----------------------------------------------------------------------------- pruning and keys
def test_pruning_drops_dead_vertices_like_modelspec():
    # vertex 2 has no input (unreachable), vertex 3 does not reach the output
    a = cell("0101001/0000001/0000001/0000000/0000000/0000000/0000000", "c3 c1 mp c3 c3")
    assert prune(a) == cell("011/001/000", "c3")
    assert SPACE.key(a) == SPACE.key(prune(a)) == graph_hash([[0, 1, 1], [0, 0, 1], [0, 0, 0]],
                                                             [-1, 0, -2])
    g = SPACE.to_graph(a)
    assert g.num_nodes == 3
    assert g.x.argmax(1).tolist() == [NODE_TYPES.index(t) for t in (INPUT, CONV3X3, OUTPUT)]
    assert set(map(tuple, g.edge_index.t().tolist())) == {(0, 1), (0, 2), (1, 2)}


def test_hash_ignores_vertex_numbering_and_sees_ops():
    a = cell("01100/00010/00010/00001/00000", "c3 mp c1")
    b = cell("01100/00010/00010/00001/00000", "mp c3 c1")  # the two parallel branches swapped
    c = cell("01100/00010/00010/00001/00000", "c3 c3 c1")
    assert a != b and SPACE.key(a) == SPACE.key(b) != SPACE.key(c)


def test_raw_cell_may_have_more_than_9_edges_on_dead_vertices():
    # 9 live edges (0-1-2-3-4-6 chain, 0->2, 0->3, 0->4, 1->3) + 4->5 into the dead vertex 5
    a = cell("0111100/0011000/0001000/0000100/0000011/0000000/0000000", "c3 c3 c3 c3 mp")
    assert sum(map(sum, a.matrix)) == 10
    assert prune(a).num_vertices == 6 and sum(map(sum, prune(a).matrix)) == 9


# ----------------------------------------------------------------------------- properties
@given(raw_cells)
@settings(max_examples=150, deadline=None)
def test_round_trips_and_canonical_form(arch):
    assert SPACE.parse(SPACE.format(arch)) == arch
    p = prune(arch)
    assert prune(p) == p and SPACE.key(p) == SPACE.key(arch)
    assert SPACE.key(SPACE.from_choices(SPACE.to_choices(arch))) == SPACE.key(arch)
    g = SPACE.to_graph(arch)
    assert g.num_nodes == p.num_vertices <= SPACE.max_nodes
    assert g.edge_index.shape[1] == sum(map(sum, p.matrix)) <= 9


def test_mutating_the_bare_input_output_cell():
    a = cell("01/00", "")
    child = SPACE.mutate(a, np.random.default_rng(0))
    assert child.num_vertices > 2


def test_sampling_reproducible_and_covers_every_choice():
    assert [SPACE.sample(np.random.default_rng(4)) for _ in range(3)] == \
           [SPACE.sample(np.random.default_rng(4)) for _ in range(3)]
    rng = np.random.default_rng(0)
    samples = [SPACE.sample(rng) for _ in range(400)]
    full = [a for a in samples if a.num_vertices == 7]
    assert {(v, a.ops[v]) for a in full for v in range(1, 6)} == {
        (v, op) for v in range(1, 6) for op in OPS}
    assert {(i, j) for a in full for i, j in PAIRS if a.matrix[i][j]} == set(PAIRS)
    # uniform over labelled cells: mostly 7 vertices (84% of the 1,000 published cells have 7)
    assert {a.num_vertices for a in samples} >= {6, 7} and len(full) > 300
    assert all(prune(a) == a and sum(map(sum, a.matrix)) <= 9 for a in samples)


def test_not_enumerable_and_no_hparams():
    with pytest.raises(NasrankError, match="nb101"):
        SPACE.enumerate()
    assert SPACE.size is None and SPACE.hparams(cell("01/00", "")).numel() == 0


# ----------------------------------------------------------------------------- bad input
GOOD = "0110000/0001000/0001000/0000001/0000000/0000000/0000000|input,conv3x3-bn-relu," \
       "maxpool3x3,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,output"


@pytest.mark.parametrize("bad, needles", [
    (GOOD.replace("maxpool3x3", "conv5x5"), ["'conv5x5'", "vertex 2"]),
    (GOOD.replace(",output", ""), ["6 ops"]),
    (GOOD.replace("|input", "|conv3x3-bn-relu", 1), ["vertex 0", "'input'"]),
    ("0111100/0011000/0001000/0000100/0000010/0000001/0000000|input" + ",conv3x3-bn-relu" * 5
     + ",output", ["10 edges", "at most 9"]),
    (GOOD.replace("0001000/0001000", "0001000/1001000"), ["(2, 0)", "upper triangular"]),
    (GOOD.replace("0001000/0001000", "0001000/0021000"), ["row 2", "'0021000'"]),
    (GOOD.replace("0000000/0000000/0000000|", "0000000/0000000/000000|"), ["row 6", "7"]),
    ("/".join(["01000000"] * 8) + "|input", ["8 vertices"]),
    ("0100000/0000000/0000000/0000000/0000000/0000000/0000000|input" + ",conv3x3-bn-relu" * 5
     + ",output", ["no path from the input"]),
    ("garbage", ["garbage"]),
    ("", ["''"]),
])
def test_malformed_strings_name_the_bad_value(bad, needles):
    with pytest.raises(InvalidArchitectureError) as exc:
        SPACE.parse(bad)
    assert isinstance(exc.value, NasrankError)
    for needle in needles:
        assert needle in str(exc.value), (needle, str(exc.value))


def test_bad_values():
    with pytest.raises(InvalidArchitectureError, match="label 5"):
        from_labels([[0, 1], [0, 0]], [-1, 5])
    with pytest.raises(InvalidArchitectureError, match="padding vertex 1"):
        from_labels([[0, 1, 1], [0, 0, 0], [0, 0, 0]], [-1, -3, -2])
    with pytest.raises(InvalidArchitectureError, match="'x'"):
        from_labels([[0, "x"], [0, 0]], [-1, -2])
    with pytest.raises(InvalidArchitectureError, match="'edge_0_1'"):
        SPACE.from_choices({"op_1": CONV3X3})
    with pytest.raises(InvalidArchitectureError, match="no path"):
        SPACE.from_choices({**{f"edge_{i}_{j}": 0 for i, j in PAIRS},
                            **{f"op_{v}": CONV3X3 for v in range(1, 6)}})
    with pytest.raises(InvalidArchitectureError, match="42"):
        SPACE.key(42)
