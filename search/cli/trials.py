"""`vae-search trials EXPERIMENT`: the trial table, sorted and filtered."""

from __future__ import annotations

import argparse
import sys

from search.cli import args as types

HELP = "print an experiment's trial table"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="the experiment folder printed by `run`")
    parser.add_argument("--sort", default="psnr_mean", help="column to sort by (default: psnr_mean, best first)")
    parser.add_argument("--top", type=types.positive_int, default=None, help="only the first N rows")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--stage", choices=("search", "seeds", "racing"), default=None, help="only this stage's trials")
    parser.add_argument("--phase", choices=("search", "seeds"), default=None,
                        help="only this phase's trials (seeds: the seeds and racing stages)")


def main(args: argparse.Namespace) -> int:
    from search.store.table import format_trials, read_trials

    table = read_trials(args.experiment)
    if args.phase:
        table = table[table["phase"] == args.phase]
    if args.stage:
        table = table[table["stage"] == args.stage]
    sys.stdout.write(format_trials(table, sort=args.sort, top=args.top, fmt=args.format))
    return 0
