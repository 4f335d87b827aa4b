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
