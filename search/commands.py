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


def _storage(text: str | None) -> Path:
    if text and "://" in text:
        raise UsageError(f"--storage {text}: cloud URIs are not supported yet; give a (shared) folder")
    return Path(text or "results").expanduser().resolve()


def run(args: argparse.Namespace) -> int:
    from search import experiment as exp

    config = resolve(args.preset, {name: getattr(args, name) for name in _RUN_FLAGS})
    path = _storage(args.storage) / (args.name or default_name("search"))
    if args.name is not None and (not args.name.strip() or "/" in args.name or args.name in (".", "..")):
        raise UsageError(f"--name must be a plain folder name but got {args.name!r}")
    check_new(path)
    if args.address:
        exp.check_address(args.address)
    splits = _load(config)  # bad data fails here, before anything is written
    started = exp.start_ray(config, args.address)
    try:
        experiment = exp.create(config, path, source=splits.source, address=args.address)
        print(f"experiment: {path} (running; `vae-search resume {path}` continues it if interrupted)", flush=True)
        exp.execute(experiment, splits)
    finally:
        if started:
            import ray

            ray.shutdown()
    _print_table(path)
    print(f"experiment: {path}")
    return 0


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
