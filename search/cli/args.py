"""Argument types for the command line: each parses one value or raises a one-line error."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer but got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = int_value(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 but got {text!r}")
    return value


def int_value(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer but got {text!r}") from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number but got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number but got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 but got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 but got {text!r}")
    return value


def latent_dims(text: str) -> tuple[int, ...]:
    """'5,10,15' -> (5, 10, 15): non-empty, positive, no duplicates; kept in the given order."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of positive integers but got {text!r}")
    try:
        values = [positive_int(part) for part in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be positive integers but got {text!r}") from None
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"has duplicates: {text!r}")
    return tuple(values)


def lr_range(text: str) -> tuple[float, float]:
    """'1e-4,3e-3' -> (1e-4, 3e-3): two positive numbers, low < high."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be LOW,HIGH but got {text!r}")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be two numbers LOW,HIGH but got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low > 0 and high > 0):
        raise argparse.ArgumentTypeError(f"must be positive numbers but got {text!r}")
    if low >= high:
        raise argparse.ArgumentTypeError(f"must have LOW < HIGH but got {text!r}")
    return low, high


def gpu_share(text: str) -> float:
    """GPUs per trial: 0 or a share of one GPU in (0, 1] (a trial trains one model on one device)."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(
            f"must be at most 1 (a trial uses one GPU; fractions share it) but got {text!r}"
        )
    return value


def members(text: str) -> int | str:
    """Seeds fused into one trial: `auto` or a positive integer (1: one seed per trial)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto or a positive integer but got {text!r}") from None


def add_settings(
    parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None, *, note: str | None = None
) -> None:
    """A flag for each `SearchConfig` setting that is one (or for those in `names`): help, type
    and choices come from the field's metadata (`search.config._flag`); the default is None,
    which leaves the preset's (or the command's own) value. `note`: what the command adds to
    each help text (whose default it keeps)."""
    import dataclasses

    from search.config import SearchConfig

    for setting in dataclasses.fields(SearchConfig):
        meta = setting.metadata
        if not meta.get("flag", True) or (names is not None and setting.name not in names):
            continue
        options = {"help": f"{meta['help']} ({note})" if note else meta["help"], "default": None}
        if meta.get("kind") == "switch":
            options["action"] = "store_true"
        elif meta.get("kind"):
            options["type"] = globals()[meta["kind"]]
        if meta.get("choices"):
            options["choices"] = meta["choices"]
        parser.add_argument("--" + setting.name.replace("_", "-"), **options)
