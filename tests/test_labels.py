"""Label tables and benchmark loaders: round trips, chunked resume, bad files named clearly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nasrank.spaces import LabelTable, LabelTableError, LabelWriter, SpaceMismatchError
from nasrank.spaces.benchmarks import canonical_subset, load_benchmark, load_nb201, load_nbsuite_zero
from nasrank.spaces.nb201 import NB201Space


def test_csv_round_trip_keeps_values_nan_and_notes(tmp_path):
    t = LabelTable(["a", "b"], {"x": [1.5, math.nan], "y": [1e300, -2.0]}, space="nb201",
                   notes=["", "x diverged"])
    t.to_csv(tmp_path / "t.csv")
    r = LabelTable.read_csv(tmp_path / "t.csv", space="nb201")
    assert r.keys == ["a", "b"] and r.space == "nb201" and r.notes == ["", "x diverged"]
    assert r.column("y")[0] == 1e300 and math.isnan(r.column("x")[1])


def test_writer_resumes_and_loses_at_most_a_chunk(tmp_path):
    path = tmp_path / "labels.csv"
    with LabelWriter(path, ["acc"], space="nb201", chunk_size=2) as w:
        for i in range(5):
            w.add(f"k{i}", {"acc": float(i)})
    # simulate a kill in the middle of writing a row
    with open(path, "a") as f:
        f.write("k5,0.")
    w2 = LabelWriter(path, ["acc"], space="nb201", chunk_size=2)
    assert w2.done == {f"k{i}" for i in range(5)}
    w2.add("k5", {"acc": 5.0})
    w2.add("k6", {"acc": float("inf")})
    t = w2.table()
    assert t.keys == [f"k{i}" for i in range(7)]
    assert list(t.column("acc")[:6]) == [0, 1, 2, 3, 4, 5]
    assert t.notes[6] == "non-finite: acc"
    with pytest.raises(LabelTableError, match="k6"):
        w2.add("k6", {"acc": 1.0})
    with pytest.raises(LabelTableError, match="columns"):
        LabelWriter(path, ["other"], space="nb201")
    with pytest.raises(SpaceMismatchError, match="'nb201'.*'nb101'"):
        LabelWriter(path, ["acc"], space="nb101")


def test_writer_rejects_missing_and_unknown_values(tmp_path):
    w = LabelWriter(tmp_path / "x.csv", ["a", "b"], space="s")
    with pytest.raises(LabelTableError, match=r"\['b'\]"):
        w.add("k", {"a": 1.0})
    with pytest.raises(LabelTableError, match=r"\['c'\]"):
        w.add("k", {"a": 1.0, "b": 2.0, "c": 3.0})


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("name,acc\nx,1\n", "'key'"),
    ("key,acc\n,1\n", "empty or NaN key"),
    ("key,acc\nnan,1\n", "NaN key"),
    ("key,acc\nk,abc\n", "'abc'"),
    ("key,acc\nk,1,2\n", "3 fields"),
])
def test_bad_label_files(tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(LabelTableError) as exc:
        LabelTable.read_csv(p)
    assert needle in str(exc.value)


def test_missing_required_column_and_file(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("key,acc\nk,1\n")
    with pytest.raises(LabelTableError, match="'flops'"):
        LabelTable.read_csv(p, required=["flops"])
    with pytest.raises(LabelTableError, match="does not exist"):
        LabelTable.read_csv(tmp_path / "nope.csv")
    with pytest.raises(LabelTableError, match="non-finite values, first at key 'k'"):
        LabelTable(["k"], {"acc": [math.nan]}).require_finite()
    with pytest.raises(LabelTableError, match="duplicate key 'k'"):
        LabelTable(["k", "k"], {"acc": [1, 2]})


def test_nb201_benchmark_published_facts(nb201_bench):
    t = nb201_bench.table
    assert len(t) == 15625
    assert t.column("cifar10_test").max() == pytest.approx(94.37, abs=0.005)
    assert t.column("cifar100_test").max() == pytest.approx(73.51, abs=0.005)
    best_valid = int(np.argmax(t.column("cifar10_valid")))
    assert t.column("cifar10_test")[best_valid] == pytest.approx(94.3, abs=0.02)
    assert len(canonical_subset(nb201_bench).table) == 9445
    a = nb201_bench.space.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    assert nb201_bench.value(a, "cifar10_test") == pytest.approx(93.66)


def test_nb201_loader_bad_files(tmp_path):
    with pytest.raises(LabelTableError, match="does not exist"):
        load_nb201(tmp_path / "missing.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(LabelTableError, match="empty"):
        load_nb201(tmp_path / "e.csv")
    (tmp_path / "m.csv").write_text("arch_str,cifar10_valid\n")
    with pytest.raises(LabelTableError, match="'cifar10_test'"):
        load_nb201(tmp_path / "m.csv")
    with pytest.raises(LabelTableError, match="no NB201 benchmark file"):
        load_nb201(tmp_path)
    with pytest.raises(Exception, match="'nb999'"):
        load_benchmark("nb999", tmp_path)


def test_nbsuite_zero_layout_with_naslib_keys(tmp_path):
    # NASLib op-index tuple over edges (0,1),(0,2),(0,3),(1,2),(1,3),(2,3), ops
    # [skip, none, conv3, conv1, pool]: (2, 3, 0, 1, 4, 0) means
    # 0->1 conv3, 0->2 conv1, 0->3 skip, 1->2 none, 1->3 pool, 2->3 skip.
    data = {"cifar10": {
        "(2, 3, 0, 1, 4, 0)": {"val_accuracy": 90.0, "synflow": {"score": 1e40, "time": 1.0},
                               "jacov": {"score": -70.0}},
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|": {"val_accuracy": 10.0,
                                                                   "synflow": {"score": 0.0}},
    }}
    p = tmp_path / "zc_nasbench201.json"
    p.write_text(json.dumps(data))
    t = load_nbsuite_zero(p)
    k = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|"
    assert t.keys[0] == NB201Space().key(NB201Space().parse(k)) == k
    assert t.row(k) == {"val_accuracy": 90.0, "zc_jacov": -70.0, "zc_synflow": 1e40}
    assert math.isnan(t.column("zc_jacov")[1])
    with pytest.raises(LabelTableError, match="'cifar100'"):
        load_nbsuite_zero(p, dataset="cifar100")


# ----------------------------------------------------------------------------- issue 17/19
from nasrank.errors import DiskFullError, UnsafePathError  # noqa: E402


def test_new_tables_are_plain_csv_with_a_json_sidecar(tmp_path):
    import csv

    t = LabelTable(["a", "b"], {"x": [1.0, 2.5]}, space="nb201")
    t.to_csv(tmp_path / "t.csv")
    with LabelWriter(tmp_path / "w.csv", ["x", "y"], space="cvpr2021") as w:
        w.add("k", {"x": 1.0, "y": float("nan")})
    for name, cols, space in (("t.csv", ["x"], "nb201"), ("w.csv", ["x", "y"], "cvpr2021")):
        with open(tmp_path / name, newline="") as f:   # what pandas.read_csv sees: a plain CSV
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["key", *cols, "note"]
        meta = json.loads((tmp_path / (name + ".meta.json")).read_text())
        assert meta["space"] == space and meta["columns"] == cols
    assert LabelTable.read_csv(tmp_path / "t.csv").space == "nb201"
    with pytest.raises(SpaceMismatchError, match="'cvpr2021'"):
        LabelTable.read_csv(tmp_path / "w.csv", space="nb201")


def test_old_tables_with_the_comment_line_still_read_and_resume(tmp_path):
    p = tmp_path / "old.csv"
    p.write_text("# nasrank label table; space=nb201\nkey,acc,note\nk0,1.0,\nk1,0.")
    with pytest.raises(SpaceMismatchError):
        LabelWriter(p, ["acc"], space="nb101")
    w = LabelWriter(p, ["acc"], space="nb201")
    assert w.done == {"k0"}
    w.add("k1", {"acc": 2.0})
    t = w.table()
    assert t.keys == ["k0", "k1"] and t.space == "nb201" and list(t.column("acc")) == [1.0, 2.0]


def test_writer_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "precious.csv"
    victim.write_text("key,acc,note\nk0,1.0,\nk1,2")       # looks torn, but is not ours to cut
    link = tmp_path / "weak_labels.csv"
    link.symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(UnsafePathError, match="symbolic link"):
        LabelWriter(link, ["acc"], space="nb201")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        LabelTable(["a"], {"acc": [1.0]}).to_csv(link)
    assert victim.read_bytes() == before


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 4,                                 # binary
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",                # binary with a newline
    b"name,score\nx,1\ny,2",                               # foreign CSV, unfinished last line
    b"key,acc,note\nk0,1.0,\nk1,abc,\nk2,3",               # ours, but a bad row in the middle
    b"key,acc\nk0,1.0\nk1,2",                              # no note column: not written by us
])
def test_repair_refuses_files_that_are_not_our_table_and_cuts_nothing(tmp_path, content):
    p = tmp_path / "weak_labels.csv"
    p.write_bytes(content)
    with pytest.raises(UnsafePathError, match="refusing to modify"):
        LabelWriter(p, ["acc"], space="nb201")
    assert p.read_bytes() == content


def test_binary_or_non_utf8_table_is_a_clear_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"key,acc\n\xff\xfe,1\n")
    with pytest.raises(LabelTableError, match="not a UTF-8 text file"):
        LabelTable.read_csv(p)
    p.write_bytes(b"key,acc\nk,1\x00\n")
    with pytest.raises(LabelTableError, match="NUL"):
        LabelTable.read_csv(p)


class _FullDisk:
    """A file object whose writes fail like a full disk."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, *_):
        raise OSError(28, "No space left on device")  # errno.ENOSPC

    def flush(self):
        pass


def test_disk_full_on_append_names_the_file_and_says_rerun_resumes(tmp_path, monkeypatch):
    import nasrank.spaces.labels as labels

    p = tmp_path / "weak_labels.csv"
    w = LabelWriter(p, ["acc"], space="nb201", chunk_size=1)
    w.add("k0", {"acc": 1.0})
    monkeypatch.setattr(labels, "open_append", lambda *a, **k: _FullDisk())
    with pytest.raises(DiskFullError, match=r"weak_labels\.csv.*resumes"):
        w.add("k1", {"acc": 2.0})
    monkeypatch.undo()
    assert LabelWriter(p, ["acc"], space="nb201").done == {"k0"}


def test_nb201_truncated_file_is_refused(tmp_path):
    from conftest import data_path

    lines = data_path("nb201", "nb201.csv").read_text().splitlines()[:4]
    p = tmp_path / "nb201.csv"
    last = lines[3]
    cut = last[:last.index(",", len(last) // 2)]        # killed copy: half the last row
    p.write_text("\n".join(lines[:3] + [cut]))
    with pytest.raises(LabelTableError, match=r"line 4: \d+ fields, expected 32"):
        load_nb201(p)
    p.write_text("\n".join(lines) + "\n")
    assert len(load_nb201(p).table) == 3
    p.write_bytes(b"arch_str,cifar10_valid,cifar10_test,cifar100_test\n\xff\xfe,1,2,3\n")
    with pytest.raises(LabelTableError, match="not UTF-8"):
        load_nb201(p)


def test_nb201_published_failure_sentinels_load_as_nan_with_a_note(nb201_bench):
    t = nb201_bench.table
    # HW-NAS-Bench writes -1 for the 4,699 cells whose Edge TPU latency it could not measure
    tpu = t.column("hw_edgetpu_latency")
    assert np.isnan(tpu).sum() == 4699 and (tpu[np.isfinite(tpu)] > 0).all()
    # NAS-Bench-Suite-Zero writes -1e8 for one cell in jacov, nwot, epe_nas and zen
    for c in ("zc_jacov", "zc_nwot", "zc_epe_nas", "zc_zen"):
        col = t.column(c)
        assert col[np.isfinite(col)].min() > -1e7
    jac = canonical_subset(nb201_bench).table
    i = int(np.flatnonzero(np.isnan(jac.column("zc_jacov")))[0])
    assert np.isnan(jac.column("zc_nwot")[i]) and np.isnan(jac.column("zc_zen")[i])
    assert "zc_jacov=-1e+08" in jac.notes[i] and "published failure sentinel" in jac.notes[i]
