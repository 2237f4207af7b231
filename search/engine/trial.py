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

from analysis.layout import DIGITS
from vae.config import TrainConfig
from vae.data import Splits
from vae.errors import UsageError


def build_config(config: Mapping[str, Any]) -> tuple[TrainConfig, str]:
    """Ray Tune's trial config -> (TrainConfig, phase): the run's `train` template
    (`search.engine.experiment.trial_template`) with the searcher's latent_dim, lr and seed."""
    values = dict(config)
    train = dict(values.pop("train", {}))
    train["model"] = {**train.get("model", {}), "latent_dim": values.pop("latent_dim")}
    train.update(lr=values.pop("lr"), seed=values.pop("seed"))
    phase = str(values.pop("phase", "search"))
    values.pop("stage", None)
    use_gpu = bool(values.pop("use_gpu", False))
    if values:
        raise UsageError(f"unknown trial config key(s): {', '.join(sorted(values))}")
    if use_gpu:
        import torch

        train["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return TrainConfig.from_dict(train), phase


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
        # a cheap fingerprint (not run.json's SHA-256 `digest`), summed in numpy with an int64
        # accumulator: torch would first copy the pixels to float64
        "pixel_sum": int(splits.train.pixels.numpy().sum(dtype="int64")) / 255.0,
    }
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried or restored trial picks up where it stopped
        with checkpoint.as_directory() as folder:
            state = TrainState.from_dict(train_config, load_weights(folder, train_config.device), load_state(folder),
                                         n_train=len(splits.train))

    train_time = sum(r.time_s for r in state.history) if state else 0.0
    if state is not None and state.epoch >= train_config.epochs:
        # It had finished, but Ray Tune's saved experiment state (snapshot at every step of its
        # loop, uploaded in the background) was older when the driver stopped: report the final
        # epoch again, train nothing.
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
        worst = {f"psnr_digit_{d}": 0.0 for d in DIGITS} | {f"mse_digit_{d}": 1.0 for d in DIGITS}
        tune.report({**worst, **where, "epoch": exc.epoch, "psnr_mean": 0.0, "mse_mean": 1.0,
                     "train_time_s": train_time, "diverged": True, "error": str(exc)})
