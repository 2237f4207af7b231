"""One run: a single Ray Tune experiment that searches, replicates and races, then the tables.

`execute` wires Ray Tune (the trainable with the data bound, the staged searcher, the
scheduler, the progress and stop callbacks), runs or restores it to its end, and writes
trials.csv and history.csv (`search.engine.tables`). The experiment folder itself is
`search.store.record`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from analysis.layout import METRIC, MODE
from search.config import SearchConfig
from search.engine.ray_seam import kept_actors, own_staging
from search.engine.session import SNAPSHOT_S, DriverSession
from search.store.files import RACE_FILE, RUN_FILE, TUNE_DIR
from search.store.race import RaceState, read_race
from search.store.record import Experiment
from search.store.storage import is_dir
from search.store.tune_files import prune_checkpoints, restore_tune_state, state_backup


def execute(experiment: Experiment, splits, *, session: DriverSession, log: Callable[[str], None] = print) -> RaceState:
    """Run (or restore and finish) the Tune experiment of a run not done yet (`resume` of a done
    one never gets here), then write the tables. Returns the final racing state. Raises
    `search.engine.stop.Stopped` when a signal stopped it (nothing is marked done), `DiskFull`
    or `PendingTimeout` (`session.stop.running_tune`)."""
    from ray import tune

    started = time.perf_counter()
    session.drive(experiment)  # what Tuner.restore unpickles works on this folder, wherever it was
    experiment.upload_file(RUN_FILE)  # `vae-search status URI/NAME` reads it while the run works
    location = experiment.tune_location
    trainable = _trainable(experiment.config, splits)
    if is_dir(location):
        notice = restore_tune_state(location, state_backup(experiment.path, experiment.storage_uri))
        if notice:
            log(f"notice: {notice}")
    if tune.Tuner.can_restore(location):
        log(f"restoring {location}")
        relocate_search(location)
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=False)
        searcher = None  # Ray Tune rebuilds it from its saved state
    else:
        searcher = _searcher(experiment, session)
        tuner = tune.Tuner(
            trainable,
            param_space=trial_template(experiment.config, experiment.record["data"]),
            tune_config=tune_config(experiment, searcher),
            run_config=tune_run_config(experiment, searcher, session),
        )
    with session.stop.running_tune(), own_staging(), kept_actors(session.slots):
        tuner.fit()
    # after Tuner.restore the searcher lives inside Ray Tune: its last state is read back from race.json
    race = searcher.race if searcher is not None else read_race(experiment.path / RACE_FILE)
    if not race.done:
        raise RuntimeError(f"Ray Tune ended before the search finished (stage {race.stage!r}); "
                           f"`vae-search resume {experiment.path}` continues it")
    prune_checkpoints(location)
    write_tables(experiment)
    experiment.record["done"] = True
    experiment.record["wall_time_s"] = experiment.record.get("wall_time_s", 0.0) + time.perf_counter() - started
    experiment.save()
    experiment.upload()
    log(f"run done in {time.perf_counter() - started:.1f} s; racing stopped: {race.reason_words()}")
    return race


def _trainable(config: SearchConfig, splits):
    from ray import tune

    from search.engine.trial import run_trial

    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    # trials never see the test split; the images travel as uint8 (vae.data)
    return tune.with_resources(tune.with_parameters(run_trial, splits=splits.for_training()), resources)


def trial_template(config: SearchConfig, data: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune's param_space: the trial config's fixed part. `train` is a `vae.TrainConfig` as a
    dict (`TrainConfig.from_dict` reads it back in the trial); the searcher adds phase, stage,
    latent_dim, lr and seed. The data is the data the trials were shipped (never `auto`).
    `likelihood`: how a seeds trial estimates nll_iw (`search.engine.trial.Likelihood`)."""
    return {"train": config.train_template(data).to_dict(), "use_gpu": config.gpus_per_trial > 0,
            "likelihood": {"samples": config.iw_samples, "images": config.iw_images}}


def _searcher(experiment: Experiment, session: DriverSession):
    from search.engine.searcher import StagedSearcher

    return StagedSearcher(experiment.config, experiment=experiment.path, stop=session.stop)


def tune_config(experiment: Experiment, searcher):
    """The one TuneConfig of a run: the staged searcher decides how many trials there are."""
    from ray import tune

    from search.engine.scheduling import scheduler

    config = experiment.config
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


def tune_run_config(experiment: Experiment, searcher, session: DriverSession):
    """Ray Tune's RunConfig: where the experiment lives, retries, checkpoints, snapshots, callbacks."""
    from ray import tune

    from search.engine.progress import Progress
    from search.engine.scheduling import Demand
    from search.engine.watch import StopWatch

    config = experiment.config
    root = experiment.storage_uri or str(experiment.path)
    return tune.RunConfig(
        name=TUNE_DIR,
        storage_path=root,
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        # Ray Tune deletes nothing: its experiment-state snapshot can lag the newest checkpoint,
        # and with num_to_keep it may point at one already deleted, so a driver killed at that
        # moment would lose a trial. The progress callback deletes what no saved snapshot refers
        # to any more (`prune_superseded`), and the rest when the run ends.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        # Ray Tune snapshots the experiment state (which trials exist, their status, the
        # searcher) in the driver and uploads it to the storage path at most every sync_period
        # (default 300 s): a driver killed in between would come back with trials and results
        # missing. Snapshot and upload at every step of Tune's loop instead (an upload starts only
        # once the previous one has finished).
        sync_config=tune.SyncConfig(sync_period=SNAPSHOT_S),
        callbacks=[Progress(str(experiment.path), searcher, storage_uri=experiment.storage_uri,
                            minimum_trials=config.minimum_trials, epochs=config.epochs, session=session,
                            per_trial={"cpus": config.cpus_per_trial, "gpus": config.gpus_per_trial,
                                       "max_concurrent": config.max_concurrent}),
                   StopWatch(str(experiment.path), config.pending_timeout,
                             {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}, session.stop),
                   Demand(searcher, config)],
        verbose=0,
    )


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def write_tables(experiment: Experiment) -> None:
    from search.engine.tables import history_frame, trials_frame
    from search.store.table import write_tables as write

    write(experiment.path, trials_frame(experiment, finished=True), history_frame(experiment))


def reopen_search(location: str) -> None:
    """Let a finished Ray Tune experiment at `location` ask its searcher for trials again: Tune
    saved its search generator as finished once the searcher said so, and `Tuner.restore` would
    then end at once. The searcher decides on restore whether a race-on has anything to race."""

    def reopen(state: dict) -> bool:
        if not state.get("finished"):
            return False
        state["finished"] = False
        return True

    _edit_search_states(location, reopen)


def relocate_search(location: str) -> None:
    """Point the storage saved with Ray Tune's search generator at `location`, where the experiment
    is now. `Tuner.restore` moves the trials it restores to the folder it restores from, but the
    trials the searcher creates afterwards take the storage saved in the generator's experiment
    spec (Ray 2.60): in a moved experiment they would write to the old place, or fail there."""
    from search.engine.ray_seam import saved_storage
    from search.store.storage import filesystem, parent

    fs, path = filesystem(parent(location))

    def relocate(state: dict) -> bool:
        storage = saved_storage(state)
        if storage is None or (storage.storage_fs_path == path and type(storage.storage_filesystem) is type(fs)):
            return False
        # what Ray Tune itself changes in the trials it restores at a new place (TuneController._restore_trials)
        storage.storage_fs_path, storage.storage_filesystem = path, fs
        return True

    _edit_search_states(location, relocate)


def _edit_search_states(location: str, edit: Callable[[dict], bool]) -> None:
    """Apply `edit` to each search generator state Ray Tune saved at `location` (a path or a URI);
    a state it changed (`edit` returns True) is written back whole."""
    import ray.cloudpickle as cloudpickle

    from search.store.storage import filesystem, join, read_bytes
    from search.store.tune_files import state_names

    fs, path = filesystem(location)
    for name in state_names(location):
        if not name.startswith("search_gen_state-"):
            continue
        state = cloudpickle.loads(read_bytes(join(location, name)))
        if not edit(state):
            continue
        with fs.open_output_stream(f"{path}/.{name}.tmp") as handle:
            handle.write(cloudpickle.dumps(state))
        fs.move(f"{path}/.{name}.tmp", f"{path}/{name}")
