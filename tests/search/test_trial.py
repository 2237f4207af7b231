"""The trial boundary: Tune's dict becomes a typed config; GPU requests map to a device."""

import pytest
import torch

from search.engine.trial import build_config
from vae.errors import UsageError


def _template(**train):
    from search.config import resolve
    from search.engine.experiment import trial_template

    template = trial_template(resolve("smoke", {}), {"source": "sample", "data_dir": "data"})
    template["train"].update(train)
    return template


def test_the_trial_trains_the_runs_template_with_the_searchers_point():
    config, phase = build_config({**_template(beta=0.5, batch_size=16), "latent_dim": 7, "lr": 2e-3, "seed": 4,
                                  "phase": "seeds", "stage": "racing"})
    assert (config.model.latent_dim, config.lr, config.beta, config.epochs, config.seed) == (7, 2e-3, 0.5, 2, 4)
    assert config.model.channels == (8, 16) and config.model.hidden_dim == 64 and config.batch_size == 16
    assert (config.data.dataset, config.data.max_train, config.device, phase) == ("sample", 600, "cpu", "seeds")


def test_the_template_is_the_trainconfig_the_run_resolved():
    from search.config import resolve
    from vae.config import TrainConfig

    search = resolve("quick", {"beta": 0.5, "epochs": 3, "cpus_per_trial": 2.0})
    template = TrainConfig.from_dict(_template()["train"] | {"beta": 0.5}).to_dict()
    built = search.train_template({"source": "mnist", "data_dir": "/d"})
    assert (built.beta, built.epochs, built.threads, built.model.channels, built.data.max_train) == (
        0.5,
        3,
        2,
        (16, 32),
        4000,
    )
    assert template["beta"] == 0.5


def test_unknown_key_fails_loudly():
    with pytest.raises(UsageError, match="unknown trial config key"):
        build_config({**_template(), "latent_dim": 3, "lr": 1e-3, "seed": 0, "learning_rate": 1})
    with pytest.raises(UsageError, match="unknown TrainConfig key"):
        build_config({**_template(momentum=0.9), "latent_dim": 3, "lr": 1e-3, "seed": 0})


def test_a_gpu_request_asks_for_cuda_and_never_falls_back_to_the_cpu():
    config, _ = build_config({**_template(), "latent_dim": 3, "lr": 1e-3, "seed": 0, "use_gpu": True})
    assert config.device == "cuda"
    config, _ = build_config({**_template(), "latent_dim": 3, "lr": 1e-3, "seed": 0, "use_gpu": False})
    assert config.device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where torch cannot use CUDA")
def test_a_node_without_usable_cuda_is_refused_with_what_torch_said(monkeypatch):
    from search.engine.stop import DeviceUnusable
    from search.engine.trial import require_cuda

    with pytest.raises(DeviceUnusable, match=r"^a GPU trial cannot use CUDA on node host-1 \(abcd\): torch .+"):
        require_cuda("host-1 (abcd)")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    if torch.version.cuda is not None:
        with pytest.raises(DeviceUnusable, match="no GPU is visible to the process"):
            require_cuda("host-1 (abcd)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_is_accepted_where_torch_can_use_it():
    from search.engine.trial import cuda_problem

    assert cuda_problem() is None


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
                mapping = next(
                    line.split()
                    for line in maps
                    if int(line.split()[0].split("-")[0], 16) <= address < int(line.split()[0].split("-")[1], 16)
                )
            return splits.test, str(pixels.dtype), mapping[1], float(pixels.double().sum()), len(splits.val)

        test, dtype, permissions, total, n_val = ray.get(look.remote(ref))
    finally:
        ray.shutdown()
    assert test is None
    assert dtype == "torch.uint8"
    assert permissions.endswith("s")  # a shared mapping of the object store, not a private unpickled copy
    assert total == float(sample_splits.train.pixels.double().sum())
    assert n_val == len(sample_splits.val)


def test_the_likelihood_settings_come_from_the_run_and_default_for_earlier_runs():
    from search.config import SearchConfig
    from search.engine.experiment import trial_template
    from search.engine.trial import Likelihood, build_trial

    template = trial_template(SearchConfig(iw_samples=8, iw_images=300), {"source": "sample", "data_dir": "data"})
    point = {"latent_dim": 5, "lr": 1e-3, "seed": 1, "phase": "seeds"}
    assert build_trial({**template, **point})[2] == Likelihood(samples=8, images=300)
    del template["likelihood"]  # a run of a release before nll_iw: Tune restores its config without it
    assert build_trial({**template, **point})[2] == Likelihood()
    with pytest.raises(UsageError, match="unknown likelihood setting"):
        build_trial({**template, **point, "likelihood": {"k": 3}})
