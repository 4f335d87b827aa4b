"""Image classification datasets with deterministic train/valid/test splits (no downloads).

* ``digits``: scikit-learn's bundled ``load_digits()`` (1,797 8x8 grey images, 10 classes); it
  has no official test set, so 20 % of it (stratified, from the seed) is held out as test.
* ``fashion-mnist``: the four IDX gzip files (``train-images-idx3-ubyte.gz``...) in ``root``.
* ``cifar10`` / ``cifar100``: the python-pickle release (``data_batch_1..5``/``test_batch``, or
  ``train``/``test``) in ``root`` or in its ``cifar-10-batches-py`` / ``cifar-100-python`` folder.

The validation split is a seeded, stratified ``valid_fraction`` of the training images. Images
are float32 NCHW, normalised per channel with the training split's mean and std, then sized for
the networks: ``channels`` repeats grey images to 3 channels (or averages RGB to 1) and
``image_size`` resizes with bilinear interpolation (antialiased when shrinking). Everything is
held in memory as :class:`~torch.utils.data.TensorDataset` (CIFAR at full size: ~740 MB).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from nasrank.errors import NasrankError

DATASET_NAMES = ("digits", "fashion-mnist", "cifar10", "cifar100")


class DatasetError(NasrankError):
    """A dataset that is unknown, missing or malformed."""


@dataclass
class DatasetSplits:
    """Train/valid/test splits of one dataset; ``input_shape`` is (C, H, W) after transforms."""

    name: str
    train: Dataset
    valid: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]


def load_dataset(
    name: str, root: str | os.PathLike | None = None, *, seed: int = 0,
    valid_fraction: float = 0.1, subset: int | None = None, image_size: int | None = None,
    channels: int | None = None,
) -> DatasetSplits:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) and split it deterministically.

    ``subset`` keeps a seeded, stratified sample of that many training images (the valid and
    test splits are not reduced). ``root`` is the folder of the files (not used by ``digits``).
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {list(DATASET_NAMES)}")
    if not 0.0 < float(valid_fraction) < 1.0:
        raise DatasetError(f"valid_fraction must be in (0, 1), got {valid_fraction!r}")
    if image_size is not None and int(image_size) < 1:
        raise DatasetError(f"image_size must be >= 1, got {image_size!r}")
    if channels is not None and channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels!r}")

    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x_all = (d.images.astype(np.float32) / 16.0)[:, None]
        y_all = d.target.astype(np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            x_all, y_all, test_size=0.2, random_state=seed, stratify=y_all)
        num_classes = 10
    else:
        if root is None:
            raise DatasetError(
                f"dataset {name!r} needs root= the folder holding its files (no downloads)")
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"dataset folder {str(root)!r} for {name!r} does not exist")
        if name == "fashion-mnist":
            x_train, y_train, x_test, y_test = _read_fashion_mnist(root)
            num_classes = 10
        else:
            x_train, y_train, x_test, y_test = _read_cifar(root, name)
            num_classes = 10 if name == "cifar10" else 100

    x_tr, x_va, y_tr, y_va = train_test_split(
        x_train, y_train, test_size=valid_fraction, random_state=seed, stratify=y_train)
    if subset is not None:
        if not 1 <= int(subset) <= len(y_tr):
            raise DatasetError(
                f"subset must be between 1 and the {len(y_tr)} training images, got {subset!r}")
        if int(subset) < len(y_tr):
            # stratified when every class can be represented, plain seeded sample otherwise
            strat = y_tr if int(subset) >= num_classes else None
            x_tr, _, y_tr, _ = train_test_split(
                x_tr, y_tr, train_size=int(subset), random_state=seed, stratify=strat)

    x_tr_t = torch.as_tensor(np.ascontiguousarray(x_tr), dtype=torch.float32)
    mean = x_tr_t.mean(dim=(0, 2, 3), keepdim=True)
    std = x_tr_t.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def prep(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        t = (torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32) - mean) / std
        t = _size(t, image_size, channels)
        return TensorDataset(t.contiguous(), torch.as_tensor(y, dtype=torch.long))

    train, valid, test = prep(x_tr, y_tr), prep(x_va, y_va), prep(x_test, y_test)
    shape = tuple(int(v) for v in train.tensors[0].shape[1:])
    return DatasetSplits(name, train, valid, test, num_classes, shape)  # type: ignore[arg-type]


def _size(x: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    if channels is not None and x.shape[1] != channels:
        x = x.repeat(1, 3, 1, 1) if channels == 3 else x.mean(dim=1, keepdim=True)
    if image_size is not None and x.shape[-1] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=image_size < x.shape[-1])
    return x


# ----------------------------------------------------------------------------- readers
def _need(root: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (root / n).is_file():
            return root / n
    raise DatasetError(f"{what} file {names[0]!r} not found in {str(root)!r}")


def _read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (the MNIST format: magic, dims, big-endian uint8 payload)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"cannot read IDX file {str(path)!r}: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{str(path)!r} is not an unsigned-byte IDX file")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise DatasetError(
            f"{str(path)!r}: IDX header announces {ndim} dimensions, but the file has "
            f"{len(data)} bytes (a truncated or foreign file?)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims, dtype=np.int64)):
        raise DatasetError(
            f"{str(path)!r} holds {payload.size} bytes, its header announces {dims}")
    return payload.reshape(dims)


def _read_fashion_mnist(root: Path) -> tuple[np.ndarray, ...]:
    out = []
    for split in ("train", "t10k"):
        xi = _read_idx(_need(root, (f"{split}-images-idx3-ubyte.gz", f"{split}-images-idx3-ubyte"),
                             "Fashion-MNIST"))
        yi = _read_idx(_need(root, (f"{split}-labels-idx1-ubyte.gz", f"{split}-labels-idx1-ubyte"),
                             "Fashion-MNIST"))
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi):
            raise DatasetError(
                f"Fashion-MNIST {split} images {xi.shape} and labels {yi.shape} do not match")
        out += [(xi.astype(np.float32) / 255.0)[:, None], yi.astype(np.int64)]
    return tuple(out)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_scalar():
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar


def _numpy_frombuffer():
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer
    return _frombuffer


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what a CIFAR python batch holds: dicts, lists, bytes, str,
    ints and numpy arrays (rebuilt by numpy's own reconstruct functions). Any other global (a
    crafted file's ``os.system``, ``builtins.eval``...) is refused before it can run."""

    def find_class(self, module: str, name: str):  # noqa: D102
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
                "_reconstruct", "scalar"):
            return _numpy_reconstruct() if name == "_reconstruct" else _numpy_scalar()
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _numpy_frombuffer()  # protocol 5 arrays
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":  # bytes pickled by Python 3, protocol 2
            import _codecs

            return _codecs.encode
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _unpickle(path: Path) -> dict:
    """A CIFAR batch through :class:`_CifarUnpickler` (never plain ``pickle.load``)."""
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refused global"):
            raise DatasetError(
                f"CIFAR batch {str(path)!r} is not a plain data file: it asks to load "
                f"{str(err)[len('refused global '):]}, which a CIFAR batch never holds (a crafted "
                f"file?); refused without running it") from None
        raise DatasetError(f"cannot read CIFAR batch {str(path)!r}: {err}") from None
    except Exception as err:  # truncated or foreign files fail in many ways inside pickle
        raise DatasetError(
            f"cannot read CIFAR batch {str(path)!r}: {type(err).__name__}: {err}") from None
    if not isinstance(d, dict):
        raise DatasetError(
            f"CIFAR batch {str(path)!r} holds a {type(d).__name__}, expected a dict")
    return d


def _read_cifar(root: Path, name: str) -> tuple[np.ndarray, ...]:
    sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if (root / sub).is_dir():
        root = root / sub
    if name == "cifar10":
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, label_key = ["test_batch"], b"labels"
    else:
        train_files, test_files, label_key = ["train"], ["test"], b"fine_labels"
    num_classes = 10 if name == "cifar10" else 100

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for fname in files:
            d = _unpickle(_need(root, (fname,), name))
            if b"data" not in d or label_key not in d:
                raise DatasetError(
                    f"{str(root / fname)!r} lacks 'data' or {label_key.decode()!r}: not {name}")
            x, y = np.asarray(d[b"data"]), np.asarray(d[label_key])
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise DatasetError(
                    f"{str(root / fname)!r}: 'data' is {x.dtype} {x.shape}, expected uint8 "
                    f"(N, 3072): not {name}")
            if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu" or (
                    len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
                raise DatasetError(
                    f"{str(root / fname)!r}: {label_key.decode()!r} must be {len(x)} integers in "
                    f"0..{num_classes - 1}, got {y.dtype} {y.shape}: not {name}")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y.astype(np.int64))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)

    x_train, y_train = read(train_files)
    x_test, y_test = read(test_files)
    return x_train, y_train, x_test, y_test
