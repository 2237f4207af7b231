"""`vae-search check`: before a paid run, what every node of the cluster can do with these settings.

It connects as `run` does (`--address`, Ray's token), runs one small task on every node, prints
one row per node and exits 0 when a run with the given `--cpus-per-trial`, `--gpus-per-trial` and
`--storage` would work there, or 2 with one line per problem. Without `--address` it checks a
local Ray of this machine, as `run` would start it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search.cli import args as types

HELP = "before a paid run: every node's CPUs, GPUs, CUDA, versions and access to --storage"
SETTINGS = ("cpus_per_trial", "gpus_per_trial", "num_cpus")


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=None, help="the Ray cluster to check: auto or HOST:PORT (default: a local Ray)"
    )
    types.add_settings(parser, SETTINGS)
    parser.add_argument(
        "--storage",
        default=None,
        help="the folder or URI the run will use; each node writes, reads and deletes a probe there",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")


def main(args: argparse.Namespace) -> int:
    from search.config import resolve
    from search.engine.preflight import as_json, check_cluster, table
    from search.engine.session import driver_session
    from search.store.storage import is_uri
    from vae.errors import UsageError

    config = resolve("quick", {name: getattr(args, name) for name in SETTINGS})  # the flags not given: run's defaults
    storage = args.storage
    if storage and is_uri(storage) and not storage.split("://", 1)[0].isidentifier():
        raise UsageError(f"--storage {storage!r} is not a folder or a URI like s3://bucket/prefix")
    if storage and not is_uri(storage):
        storage = str(Path(storage).expanduser().resolve())  # as `run` resolves it
    with driver_session(config, args.address):
        reports, found, notes = check_cluster(
            cpus_per_trial=config.cpus_per_trial, gpus_per_trial=config.gpus_per_trial, storage=storage
        )
    if args.format == "json":
        sys.stdout.write(json.dumps(as_json(reports, found, notes), indent=2) + "\n")
    else:
        print(table(reports, storage_probed=bool(storage)))
        for note in notes:
            print(f"note: {note}")
    for problem in found:
        print(f"vae-search: error: {problem}", file=sys.stderr)
    if not found and args.format == "table":
        print(f"ok: a run with --cpus-per-trial {config.cpus_per_trial:g} --gpus-per-trial {config.gpus_per_trial:g}"
              + (f" --storage {storage}" if storage else "") + f" can start on {len(reports)} node(s)")
    return 2 if found else 0
