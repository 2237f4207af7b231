"""Trial table -> per-latent-size summary (means and standard errors over the seeds trials)."""

from __future__ import annotations

import pandas as pd

from analysis.layout import COMPLETED, DIGIT_COLUMNS
from analysis.rules import DEFAULT_METRIC, METRICS

USABLE = (COMPLETED,)  # seeds trials always run all epochs; stopped/errored/diverged do not count
SUMMARIZED = (["psnr_mean", "mse_mean", "nll_iw", "active_units", "val_loss"]
           + [c for c in DIGIT_COLUMNS if c.startswith("psnr")] + [c for c in DIGIT_COLUMNS if c.startswith("mse")])


def seeds_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The seeds trials (racing ones included) that finished every epoch."""
    return trials[(trials["phase"] == "seeds") & trials["status"].isin(USABLE) & trials["psnr_mean"].notna()]


def se_column(column: str) -> str:
    return column.replace("_mean", "_se") if column.endswith("_mean") else f"{column}_se"


def summarize(
    trials: pd.DataFrame, latent_dims: list[int] | None = None, *, metric: str = DEFAULT_METRIC
) -> pd.DataFrame:
    """One row per latent size: n_trials, psnr_mean, psnr_se, mse_mean, mse_se, nll_iw, nll_iw_se,
    active_units, active_units_se, val_loss, val_loss_se, per-digit means and standard errors,
    best_trial_id (the size's best seeds trial by `metric`). Sizes in `latent_dims` without a
    usable trial get n_trials 0; columns a trial table lacks (tables of earlier releases) are NaN.

    The standard error is the sample standard deviation (ddof=1) over seeds divided by sqrt(n)
    (pandas' `sem`); NaN when fewer than two seeds finished.
    """
    usable = seeds_trials(trials).astype({"latent_dim": int})
    usable = usable.assign(**{c: float("nan") for c in SUMMARIZED if c not in usable.columns})
    dims = sorted(set(latent_dims or []) | set(trials["latent_dim"].astype(int)))
    grouped = usable.groupby("latent_dim")
    stats = grouped[SUMMARIZED].agg(["mean", "sem"])
    frame = pd.DataFrame(index=pd.Index(dims, name="latent_dim"))
    frame["n_trials"] = grouped.size().reindex(dims, fill_value=0).astype(int)
    for column in SUMMARIZED:
        frame[column] = stats[(column, "mean")].reindex(dims).astype(float)
        frame[se_column(column)] = stats[(column, "sem")].reindex(dims).astype(float)
    m = METRICS[metric]
    ranked = usable.dropna(subset=[m.column])
    by = ranked.groupby("latent_dim")[m.column]
    best = ranked.loc[by.idxmax() if m.sign > 0 else by.idxmin()] if len(ranked) else ranked
    frame["best_trial_id"] = best.set_index("latent_dim")["trial_id"].reindex(dims).astype(object)
    frame["best_trial_id"] = frame["best_trial_id"].where(frame["best_trial_id"].notna(), None)
    return frame.reset_index()


def usage_words(summary: pd.DataFrame) -> list[str]:
    """"latent 20 uses 14.3 ± 0.5 of its 20 dimensions" for each size with active units (mean ±
    SE over its seeds trials)."""
    lines = []
    for row in summary.sort_values("latent_dim").itertuples():
        if row.n_trials > 0 and pd.notna(getattr(row, "active_units", float("nan"))):
            se = row.active_units_se
            spread = f" ± {se:.1f}" if pd.notna(se) else ""
            lines.append(
                f"latent {row.latent_dim} uses {row.active_units:.1f}{spread} of its {row.latent_dim} dimensions"
            )
    return lines
