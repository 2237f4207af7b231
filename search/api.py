"""Searches from Python, for a script or a notebook: what `vae-search run`, `resume` and
`analyze` do, with the same checks (bad input raises `UsageError`, a `ValueError` naming the
offending value, where the command line exits 2).

    import search
    experiment = search.run(search.resolve("smoke", {"seed": 1}), storage="results", name="a")
    experiment.trials         # trials.csv as a DataFrame
    experiment.decision       # the racing state: latent_dim, confidence, stop_reason
    search.analyze(experiment)
    model = experiment.best_model()

Ray stays up after a search, as Ray Tune leaves it: the next search in the same process joins
it instead of starting its own (`keep_ray=False` shuts down a Ray the search started).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from search.cli.output import report
from search.config import SearchConfig
from search.store.record import Experiment
from vae.errors import UsageError

LOCAL_RESULTS = "results"


def run(config: SearchConfig, *, storage: str | None = None, name: str | None = None, address: str | None = None,
        preset: str | None = None, keep_ray: bool = True) -> Experiment:
    """A new experiment `storage/name` (default ./results/search-<time>), searched, replicated and
    raced to its decision; returns it. `preset`: recorded in run.json's reproduce command."""
    from search.cli.output import default_name
    from search.engine.data import load_splits
    from search.engine.session import check_address, check_local_resources, starts_local_ray
    from search.store import record
    from search.store.folders import check_new

    if not isinstance(config, SearchConfig):
        raise UsageError(f"config must be a SearchConfig (search.resolve builds one) but got {config!r}")
    if name is not None and (not name.strip() or "/" in name or name in (".", "..")):
        raise UsageError(f"--name must be a plain folder name but got {name!r}")
    if starts_local_ray(address):
        check_local_resources(config)
    if config.dataset != "sample":
        writable(Path(config.data_dir).expanduser().resolve(), "--data-dir")
    path, storage_uri = experiment_place(storage, name or default_name("search"))
    if path.is_dir():
        from search.store.lock import refuse_if_running

        refuse_if_running(path)  # say that it runs, not merely that the name is taken
    check_new(path)
    if storage_uri:
        from search.store.storage import check_new_location

        check_new_location(storage_uri)
    if address:
        check_address(address)
    def create(data):
        return record.create(config, path, data=data, address=address, preset=preset, storage_uri=storage_uri)

    return execute(config, address, lambda: load_splits(config), create, keep_ray=keep_ray)


def analyze(experiment: Experiment | str | Path, **decision) -> None:
    """`vae-search analyze`: selection.json, the figures, report.html and best_model/ in the
    experiment, by the run's rule unless `decision` (rule, metric, tolerance_db,
    tolerance_nats) says otherwise."""
    import argparse

    from search.cli import analyze as command

    unknown = sorted(set(decision) - set(command.DECISION))
    if unknown:
        raise UsageError(f"analyze takes {', '.join(command.DECISION)} but got {', '.join(unknown)}")
    path = experiment.path if isinstance(experiment, Experiment) else experiment
    command.main(argparse.Namespace(experiment=str(path), **{k: decision.get(k) for k in command.DECISION}))


def experiment_place(text: str | None, name: str) -> tuple[Path, str | None]:
    """(the experiment's local folder, the URI where Ray Tune keeps it or None).

    With a folder, everything lives in FOLDER/NAME. With a URI (s3://, gs://, …) Ray Tune
    keeps trial results and checkpoints in URI/NAME; the driver's own files are written to
    ./results/NAME and copied to URI/NAME when `run` and `analyze` finish."""
    from search.store.storage import is_uri, join

    if text and is_uri(text):
        scheme = text.split("://", 1)[0]
        if not scheme.isidentifier():
            raise UsageError(f"--storage {text!r} is not a folder or a URI like s3://bucket/prefix")
        return writable(Path(LOCAL_RESULTS).resolve(), "--storage (its local copy ./results)") / name, join(text, name)
    return writable(Path(text or LOCAL_RESULTS).expanduser().resolve(), "--storage") / name, None


def writable(folder: Path, flag: str) -> Path:
    """`folder` if it is (or can be created as) a writable folder, else UsageError. Leaves nothing
    behind: a folder made and removed in the nearest existing parent is the last check."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file, not a folder" if existing == folder else f"cannot be created: {existing} is a file"
        raise UsageError(f"{flag} {folder} {what}")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise UsageError(f"{flag} {folder} cannot be written ({existing} is on a read-only file system)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {folder} cannot be written (no write permission on {existing})")
    try:  # what the checks above cannot see: a kernel's file system (/proc), an ACL, a quota
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as exc:
        raise UsageError(f"{flag} {folder} cannot be created: making a folder in {existing} fails "
                         f"({exc.strerror or exc})") from None
    return folder


def execute(config: SearchConfig, address: str | None, load: Callable, get_experiment: Callable, *,
            keep_ray: bool = True) -> Experiment:
    """Start or join Ray while the data loads, run the experiment to its end, print the decision
    and where it is. Bad data fails before anything is written (the experiment is created after).
    The experiment's driver lock is held from then on (`search.store.lock`)."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    # ray and torch are imported before the loading thread starts: both threads import asyncio
    # (ray's core; torch, sklearn), and two threads importing one module at once can fail in
    # CPython's import machinery (KeyError: 'asyncio.base_events', seen once when coverage slowed
    # a run's start)
    import ray  # noqa: F401
    import torch  # noqa: F401

    from search.engine import experiment as engine
    from search.engine.session import driver_session
    from search.engine.stop import CannotRun, Stopped
    from search.store.files import JOURNAL_FILE
    from search.store.lock import hold, repair_journal
    from search.store.record import resume_command

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-data")
    loading = pool.submit(load)  # reading and splitting the data overlaps Ray's start
    experiment = None
    try:
        with driver_session(config, address, keep_ray=keep_ray) as session, contextlib.ExitStack() as owned:
            splits, data = loading.result()
            experiment = get_experiment(data)
            owned.enter_context(hold(experiment.path))
            notice = repair_journal(experiment.path / JOURNAL_FILE)
            if notice:
                print(f"notice: {notice}", flush=True)
            print(f"experiment: {experiment.path} (running; `{resume_command(experiment.path, address)}` continues "
                  "it if interrupted)", flush=True)
            try:
                race = engine.execute(experiment, splits, session=session)
            except BaseException as exc:
                if isinstance(exc, CannotRun):
                    exc.experiment_path, exc.address = experiment.path, address
                stop = _disk_full(experiment, exc, session.stop.full_logs, address)
                _mark_stopped(experiment, stop)
                if stop is not exc:
                    raise stop from None
                raise
    except Stopped as exc:  # a signal: `driver_session` says which, here is where the experiment is
        raise Stopped(experiment.path if experiment else None, exc.signum, address) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    report(experiment.path, race, experiment.config, address)
    return Experiment.open(experiment.path)


def _disk_full(experiment, exc: BaseException, ray_logs: list[str], address: str | None = None) -> BaseException:
    """`exc` itself, or a `DiskFull` carrying what the user needs (free and needed space, a log
    of the details) when the disk filled up. The details (with `ray_logs`, what Ray logged about
    it) go to EXPERIMENT/driver-error.log (`DRIVER_ERROR_LOG`), or to the temporary folder when
    not even that fits."""
    import shutil
    import tempfile
    import traceback

    from search.engine.stop import DiskFull, is_disk_full
    from search.store.files import DRIVER_ERROR_LOG
    from search.store.tune_files import space_needed

    if isinstance(exc, DiskFull):
        detail = exc.detail
    elif isinstance(exc, Exception) and is_disk_full(exc):
        detail = exc
    else:
        return exc
    # the folder the user gave (Ray Tune's own messages name sub-folders)
    headline = f"no space left on device in {experiment.path}"
    errors = {f: f.read_text(errors="replace") for f in sorted((experiment.path / "tune").glob("trial_*/error.txt"))}
    trial_errors = [f"--- {f}\n{text}" for f, text in errors.items() if is_disk_full(text)]
    text = f"{headline}\n" + (
        "".join(traceback.format_exception(detail)) if isinstance(detail, BaseException) else f"{detail or ''}\n"
    )
    text += "".join(f"--- Ray Tune's log\n{t}\n" for t in ray_logs) + "".join(trial_errors)
    log = None
    for folder in (experiment.path, Path(tempfile.gettempdir())):
        candidate = folder / (
            DRIVER_ERROR_LOG if folder == experiment.path else f"vae-search-{experiment.path.name}-error.log"
        )
        try:
            candidate.write_text(text)
            log = candidate
            break
        except OSError:
            continue
    return DiskFull(str(experiment.path), detail, experiment_path=experiment.path, address=address, log=log,
                    free=shutil.disk_usage(experiment.path).free, needed=space_needed(experiment))


def _mark_stopped(experiment, exc: BaseException) -> None:
    """Tell `vae-search status` that this run stopped (and why) rather than let it go stale."""
    from search.store.status import mark_stopped

    mark_stopped(experiment.path, type(exc).__name__ if not str(exc) else str(exc))
