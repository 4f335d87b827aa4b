"""Issue 19: ``nasrank convert`` builds the NB201 tables from the public files, each adapter tested
on small fixtures written in the official layout: the NATS-Bench and NAS-Bench-201 files with the
APIs' own classes (``ResultsCount``, ``ArchResults``, their pickle writers), the
NAS-Bench-Suite-Zero json and the HW-NAS-Bench pickle hand-built in their documented structure."""

from __future__ import annotations

import csv
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from nasrank.errors import ConfigError, LabelTableError
from nasrank.search.cli import main
from nasrank.spaces.benchmarks import load_nb201
from nasrank.spaces.convert import (HW_METRICS, build_label_table, build_nb201_benchmark,
                                    read_hw_nas_bench)
from nasrank.spaces.labels import LabelTable

SHARED_NB201 = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv"

#: official NB201 indices 0 and 1 (the first rows of NAS-Bench-201), and a cell with none edges
ARCHS = [
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
]
SEEDS = (777, 888)
#: the evaluation sets each NB201 training records (NAS-Bench-201 API docs, ArchResults.get_metrics)
SETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",),
        "cifar100": ("x-valid", "x-test", "ori-test")}
#: final-epoch accuracy, mean over the two seeds (seed 777 writes mean - 1, seed 888 mean + 1)
MEANS = {
    ("cifar10-valid", "200", "x-valid"): [82.5, 90.25, 61.0],
    ("cifar10-valid", "200", "ori-test"): [85.0, 93.0, 64.0],
    ("cifar10", "200", "ori-test"): [85.75, 93.5, 65.25],
    ("cifar100", "200", "x-valid"): [52.5, 70.0, 30.0],
    ("cifar100", "200", "x-test"): [53.0, 70.25, 31.5],
    ("cifar100", "200", "ori-test"): [52.75, 70.125, 30.75],
    ("cifar10-valid", "12", "x-valid"): [63.5, 82.75, 50.0],
    ("cifar10-valid", "12", "ori-test"): [64.0, 83.0, 51.0],
    ("cifar10", "12", "ori-test"): [69.5, 88.25, 55.5],
    ("cifar100", "12", "x-valid"): [31.75, 57.75, None],  # cell 2: no CIFAR-100 12-epoch record
    ("cifar100", "12", "x-test"): [31.25, 58.25, None],
    ("cifar100", "12", "ori-test"): [31.5, 58.0, None],
}
#: what each column of nb201.csv must hold, by the NB201 definitions (README of the shared data)
EXPECTED = {
    "cifar10_test": [85.75, 93.5, 65.25],
    "cifar100_test": [53.0, 70.25, 31.5],
    "cifar10_valid": [82.5, 90.25, 61.0],
    "cifar10_valid_12ep": [63.5, 82.75, 50.0],
    "cifar10_test_12ep": [69.5, 88.25, 55.5],
    "cifar100_valid_12ep": [31.75, 57.75, math.nan],
    "cifar100_test_12ep": [31.25, 58.25, math.nan],
}


def _arch_results(mod, index: int, hp: str):
    """One cell's ArchResults under schedule ``hp``, built with the API's own classes."""
    epochs = int(hp)
    ar = mod.ArchResults(index, ARCHS[index])
    for dataset, sets in SETS.items():
        if MEANS[dataset, hp, sets[0]][index] is None:
            continue
        for s, seed in enumerate(SEEDS):
            rc = mod.ResultsCount(dataset, None, {e: 50.0 for e in range(epochs)},
                                  {e: 1.5 for e in range(epochs)}, 0.1, 12.0,
                                  {"name": "infer.tiny", "C": 16, "N": 5, "arch_str": ARCHS[index],
                                   "class_num": 10}, seed, epochs, None)
            accs, losses, times = {}, {}, {}
            for name in sets:
                final = MEANS[dataset, hp, name][index] + (-1.0 if s == 0 else 1.0)
                for e in range(epochs):  # earlier epochs lower: the final one must be read
                    accs[f"{name}@{e}"] = final if e == epochs - 1 else final - 10.0
                    losses[f"{name}@{e}"], times[f"{name}@{e}"] = 1.0, 0.01
            rc.update_eval(accs, losses, times)
            ar.update(dataset, seed, rc)
    return ar


def write_nats_file(tmp_path: Path) -> Path:
    """``NATS-tss-v1_0-3ffb9.pickle.pbz2``: {meta_archs, arch2infos: {i: {hp: ArchResults
    state}}, evaluated_indexes}, written with nats_bench's pickle_save."""
    nb = pytest.importorskip("nats_bench")
    from nats_bench import api_utils

    data = {"meta_archs": list(ARCHS), "evaluated_indexes": list(range(len(ARCHS))),
            "arch2infos": {i: {hp: _arch_results(api_utils, i, hp).state_dict()
                               for hp in ("12", "200")} for i in range(len(ARCHS))}}
    nb.pickle_save(data, tmp_path / "NATS-tss-v1_0-3ffb9.pickle")
    return tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"


def write_nats_folder(tmp_path: Path) -> Path:
    """``NATS-tss-v1_0-3ffb9-simple/``: meta.pickle.pbz2 plus one ``{index:06d}.pickle.pbz2``
    per cell (the layout the API reads in fast mode)."""
    nb = pytest.importorskip("nats_bench")
    from nats_bench import api_utils

    folder = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    folder.mkdir()
    nb.pickle_save({"meta_archs": list(ARCHS)}, folder / "meta.pickle")
    for i in range(len(ARCHS)):
        nb.pickle_save({hp: _arch_results(api_utils, i, hp).state_dict() for hp in ("12", "200")},
                       folder / f"{i:06d}.pickle")
    return folder


def write_nb201_pth(tmp_path: Path) -> Path:
    """``NAS-Bench-201-v1_1-096897.pth``: {meta_archs, arch2infos: {i: {"less": 12-epoch,
    "full": 200-epoch ArchResults state}}, evaluated_indexes}, written with torch.save."""
    pytest.importorskip("nas_201_api")
    import torch
    from nas_201_api import api_utils

    data = {"meta_archs": list(ARCHS), "evaluated_indexes": list(range(len(ARCHS))),
            "arch2infos": {i: {"less": _arch_results(api_utils, i, "12").state_dict(),
                               "full": _arch_results(api_utils, i, "200").state_dict()}
                           for i in range(len(ARCHS))}}
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(data, path)
    return path


# NASLib's key of cell 0: edges (0,1),(0,2),(0,3),(1,2),(1,3),(2,3) with ops indexed
# [skip_connect, none, nor_conv_3x3, nor_conv_1x1, avg_pool_3x3] -> pool, conv1, conv1, skip x3
NASLIB_KEY_0 = "(4, 3, 3, 0, 0, 0)"
ZC = {  # proxy -> [cell 0, cell 2] (cell 1 is not in the json)
    "jacov": [-65.5, -1e8], "nwot": [780.25, 700.5], "synflow": [83.0, 40.0],
    "epe_nas": [1679.0, -1e8], "zen": [30.0, -1e8],
}


def write_nbsuite_zero(tmp_path: Path) -> Path:
    """``zc_nasbench201.json``: {dataset: {arch key: {"val_accuracy": x, proxy: {"score": s,
    "time": t}}}}; NASLib op-index keys and official strings both occur."""
    entry = lambda j: {"val_accuracy": [82.5, 61.0][j],  # noqa: E731
                       **{p: {"score": v[j], "time": 0.5} for p, v in ZC.items()}}
    data = {"cifar10": {NASLIB_KEY_0: entry(0), ARCHS[2]: entry(1)},
            "cifar100": {NASLIB_KEY_0: {"val_accuracy": 50.0, "jacov": {"score": -60.0}}}}
    path = tmp_path / "zc_nasbench201.json"
    path.write_text(json.dumps(data))
    return path


#: HW-NAS-Bench's README example: cell 0 on CIFAR-10 (latency ms, energy mJ); the rest made up
HW_CELL0 = {"edgegpu_latency": 5.807418537139893, "edgegpu_energy": 24.226614330768584,
            "raspi4_latency": 10.481976820010459, "edgetpu_latency": 0.9571811309997429,
            "pixel3_latency": 3.6058499999999998, "eyeriss_latency": 3.645620000000001,
            "eyeriss_energy": 0.6872827644999999, "fpga_latency": 2.57296, "fpga_energy": 18.01072}


def write_hw_nas_bench(tmp_path: Path, *, config_order=(0, 1, 2), with_config=True) -> Path:
    """``HW-NAS-Bench-v1_0.pickle``: {"nasbench201": {dataset: {metric: [value per index],
    "config": [{"arch_str": ...}, ...]}}, "fbnet": {...}}; -1 = Edge TPU latency not measured."""
    metrics = {m: [HW_CELL0.get(m, 6.2893), 7.5 + k, 2.0 + k] for k, m in enumerate(HW_METRICS)}
    metrics["edgetpu_latency"][2] = -1.0
    metrics["fpga_energy"] = np.asarray(metrics["fpga_energy"])  # arrays occur as well as lists
    part = dict(metrics)
    if with_config:
        part["config"] = [{"name": "infer.tiny", "C": 16, "N": 5, "arch_str": ARCHS[i],
                           "num_classes": 10} for i in config_order]
    path = tmp_path / "HW-NAS-Bench-v1_0.pickle"
    with open(path, "wb") as f:
        pickle.dump({"nasbench201": {"cifar10": part}, "fbnet": {}}, f)
    return path


def _check_accuracies(bench) -> None:
    assert bench.table.keys == ARCHS  # official index order
    for col, values in EXPECTED.items():
        np.testing.assert_allclose(bench.table.column(col), values, rtol=1e-12)


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_nats_bench_file_and_folder_give_the_published_accuracies(tmp_path, layout):
    src = write_nats_file(tmp_path) if layout == "file" else write_nats_folder(tmp_path)
    bench = build_nb201_benchmark(tmp_path / "nb201.csv", nats_bench=src)
    _check_accuracies(bench)
    with open(tmp_path / "nb201.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["index", "arch_str", *EXPECTED]  # the layout of the shared nb201.csv


def test_nas_bench_201_pth_gives_the_same_table(tmp_path):
    bench = build_nb201_benchmark(tmp_path / "nb201.csv", nas_bench_201=write_nb201_pth(tmp_path))
    _check_accuracies(bench)


def _full_merge(tmp_path):
    out = tmp_path / "nb201.csv"
    bench = build_nb201_benchmark(out, nats_bench=write_nats_file(tmp_path),
                                  nbsuite_zero=write_nbsuite_zero(tmp_path),
                                  hw_nas_bench=write_hw_nas_bench(tmp_path))
    return out, bench.table


@pytest.mark.skipif(not SHARED_NB201.exists(), reason="shared NB201 table not available")
def test_full_merge_matches_the_shared_table(tmp_path):
    out, t = _full_merge(tmp_path)
    # the column order of the shared nb201.csv (accuracies, zc_* sorted, hw_* in API order)
    with open(SHARED_NB201, newline="") as f:
        shared_header = next(csv.reader(f))
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    zc = [f"zc_{p}" for p in sorted(ZC)]
    assert header == [h for h in shared_header if not h.startswith("zc_") or h in zc]
    # cell 0's hardware costs (HW-NAS-Bench README) agree with the shared table's row 0
    with open(SHARED_NB201, newline="") as f:
        row0 = next(csv.DictReader(f))
    assert row0["arch_str"] == ARCHS[0]
    for m in HW_CELL0:
        assert t.column(f"hw_{m}")[0] == pytest.approx(float(row0[f"hw_{m}"]), rel=1e-5), m


def test_full_merge_joins_by_cell_and_clears_sentinels(tmp_path):
    out, t = _full_merge(tmp_path)
    # Suite-Zero values join the very cell they were measured on; cell 1 is not in the json
    assert t.column("zc_synflow")[0] == 83.0 and math.isnan(t.column("zc_synflow")[1])
    assert t.column("zc_nwot")[2] == 700.5
    # published sentinels: NaN with a note, by the one loader
    for c in ("zc_jacov", "zc_epe_nas", "zc_zen", "hw_edgetpu_latency"):
        assert math.isnan(t.column(c)[2]), c
    assert "zc_jacov=-1e+08" in t.notes[2] and "hw_edgetpu_latency=-1" in t.notes[2]
    assert t.notes[0] == t.notes[1] == ""
    # the raw file keeps the published values (the loader, not the writer, clears them)
    assert "-100000000.0" in out.read_text()


def test_label_table_without_an_accuracy_source(tmp_path):
    out = tmp_path / "zc_hw.csv"
    table = build_label_table(out, nbsuite_zero=write_nbsuite_zero(tmp_path),
                              hw_nas_bench=write_hw_nas_bench(tmp_path))
    again = LabelTable.read_csv(out, space="nb201")
    assert again.keys == table.keys == [ARCHS[0], ARCHS[2], ARCHS[1]]
    assert again.arch_texts == again.keys
    assert again.column("val_accuracy")[0] == 82.5 and again.column("zc_jacov")[0] == -65.5
    assert again.column("hw_edgegpu_latency")[0] == HW_CELL0["edgegpu_latency"]
    assert math.isnan(again.column("zc_jacov")[1]) and math.isnan(again.column("zc_nwot")[2])
    assert "zc_jacov=-1e+08" in again.notes[1] and "hw_edgetpu_latency=-1" in again.notes[1]
    assert "not in NAS-Bench-Suite-Zero" in again.notes[2]
    # one source alone; another dataset of the json
    only = build_label_table(tmp_path / "c100.csv", nbsuite_zero=tmp_path / "zc_nasbench201.json",
                             dataset="cifar100")
    assert only.keys == [ARCHS[0]] and only.row(ARCHS[0]) == {"val_accuracy": 50.0,
                                                               "zc_jacov": -60.0}


def test_hw_nas_bench_reader_and_its_errors(tmp_path):
    archs, cols = read_hw_nas_bench(write_hw_nas_bench(tmp_path))
    assert archs == ARCHS and list(cols) == [f"hw_{m}" for m in HW_METRICS]
    assert cols["hw_edgetpu_latency"][2] == -1.0  # raw: the loaders clear it
    with pytest.raises(LabelTableError, match="no dataset 'cifar100'"):
        read_hw_nas_bench(tmp_path / "HW-NAS-Bench-v1_0.pickle", dataset="cifar100")
    bad = tmp_path / "bad.pickle"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(LabelTableError, match="bad.pickle.*not an HW-NAS-Bench pickle"):
        read_hw_nas_bench(bad)
    with open(bad, "wb") as f:
        pickle.dump({"fbnet": {}}, f)
    with pytest.raises(LabelTableError, match="no 'nasbench201' part"):
        read_hw_nas_bench(bad)
    # a file listing the cells in another order is refused, naming the index
    nats = write_nats_file(tmp_path)
    (tmp_path / "swapped").mkdir()
    swapped = write_hw_nas_bench(tmp_path / "swapped", config_order=(1, 0, 2))
    with pytest.raises(LabelTableError, match="index 0 is .*avg_pool_3x3~1"):
        build_nb201_benchmark(tmp_path / "x.csv", nats_bench=nats, hw_nas_bench=swapped)
    no_config = write_hw_nas_bench(tmp_path, with_config=False)
    with pytest.raises(LabelTableError, match="no 'config' list"):
        build_label_table(tmp_path / "y.csv", hw_nas_bench=no_config)
    # without its config, an accuracy source aligns it by index
    bench = build_nb201_benchmark(tmp_path / "z.csv", nats_bench=nats, hw_nas_bench=no_config)
    assert bench.table.column("hw_fpga_latency")[0] == HW_CELL0["fpga_latency"]


def test_missing_api_package_names_the_pip_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    (tmp_path / "f.pbz2").write_bytes(b"x")
    with pytest.raises(ConfigError, match="pip install nats-bench"):
        build_nb201_benchmark(tmp_path / "o.csv", nats_bench=tmp_path / "f.pbz2")
    with pytest.raises(ConfigError, match="pip install nas-bench-201"):
        build_nb201_benchmark(tmp_path / "o.csv", nas_bench_201=tmp_path / "f.pbz2")
    assert main(["convert", "--nats-bench", str(tmp_path / "f.pbz2"), "--out",
                 str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install nats-bench" in err[0]
    assert not (tmp_path / "o.csv").exists()


def test_bad_sources_get_one_clear_error(tmp_path):
    nats = write_nats_file(tmp_path)
    junk = tmp_path / "junk.pbz2"
    junk.write_bytes(b"not bz2")
    with pytest.raises(LabelTableError, match="junk.pbz2.*not a NATS-Bench"):
        build_nb201_benchmark(tmp_path / "o.csv", nats_bench=junk)
    with pytest.raises(LabelTableError, match="does not exist"):
        build_nb201_benchmark(tmp_path / "o.csv", nats_bench=tmp_path / "missing")
    with pytest.raises(ConfigError, match="exactly one accuracy source"):
        build_nb201_benchmark(tmp_path / "o.csv", nats_bench=nats, nas_bench_201=nats)
    # a Suite-Zero cell the accuracy source does not have
    zc = tmp_path / "zc_nasbench201.json"
    zc.write_text(json.dumps({"cifar10": {"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|":
                                          {"val_accuracy": 10.0, "jacov": {"score": 1.0}}}}))
    with pytest.raises(LabelTableError, match="none~2.*not in the accuracy source"):
        build_nb201_benchmark(tmp_path / "o.csv", nats_bench=nats, nbsuite_zero=zc)
    zc.write_text("{not json")
    with pytest.raises(LabelTableError, match="not valid JSON"):
        build_label_table(tmp_path / "o.csv", nbsuite_zero=zc)
    zc.write_text(json.dumps({"cifar10": {NASLIB_KEY_0: {"jacov": {"score": "high"}}}}))
    with pytest.raises(LabelTableError, match="zc_jacov of .*'high'"):
        build_label_table(tmp_path / "o.csv", nbsuite_zero=zc)
    assert not (tmp_path / "o.csv").exists()


def test_cli_convert_then_read_it_as_the_nb201_benchmark(tmp_path, capsys):
    out = tmp_path / "nb201.csv"
    assert main(["convert", "--nats-bench", str(write_nats_folder(tmp_path)),
                 "--nbsuite-zero", str(write_nbsuite_zero(tmp_path)),
                 "--hw-nas-bench", str(write_hw_nas_bench(tmp_path)), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "NB201 benchmark" in said and "3 cells" in said and "1 of 3 cells carry" in said
    assert main(["benchmark", "--name", "nb201", "--data", str(out), "--top", "1"]) == 0
    assert ARCHS[1] in capsys.readouterr().out  # the best cell of the fixture
    bench = load_nb201(out)
    _check_accuracies(bench)
    # no API: a label table; nothing given, or both APIs: one error line
    assert main(["--quiet", "convert", "--nbsuite-zero", str(tmp_path / "zc_nasbench201.json"),
                 "--out", str(tmp_path / "zc.csv")]) == 0
    assert LabelTable.read_csv(tmp_path / "zc.csv").keys == [ARCHS[0], ARCHS[2]]
    capsys.readouterr()
    assert main(["convert", "--out", str(tmp_path / "n.csv")]) == 2
    assert "nothing to convert" in capsys.readouterr().err
    assert main(["convert", "--nats-bench", "a", "--nas-bench-201", "b", "--out",
                 str(tmp_path / "n.csv")]) == 2
    assert "not both" in capsys.readouterr().err


def test_nbsuite_zero_loader_clears_sentinels_and_keeps_each_measured_cell(tmp_path, capsys):
    from nasrank.spaces.benchmarks import load_nbsuite_zero
    from nasrank.spaces.nb201 import NB201Space

    t = load_nbsuite_zero(write_nbsuite_zero(tmp_path))
    assert t.keys == t.arch_texts == [ARCHS[0], ARCHS[2]]
    assert t.names == ["val_accuracy", *(f"zc_{p}" for p in sorted(ZC))]
    assert math.isnan(t.column("zc_jacov")[1]) and t.column("zc_nwot")[1] == 700.5
    assert t.notes[1] == "published failure sentinel: zc_epe_nas=-1e+08, zc_jacov=-1e+08, zc_zen=-1e+08"
    # a cell with a dead op (conv on 0->1, whose node feeds only none edges) and the canonical
    # cell of the same function were measured separately: both rows are kept, as measured
    dead = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    canon = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    sp = NB201Space()
    assert sp.key(sp.parse(dead)) == sp.key(sp.parse(canon)) == canon
    p = tmp_path / "two" / "zc_nasbench201.json"
    p.parent.mkdir()
    p.write_text(json.dumps({"cifar10": {dead: {"val_accuracy": 10.0, "nwot": {"score": 1.0}},
                                         canon: {"val_accuracy": 10.5, "nwot": {"score": 2.0}}}}))
    two = load_nbsuite_zero(p.parent)  # a folder holding the json
    assert two.keys == [dead, canon] and list(two.column("zc_nwot")) == [1.0, 2.0]
    # reachable from the CLI as a benchmark
    assert main(["benchmark", "--name", "nbsuite-zero", "--data", str(p), "--top", "1"]) == 0
    assert canon in capsys.readouterr().out
