"""score_space: label rows, dedup by canonical key, resume, shards, non-finite notes."""

from __future__ import annotations

import math

import pytest
import torch

from nasrank.spaces.labels import LabelTable
from nasrank.spaces.nb201 import NB201Space
from nasrank.supernet.proxies import ProxyError
from nasrank.supernet.scoring import parse_shard, read_shards, score_space

SMALL = {"C": 4, "N": 1}
PROXIES = ["synflow", "nwot", "params", "flops"]
ARCHS = [
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|",
    # same function as the first cell but for an op on an edge no path uses: same key
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def run(path, data, **kw):
    space = NB201Space()
    return score_space(space, [space.parse(a) for a in ARCHS], data, PROXIES, path,
                       build_kwargs=SMALL, progress=False, chunk_size=2, **kw)


def test_rows_unique_keys_exact_cost_and_notes(tmp_path, data):
    space = NB201Space()
    table = run(tmp_path / "zc.csv", data)
    assert table.keys == list(dict.fromkeys(space.key(space.parse(a)) for a in ARCHS))
    assert table.names == [f"zc_{p}" for p in PROXIES]
    for key in table.keys:
        flops, params = space.cost(space.parse(key), (3, 8, 8), C=4, N=1)
        row = table.row(key)
        assert row["zc_params"] == pytest.approx(params) and row["zc_flops"] == pytest.approx(flops)
    empty = table.index(space.key(space.parse(ARCHS[-1])))
    # the all-none cell blocks every path: synflow is 0 (log -inf) and all ReLU codes agree
    assert table.column("zc_synflow")[empty] == -math.inf
    assert "zc_synflow" in table.notes[empty] and "zc_nwot" in table.notes[empty]
    assert all(math.isfinite(v) for v in table.column("zc_synflow")[:empty])
    again = LabelTable.read_csv(tmp_path / "zc.csv", space="nb201")
    assert again.notes == table.notes


def test_resume_after_interruption_gives_the_same_table(tmp_path, data, monkeypatch):
    full = run(tmp_path / "full.csv", data)
    calls = {"n": 0}
    real_build = NB201Space.build

    def flaky_build(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_build(self, *a, **k)

    monkeypatch.setattr(NB201Space, "build", flaky_build)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part.csv", data)
    assert len(LabelTable.read_csv(tmp_path / "part.csv")) == 3  # flushed on exit
    monkeypatch.setattr(NB201Space, "build", real_build)
    resumed = run(tmp_path / "part.csv", data)
    assert resumed.keys == full.keys
    for n in full.names:
        assert list(resumed.column(n)) == list(full.column(n))


def test_shards_partition_the_keys(tmp_path, data):
    full = run(tmp_path / "full.csv", data)
    parts = [run(tmp_path / f"s{i}.csv", data, shard=f"{i}/2") for i in range(2)]
    assert not set(parts[0].keys) & set(parts[1].keys)
    merged = read_shards([tmp_path / "s0.csv", tmp_path / "s1.csv"], space="nb201")
    assert sorted(merged.keys) == sorted(full.keys)
    for key in full.keys:
        assert merged.row(key) == full.row(key)


def test_data_free_and_bad_arguments(tmp_path):
    space = NB201Space()
    table = score_space(space, [space.parse(ARCHS[0])], None, ["synflow", "params"],
                        tmp_path / "df.csv", build_kwargs=SMALL, input_shape=(3, 8, 8),
                        progress=False)
    assert math.isfinite(table.column("zc_synflow")[0])
    for bad in ("1/1", "2", "a/b", "-1/3"):
        with pytest.raises(ProxyError, match="shard"):
            parse_shard(bad)
    with pytest.raises(ProxyError, match="unknown proxies"):
        score_space(space, [], None, ["synflo"], tmp_path / "x.csv")
