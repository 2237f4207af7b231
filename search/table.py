"""The trial table: Ray Tune's experiment state -> one row per trial (`trials.csv`).

Columns (contract): trial_id, phase, status, latent_dim, lr, beta, seed, epochs, val_loss,
mse_mean, psnr_mean, mse_digit_0..9, psnr_digit_0..9, node, device, time_s; and also
max_epochs, train_loss, host, train_time_s, checkpoint, error.

status: `completed` (all epochs), `stopped` (ASHA stopped it early), `diverged` (loss became
NaN/inf), `errored` (raised, retries exhausted), or Tune's own status while unfinished.
`epochs` is the number of epochs the trial trained; `max_epochs` its budget.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from vae.errors import UsageError

DIGITS = range(10)
COLUMNS = (
    ["trial_id", "phase", "status", "latent_dim", "lr", "beta", "seed", "epochs", "max_epochs",
     "val_loss", "train_loss", "mse_mean", "psnr_mean"]
    + [f"mse_digit_{d}" for d in DIGITS]
    + [f"psnr_digit_{d}" for d in DIGITS]
    + ["node", "host", "device", "threads", "train_images", "data_digest", "time_s", "train_time_s", "started_at", "finished_at", "checkpoint", "error"]
)
HISTORY_COLUMNS = ["trial_id", "phase", "latent_dim", "lr", "seed", "epoch", "train_loss", "val_loss", "mse_mean", "psnr_mean", "time_s"]


def _analysis(location: str):
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(location)


def _checkpoint_ref(experiment, phase_location: str, checkpoint) -> str | None:
    """Relative to the experiment folder when local; a full URI with cloud storage."""
    from search.storage import as_location, is_uri

    if checkpoint is None:
        return None
    if is_uri(phase_location):
        return as_location(phase_location, checkpoint.path)
    return str(Path(checkpoint.path).resolve().relative_to(Path(experiment.path).resolve()))


def phase_rows(experiment, phase: str) -> list[dict[str, Any]]:
    """One dict per trial of a phase, from Ray Tune's experiment state."""
    from search.storage import is_dir

    config = experiment.config
    location = experiment.phase_location(phase)
    if not is_dir(location):
        return []
    rows = []
    for trial in _analysis(location).trials:
        result = trial.last_result or {}
        tconf = dict(trial.config)
        tconf.update(tconf.pop("point", {}) or {})
        epochs = int(result.get("training_iteration", 0) or 0)
        max_epochs = int(tconf.get("epochs", config.epochs))
        if trial.status == "ERROR":
            status = "errored"
        elif result.get("diverged"):
            status = "diverged"
        elif trial.status == "TERMINATED":
            status = "completed" if epochs >= max_epochs else "stopped"
        else:
            status = trial.status.lower()
        row = {
            "trial_id": trial.trial_id,
            "phase": phase,
            "status": status,
            "latent_dim": int(tconf["latent_dim"]),
            "lr": float(tconf["lr"]),
            "beta": float(tconf["beta"]),
            "seed": int(tconf["seed"]),
            "epochs": epochs,
            "max_epochs": max_epochs,
            "node": result.get("node"),
            "host": result.get("host"),
            "device": result.get("device"),
            "threads": result.get("threads"),
            "train_images": result.get("train_images"),
            "data_digest": result.get("data_digest"),
            "started_at": result.get("started_at"),
            "finished_at": result.get("finished_at"),
            "time_s": result.get("time_total_s"),
            "train_time_s": result.get("train_time_s"),
            "checkpoint": _checkpoint_ref(experiment, location, trial.checkpoint),
            "error": _error_text(trial, result),
        }
        for key in ["val_loss", "train_loss", "mse_mean", "psnr_mean"] + [c for c in COLUMNS if "_digit_" in c]:
            row[key] = result.get(key, math.nan) if status in ("completed", "stopped") else math.nan
        rows.append(row)
    return rows


def _error_text(trial, result: dict) -> str | None:
    if result.get("diverged"):
        return result.get("error")
    if trial.status != "ERROR":
        return None
    text = getattr(trial, "error_message", None)
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text()
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "error"


def best_lr_by_latent_dim(rows: list[dict[str, Any]], config) -> dict[int, float]:
    """Per latent size, the lr of its best search trial: most epochs trained first (an
    early-stopped trial is not compared with a finished one), then highest PSNR.
    A size without a usable trial gets the geometric middle of the lr range."""
    low, high = config.lr_range
    best: dict[int, float] = {}
    for dim in config.latent_dims:
        usable = [r for r in rows if r["latent_dim"] == dim and r["status"] in ("completed", "stopped") and math.isfinite(r["psnr_mean"])]
        if usable:
            best[dim] = max(usable, key=lambda r: (r["epochs"], r["psnr_mean"]))["lr"]
        else:
            best[dim] = math.sqrt(low * high)
    return best


def trials_frame(experiment) -> pd.DataFrame:
    rows = [row for phase in ("search", "seeds") for row in phase_rows(experiment, phase)]
    return pd.DataFrame(rows, columns=COLUMNS)


def history_frame(experiment) -> pd.DataFrame:
    """One row per trial and epoch, from each trial's progress.csv."""
    from search.storage import is_dir

    frames = []
    for phase in ("search", "seeds"):
        location = experiment.phase_location(phase)
        if not is_dir(location):
            continue
        for trial_id, frame in _analysis(location).trial_dataframes.items():
            if frame is None or frame.empty:
                continue
            # Tune logs results at least once: a trial restored from an older checkpoint
            # reports those epochs again (with equal values, training is deterministic)
            if "epoch" in frame.columns:
                frame = frame.drop_duplicates(subset=["epoch"], keep="last")
            frame = frame.assign(trial_id=trial_id, phase=phase)
            frames.append(frame.reindex(columns=HISTORY_COLUMNS))
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def read_trials(experiment: str | Path) -> pd.DataFrame:
    path = Path(experiment).expanduser()
    file = path / "trials.csv"
    if not path.is_dir():
        raise UsageError(f"experiment {path} does not exist")
    if not file.is_file():
        raise UsageError(f"{path} has no trials.csv (not a finished vae-search experiment; `vae-search resume {path}` finishes one)")
    try:
        table = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"corrupt {file}: {' '.join(str(exc).split())}") from None
    missing = [c for c in ("trial_id", "phase", "status", "latent_dim", "psnr_mean") if c not in table.columns]
    if missing:
        raise UsageError(f"corrupt {file}: missing column(s) {', '.join(missing)}")
    return table


_SHOWN = ["trial_id", "phase", "status", "latent_dim", "lr", "seed", "epochs", "val_loss", "mse_mean", "psnr_mean", "device", "time_s"]


def format_trials(table: pd.DataFrame, *, sort: str, top: int | None, fmt: str) -> str:
    """The table as text: `table` (the main columns, readable), `csv` or `json` (every column)."""
    if sort not in table.columns:
        raise UsageError(f"--sort {sort!r} is not a column; choose from {', '.join(table.columns)}")
    ascending = not (sort.startswith("psnr") or sort in ("epochs", "latent_dim"))
    table = table.sort_values(sort, ascending=ascending, na_position="last", kind="stable")
    if top is not None:
        table = table.head(top)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(table.to_json(orient="records")), indent=2) + "\n"
    shown = table.reindex(columns=_SHOWN)
    return shown.to_string(
        index=False,
        na_rep="-",
        formatters={"lr": "{:.2e}".format, "val_loss": "{:.2f}".format, "mse_mean": "{:.4f}".format,
                    "psnr_mean": "{:.2f}".format, "time_s": "{:.1f}".format},
    ) + "\n"
