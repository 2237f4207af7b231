"""Names shared by `search` (which writes an experiment) and `analysis` (which reads it): the
trial table's columns, statuses, phases and stages (the files' names: `search.store.files`).

Kept free of heavy imports: the command line reads it for `--help`.
"""

from __future__ import annotations

from vae.config import N_CLASSES

METRIC, MODE = "psnr_mean", "max"  # what the search maximises (validation, mean of ten digits)

PHASES = ("search", "seeds")  # the `phase` column: racing trials are seeds trials
STAGES = ("search", "seeds", "racing", "done")  # the `stage` column uses the first three

# the `status` column
COMPLETED, STOPPED, DIVERGED, ERRORED = "completed", "stopped", "diverged", "errored"
ENDED = (COMPLETED, STOPPED, DIVERGED, ERRORED)


def outcome(tune_status: str, *, diverged: bool, epochs: int, max_epochs: int) -> str:
    """How a trial ended, from what Ray Tune knows of it (its status: PENDING, RUNNING, PAUSED,
    TERMINATED or ERROR; whether its last result said diverged; the epochs it reached): one of
    `ENDED`, or Tune's status in lower case while it has not ended. The searcher, the trial table
    and status.json all ask this."""
    if tune_status == "ERROR":
        return ERRORED
    if diverged:
        return DIVERGED
    if tune_status == "TERMINATED":
        return COMPLETED if epochs >= max_epochs else STOPPED
    return tune_status.lower()

DIGITS = range(N_CLASSES)
DIGIT_COLUMNS = [f"mse_digit_{d}" for d in DIGITS] + [f"psnr_digit_{d}" for d in DIGITS]
# what a trial reports each epoch (active_units: on the validation split, at active_threshold)
METRIC_COLUMNS = ["val_loss", "train_loss", "kl", "mse_mean", "psnr_mean", "active_units", "active_threshold"]
# what a seeds trial reports after its last epoch: the importance-weighted bound on −log p(x)
LIKELIHOOD_COLUMNS = ["nll_iw", "iw_samples", "iw_images", "iw_time_s"]
COLUMNS = (
    ["trial_id", "phase", "stage", "status", "latent_dim", "lr", "beta", "seed", "epochs", "max_epochs"]
    + METRIC_COLUMNS
    + LIKELIHOOD_COLUMNS
    + DIGIT_COLUMNS
    + ["node", "host", "device", "threads", "train_images", "pixel_sum", "time_s", "train_time_s",
       "started_at", "finished_at", "checkpoint", "error"]
)
HISTORY_COLUMNS = ["trial_id", "phase", "stage", "latent_dim", "lr", "seed", "epoch", "train_loss", "val_loss",
                   "kl", "mse_mean", "psnr_mean", "active_units", "time_s"]
