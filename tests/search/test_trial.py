"""The trial boundary: Tune's dict becomes a typed config; GPU requests map to a device."""

import pytest
import torch

from search.trial import build_config
from vae.errors import UsageError


def test_build_config_from_tune_dict():
    config, phase = build_config({"latent_dim": 7, "lr": 2e-3, "beta": 0.5, "epochs": 3, "seed": 4, "batch_size": 16,
                                  "channels": [4, 8], "hidden_dim": 16, "dataset": "sample", "max_train": 100,
                                  "threads": 2, "phase": "search", "use_gpu": False})
    assert (config.model.latent_dim, config.lr, config.beta, config.epochs, config.seed) == (7, 2e-3, 0.5, 3, 4)
    assert config.model.channels == (4, 8) and config.threads == 2 and config.device == "cpu" and phase == "search"


def test_seeds_point_is_merged():
    config, phase = build_config({"point": {"latent_dim": 3, "lr": 1e-3, "seed": 9}, "phase": "seeds"})
    assert (config.model.latent_dim, config.seed, phase) == (3, 9, "seeds")


def test_unknown_key_fails_loudly():
    with pytest.raises(UsageError, match="unknown trial config key"):
        build_config({"latent_dim": 3, "lr": 1e-3, "learning_rate": 1})


def test_gpu_request_maps_to_cuda_when_present_else_cpu():
    config, _ = build_config({"latent_dim": 3, "use_gpu": True})
    assert config.device == ("cuda" if torch.cuda.is_available() else "cpu")



@pytest.mark.slow
def test_trials_get_uint8_train_and_val_as_read_only_views_of_the_object_store(sample_splits):
    """What `tune.with_parameters` ships (it ray.put()s the value once): no test split, uint8
    pixels, and in a worker a read-only view of the node's shared copy rather than its own."""
    import ray

    shipped = sample_splits.for_training()
    assert shipped.test is None and shipped.train is sample_splits.train
    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        ref = ray.put(shipped)

        @ray.remote
        def look(splits):
            pixels = splits.train.pixels
            address = pixels.data_ptr()
            with open("/proc/self/maps") as maps:  # the memory mapping that holds the pixels
                mapping = next(line.split() for line in maps
                               if int(line.split()[0].split("-")[0], 16) <= address < int(line.split()[0].split("-")[1], 16))
            return splits.test, str(pixels.dtype), mapping[1], float(pixels.double().sum()), len(splits.val)

        test, dtype, permissions, total, n_val = ray.get(look.remote(ref))
    finally:
        ray.shutdown()
    assert test is None
    assert dtype == "torch.uint8"
    assert permissions.endswith("s")  # a shared mapping of the object store, not a private unpickled copy
    assert total == float(sample_splits.train.pixels.double().sum())
    assert n_val == len(sample_splits.val)
