"""Issue 19: one name per zero-cost proxy (the published benchmark column's), aliases on input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.errors import LabelTableError
from nasrank.proxy_names import PROXY_ALIASES, canonical_column, canonical_proxy
from nasrank.search.cli import main
from nasrank.spaces.labels import LabelTable, LabelWriter
from nasrank.spaces.nb201 import NB201Space
from nasrank.supernet.proxies import ProxyError, available_proxies, score
from nasrank.supernet.scoring import score_space

#: the 13 proxy columns of NAS-Bench-Suite-Zero (and of ../shared/data/nb201/nb201.csv)
PUBLISHED = ["epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot",
             "params", "plain", "snip", "synflow", "zen"]


def test_published_names_are_the_registered_names():
    assert set(PUBLISHED) <= set(available_proxies())
    assert "jacob_cov" not in available_proxies()
    assert all(canonical_proxy(a) in PUBLISHED for a in PROXY_ALIASES)


def test_aliases_map_to_one_name():
    assert canonical_proxy("jacob_cov") == "jacov" and canonical_proxy("naswot") == "nwot"
    assert canonical_proxy("synflow") == "synflow"
    assert canonical_column("zc_jacob_cov") == "zc_jacov"
    assert canonical_column("jacob_cov") == "jacob_cov"  # not a proxy column
    assert canonical_column("ws_acc") == "ws_acc"


def test_the_shared_benchmark_uses_the_canonical_names(nb201_bench):
    zc = {n[3:] for n in nb201_bench.table.names if n.startswith("zc_")}
    assert zc == set(PUBLISHED)


def _net_and_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    return net, (torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g))


def test_python_api_accepts_an_alias_and_answers_with_the_canonical_name():
    net, batch = _net_and_batch()
    by_alias = score(net, batch, ["jacob_cov", "naswot"])
    by_name = score(net, batch, ["jacov", "nwot"])
    assert by_alias == by_name and set(by_alias) == {"jacov", "nwot"}
    # one proxy named twice is scored once
    assert score(net, batch, ["jacov", "jacob_cov"]) == {"jacov": by_name["jacov"]}
    with pytest.raises(ProxyError, match="'jacobcov'"):
        score(net, batch, ["jacobcov"])


def test_score_space_writes_the_canonical_column(tmp_path):
    space = NB201Space()
    arch = space.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"
                       "+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
    table = score_space(space, [arch], batch, ["jacob_cov", "params"], tmp_path / "zc.csv",
                        build_kwargs={"C": 4, "N": 1}, progress=False)
    assert table.names == ["zc_jacov", "zc_params"]
    header = (tmp_path / "zc.csv").read_text().splitlines()[0]
    assert header == "key,arch,zc_jacov,zc_params,note"
    with pytest.raises(ProxyError, match="'jacobcov'"):
        score_space(space, [arch], batch, ["jacobcov"], tmp_path / "x.csv", progress=False)


def test_old_label_table_with_the_alias_reads_and_resumes(tmp_path):
    # the first on-disk format (comment line) with the column nasrank wrote before issue 19
    p = tmp_path / "old.csv"
    p.write_text("# nasrank label table; space=nb201\n"
                 "key,zc_jacob_cov,zc_synflow,note\n"
                 "k1,-70.5,12.0,\n")
    t = LabelTable.read_csv(p, space="nb201", required=["zc_jacob_cov"])
    assert t.names == ["zc_jacov", "zc_synflow"]
    assert t.column("zc_jacob_cov")[0] == t.column("zc_jacov")[0] == -70.5
    # a job writing the canonical column resumes the old file, appending under its header
    with LabelWriter(p, ["zc_jacov", "zc_synflow"], space="nb201") as w:
        assert w.done == {"k1"}
        w.add("k2", {"zc_jacob_cov": -60.25, "zc_synflow": 3.0})
    again = LabelTable.read_csv(p, space="nb201")
    assert again.keys == ["k1", "k2"] and list(again.column("zc_jacov")) == [-70.5, -60.25]
    with pytest.raises(LabelTableError, match="'zc_jacov' is given twice"):
        LabelTable(["a"], {"zc_jacov": [1.0], "zc_jacob_cov": [2.0]})


def test_run_settings_recorded_with_the_alias_are_the_same_run(tmp_path):
    from nasrank.search.pipeline import prepare_out

    (tmp_path / "config.json").write_text(json.dumps({"proxies": ["synflow", "jacob_cov"],
                                                      "seed": 0}))
    prepare_out(tmp_path, {"proxies": ["synflow", "jacov"], "seed": 0})  # no refusal
    with pytest.raises(Exception, match="proxies"):
        prepare_out(tmp_path, {"proxies": ["synflow", "nwot"], "seed": 0})


def test_cli_proxies_flag_takes_an_alias(tmp_path, capsys):
    out = tmp_path / "zc"
    assert main(["--quiet", "proxies", "--out", str(out), "--num-archs", "2", "--image-size", "8",
                 "--supernet.channels", "4", "--proxies", "jacob_cov,params", "--seed", "0",
                 "--device", "cpu"]) == 0
    t = LabelTable.read_csv(out / "proxies.csv", space="nb201")
    assert t.names == ["zc_jacov", "zc_params"] and len(t) == 2
    assert main(["--quiet", "proxies", "--out", str(tmp_path / "bad"), "--num-archs", "2",
                 "--proxies", "jacobcov", "--device", "cpu"]) == 2
    assert "'jacobcov'" in capsys.readouterr().err


def test_greedy_default_column_is_the_published_one():
    from nasrank.search.registry import SEARCH_METHODS

    assert SEARCH_METHODS.make("greedy").proxy == "zc_jacov"
    labels = LabelTable(["a", "b"], {"zc_jacov": [1.0, 2.0]})
    assert list(labels.column("zc_jacob_cov")) == [1.0, 2.0]
    assert np.array_equal(labels.column("zc_jacov"), labels.column("zc_jacob_cov"))
