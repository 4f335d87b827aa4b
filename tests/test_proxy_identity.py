"""One way to initialise a network for proxies: ``nasrank proxies`` and ``nasrank weak-labels
--proxies`` give identical ``zc_*`` values for the same architectures and seed (issue 11; issue
17: the same key got synflow 14.77 from weak labels and 14.79 from proxies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrank.search.cli import main
from nasrank.spaces.labels import LabelTable
from nasrank.spaces.nb201 import NB201Space

PROXIES = "synflow,nwot,jacov,params"
NET = ["--supernet.channels", "4"]  # supernet paths and proxy networks: C=4, N=1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("identity")
    sn, zc = root / "sn", root / "zc"
    common = ["--seed", "3", "--device", "cpu"]
    assert main(["--quiet", "supernet-train", "--out", str(sn), "--epochs", "1",
                 "--image-size", "8", "--batch-size", "128", *NET, *common]) == 0
    assert main(["--quiet", "weak-labels", "--out", str(sn), "--num-archs", "6",
                 "--proxies", PROXIES, *common]) == 0
    assert main(["--quiet", "proxies", "--out", str(zc), "--num-archs", "6",
                 "--image-size", "8", "--proxies", PROXIES, *NET, *common]) == 0
    return (LabelTable.read_csv(sn / "weak_labels.csv", space="nb201"),
            LabelTable.read_csv(zc / "proxies.csv", space="nb201"), sn)


def test_same_keys_and_identical_zc_values(runs):
    weak, zc, _ = runs
    assert sorted(weak.keys) == sorted(zc.keys) and len(zc) == 6
    names = [f"zc_{p}" for p in PROXIES.split(",")]
    assert [n for n in weak.names if n.startswith("zc_")] == names == zc.names
    for n in names:
        a, b = weak.select(zc.keys).column(n), zc.column(n)
        assert np.isfinite(b).any()
        assert a.tobytes() == b.tobytes(), (n, a, b)  # bit for bit, NaN/inf included


def test_rows_describe_the_canonical_representative(runs):
    weak, zc, _ = runs
    space = NB201Space()
    for table in (weak, zc):
        assert table.arch_texts is not None
        for key, text in zip(table.keys, table.arch_texts):
            arch = space.parse(text)
            assert space.key(arch) == key and space.canonical(arch) == arch
    # params are those of the canonical network (C=4, N=1, 8x8 inputs): cost by the space
    for key in zc.keys:
        flops, params = space.cost(space.parse(key), (3, 8, 8), C=4, N=1)
        assert zc.row(key)["zc_params"] == pytest.approx(params)
        assert weak.row(key)["params"] == pytest.approx(params)


# ----------------------------------------------------------------------------- the 'arch' column
@pytest.fixture(scope="module")
def nb101_table(tmp_path_factory):
    """``nasrank proxies`` on NB101 (keys are hashes that do not parse back)."""
    out = tmp_path_factory.mktemp("nb101") / "zc"
    assert main(["--quiet", "proxies", "--space", "nb101", "--out", str(out), "--num-archs", "6",
                 "--image-size", "8", "--proxies", "params,flops,nwot", "--device", "cpu"]) == 0
    return out / "proxies.csv"


def test_nb101_table_stores_architectures_next_to_hash_keys(nb101_table):
    from nasrank.errors import NasrankError
    from nasrank.spaces.nb101 import NB101Space

    space = NB101Space()
    table = LabelTable.read_csv(nb101_table, space="nb101")
    assert open(nb101_table).readline().startswith("key,arch,zc_params")
    with pytest.raises(NasrankError):
        space.parse(table.keys[0])  # a hash: the key alone cannot give the architecture back
    archs = table.architectures(space)
    assert [space.key(a) for a in archs] == table.keys


def test_pretrain_reads_the_arch_column_and_old_tables_fall_back(nb101_table, tmp_path, capsys):
    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.nb101 import NB101Space

    out = tmp_path / "pred"
    assert main(["--quiet", "pretrain", "--labels", str(nb101_table), "--space", "nb101",
                 "--epochs", "2", "--out", str(out), "--device", "cpu"]) == 0
    model = RankingPredictor.load(out / "predictor.pt", space=NB101Space())
    table = LabelTable.read_csv(nb101_table)
    assert np.isfinite(model.predict(table.architectures(NB101Space()))).all()
    # a table written before the column existed: NB201 keys parse back, NB101 hashes do not
    old = LabelTable(table.keys, table.columns, space="nb101")
    old.to_csv(tmp_path / "old101.csv")
    capsys.readouterr()
    assert main(["--quiet", "pretrain", "--labels", str(tmp_path / "old101.csv"), "--space",
                 "nb101", "--epochs", "2", "--out", str(tmp_path / "p2")]) == 2
    assert table.keys[0] in capsys.readouterr().err
    space = NB201Space()
    keys = ["|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|"
            "nor_conv_3x3~2|", "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|skip_connect~0|"
            "none~1|nor_conv_3x3~2|", "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|"
            "nor_conv_1x1~0|nor_conv_3x3~1|none~2|"]
    LabelTable([space.key(space.parse(k)) for k in keys], {"zc_x": [1.0, 2.0, 3.0]},
               space="nb201").to_csv(tmp_path / "old201.csv")
    assert main(["--quiet", "pretrain", "--labels", str(tmp_path / "old201.csv"),
                 "--epochs", "2", "--out", str(tmp_path / "p3"), "--device", "cpu"]) == 0


def test_greedy_queries_by_the_arch_column_on_nb101(nb101_table):
    from nasrank.search.baselines import greedy_by_proxy
    from nasrank.search.oracles import Evaluation
    from nasrank.spaces.nb101 import NB101Space

    space = NB101Space()

    class CountOracle:  # value = the number of vertices of the cell
        def __init__(self):
            self.space = space

        def evaluate(self, arch):
            return Evaluation(float(len(arch.ops)), 0.0, 0.0)

        def describe(self):
            return {"oracle": "count"}

    table = LabelTable.read_csv(nb101_table, space="nb101")
    res = greedy_by_proxy(space=space, oracle=CountOracle(), budget=2, seed=0, labels=table,
                          column="zc_params")
    top2 = [table.keys[i] for i in np.argsort(-table.column("zc_params"), kind="stable")[:2]]
    assert sorted(k for k, _, _ in res.queries) == sorted(top2)


# ----------------------------------------------------------------------------- --dataset
def _write_idx(path, array):
    import gzip
    import struct

    array = np.asarray(array, dtype=np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.tobytes())


def test_weak_labels_dataset_is_used(runs, tmp_path):
    """A Fashion-MNIST stand-in whose images are all one picture of class 7: every validation
    image gets the same prediction, so each weak accuracy is exactly 0 or 1."""
    weak, _, sn = runs
    picture = np.add.outer(np.arange(28), np.arange(28)) * 4  # a gradient, 0..216
    for split, n in (("train", 100), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", np.repeat(picture[None], n, 0))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.full(n, 7))
    before = (sn / "weak_labels.csv").read_bytes()
    assert main(["--quiet", "weak-labels", "--out", str(sn), "--num-archs", "6", "--dataset",
                 "fashion-mnist", "--data-root", str(tmp_path), "--seed", "3",
                 "--device", "cpu"]) == 0
    other = LabelTable.read_csv(sn / "weak_labels-fashion-mnist.csv", space="nb201")
    assert (sn / "weak_labels.csv").read_bytes() == before  # the digits table is untouched
    assert sorted(other.keys) == sorted(weak.keys)
    assert set(other.column("ws_acc")) <= {0.0, 1.0}
    assert not set(weak.column("ws_acc")) <= {0.0, 1.0}  # digits: a real mix of right/wrong
