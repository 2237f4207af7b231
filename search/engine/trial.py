"""The trial: Ray Tune's dict in, a typed `TrainConfig` out, then `vae.train` with a report per epoch.

Each epoch reports validation loss, train loss, the per-digit MSE/PSNR, the active units and
the KL and posterior-mean variance of each latent dimension with `ray.tune.report`, together
with a checkpoint (model, optimizer, history, RNG) so a retried trial resumes where it stopped.
A seeds trial's last report also carries nll_iw, computed where the model is (its CPU or GPU).
The data arrives through the object store (`tune.with_parameters`); trials never read files.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from analysis.layout import DIGITS
from search.config import DEFAULT_IW_IMAGES, DEFAULT_IW_SAMPLES
from vae.config import TrainConfig
from vae.data import Splits
from vae.errors import UsageError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Likelihood:
    """The held-out likelihood a seeds trial estimates after its last epoch: the
    importance-weighted bound with `samples` draws per image on `images` validation images."""

    samples: int = DEFAULT_IW_SAMPLES
    images: int = DEFAULT_IW_IMAGES


def build_config(config: Mapping[str, Any]) -> tuple[TrainConfig, str]:
    """Ray Tune's trial config -> (TrainConfig, phase): the run's `train` template
    (`search.engine.experiment.trial_template`) with the searcher's latent_dim, lr and seed."""
    train_config, phase, _ = build_trial(config)
    return train_config, phase


def build_trial(config: Mapping[str, Any]) -> tuple[TrainConfig, str, Likelihood]:
    """`build_config`, and the run's likelihood settings (the defaults for a run of an earlier
    release, which had none)."""
    values = dict(config)
    likelihood_values = dict(values.pop("likelihood", {}))
    unknown = sorted(set(likelihood_values) - {f.name for f in dataclasses.fields(Likelihood)})
    if unknown:
        raise UsageError(f"unknown likelihood setting(s): {', '.join(unknown)}")
    likelihood = Likelihood(**likelihood_values)
    train = dict(values.pop("train", {}))
    train["model"] = {**train.get("model", {}), "latent_dim": values.pop("latent_dim")}
    train.update(lr=values.pop("lr"), seed=values.pop("seed"))
    phase = str(values.pop("phase", "search"))
    values.pop("stage", None)
    use_gpu = bool(values.pop("use_gpu", False))
    if values:
        raise UsageError(f"unknown trial config key(s): {', '.join(sorted(values))}")
    if use_gpu:
        train["device"] = "cuda"  # never the CPU in silence: `require_cuda` refuses a node where CUDA is unusable
    return TrainConfig.from_dict(train), phase, likelihood


def cuda_problem() -> str | None:
    """Why torch cannot use CUDA in this process, in a few words; None when it can."""
    import os

    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return f"no GPU is visible to the process (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})"
    try:
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 (what torch says is the message)
        said = " ".join(str(exc).split())
        return f"torch {torch.__version__} says: {said[:200]}"
    return f"torch {torch.__version__}: torch.cuda.is_available() is False"


def require_cuda(node: str) -> None:
    """Raise `DeviceUnusable` naming `node` when a trial that asked for a GPU cannot use CUDA: not
    the trial's fault, and no retry there would help; the run stops (`search.engine.faults`) and
    resumes once the node is fixed."""
    from search.engine.stop import DeviceUnusable

    problem = cuda_problem()
    if problem is not None:
        raise DeviceUnusable(f"a GPU trial cannot use CUDA on node {node}: {problem}")


def likelihood_subset(splits: Splits, images: int) -> torch.Tensor:
    """The validation images every trial of a run scores nll_iw on: a fixed, seeded draw of
    `images` of them (all when there are fewer), the same for every trial and seed."""
    import torch

    pixels = splits.val.pixels
    if images >= len(pixels):
        return pixels
    return pixels[torch.randperm(len(pixels), generator=torch.Generator().manual_seed(0))[:images]]


def held_out_likelihood(model, splits: Splits, likelihood: Likelihood) -> dict[str, float]:
    """nll_iw (nats per image, the mean over the subset) and what it took to compute."""
    from vae.training import importance_weighted_nll

    started = time.perf_counter()
    pixels = likelihood_subset(splits, likelihood.images).to(next(model.parameters()).device)
    nll = float(importance_weighted_nll(model, pixels, k=likelihood.samples).mean())
    return {"nll_iw": nll, "iw_samples": likelihood.samples, "iw_images": len(pixels),
            "iw_time_s": time.perf_counter() - started}


def _worst(epoch: int, error: str) -> dict[str, Any]:
    """A diverged trial's report: the worst possible score (no loss values: they are not finite,
    and Tune's loggers reject such values)."""
    worst = {f"psnr_digit_{d}": 0.0 for d in DIGITS} | {f"mse_digit_{d}": 1.0 for d in DIGITS}
    return {**worst, "epoch": epoch, "psnr_mean": 0.0, "mse_mean": 1.0, "diverged": True, "error": error}


def run_trial(config: dict[str, Any], splits: Splits) -> None:
    """A Ray Tune function trainable (bind the data with `tune.with_parameters`): one seed, or a
    fused trial of several (`seeds` in its config)."""
    import ray
    import torch
    from ray import tune

    from vae.checkpoint import load_state, load_weights, save_state
    from vae.training import TrainingDiverged, TrainState, train

    seeds = list(config.get("seeds") or [])
    train_config, phase, likelihood = build_trial({k: v for k, v in config.items() if k != "seeds"})
    if train_config.device == "cuda":  # before anything is trained, read or written
        require_cuda(f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:8]})")
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
    if len(seeds) > 1:
        run_fused([dataclasses.replace(train_config, seed=int(seed)) for seed in seeds], phase, likelihood, splits,
                  where)
        return
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried or restored trial picks up where it stopped
        with checkpoint.as_directory() as folder:
            state = TrainState.from_dict(train_config, load_weights(folder, train_config.device), load_state(folder),
                                         n_train=len(splits.train))

    def epoch_metrics(result, current: TrainState) -> dict[str, Any]:
        """The epoch's scalars; after the last epoch also the per-dimension lists (every epoch's
        are in the checkpoint's history) and, for a seeds trial, nll_iw."""
        metrics = result.flat()
        if result.epoch >= train_config.epochs:
            metrics |= {"kl_by_dim": result.kl_by_dim, "mu_var_by_dim": result.mu_var_by_dim}
            if phase == "seeds":
                metrics |= held_out_likelihood(current.model, splits, likelihood)
        return metrics

    train_time = sum(r.time_s for r in state.history) if state else 0.0
    if state is not None and state.epoch >= train_config.epochs:
        # It had finished, but Ray Tune's saved experiment state (snapshot at every step of its
        # loop, uploaded in the background) was older when the driver stopped: report the final
        # epoch again, train nothing (nll_iw is repeatable: the same draws give the same value).
        tune.report({**epoch_metrics(state.history[-1], state), **where, "train_time_s": train_time, "diverged": False,
                     "threads": torch.get_num_threads(), "finished_at": time.time(), "restored": True})
        return

    def report(result, current: TrainState) -> None:
        nonlocal train_time
        train_time += result.time_s
        metrics = {**epoch_metrics(result, current), **where, "train_time_s": train_time, "diverged": False,
                   "threads": torch.get_num_threads(), "finished_at": time.time()}
        with tempfile.TemporaryDirectory() as folder:
            save_state(folder, current.model, train_config, current.to_dict())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    try:
        train(train_config, splits, on_epoch=report, state=state)
    except TrainingDiverged as exc:
        # A deterministic failure: end the trial with the worst possible score instead of
        # raising, so it is not retried and the searcher learns that the point is bad.
        tune.report({**where, **_worst(exc.epoch, str(exc)), "train_time_s": train_time})


def run_fused(configs: list[TrainConfig], phase: str, likelihood: Likelihood, splits: Splits,
              where: dict[str, Any]) -> None:
    """A fused trial: the members (one size's seeds) trained together (`vae.fused`), one report
    per epoch with each member's own metrics under `members` ({"0": {...}, ...}: what a solo
    trial reports, with its seed) and their mean PSNR as the trial's, for Tune. Its checkpoint
    holds every member's state (`vae.checkpoint.FUSED_FILE`) and each member's model in
    member_I/, which is that member's checkpoint in trials.csv."""
    import torch
    from ray import tune

    from vae.checkpoint import load_fused, save_fused, save_model
    from vae.fused import FusedState, train_fused

    epochs = configs[0].epochs
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retried or restored trial picks up where it stopped, every member
        with checkpoint.as_directory() as folder:
            state = FusedState.from_dict(configs, load_fused(folder), n_train=len(splits.train))
    scored: dict[int, dict[str, float]] = {}  # member -> nll_iw after its last epoch (a seeds trial)

    def member_metrics(current: FusedState, i: int) -> dict[str, Any]:
        history, seed = current.histories[i], current.configs[i].seed
        own = {"seed": seed, "train_time_s": sum(r.time_s for r in history)}
        if current.diverged[i] is not None:
            return {**own, **_worst(current.diverged[i], f"member {i} (seed {seed}): the loss is not finite")}
        last = history[-1]
        metrics = {**last.flat(), **own, "diverged": False}
        if last.epoch >= epochs:
            metrics |= {"kl_by_dim": last.kl_by_dim, "mu_var_by_dim": last.mu_var_by_dim}
            if phase == "seeds":
                if i not in scored:
                    scored[i] = held_out_likelihood(current.member(i), splits, likelihood)
                metrics |= scored[i]
        return metrics

    def report(current: FusedState, **extra) -> None:
        members = {str(i): member_metrics(current, i) for i in range(current.k) if current.histories[i]
                   or current.diverged[i] is not None}
        live = [m["psnr_mean"] for m in members.values() if not m["diverged"]]
        metrics = {**where, "seed": configs[0].seed, "epoch": current.epoch, "members": members, "fused": current.k,
                   "psnr_mean": sum(live) / len(live) if live else 0.0, "diverged": not live,
                   "threads": torch.get_num_threads(), "finished_at": time.time(), **extra}
        with tempfile.TemporaryDirectory() as folder:
            save_fused(folder, current.to_dict())
            for i in range(current.k):
                save_model(Path(folder) / f"member_{i}", current.member(i), current.configs[i])
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    if state is not None and state.epoch >= epochs:  # it had finished before the restart: report it again
        report(state, restored=True)
        return
    train_fused(configs, splits, state=state, after_epoch=report)
