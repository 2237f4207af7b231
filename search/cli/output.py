"""What the commands print: experiment names, the trial table, the decision, one-line errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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


def print_table(path: Path) -> None:
    from search.store.table import format_trials, read_trials

    sys.stdout.write(format_trials(read_trials(path), sort="psnr_mean", top=None, fmt="table"))


def report(path: Path, race: RaceState) -> None:
    """The trial table, the decision, and as the last line where the experiment is."""
    print_table(path)
    if race.latent_dim is not None:
        close_call = race.race.close_call() if race.race.mean else None
        if close_call:
            print(f"close call: {close_call}")
        print(f"chosen latent size: {race.latent_dim} (confidence {race.confidence or 0:.2f})")
    else:
        print(f"chosen latent size: none ({race.stop_reason or 'no completed seeds trial'})")
    print(f"experiment: {path}")
