"""One experiment: the Optuna search phase, then the seeds phase, then the trial table.

Folder layout (EXPERIMENT = storage/name):
    run.json      the resolved SearchConfig, the data source used, phases done, seeds points
    search/       Ray Tune's experiment state for the search phase (Tuner.restore works)
    seeds/        the same for the seeds phase
    trials.csv    one row per trial, both phases (written when the experiment ends)
    history.csv   one row per trial and epoch (for loss curves)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from search.config import SearchConfig
from vae.errors import UsageError
from vae.files import atomic_write_text

RUN_FILE = "run.json"
TRIALS_FILE = "trials.csv"
HISTORY_FILE = "history.csv"
PHASES = ("search", "seeds")
METRIC, MODE = "psnr_mean", "max"


@dataclass
class Experiment:
    path: Path
    config: SearchConfig
    record: dict[str, Any]  # the contents of run.json

    @classmethod
    def open(cls, path: str | Path) -> "Experiment":
        path = Path(path).expanduser().resolve()
        run_file = path / RUN_FILE
        if not path.is_dir():
            raise UsageError(f"experiment {path} does not exist")
        if not run_file.is_file():
            raise UsageError(f"{path} is not a vae-search experiment (no {RUN_FILE})")
        try:
            record = json.loads(run_file.read_text())
            config = SearchConfig.from_dict(record["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"corrupt {run_file}: {exc}") from None
        return cls(path, config, record)

    def save(self) -> None:
        atomic_write_text(self.path / RUN_FILE, json.dumps(self.record, indent=2) + "\n")

    @property
    def done(self) -> list[str]:
        return self.record.setdefault("phases_done", [])

    @property
    def tune_root(self) -> str:
        """Where Ray Tune keeps the phases: this folder, or `--storage URI/NAME`."""
        return self.record.get("storage_uri") or str(self.path)

    def phase_location(self, phase: str) -> str:
        return f"{self.tune_root.rstrip('/')}/{phase}"

    def upload(self) -> None:
        """With a cloud --storage, copy the driver's files (tables, run.json, study, report) there too."""
        from search.storage import copy

        if self.record.get("storage_uri"):
            copy(str(self.path), self.record["storage_uri"])


def create(config: SearchConfig, path: Path, *, source: str, address: str | None, storage_uri: str | None = None) -> Experiment:
    import ray

    path.mkdir(parents=True)
    record = {
        "storage_uri": storage_uri,
        "config": config.to_dict(),
        "source": source,
        "address": address,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ray_version": ray.__version__,
        "phases_done": [],
    }
    experiment = Experiment(path, config, record)
    experiment.save()
    return experiment


def execute(experiment: Experiment, splits, *, log: Callable[[str], None] = print) -> None:
    """Run whatever phases are not done yet (restoring a phase Ray Tune already started)."""
    for phase in PHASES:
        if phase in experiment.done:
            continue
        started = time.perf_counter()
        if phase == "seeds" and "seeds_points" not in experiment.record:
            experiment.record["seeds_points"] = _seeds_points(experiment)  # fixed before any seeds trial runs
            experiment.save()
        _run_phase(experiment, phase, splits, log)
        experiment.done.append(phase)
        experiment.save()
        log(f"{phase} phase done in {time.perf_counter() - started:.1f} s")
    write_tables(experiment)
    experiment.upload()


def _trainable(experiment: Experiment, splits):
    from ray import tune

    from search.trial import run_trial

    config = experiment.config
    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, splits=splits), resources)


def _constants(config: SearchConfig) -> dict[str, Any]:
    return {
        "beta": config.beta,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "channels": list(config.channels),
        "hidden_dim": config.hidden_dim,
        "dataset": config.dataset,
        "data_dir": config.data_dir,
        "max_train": config.max_train,
        "threads": config.threads,
        "use_gpu": config.gpus_per_trial > 0,
    }


def _allow_pending_trials(config: SearchConfig) -> None:
    """With a search algorithm Ray Tune keeps one trial pending at a time: a short trial then
    ends before a second actor is up, and trials run one after another on a 2-CPU machine.
    Allow as many pending trials as the cluster has slots (at least 2); this caps only
    trials waiting for resources, not running ones, so an autoscaler still sees demand."""
    import ray

    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // config.cpus_per_trial)
    if config.gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // config.gpus_per_trial))
    if config.max_concurrent:
        slots = min(slots, config.max_concurrent)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(2, slots)))


def _run_phase(experiment: Experiment, phase: str, splits, log: Callable[[str], None]) -> None:
    from ray import tune

    _allow_pending_trials(experiment.config)
    location = experiment.phase_location(phase)
    trainable = _trainable(experiment, splits)
    if tune.Tuner.can_restore(location):
        log(f"{phase} phase: restoring {location}")
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = _new_tuner(experiment, phase, trainable)
    grid = tuner.fit()
    prune_checkpoints(location)
    if phase == "search":
        from search.searcher import close_orphans

        close_orphans(experiment.path / "optuna.journal")
    errors = [r.error for r in grid if r.error is not None]
    if errors and len(errors) == len(grid):
        raise RuntimeError(f"every {phase} trial failed; first error: {errors[0]}")


def prune_checkpoints(phase_location: str) -> int:
    """Delete all but each trial's latest checkpoint; returns how many were deleted."""
    from search.storage import delete_dir, subdirs

    deleted = 0
    for trial in subdirs(phase_location, "trial_"):
        for old in subdirs(trial, "checkpoint_")[:-1]:
            delete_dir(old)
            deleted += 1
    return deleted


def _new_tuner(experiment: Experiment, phase: str, trainable):
    from ray import tune

    config = experiment.config
    constants = {**_constants(config), "phase": phase}
    if phase == "search":
        tune_config = tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=_searcher(config, experiment.path),
            scheduler=_scheduler(config),
            num_samples=config.trials,
            max_concurrent_trials=config.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        )
        param_space = {**constants, "seed": config.seed}
    else:
        points = experiment.record["seeds_points"]
        tune_config = tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            num_samples=1,
            max_concurrent_trials=config.max_concurrent,
            reuse_actors=True,
            trial_dirname_creator=_trial_dirname,
        )
        param_space = {**constants, "point": tune.grid_search(points)}
    run_config = tune.RunConfig(
        name=phase,
        storage_path=experiment.tune_root,
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        # Keep every checkpoint while the phase runs: Ray's experiment-state snapshot can lag
        # the newest checkpoint, and with num_to_keep it may point at one already deleted, so
        # a driver killed at that moment would lose a finished trial. Pruned when the phase ends.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        callbacks=[_progress(phase)],
        verbose=0,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _searcher(config: SearchConfig, path: Path):
    from search.searcher import PruneAwareOptunaSearch

    return PruneAwareOptunaSearch(config, storage_path=path / "optuna.journal")


def _scheduler(config: SearchConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if config.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=config.epochs,
        grace_period=min(config.grace_period, config.epochs),
        reduction_factor=config.reduction_factor,
    )


def _seeds_points(experiment: Experiment) -> list[dict[str, Any]]:
    """For each latent size, its best search learning rate, once per seed."""
    from search.table import best_lr_by_latent_dim, phase_rows

    config = experiment.config
    rows = phase_rows(experiment, "search")
    best = best_lr_by_latent_dim(rows, config)
    return [
        {"latent_dim": dim, "lr": best[dim], "seed": config.seed + 1 + k}
        for dim in config.latent_dims
        for k in range(config.seeds)
    ]


def write_tables(experiment: Experiment) -> tuple[Path, Path]:
    from search.table import history_frame, trials_frame

    trials = trials_frame(experiment)
    history = history_frame(experiment)
    return (
        atomic_write_text(experiment.path / TRIALS_FILE, trials.to_csv(index=False)),
        atomic_write_text(experiment.path / HISTORY_FILE, history.to_csv(index=False)),
    )


def _progress_line(phase: str, trial) -> str:
    r = trial.last_result or {}
    head = f"  {phase} trial {trial.trial_id}: latent {r.get('latent_dim')} lr {r.get('lr', math.nan):.2e}"
    if r.get("diverged"):
        return f"{head} diverged"
    return (f"{head} seed {r.get('seed')} epochs {r.get('training_iteration')}/{r.get('max_epochs')} "
            f"val PSNR {r.get('psnr_mean', math.nan):.2f} dB")


def _progress(phase: str):
    """A Tune callback printing one line per finished trial (instead of Tune's tables).

    It holds only the phase name: Tune pickles callbacks into tuner.pkl."""
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            print(_progress_line(phase, trial), flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            print(f"  {phase} trial {trial.trial_id}: failed ({trial.error_file})", flush=True)

    return Progress()


CONNECT_TIMEOUT_S = 5.0


def check_address(address: str) -> None:
    """Fail in seconds, not minutes, when HOST:PORT (or ray://HOST:PORT) does not answer."""
    import socket

    if address == "auto" or address.startswith("local"):
        return  # ray.init finds (or fails to find) a cluster on this machine by itself
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address must be auto, HOST:PORT or ray://HOST:PORT but got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at --address {address}: {exc.strerror or exc}") from None


def quiet_logs() -> None:
    """One line per finished trial instead of Tune's tables and Ray's info logs."""
    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no status tables
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def start_ray(config: SearchConfig, address: str | None) -> bool:
    """Join `address`, or start a local Ray (explicit CPUs, no dashboard, token auth kept on).

    Returns True when this process started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    quiet_logs()
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        check_address(address)
        try:
            ray.init(address=address, **common)
        except Exception as exc:  # ConnectionError, ValueError, TimeoutError, … depending on the scheme
            raise UsageError(f"cannot reach the Ray cluster at --address {address}: {' '.join(str(exc).split())[:300]}") from None
        return True
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        # Ray binds a local instance's ports on every interface; without its token anyone on
        # the network could run code on this machine (CVE-2023-48022, "ShadowRay").
        raise UsageError("RAY_AUTH_MODE=disabled would leave the local Ray's ports open without authentication; unset it")
    ray.init(num_cpus=config.num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.gpus_per_trial > gpus:
        ray.shutdown()
        raise UsageError(
            f"--gpus-per-trial {config.gpus_per_trial:g} but the local Ray has {gpus:g} GPU(s); "
            "use --gpus-per-trial 0, or --address a cluster with GPUs"
        )
    return True
