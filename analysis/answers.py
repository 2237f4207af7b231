"""The run's answers as the report and the command line show them: the seeds trials' values per
size, the answer by each metric side by side, and how the race's means moved trial by trial.
The decision itself is `analysis.racing`'s."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from analysis.racing import Race, assess, mean_se
from analysis.rules import DEFAULT_METRIC, METRICS
from analysis.summary import seeds_trials


def values_by_latent_dim(trials: pd.DataFrame, column: str = "psnr_mean") -> dict[int, list[float]]:
    """`column` (the validation psnr_mean, nll_iw, or `seed`) of every completed seeds trial that
    has it, per latent size."""
    usable = seeds_trials(trials)
    if column not in usable.columns:
        return {}
    usable = usable[usable[column].notna()]
    return {int(dim): group[column].tolist() for dim, group in usable.groupby("latent_dim")}


def both_answers(trials: pd.DataFrame, *, metric: str = DEFAULT_METRIC, **settings) -> dict[str, Race]:
    """`assess` by each metric on the trial table, the run's chosen `metric` first (`settings`:
    rule, tolerance_db, tolerance_nats, seed, horizon). A metric no seeds trial has (nll_iw in
    runs of earlier releases) is left out."""
    races = {}
    for name in (metric, *(m for m in METRICS if m != metric)):
        values = values_by_latent_dim(trials, METRICS[name].column)
        if values or name == metric:
            races[name] = assess(values, metric=name, **settings)
    return races


def side_by_side(races: Mapping[str, Race]) -> list[str]:
    """The answer by each metric on one line, and one more when they differ, with why they can."""
    shown = {name: race for name, race in races.items() if race.latent_dim is not None}
    if not shown:
        return []
    lines = ["answers by metric: " + "; ".join(
        f"{METRICS[name].label} {race.latent_dim} (confidence {race.confidence:.2f})" for name, race in shown.items())]
    chosen = {race.latent_dim for race in shown.values()}
    if len(chosen) > 1:
        by = {name: race.latent_dim for name, race in shown.items()}
        lines.append(
            f"the metrics differ ({', '.join(f'{METRICS[n].label}: {d}' for n, d in by.items())}): PSNR scores the "
            "reconstruction alone and keeps rising with capacity, while nll_iw also pays for the KL of every latent "
            "dimension in use, so it can level off or turn at a smaller size; and each metric has its own tolerance "
            f"({'; '.join(f'{shown[n].tolerance:g} {METRICS[n].unit}' for n in shown)}), so sizes equivalent by one "
            "need "
            "not be by the other"
        )
    return lines


def race_history(trials: pd.DataFrame, column: str = "psnr_mean") -> pd.DataFrame:
    """Each latent size's mean ± SE of `column` after every completed seeds trial that has it,
    in the order they finished.

    Columns: step (completed seeds trials so far), latent_dim, n_trials, mean, se."""
    usable = seeds_trials(trials)
    usable = usable[usable[column].notna()] if column in usable.columns else usable.iloc[:0]
    order = usable.sort_values("finished_at" if "finished_at" in usable.columns else "trial_id", kind="stable")
    seen: dict[int, list[float]] = {}
    rows = []
    for step, (_, row) in enumerate(order.iterrows(), start=1):
        seen.setdefault(int(row["latent_dim"]), []).append(float(row[column]))
        for dim, values in sorted(seen.items()):
            mean, se = mean_se(values)
            rows.append({"step": step, "latent_dim": dim, "n_trials": len(values), "mean": mean, "se": se})
    return pd.DataFrame(rows, columns=["step", "latent_dim", "n_trials", "mean", "se"])
