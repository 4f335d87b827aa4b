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

PROXIES = "synflow,nwot,jacob_cov,params"
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
            LabelTable.read_csv(zc / "proxies.csv", space="nb201"))


def test_same_keys_and_identical_zc_values(runs):
    weak, zc = runs
    assert sorted(weak.keys) == sorted(zc.keys) and len(zc) == 6
    names = [f"zc_{p}" for p in PROXIES.split(",")]
    assert [n for n in weak.names if n.startswith("zc_")] == names == zc.names
    for n in names:
        a, b = weak.select(zc.keys).column(n), zc.column(n)
        assert np.isfinite(b).any()
        assert a.tobytes() == b.tobytes(), (n, a, b)  # bit for bit, NaN/inf included


def test_rows_describe_the_canonical_representative(runs):
    weak, zc = runs
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
