"""Trial table -> per-latent-size summary (means and standard errors over the seeds trials)."""

from __future__ import annotations

import pandas as pd

from analysis.layout import COMPLETED, DIGIT_COLUMNS

USABLE = (COMPLETED,)  # seeds trials always run all epochs; stopped/errored/diverged do not count
METRICS = ["psnr_mean", "mse_mean"] + [c for c in DIGIT_COLUMNS if c.startswith("psnr")] + [c for c in DIGIT_COLUMNS if c.startswith("mse")]


def seeds_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The seeds trials (racing ones included) that finished every epoch."""
    return trials[(trials["phase"] == "seeds") & trials["status"].isin(USABLE) & trials["psnr_mean"].notna()]


def _se_name(column: str) -> str:
    return column.replace("_mean", "_se") if column.endswith("_mean") else f"{column}_se"


def summarize(trials: pd.DataFrame, latent_dims: list[int] | None = None) -> pd.DataFrame:
    """One row per latent size: n_trials, psnr_mean, psnr_se, mse_mean, mse_se, per-digit means and
    standard errors, best_trial_id. Sizes in `latent_dims` without a usable trial get n_trials 0.

    The standard error is the sample standard deviation (ddof=1) over seeds divided by sqrt(n)
    (pandas' `sem`); NaN when fewer than two seeds finished.
    """
    usable = seeds_trials(trials).astype({"latent_dim": int})
    dims = sorted(set(latent_dims or []) | set(trials["latent_dim"].astype(int)))
    grouped = usable.groupby("latent_dim")
    stats = grouped[METRICS].agg(["mean", "sem"])
    frame = pd.DataFrame(index=pd.Index(dims, name="latent_dim"))
    frame["n_trials"] = grouped.size().reindex(dims, fill_value=0).astype(int)
    for column in METRICS:
        frame[column] = stats[(column, "mean")].reindex(dims).astype(float)
        frame[_se_name(column)] = stats[(column, "sem")].reindex(dims).astype(float)
    best = usable.loc[grouped["psnr_mean"].idxmax()] if len(usable) else usable
    frame["best_trial_id"] = best.set_index("latent_dim")["trial_id"].reindex(dims).astype(object)
    frame["best_trial_id"] = frame["best_trial_id"].where(frame["best_trial_id"].notna(), None)
    return frame.reset_index()
