"""One experiment: a single Ray Tune experiment that searches, replicates and races, then the tables.

Folder layout (EXPERIMENT = storage/name; names in `analysis.layout`):
    run.json        the resolved SearchConfig, the data it was run on (source, folder, split
                    sizes, digest), whether the run is done
    tune/           Ray Tune's experiment (Tuner.restore works on it), one trial_<id>/ per trial
    optuna.journal  the Optuna study of the search stage
    race.json       the racing state: stage, decision, confidence, stop reason
    trials.csv      one row per trial (written when the run ends)
    history.csv     one row per trial and epoch (for loss curves)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from analysis.layout import HISTORY_FILE, JOURNAL_FILE, METRIC, MODE, RACE_FILE, RUN_FILE, TRIALS_FILE, TUNE_DIR
from search.config import SearchConfig
from vae.errors import UsageError
from vae.files import atomic_write_text


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
            # runs made before the learning-rate schedule was a setting trained at a constant rate
            config = SearchConfig.from_dict({"lr_schedule": "constant", **record["config"]})
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UsageError(f"corrupt {run_file}: {exc}") from None
        experiment = cls(path, config, record)
        if "phases_done" in record and not experiment.done:
            raise UsageError(f"{path} was started by an earlier vae-search (a search and a seeds phase) and cannot be "
                             "resumed by this one; start a new run")
        return experiment

    def save(self) -> None:
        atomic_write_text(self.path / RUN_FILE, json.dumps(self.record, indent=2) + "\n")

    @property
    def done(self) -> bool:
        # an experiment of an earlier release (two Tune experiments) is done when both phases are
        return bool(self.record.get("done")) or {"search", "seeds"} <= set(self.record.get("phases_done", ()))

    @property
    def tune_location(self) -> str:
        """Where Ray Tune keeps the experiment: EXPERIMENT/tune, or `--storage URI/NAME/tune`."""
        from search.storage import join

        return join(self.record.get("storage_uri") or str(self.path), TUNE_DIR)

    def upload_file(self, name: str) -> None:
        """With a cloud --storage, copy one of the driver's files there now."""
        from search.storage import upload_file

        if self.record.get("storage_uri"):
            upload_file(self.path / name, self.record["storage_uri"])

    def upload(self) -> None:
        """With a cloud --storage, copy the driver's files (tables, run.json, study, report) there too."""
        from search.storage import copy

        if self.record.get("storage_uri"):
            copy(str(self.path), self.record["storage_uri"])


def create(config: SearchConfig, path: Path, *, data: dict[str, Any], address: str | None,
           storage_uri: str | None = None, preset: str | None = None) -> Experiment:
    import platform

    import optuna
    import ray
    import torch

    path.mkdir(parents=True)
    record = {
        "storage_uri": storage_uri,
        "preset": preset,
        "config": config.to_dict(),
        "command": reproduce_command(config, preset),
        "data": data,
        "address": address,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                     "optuna": optuna.__version__},
        "done": False,
    }
    experiment = Experiment(path, config, record)
    experiment.save()
    return experiment


def space_needed(experiment: Experiment) -> int:
    """Bytes the rest of the run needs, about: per trial, a checkpoint per epoch (weights and
    Adam's two moments, float32, of the largest latent size; all are kept until the run ends)
    and its results, or the largest trial folder so far if that is more; times the trials
    still to finish (at least the minimum the run will have)."""
    from vae.config import ModelConfig
    from vae.model import ConvVAE

    config = experiment.config
    model = ConvVAE(ModelConfig(latent_dim=max(config.latent_dims), channels=config.channels, hidden_dim=config.hidden_dim))
    estimate = config.epochs * 3 * 4 * sum(p.numel() for p in model.parameters()) + 100_000
    folders = [t for t in (experiment.path / TUNE_DIR).glob("trial_*") if t.is_dir()]
    largest = max((sum(f.stat().st_size for f in t.rglob("*") if f.is_file()) for t in folders), default=0)
    finished = sum(1 for t in folders if (t / "result.json").is_file() and '"done": true' in (t / "result.json").read_text())
    remaining = max(1, config.trials + config.seeds * len(config.latent_dims) - finished)
    return int(max(estimate, largest) * remaining)


def reproduce_command(config: SearchConfig, preset: str | None) -> str:
    """A `vae-search run` command line that sets every search value to what this run resolved."""
    import shlex

    values = config.to_dict()
    parts = ["vae-search", "run", "--preset", preset or "quick"]
    for key in ("dataset", "data_dir", "max_train", "latent_dims", "lr_range", "lr_schedule", "beta", "epochs", "batch_size", "trials",
                "seeds",
                "max_seeds", "confidence", "max_trials", "rule", "tolerance_db", "scheduler", "cpus_per_trial",
                "gpus_per_trial", "max_concurrent", "max_failures", "seed"):
        value = values[key]
        if value is None:
            continue
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, list) else (
            f"{value:g}" if isinstance(value, float) else str(value))
        parts += ["--" + key.replace("_", "-"), text]
    return shlex.join(parts)


def execute(experiment: Experiment, splits, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or restore and finish) the Tune experiment of a run not done yet (`resume` of a done
    one never gets here), then write the tables. Returns the race state. Raises `search.session.Interrupted` when a signal stopped it (nothing is marked done)."""
    from ray import tune

    from search.output import read_race
    from search.session import tune_running

    started = time.perf_counter()
    experiment.upload_file(RUN_FILE)  # `vae-search status URI/NAME` reads it while the run works
    slots = _allow_pending_trials(experiment.config)
    _snapshot_often()
    location = experiment.tune_location
    trainable = _trainable(experiment.config, splits)
    if not experiment.record.get("storage_uri"):
        notice = restore_tune_state(location)
        if notice:
            log(f"notice: {notice}")
    if tune.Tuner.can_restore(location):
        log(f"restoring {location}")
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=False)
    else:
        tuner = tune.Tuner(trainable, param_space=_constants(experiment.config, experiment.record["data"]),
                           tune_config=tune_config(experiment), run_config=run_config(experiment, slots))
    with tune_running():
        tuner.fit()
    race = read_race(experiment.path / RACE_FILE)
    if race.get("stage") != "done":
        raise RuntimeError(f"Ray Tune ended before the search finished (stage {race.get('stage')!r}); "
                           f"`vae-search resume {experiment.path}` continues it")
    prune_checkpoints(location)
    write_tables(experiment)
    experiment.record["done"] = True
    experiment.record["wall_time_s"] = experiment.record.get("wall_time_s", 0.0) + time.perf_counter() - started
    experiment.save()
    experiment.upload()
    log(f"run done in {time.perf_counter() - started:.1f} s; racing stopped: {_reason_words(race)}")
    return race


def _trainable(config: SearchConfig, splits):
    from ray import tune

    from search.trial import run_trial

    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    # trials never see the test split; the images travel as uint8 (vae.data)
    return tune.with_resources(tune.with_parameters(run_trial, splits=splits.for_training()), resources)


def _constants(config: SearchConfig, data: dict[str, Any]) -> dict[str, Any]:
    """The trial config's fixed part; the searcher adds phase, stage, latent_dim, lr and seed.
    The data keys name the data the trials were shipped (the real source, never `auto`)."""
    return {
        "dataset": data["source"],
        "data_dir": data["data_dir"],
        "max_train": config.max_train,
        "beta": config.beta,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr_schedule": config.lr_schedule,
        "channels": list(config.channels),
        "hidden_dim": config.hidden_dim,
        "threads": config.threads,
        "use_gpu": config.gpus_per_trial > 0,
    }


def tune_config(experiment: Experiment):
    """The one TuneConfig of a run: the staged searcher decides how many trials there are."""
    from ray import tune

    from search.scheduling import scheduler
    from search.searcher import StagedSearcher

    config = experiment.config
    searcher = StagedSearcher(config, journal=experiment.path / JOURNAL_FILE, race_file=experiment.path / RACE_FILE)
    return tune.TuneConfig(
        metric=METRIC,
        mode=MODE,
        search_alg=searcher,
        scheduler=scheduler(config),
        num_samples=-1,  # until the searcher says FINISHED
        max_concurrent_trials=config.max_concurrent,
        reuse_actors=True,
        trial_dirname_creator=_trial_dirname,
    )


def run_config(experiment: Experiment, slots: int = 1):
    from ray import tune

    from search.progress import PendingWatch, Progress

    config = experiment.config

    root = experiment.record.get("storage_uri") or str(experiment.path)
    return tune.RunConfig(
        name=TUNE_DIR,
        storage_path=root,
        failure_config=tune.FailureConfig(max_failures=experiment.config.max_failures),
        # Keep every checkpoint while the run lasts: Ray's experiment-state snapshot can lag
        # the newest checkpoint, and with num_to_keep it may point at one already deleted, so
        # a driver killed at that moment would lose a finished trial. Pruned when the run ends.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        # Ray Tune snapshots the experiment state (which trials exist, their status, the
        # searcher) in the driver and uploads it to the storage path at most every sync_period
        # (default 300 s): a driver killed in between would come back with trials and results
        # missing. Snapshot and upload at every step of Tune's loop instead (an upload starts
        # only once the previous one has finished); measured here, it costs no wall time.
        sync_config=tune.SyncConfig(sync_period=_SNAPSHOT_S),
        callbacks=[Progress(str(experiment.path), storage_uri=experiment.record.get("storage_uri"),
                            minimum_trials=config.trials + config.seeds * len(config.latent_dims), slots=slots,
                            epochs=config.epochs),
                   PendingWatch(experiment.config.pending_timeout,
                                            {"cpu": experiment.config.cpus_per_trial, "gpu": experiment.config.gpus_per_trial})],
        verbose=0,
    )


_SNAPSHOT_S = 0


STATE_BACKUP = ".state-backup"  # in EXPERIMENT/tune: the last complete copy of Ray Tune's state files
_STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def _state_files(tune_dir: Path) -> list[Path]:
    return sorted(f for pattern in _STATE_FILES for f in tune_dir.glob(pattern))


def _complete(path: Path) -> bool:
    """A state file Ray Tune finished writing: a pickle (whatever its name says) whose opcodes run
    to its STOP, read without executing anything, or JSON that parses."""
    import pickletools

    data = path.read_bytes()
    try:
        if data[:1] == b"\x80":  # a pickle's protocol opcode
            for _ in pickletools.genops(data):
                pass
        else:
            json.loads(data)
        return True
    except Exception:  # noqa: BLE001 (any decoding error means torn)
        return False


def backup_tune_state(tune_dir: str | Path) -> None:
    """Copy Ray Tune's state files to tune/.state-backup when all are complete. Tune rewrites them
    in place: a disk that fills mid-write tears the only copy, and `Tuner.restore` then fails.
    Each copy is atomic, so a failed one leaves the previous backup whole."""
    from vae.files import atomic_write_bytes

    tune_dir = Path(tune_dir)
    files = _state_files(tune_dir)
    if not files or not all(_complete(f) for f in files):
        return
    for f in files:
        atomic_write_bytes(tune_dir / STATE_BACKUP / f.name, f.read_bytes())


def restore_tune_state(tune_dir: str | Path) -> str | None:
    """Before a restore: put the backup back when a state file is torn. Returns a notice, or None
    when the state is whole; UsageError when it is torn and there is no backup."""
    import shutil

    tune_dir = Path(tune_dir)
    torn = [f for f in _state_files(tune_dir) if not _complete(f)]
    if not torn:
        return None
    backup = _state_files(tune_dir / STATE_BACKUP) if (tune_dir / STATE_BACKUP).is_dir() else []
    if not backup:
        raise UsageError(f"Ray Tune's state file {torn[0]} is incomplete (an interrupted write) and there is no backup "
                         f"in {tune_dir / STATE_BACKUP}; the experiment cannot be resumed")
    for f in _state_files(tune_dir):
        f.unlink()
    for f in backup:
        shutil.copy2(f, tune_dir / f.name)
    return (f"Ray Tune's state ({', '.join(f.name for f in torn)}) was cut short by an interrupted write; "
            f"restored its last complete copy from {STATE_BACKUP}/ (trials finished after it report again from their checkpoints)")


def _snapshot_often() -> None:
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(_SNAPSHOT_S))  # Tune's default: every 10 s or more


def _allow_pending_trials(config: SearchConfig) -> int:
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
    return max(1, slots)


def prune_checkpoints(location: str) -> None:
    """Delete all but each trial's latest checkpoint."""
    from search.storage import delete_dir, subdirs

    for trial in subdirs(location, "trial_"):
        for old in subdirs(trial, "checkpoint_")[:-1]:
            delete_dir(old)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def write_tables(experiment: Experiment) -> None:
    from search.table import history_frame, trials_frame

    trials = trials_frame(experiment, finished=True)
    history = history_frame(experiment)
    atomic_write_text(experiment.path / TRIALS_FILE, trials.to_csv(index=False))
    atomic_write_text(experiment.path / HISTORY_FILE, history.to_csv(index=False))


def _reason_words(race: dict[str, Any]) -> str:
    reason = race.get("stop_reason")
    if reason == "confidence":
        return f"confidence {race.get('confidence', 0):.2f} reached the target {race.get('target', 0):.2f}"
    if reason == "max-seeds":
        return f"every contender has --max-seeds trials (confidence {race.get('confidence', 0):.2f})"
    if reason == "budget":
        return f"--max-trials spent (confidence {race.get('confidence', 0):.2f})"
    return str(reason)
