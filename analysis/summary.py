"""Trial table -> per-latent-size summary (means and standard errors over the seeds phase)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DIGITS = range(10)
USABLE = ("completed",)  # seeds trials always run all epochs; stopped/errored/diverged do not count


def seeds_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The seeds-phase trials that finished every epoch."""
    return trials[(trials["phase"] == "seeds") & trials["status"].isin(USABLE) & trials["psnr_mean"].notna()]


def summarize(trials: pd.DataFrame, latent_dims: list[int] | None = None) -> pd.DataFrame:
    """One row per latent size: n_trials, psnr_mean, psnr_se, mse_mean, mse_se, per-digit means and
    standard errors, best_trial_id. Sizes in `latent_dims` without a usable trial get n_trials 0.

    The standard error is the sample standard deviation (ddof=1) over seeds divided by sqrt(n);
    NaN when fewer than two seeds finished.
    """
    usable = seeds_trials(trials)
    dims = sorted(set(latent_dims or []) | set(trials["latent_dim"].astype(int)))
    rows = []
    for dim in dims:
        group = usable[usable["latent_dim"] == dim]
        row: dict[str, object] = {"latent_dim": dim, "n_trials": len(group)}
        for column in ["psnr_mean", "mse_mean"] + [f"{m}_digit_{d}" for m in ("psnr", "mse") for d in DIGITS]:
            values = group[column].to_numpy(dtype=float)
            row[column] = float(values.mean()) if len(values) else math.nan
            row[column.replace("_mean", "") + "_se" if column.endswith("_mean") else column + "_se"] = _se(values)
        row["best_trial_id"] = group.loc[group["psnr_mean"].idxmax(), "trial_id"] if len(group) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _se(values: np.ndarray) -> float:
    if len(values) < 2:
        return math.nan
    return float(values.std(ddof=1) / math.sqrt(len(values)))
