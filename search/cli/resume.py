"""`vae-search resume EXPERIMENT`: continue an interrupted run where it stopped."""

from __future__ import annotations

import argparse

HELP = "continue an interrupted experiment"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="the experiment folder printed by `run`")
    parser.add_argument("--address", default=None, help="join a Ray cluster instead of starting a local one")


def main(args: argparse.Namespace) -> int:
    from search.cli.output import report
    from search.cli.run import execute
    from search.engine.data import load_splits
    from search.store.files import RACE_FILE
    from search.store.lock import refuse_if_running
    from search.store.race import read_race
    from search.store.record import Experiment
    from search.store.tune_files import refuse_earlier_layout

    experiment = Experiment.open(args.experiment)
    if experiment.done:  # nothing to run: no data, no Ray
        report(experiment.path, read_race(experiment.path / RACE_FILE), experiment.config)
        return 0
    refuse_if_running(experiment.path)  # before Ray starts; the lock itself is taken in execute
    refuse_earlier_layout(experiment)
    return execute(experiment.config, args.address, lambda: load_splits(experiment.config, pinned=experiment.record),
                   lambda data: experiment)
