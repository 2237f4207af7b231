"""What the commands print: experiment names, the trial table, the decision, one-line errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `--help` imports this module: no pandas (analysis.racing) on that path
    from search.config import SearchConfig
    from search.store.race import RaceState

PROG = "vae-search"


def default_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())


def error(message: BaseException | str) -> None:
    """`vae-search: error: …` on stderr, on one line."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_table(trials) -> None:
    """`trials` (a trials.csv read back) as the `trials` command prints it, best PSNR first."""
    from search.store.table import format_trials

    sys.stdout.write(format_trials(trials, sort="psnr_mean", top=None, fmt="table"))


def report(path: Path, race: RaceState, config: SearchConfig | None = None, address: str | None = None) -> None:
    """The trial table, the decision (with the answer by each metric and the latent use, given
    the run's `config`), and as the last line where the experiment is."""
    from analysis.racing import StopReason
    from search.store.table import read_trials

    trials = read_trials(path)
    print_table(trials)
    if race.latent_dim is not None:
        close_call = race.race.close_call() if race.race.mean else None
        if close_call:
            print(f"close call: {close_call}")
        if config is not None:
            for line in latent_lines(trials, race, config):
                print(line)
        print(f"chosen latent size: {race.latent_dim} (confidence {race.confidence or 0:.2f})")
    else:
        print(f"chosen latent size: none ({race.stop_reason or StopReason.NO_SEEDS})")
    line = race_on_line(path, trials, race.confidence, config, address) if config is not None else None
    if line:
        print(line)
    print(f"experiment: {path}")


def race_on_line(path: Path, trials, confidence: float | None, config: SearchConfig,
                 address: str | None = None) -> str | None:
    """`to race on: vae-search resume PATH [--address A] --max-seeds N …` when the race ended below
    its target and the experiment has room to race on (`--race-on-to`), with the seeds trials it
    would at most add; None otherwise."""
    if (
        config.race_on_to is None
        or confidence is None
        or confidence >= config.confidence
        or config.max_seeds >= config.race_on_to
    ):
        return None
    room = config.decision.room(trials, max_seeds=config.race_on_to)
    more = sum(room.values())
    if not more:
        return None
    from search.store.record import resume_command

    flags = f"--max-seeds {config.race_on_to}"
    if config.max_trials is not None and len(trials) + more > config.max_trials:
        flags += f" --max-trials {len(trials) + more}"
    return (f"to race on: {resume_command(path, address)} {flags} (at most {more} more seeds trials, for latent sizes "
            f"{', '.join(str(d) for d, n in sorted(room.items()) if n)})")


def latent_lines(trials, race: RaceState, config: SearchConfig) -> list[str]:
    """The answer by each metric side by side (the run's own decision for its metric) and what
    each latent size uses of its dimensions, from the run's trial table."""
    from analysis.answers import side_by_side
    from analysis.summary import summarize, usage_words

    races = config.decision.both_answers(trials)
    if race.race is not None:
        races[config.metric] = race.race
    return side_by_side(races) + usage_words(summarize(trials, latent_dims=list(config.latent_dims)))
