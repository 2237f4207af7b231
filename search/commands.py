"""`run`, `resume` and `trials`: the edges where the search touches the user and the disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from search.config import resolve
from search.output import check_new, default_name
from vae.errors import UsageError

_RUN_FLAGS = (
    "dataset", "data_dir", "max_train", "latent_dims", "lr_range", "beta", "epochs", "batch_size", "trials",
    "seeds", "scheduler", "cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures", "num_cpus", "seed",
)


LOCAL_RESULTS = "results"


def _storage(text: str | None, name: str) -> tuple[Path, str | None]:
    """(the experiment's local folder, the URI where Ray Tune keeps it or None).

    With a folder, everything lives in FOLDER/NAME. With a URI (s3://, gs://, …) Ray Tune
    keeps trial results and checkpoints in URI/NAME; the driver's own files are written to
    ./results/NAME and copied to URI/NAME when `run` and `analyze` finish."""
    from search.storage import is_uri

    if text and is_uri(text):
        scheme = text.split("://", 1)[0]
        if not scheme.isidentifier():
            raise UsageError(f"--storage {text!r} is not a folder or a URI like s3://bucket/prefix")
        return Path(LOCAL_RESULTS).resolve() / name, f"{text.rstrip('/')}/{name}"
    return Path(text or LOCAL_RESULTS).expanduser().resolve() / name, None


def run(args: argparse.Namespace) -> int:
    from search import experiment as exp

    config = resolve(args.preset, {name: getattr(args, name) for name in _RUN_FLAGS})
    if args.name is not None and (not args.name.strip() or "/" in args.name or args.name in (".", "..")):
        raise UsageError(f"--name must be a plain folder name but got {args.name!r}")
    path, storage_uri = _storage(args.storage, args.name or default_name("search"))
    check_new(path)
    if storage_uri:
        _check_new_location(storage_uri)
    if args.address:
        exp.check_address(args.address)
    splits = _load(config)  # bad data fails here, before anything is written
    started = exp.start_ray(config, args.address)
    try:
        experiment = exp.create(config, path, source=splits.source, address=args.address, storage_uri=storage_uri)
        print(f"experiment: {path} (running; `vae-search resume {path}` continues it if interrupted)", flush=True)
        exp.execute(experiment, splits)
    finally:
        if started:
            import ray

            ray.shutdown()
    _print_table(path)
    print(f"experiment: {path}")
    return 0


def _check_new_location(uri: str) -> None:
    from search.storage import is_dir

    try:
        taken = is_dir(uri)
    except Exception as exc:  # unknown scheme, missing credentials, unreachable bucket
        raise UsageError(f"--storage {uri.rsplit('/', 1)[0]}: {' '.join(str(exc).split())[:300]}") from None
    if taken:
        raise UsageError(f"{uri} already exists; choose another --name (nothing was overwritten)")


def resume(args: argparse.Namespace) -> int:
    from search import experiment as exp

    experiment = exp.Experiment.open(args.experiment)
    splits = _load(experiment.config)
    started = exp.start_ray(experiment.config, args.address)
    try:
        exp.execute(experiment, splits)
    finally:
        if started:
            import ray

            ray.shutdown()
    _print_table(experiment.path)
    print(f"experiment: {experiment.path}")
    return 0


def _load(config):
    from vae import DataConfig, load_data

    splits = load_data(DataConfig(dataset=config.dataset, data_dir=config.data_dir, max_train=config.max_train))
    if splits.notice:
        print(f"notice: {splits.notice}", flush=True)
    print(f"data: {splits.source} ({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test)", flush=True)
    return splits


def trials(args: argparse.Namespace) -> int:
    from search.table import format_trials, read_trials

    table = read_trials(args.experiment)
    if args.phase:
        table = table[table["phase"] == args.phase]
    sys.stdout.write(format_trials(table, sort=args.sort, top=args.top, fmt=args.format))
    return 0


def _print_table(path: Path) -> None:
    from search.table import format_trials, read_trials

    sys.stdout.write(format_trials(read_trials(path), sort="psnr_mean", top=None, fmt="table"))
