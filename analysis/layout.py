"""Names shared by `search` (which writes an experiment) and `analysis` (which reads it):
the experiment's files, the trial table's columns, statuses, phases and stages.

Kept free of heavy imports: the command line reads it for `--help`.
"""

from __future__ import annotations

from vae.config import N_CLASSES

# files in an experiment folder
RUN_FILE = "run.json"  # resolved settings, data record, what is done
TUNE_DIR = "tune"  # Ray Tune's experiment (Tuner.restore works on it)
JOURNAL_FILE = "optuna.journal"  # the Optuna study of the search stage
RACE_FILE = "race.json"  # the racing state: stage, decision, confidence, stop reason
TRIALS_FILE = "trials.csv"  # one row per trial
HISTORY_FILE = "history.csv"  # one row per trial and epoch
SELECTION_FILE = "selection.json"
SUMMARY_FILE = "summary.csv"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
BEST_MODEL_DIR = "best_model"

METRIC, MODE = "psnr_mean", "max"  # what the search maximises (validation, mean of ten digits)

PHASES = ("search", "seeds")  # the `phase` column: racing trials are seeds trials
STAGES = ("search", "seeds", "racing", "done")  # the `stage` column uses the first three

# the `status` column
COMPLETED, STOPPED, DIVERGED, ERRORED = "completed", "stopped", "diverged", "errored"

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
