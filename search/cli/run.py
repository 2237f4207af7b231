"""`vae-search run`: a new experiment, searched, replicated and raced to its decision. The
flags become a `SearchConfig`; the run itself is `search.api.run`'s, as from Python."""

from __future__ import annotations

import argparse

from search.cli import args as types
from search.config import RUN_FLAGS, SearchConfig, resolve

HELP = "run a search (Ray Tune + Optuna), then the seeds phase and racing"


def add(parser: argparse.ArgumentParser) -> None:
    """`--preset`, a flag per setting of `SearchConfig` (its help, type and choices are the field's
    metadata, `search.config._flag`), then where the run happens and what it is called."""
    from search.config import PRESETS

    parser.add_argument(
        "--preset", choices=tuple(PRESETS), default="quick", help="default values (flags override); default: quick"
    )
    types.add_settings(parser)
    parser.add_argument("--address", default=None, help="join a Ray cluster: auto or HOST:PORT")
    parser.add_argument("--storage", default=None, help="folder holding experiments (default: ./results)")
    parser.add_argument("--name", default=None, help="experiment name (default: search-<time>); must be new")


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The parsed `run` flags over their preset, validated (UsageError when they do not fit)."""
    return resolve(args.preset, {name: getattr(args, name) for name in RUN_FLAGS})


def main(args: argparse.Namespace) -> int:
    from search.api import run

    run(search_config(args), storage=args.storage, name=args.name, address=args.address, preset=args.preset,
        keep_ray=False)
    return 0
