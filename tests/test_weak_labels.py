"""Weak labels: each row equals an independent evaluation of the stand-alone subnet with
recalibrated BatchNorm; resumable, shardable; the supernet is left unchanged."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.spaces import LabelTable, NasrankError
from nasrank.spaces.base import sample_unique
from nasrank.supernet.base import UniformSampler
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.train import epoch_order
from nasrank.supernet.trainer import train_supernet
from nasrank.supernet.weak_labels import generate_weak_labels

BN_BATCHES, BATCH = 2, 32


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0, subset=256, channels=3)
    torch.manual_seed(0)
    net = NB201Supernet(10, C=4, N=1)
    train_supernet(net, data, UniformSampler(net), epochs=1, batch_size=32, lr=0.05,
                   progress=False)
    archs = sample_unique(net.space, 6, np.random.default_rng(0))
    return net, data, archs


def _reference(net, data, arch):
    """Independent reference: the stand-alone subnet, BN reset and re-estimated as a plain
    average over the same training batches, then evaluated example by example in eval mode."""
    sub = net.subnet(arch)
    for m in sub.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    order = epoch_order(len(data.train), 7, 0)
    x, y = data.train.tensors
    sub.train()
    with torch.no_grad():
        for b in range(BN_BATCHES):
            sub(x[order[b * BATCH:(b + 1) * BATCH]])
        sub.eval()
        xv, yv = data.valid.tensors
        logits = sub(xv)
    loss = nn.functional.cross_entropy(logits, yv).item()
    return (logits.argmax(1) == yv).double().mean().item(), -loss


def test_rows_equal_independent_subnet_evaluation(setup, tmp_path):
    net, data, archs = setup
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    table = generate_weak_labels(net, archs, data, tmp_path / "wl.csv", bn_batches=BN_BATCHES,
                                 batch_size=BATCH, seed=7, progress=False)
    assert table.space == "nb201" and table.names == ["ws_acc", "ws_neg_loss", "flops", "params"]
    assert len(table) == len(archs)
    for arch in archs:
        row = table.row(net.space.key(arch))
        acc, neg_loss = _reference(net, data, net.space.canonical(arch))
        assert row["ws_acc"] == pytest.approx(acc, abs=1e-12)
        assert row["ws_neg_loss"] == pytest.approx(neg_loss, rel=1e-5)
        sub = net.subnet(net.space.canonical(arch))  # a row describes its key's representative
        assert row["params"] * 1e6 == pytest.approx(sum(p.numel() for p in sub.parameters()))
    # weights, BN statistics, BN momenta and mode are restored
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.momentum == 0.1 for m in net.bn_modules()) and net.training


def test_resume_and_shards(setup, tmp_path):
    net, data, archs = setup
    kw = dict(bn_batches=1, batch_size=64, eval_batches=1, seed=1, progress=False)
    whole = generate_weak_labels(net, archs, data, tmp_path / "all.csv", **kw)
    # a "killed" job that wrote 2 rows; the rerun must only add the missing ones
    part = generate_weak_labels(net, archs[:2], data, tmp_path / "part.csv", **kw)
    first_rows = (tmp_path / "part.csv").read_text()
    resumed = generate_weak_labels(net, archs, data, tmp_path / "part.csv", **kw)
    assert (tmp_path / "part.csv").read_text().startswith(first_rows)
    assert len(part) == 2 and sorted(resumed.keys) == sorted(whole.keys)
    for k in whole.keys:
        assert resumed.row(k) == whole.row(k)
    shards = [generate_weak_labels(net, archs, data, tmp_path / f"s{i}.csv", shard=(i, 2), **kw)
              for i in range(2)]
    assert sorted(shards[0].keys + shards[1].keys) == sorted(whole.keys)
    assert not set(shards[0].keys) & set(shards[1].keys)
    # duplicates (same canonical key) are evaluated once
    dup = generate_weak_labels(net, archs[:1] * 3, data, tmp_path / "dup.csv", **kw)
    assert len(dup) == 1
    assert LabelTable.read_csv(tmp_path / "all.csv", space="nb201").keys == whole.keys


def test_proxies_are_scored_on_a_fresh_copy(setup, tmp_path, monkeypatch):
    net, data, archs = setup
    calls = []

    def score(model, batch, proxies, device, seed):
        calls.append(model)
        x, y = batch
        n_params = float(sum(p.numel() for p in model.parameters()))
        return {"params_count": n_params, "batch": float(len(y))}

    fake = types.ModuleType("nasrank.supernet.proxies")
    fake.score = score
    monkeypatch.setitem(sys.modules, "nasrank.supernet.proxies", fake)
    table = generate_weak_labels(net, archs[:2], data, tmp_path / "zc.csv", bn_batches=1,
                                 batch_size=16, proxies=["params_count", "batch"],
                                 progress=False)
    assert table.names[-2:] == ["zc_params_count", "zc_batch"]
    assert np.allclose(table.column("zc_params_count"), table.column("params") * 1e6)
    assert table.column("zc_batch").tolist() == [16.0, 16.0]
    # a fresh initialisation, not the supernet's trained classifier
    assert not torch.equal(calls[0].classifier.weight, net.classifier.weight)


def test_bad_input(setup, tmp_path):
    net, data, archs = setup
    with pytest.raises(NasrankError, match="4-8-12"):
        generate_weak_labels(net, ["4-8-12"], data, tmp_path / "x.csv", progress=False)
    with pytest.raises(NasrankError, match="shard"):
        generate_weak_labels(net, archs, data, tmp_path / "x.csv", shard=(2, 2), progress=False)
    grey = load_dataset("digits", seed=0, subset=64)
    with pytest.raises(NasrankError, match="input channels"):
        generate_weak_labels(net, archs, grey, tmp_path / "x.csv", progress=False)
    # an existing table with other columns is refused, not overwritten
    (tmp_path / "other.csv").write_text("# nasrank label table; space=nb201\nkey,val_acc,note\n")
    with pytest.raises(NasrankError, match="columns"):
        generate_weak_labels(net, archs, data, tmp_path / "other.csv", progress=False)
    assert (tmp_path / "other.csv").read_text().endswith("key,val_acc,note\n")


@pytest.mark.parametrize("resident", [True, False])
def test_same_labels_as_the_per_batch_loop_before_the_speed_work(setup, tmp_path, monkeypatch, resident):
    """Issue 16: device-resident BN/eval batches give the labels of the loop they replaced
    (recalibrate_bn + train.evaluate per architecture, gathering every batch again)."""
    import nasrank.supernet.weak_labels as wl
    from nasrank.supernet.train import evaluate
    from nasrank.supernet.weak_labels import recalibrate_bn

    net, data, archs = setup
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    momenta = [m.momentum for m in net.bn_modules()]
    if not resident:
        monkeypatch.setattr(wl, "RESIDENT_DATA_BYTES", 0)
    for eval_batches in (None, 1):
        table = generate_weak_labels(net, archs, data, tmp_path / f"w{resident}{eval_batches}.csv",
                                     bn_batches=3, eval_batches=eval_batches, batch_size=BATCH,
                                     seed=5, progress=False)
        for arch in archs:
            arch = net.space.canonical(arch)
            recalibrate_bn(net, arch, data, batches=3, batch_size=BATCH, seed=5)
            net.eval()
            acc, loss = evaluate(lambda x, a=arch: net(x, a), data.valid, batch_size=BATCH,
                                 max_batches=eval_batches)
            row = table.row(net.space.key(arch))
            assert abs(row["ws_acc"] - acc) <= 1e-6 and abs(row["ws_neg_loss"] + loss) <= 1e-6
        net.load_state_dict(saved)  # the reference loop recalibrated the shared supernet's BN
        for m, mom in zip(net.bn_modules(), momenta):
            m.momentum = mom
        net.train()


def test_bad_bn_batches_is_refused_before_anything_is_written(setup, tmp_path):
    net, data, archs = setup
    with pytest.raises(NasrankError, match="bn_batches must be >= 1, got 0"):
        generate_weak_labels(net, archs, data, tmp_path / "none.csv", bn_batches=0, progress=False)
    assert not (tmp_path / "none.csv").exists()
