"""`vae-search status EXPERIMENT`: where a run stands, from any machine that sees its storage."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "where a run stands: stage, trials, best so far, confidence, ETA"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="the experiment folder, or its storage URI (URI/NAME)")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def main(args: argparse.Namespace) -> int:
    from search.store.status import format_status, read

    current = read(args.experiment)
    sys.stdout.write(json.dumps(current, indent=2) + "\n" if args.format == "json" else format_status(current))
    return 0
