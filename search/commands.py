"""`run`, `resume` and `trials`: the edges where the search touches the user and the disk."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from search.config import SearchConfig, resolve
from search.output import check_new, default_name
from vae.errors import UsageError

_RUN_FLAGS = (
    "dataset", "data_dir", "max_train", "latent_dims", "lr_range", "lr_schedule", "beta", "epochs", "batch_size", "trials",
    "seeds", "max_seeds", "confidence", "max_trials", "rule", "tolerance_db", "scheduler", "cpus_per_trial",
    "gpus_per_trial", "max_concurrent", "max_failures", "num_cpus", "seed", "pending_timeout",
)

LOCAL_RESULTS = "results"


def _storage(text: str | None, name: str) -> tuple[Path, str | None]:
    """(the experiment's local folder, the URI where Ray Tune keeps it or None).

    With a folder, everything lives in FOLDER/NAME. With a URI (s3://, gs://, …) Ray Tune
    keeps trial results and checkpoints in URI/NAME; the driver's own files are written to
    ./results/NAME and copied to URI/NAME when `run` and `analyze` finish."""
    from search.storage import is_uri, join

    if text and is_uri(text):
        scheme = text.split("://", 1)[0]
        if not scheme.isidentifier():
            raise UsageError(f"--storage {text!r} is not a folder or a URI like s3://bucket/prefix")
        return _writable(Path(LOCAL_RESULTS).resolve(), "--storage (its local copy ./results)") / name, join(text, name)
    return _writable(Path(text or LOCAL_RESULTS).expanduser().resolve(), "--storage") / name, None


def _writable(folder: Path, flag: str) -> Path:
    """`folder` if it is (or can be created as) a writable folder, else UsageError. Creates nothing."""
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
    return folder


def run_config(args: argparse.Namespace) -> SearchConfig:
    """The parsed `run` flags over their preset, validated (UsageError when they do not fit)."""
    return resolve(args.preset, {name: getattr(args, name) for name in _RUN_FLAGS})


def run(args: argparse.Namespace) -> int:
    from search import experiment as exp
    from search.session import check_address, check_local_resources

    config = run_config(args)
    if args.name is not None and (not args.name.strip() or "/" in args.name or args.name in (".", "..")):
        raise UsageError(f"--name must be a plain folder name but got {args.name!r}")
    if not args.address:
        check_local_resources(config)
    if config.dataset != "sample":
        _writable(Path(config.data_dir).expanduser().resolve(), "--data-dir")
    path, storage_uri = _storage(args.storage, args.name or default_name("search"))
    if path.is_dir():
        from search.driver_lock import refuse_if_running

        refuse_if_running(path)  # say that it runs, not merely that the name is taken
    check_new(path)
    if storage_uri:
        from search.storage import check_new_location

        check_new_location(storage_uri)
    if args.address:
        check_address(args.address)
    return _execute(config, args.address, lambda: load_splits(config),
                    lambda data: exp.create(config, path, data=data, address=args.address, preset=args.preset,
                                            storage_uri=storage_uri))


def resume(args: argparse.Namespace) -> int:
    from search import experiment as exp

    experiment = exp.Experiment.open(args.experiment)
    if experiment.done:  # nothing to run: no data, no Ray
        from analysis.layout import RACE_FILE
        from search.output import read_race

        _report(experiment.path, read_race(experiment.path / RACE_FILE))
        return 0
    from search.driver_lock import refuse_if_running

    refuse_if_running(experiment.path)  # before Ray starts; the lock itself is taken in _execute
    return _execute(experiment.config, args.address, lambda: load_splits(experiment.config, pinned=experiment.record),
                    lambda data: experiment)


def _execute(config: SearchConfig, address: str | None, load, get_experiment) -> int:
    """Start or join Ray while the data loads, run the experiment to its end, print the decision
    and where it is. Bad data fails before anything is written (the experiment is created after).
    The experiment's driver lock is held from then on (`search.driver_lock`)."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    from analysis.layout import JOURNAL_FILE
    from search import experiment as exp
    from search.driver_lock import hold, repair_journal
    from search.session import ray_session

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-data")
    loading = pool.submit(load)  # reading and splitting the data overlaps Ray's start
    try:
        with ray_session(config, address), contextlib.ExitStack() as owned:
            splits, data = loading.result()
            experiment = get_experiment(data)
            owned.enter_context(hold(experiment.path))
            notice = repair_journal(experiment.path / JOURNAL_FILE)
            if notice:
                print(f"notice: {notice}", flush=True)
            print(f"experiment: {experiment.path} (running; `vae-search resume {experiment.path}` continues it if interrupted)",
                  flush=True)
            try:
                race = exp.execute(experiment, splits)
            except BaseException as exc:
                stop = _disk_full(experiment, exc)
                stop.experiment_path = experiment.path  # for the resume hint in search.cli
                _mark_stopped(experiment, stop)
                if stop is not exc:
                    raise stop from None
                raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    _report(experiment.path, race)
    return 0


def _disk_full(experiment, exc: BaseException) -> BaseException:
    """`exc` itself, or a `DiskFull` carrying what the user needs (free and needed space, a log
    of the details) when the disk filled up. The details go to EXPERIMENT/driver-error.log, or
    to the temporary folder when not even that fits."""
    import shutil
    import tempfile
    import traceback

    from search.session import DISK_FULL_LOGS, DiskFull, is_disk_full

    if not isinstance(exc, DiskFull):
        if not (isinstance(exc, Exception) and is_disk_full(exc)):
            return exc
        exc = DiskFull(str(experiment.path), exc)
    exc.folder = str(experiment.path)  # the folder the user gave (Ray Tune's own messages name sub-folders)
    errors = {f: f.read_text(errors="replace") for f in sorted((experiment.path / "tune").glob("trial_*/error.txt"))}
    trial_errors = [f"--- {f}\n{text}" for f, text in errors.items() if is_disk_full(text)]
    detail = exc.detail
    text = f"{exc}\n" + ("".join(traceback.format_exception(detail)) if isinstance(detail, BaseException) else f"{detail or ''}\n")
    text += "".join(f"--- Ray Tune's log\n{t}\n" for t in DISK_FULL_LOGS.texts) + "".join(trial_errors)
    for folder in (experiment.path, Path(tempfile.gettempdir())):
        log = folder / ("driver-error.log" if folder == experiment.path else f"vae-search-{experiment.path.name}-error.log")
        try:
            log.write_text(text)
            exc.log = log
            break
        except OSError:
            continue
    from search.experiment import space_needed

    exc.free = shutil.disk_usage(experiment.path).free
    exc.needed = space_needed(experiment)
    return exc


def _mark_stopped(experiment, exc: BaseException) -> None:
    """Tell `vae-search status` that this run stopped (and why) rather than let it go stale."""
    import json
    import time

    from search.status import STATUS_FILE
    from vae.files import atomic_write_text

    file = experiment.path / STATUS_FILE
    try:
        current = json.loads(file.read_text()) if file.is_file() else {}
        current.update(stopped=type(exc).__name__ if not str(exc) else str(exc), updated_at=time.time())
        atomic_write_text(file, json.dumps(current, indent=2) + "\n")
    except (OSError, ValueError):
        pass  # the run is stopping anyway; status then reports it by its age


def _report(path: Path, race: dict[str, Any]) -> None:
    """The trial table, the decision, and as the last line where the experiment is."""
    from analysis.racing import Race

    _print_table(path)
    if race.get("latent_dim") is not None:
        close_call = Race.from_dict(race).close_call() if race.get("mean") else None
        if close_call:
            print(f"close call: {close_call}")
        print(f"chosen latent size: {race['latent_dim']} (confidence {race.get('confidence', 0):.2f})")
    else:
        print(f"chosen latent size: none ({race.get('stop_reason', 'no completed seeds trial')})")
    print(f"experiment: {path}")


def data_record(splits, data_dir: str, max_train: int | None) -> dict[str, Any]:
    """What run.json pins: the source used (never `auto`), the folder, the split sizes, a digest."""
    from vae import digest

    return {
        "source": splits.source,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "max_train": max_train,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "digest": digest(splits),
    }


def load_splits(config: SearchConfig, *, pinned: dict[str, Any] | None = None):
    """Load the data once in the driver. With `pinned` (run.json), exactly the data the
    experiment was run on, or UsageError."""
    from vae import DataConfig, DataError, digest, load_data

    if pinned is None:
        splits = load_data(DataConfig(dataset=config.dataset, data_dir=config.data_dir, max_train=config.max_train))
        if splits.notice:
            print(f"notice: {splits.notice}", flush=True)
        record = data_record(splits, config.data_dir, config.max_train)
    else:
        record = pinned.get("data") or {"source": pinned.get("source", config.dataset), "data_dir": config.data_dir}
        try:
            # never `auto` and never a download on resume: the files the run used, or nothing
            splits = load_data(DataConfig(dataset=record["source"], data_dir=record["data_dir"], max_train=config.max_train),
                               download=False)
        except DataError as exc:
            raise UsageError(f"the experiment's data ({record['source']} in {record['data_dir']}) cannot be loaded: {exc}") from None
        if record.get("digest") and digest(splits) != record["digest"]:
            raise UsageError(
                f"the {record['source']} data in {record['data_dir']} no longer matches the experiment (digest differs); "
                "restore those files, or start a new run"
            )
    print(f"data: {splits.source} ({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test)", flush=True)
    return splits, record


def trials(args: argparse.Namespace) -> int:
    from search.table import format_trials, read_trials

    table = read_trials(args.experiment)
    if args.phase:
        table = table[table["phase"] == args.phase]
    sys.stdout.write(format_trials(table, sort=args.sort, top=args.top, fmt=args.format))
    return 0


def status(args: argparse.Namespace) -> int:
    import json

    from search.status import format_status, read

    current = read(args.experiment)
    sys.stdout.write(json.dumps(current, indent=2) + "\n" if args.format == "json" else format_status(current))
    return 0


def _print_table(path: Path) -> None:
    from search.table import format_trials, read_trials

    sys.stdout.write(format_trials(read_trials(path), sort="psnr_mean", top=None, fmt="table"))
