"""`vae-search resume EXPERIMENT`: continue an interrupted run where it stopped; with
`--max-seeds`, `--confidence` or `--max-trials`, race on from a finished one.

Racing on keeps the search and every finished trial: only new seeds trials train, for the
sizes still in contention, until the confidence reaches the target or the new limit. The run's
confidence was discounted from the start for looks up to `--race-on-to` seeds per size (default
twice `--max-seeds`), so a race-on up to it is as calibrated as one race planned that long
(docs/calibration.md). run.json records each race-on (its time, the limits before and after,
the command); it is then resumable, and interruptible, like any run.
"""

from __future__ import annotations

import argparse
import shlex
import time

HELP = "continue an interrupted experiment, or race on from a finished one"
LIMITS = ("max_seeds", "confidence", "max_trials")


def add(parser: argparse.ArgumentParser) -> None:
    from search.cli import args as types

    parser.add_argument("experiment", help="the experiment folder printed by `run`")
    parser.add_argument("--address", default=None, help="join a Ray cluster instead of starting a local one")
    types.add_settings(parser, LIMITS)  # race on with higher limits: --max-seeds, --confidence, --max-trials


def main(args: argparse.Namespace) -> int:
    from search.api import execute
    from search.cli.output import report
    from search.engine.data import load_splits
    from search.store.files import RACE_FILE
    from search.store.lock import refuse_if_running
    from search.store.race import read_race
    from search.store.record import Experiment
    from search.store.tune_files import refuse_earlier_layout

    experiment = Experiment.open(args.experiment)
    limits = {name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None}
    if experiment.done and not limits:  # nothing to run: no data, no Ray
        report(experiment.path, read_race(experiment.path / RACE_FILE), experiment.config, args.address)
        return 0
    refuse_if_running(experiment.path)  # before a race-on writes and Ray starts; execute takes the lock
    config, reopen = race_on(experiment, limits) if limits else (experiment.config, lambda: experiment)
    refuse_earlier_layout(experiment)
    # a race-on writes once Ray is up and the data loaded: an unreachable --address or changed data
    # leaves the finished experiment as it was
    execute(config, args.address, lambda: load_splits(config, pinned=experiment.record), lambda data: reopen(),
            keep_ray=False)
    return 0


def race_on(experiment, limits: dict):
    """Check that the finished `experiment` has something to race under the new `limits`
    (UsageError, nothing written, when not). Returns the new config and what opens the experiment
    again: Tune's search reopened, run.json with the new limits and a record of the change, not
    done; it returns the experiment reread."""
    import dataclasses

    from search.engine.experiment import reopen_search
    from search.store.files import RACE_FILE
    from search.store.race import read_race
    from search.store.record import Experiment
    from search.store.table import read_trials
    from vae.errors import UsageError

    path, config = experiment.path, experiment.config
    if "phases_done" in experiment.record or config.race_on_to is None:
        raise UsageError(f"{path} was made by an earlier vae-search, whose racing was not planned for a race-on; "
                         "start a new run with the limits you want")
    if not experiment.done:
        raise UsageError(f"{path} has not finished: `vae-search resume {path}` first, then race on")
    if limits.get("max_seeds", config.max_seeds) < config.max_seeds:
        raise UsageError(
            f"--max-seeds {limits['max_seeds']} is below the {config.max_seeds} this experiment already allowed"
        )
    if limits.get("max_seeds", 0) > config.race_on_to:
        raise UsageError(
            f"--max-seeds {limits['max_seeds']} is above --race-on-to {config.race_on_to}, the most seeds per "
            "size this experiment's confidence is calibrated for; at most that"
        )
    try:
        new = dataclasses.replace(config, **limits)
    except (ValueError, TypeError) as exc:  # SearchConfig's own check, e.g. --max-trials below what a run needs
        raise UsageError(str(exc)) from None
    trials = read_trials(path)
    race = read_race(path / RACE_FILE)
    step = new.decision.next_step(trials, new.limits)
    if step.latent_dim is None:
        reached = (
            f" (confidence {race.confidence:.2f}, target {new.confidence:g})" if race.confidence is not None else ""
        )
        raise UsageError(f"nothing to race on in {path} with {_flags(limits)}: racing would stop at once, "
                         f"{step.stop_reason.why_not}{reached}")

    def reopen() -> Experiment:
        reopen_search(experiment.tune_location)
        record = experiment.record
        record.setdefault("race_ons", []).append({
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": f"vae-search resume EXPERIMENT {_flags(limits)}",
            "before": {name: getattr(config, name) for name in limits},
            "after": dict(limits),
        })
        record["config"], record["done"] = new.to_dict(), False
        experiment.save()
        print(f"racing on: {_flags(limits)} (before: "
              f"{', '.join(f'{_flag(n)} {getattr(config, n)}' for n in limits)})", flush=True)
        return Experiment.open(path)

    return new, reopen


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flags(limits: dict) -> str:
    return shlex.join(part for name, value in limits.items() for part in (_flag(name), f"{value:g}"))
