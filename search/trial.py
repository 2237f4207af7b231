"""The trial: Ray Tune's dict in, a typed `TrainConfig` out, then `vae.train` with a report per epoch.

Each epoch reports validation loss, train loss and the per-digit MSE/PSNR with
`ray.tune.report`, together with a checkpoint (model, optimizer, history, RNG) so a
retried trial resumes where it stopped. The data arrives through the object store
(`tune.with_parameters`); trials never read files.
"""

from __future__ import annotations

import socket
import tempfile
import time
from typing import Any, Mapping

from vae.config import DataConfig, ModelConfig, TrainConfig
from vae.data import Splits
from vae.errors import UsageError

# keys a trial's config may hold; anything else is a bug in the caller and fails loudly
_TRAIN_KEYS = {"lr", "lr_schedule", "beta", "epochs", "batch_size", "seed"}
_MODEL_KEYS = {"latent_dim", "channels", "hidden_dim"}
_DATA_KEYS = {"dataset", "data_dir", "max_train"}
_TRIAL_KEYS = {"phase", "stage", "threads", "use_gpu"}


def build_config(config: Mapping[str, Any]) -> tuple[TrainConfig, str]:
    """Tune's flat dict -> (TrainConfig, phase). A seeds-phase `point` is merged in first."""
    values = dict(config)
    values.update(values.pop("point", {}))
    unknown = sorted(set(values) - _TRAIN_KEYS - _MODEL_KEYS - _DATA_KEYS - _TRIAL_KEYS)
    if unknown:
        raise UsageError(f"unknown trial config key(s): {', '.join(unknown)}")
    device = "cpu"
    if values.get("use_gpu"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    train_config = TrainConfig(
        model=ModelConfig(**{k: values[k] for k in _MODEL_KEYS if k in values}),
        data=DataConfig(**{k: values[k] for k in _DATA_KEYS if k in values}),
        threads=int(values.get("threads", 1)),
        device=device,
        **{k: values[k] for k in _TRAIN_KEYS if k in values},
    )
    return train_config, str(values.get("phase", "search"))


def run_trial(config: dict[str, Any], splits: Splits) -> None:
    """A Ray Tune function trainable (bind the data with `tune.with_parameters`)."""
    import ray
    import torch
    from ray import tune

    from vae.checkpoint import load_state, load_weights, save_state
    from vae.training import TrainingDiverged, TrainState, train

    train_config, phase = build_config(config)
    where = {
        "phase": phase,
        "latent_dim": train_config.model.latent_dim,
        "lr": train_config.lr,
        "beta": train_config.beta,
        "seed": train_config.seed,
        "max_epochs": train_config.epochs,
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "device": train_config.device,
        "started_at": time.time(),
        # what arrived through the object store (trials never read files): size and a digest
        "train_images": len(splits.train),
        # summed in numpy with an int64 accumulator: torch would first copy the pixels to float64
        "data_digest": int(splits.train.pixels.numpy().sum(dtype="int64")) / 255.0,
    }
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried or restored trial picks up where it stopped
        with checkpoint.as_directory() as folder:
            state = TrainState.from_dict(train_config, load_weights(folder, train_config.device), load_state(folder),
                                         n_train=len(splits.train))

    train_time = sum(r.time_s for r in state.history) if state else 0.0
    if state is not None and state.epoch >= train_config.epochs:
        # It had finished, but Ray Tune's saved experiment state (a snapshot every ~10 s) was
        # older when the driver stopped: report the final epoch again, train nothing.
        tune.report({**state.history[-1].flat(), **where, "train_time_s": train_time, "diverged": False,
                     "threads": torch.get_num_threads(), "finished_at": time.time(), "restored": True})
        return

    def report(result, current: TrainState) -> None:
        nonlocal train_time
        train_time += result.time_s
        metrics = {**result.flat(), **where, "train_time_s": train_time, "diverged": False,
                   "threads": torch.get_num_threads(), "finished_at": time.time()}
        with tempfile.TemporaryDirectory() as folder:
            save_state(folder, current.model, train_config, current.to_dict())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        train(train_config, splits, on_epoch=report, state=state)
    except TrainingDiverged as exc:
        # A deterministic failure: end the trial with the worst possible score instead of
        # raising, so it is not retried and the searcher learns that the point is bad.
        # (No loss values: they are not finite, and Tune's loggers reject such values.)
        worst = {f"psnr_digit_{d}": 0.0 for d in range(10)} | {f"mse_digit_{d}": 1.0 for d in range(10)}
        tune.report({**worst, **where, "epoch": exc.epoch, "psnr_mean": 0.0, "mse_mean": 1.0,
                     "train_time_s": train_time, "diverged": True, "error": str(exc)})
