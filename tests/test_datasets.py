"""Datasets: published sizes/class counts, hand-made IDX and CIFAR files, splits, transforms."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import data_path

from nasrank.spaces import NasrankError
from nasrank.supernet.datasets import _read_fashion_mnist, load_dataset


def test_digits_sizes_and_deterministic_stratified_split():
    d = load_dataset("digits", seed=3)
    n = len(d.train) + len(d.valid) + len(d.test)
    assert n == 1797  # scikit-learn's digits: 1,797 images
    assert len(d.test) == 360  # 20 % held out (ceil)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert set(d.valid.tensors[1].tolist()) == set(range(10))  # stratified: every class present
    again = load_dataset("digits", seed=3)
    assert torch.equal(d.train.tensors[0], again.train.tensors[0])
    other = load_dataset("digits", seed=4)
    assert not torch.equal(d.train.tensors[1], other.train.tensors[1])
    # normalised with the training split's statistics
    assert abs(float(d.train.tensors[0].mean())) < 1e-5
    assert float(d.train.tensors[0].std()) == pytest.approx(1.0, abs=1e-3)


def test_subset_image_size_and_channels():
    d = load_dataset("digits", seed=0, subset=200, image_size=16, channels=3)
    assert len(d.train) == 200 and d.input_shape == (3, 16, 16)
    x = d.train.tensors[0]
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey repeated
    with pytest.raises(NasrankError, match="subset"):
        load_dataset("digits", subset=10**6)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_on_hand_made_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(40, 28, 28))
    labels = np.arange(40) % 10
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    x, y, xt, yt = _read_fashion_mnist(tmp_path)
    assert x.shape == (40, 1, 28, 28)
    assert x[5, 0, 3, 7] == pytest.approx(imgs[5, 3, 7] / 255.0)
    assert y.tolist() == labels.tolist()
    d = load_dataset("fashion-mnist", tmp_path, valid_fraction=0.25, image_size=14)
    assert (len(d.train), len(d.valid), len(d.test)) == (30, 10, 40)
    assert d.input_shape == (1, 14, 14)
    # a missing file and a wrong folder are named
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(NasrankError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(NasrankError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "nope")
    with pytest.raises(NasrankError, match="root"):
        load_dataset("fashion-mnist")


def test_real_fashion_mnist_published_counts():
    root = data_path("fashion-mnist")
    x, y, xt, yt = _read_fashion_mnist(root)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    # Zalando's published facts: 6,000 train and 1,000 test images per class
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10
    assert y[0] == 9  # the first training image is an ankle boot (class 9)


def test_cifar_pickle_format(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(np.arange(20) % 10)}, f)
    d = load_dataset("cifar10", tmp_path, valid_fraction=0.2)
    assert (len(d.train), len(d.valid), len(d.test)) == (80, 20, 20)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    with pytest.raises(NasrankError, match="'train'"):
        load_dataset("cifar100", folder)


def test_bad_arguments():
    with pytest.raises(NasrankError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(NasrankError, match="valid_fraction"):
        load_dataset("digits", valid_fraction=1.5)
    with pytest.raises(NasrankError, match="channels"):
        load_dataset("digits", channels=2)


# ----------------------------------------------------------------------------- issue 17: hostile files
import os  # noqa: E402

from nasrank.supernet.datasets import DatasetError  # noqa: E402


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def _cifar_folder(tmp_path, first_batch=None):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": [int(v) for v in np.arange(20) % 10],
                         b"batch_label": b"batch", b"filenames": [b"x.png"] * 20}, f, protocol=2)
    if first_batch is not None:
        (folder / "data_batch_1").write_bytes(first_batch)
    return folder


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_crafted_cifar_batch_is_refused_and_its_command_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _RunsACommand(marker), b"labels": [0]}, protocol=protocol)
    _cifar_folder(tmp_path, evil)
    with pytest.raises(DatasetError, match=r"data_batch_1.*posix.system|data_batch_1.*os.system"):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    _cifar_folder(tmp_path, pickle.dumps({b"data": _CallsEval()}, protocol=protocol))
    with pytest.raises(DatasetError, match=r"(__builtin__|builtins).eval.*refused"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_every_protocol_still_load(tmp_path, protocol):
    folder = _cifar_folder(tmp_path)
    data = np.arange(20 * 3072, dtype=np.int64).astype(np.uint8).reshape(20, 3072)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data, b"labels": list(np.arange(20) % 10)}, f, protocol=protocol)
    d = load_dataset("cifar10", tmp_path, valid_fraction=0.2)
    assert len(d.train) + len(d.valid) == 100


def test_malformed_cifar_batches_name_the_file(tmp_path):
    good = (_cifar_folder(tmp_path) / "data_batch_1").read_bytes()
    for bad, needle in [
        (good[: len(good) // 2], "cannot read CIFAR batch"),                   # truncated
        (b"", "cannot read CIFAR batch"),                                     # empty
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "cannot read CIFAR batch"),       # foreign
        (pickle.dumps([1, 2, 3]), "holds a list"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "3072"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), "0..9"),
    ]:
        _cifar_folder(tmp_path, bad)
        with pytest.raises(DatasetError, match=f"data_batch_1.*{needle}|{needle}.*data_batch_1"):
            load_dataset("cifar10", tmp_path)


def test_malformed_idx_files_name_the_file(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(20) % 10)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    good = target.read_bytes()
    for bad in (
        gzip.compress(bytes([0, 0, 8, 3, 0, 0])),           # header cut inside the dimensions
        gzip.compress(bytes([0, 0, 8, 3]) + bytes(12) + b"x"),  # payload does not match dims
        good[:20],                                          # truncated gzip stream
        good[:10] + bytes(len(good) - 10),                  # corrupt deflate data
        b"not gzip at all",
    ):
        target.write_bytes(bad)
        with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
            load_dataset("fashion-mnist", tmp_path)
