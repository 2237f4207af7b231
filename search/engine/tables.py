"""The trial tables from Ray Tune's experiment state: one row per trial (`trials.csv`) and one
row per trial and epoch (`history.csv`). Reading Tune's results is the engine's (the only layer
that imports ray); writing and reading the files back is `search.store.table`'s.

The columns are `analysis.layout.COLUMNS` and `HISTORY_COLUMNS` (docs/design.md lists them
with their meaning). status: `completed` (all epochs), `stopped` (ASHA stopped it early),
`diverged` (loss became NaN/inf), `errored` (raised, retries exhausted), or Tune's own status
while unfinished. `epochs` is the epoch the trial reached; `max_epochs` its budget.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.layout import (
    COLUMNS,
    COMPLETED,
    DIGIT_COLUMNS,
    DIVERGED,
    HISTORY_COLUMNS,
    LIKELIHOOD_COLUMNS,
    METRIC_COLUMNS,
    STOPPED,
    outcome,
)
from search.engine.stages import split_members


def _analysis(location: str):
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(location)


def _checkpoint_ref(experiment, phase_location: str, checkpoint) -> str | None:
    """Relative to the experiment folder when local; a full URI with cloud storage."""
    from search.store.storage import as_location, is_uri

    if checkpoint is None:
        return None
    if is_uri(phase_location):
        return as_location(phase_location, checkpoint.path)
    return str(Path(checkpoint.path).resolve().relative_to(Path(experiment.path).resolve()))


def trial_rows(experiment, *, finished: bool = False) -> list[dict[str, Any]]:
    """One dict per trial, from Ray Tune's experiment state.

    `finished`: the run has ended, so no trial can still be running. Ray Tune (2.60) can leave a
    trial whose worker died marked RUNNING in its saved state (it re-reads a trial's state only
    when it marks it for saving, and skips that for a trial whose actor is already gone); such
    a trial is reported `errored`, with the last line of the error.txt Tune wrote for it."""
    from search.store.storage import is_dir, join

    location = experiment.tune_location
    if not is_dir(location):
        return []
    rows = []
    for trial in _analysis(location).trials:
        checkpoint = _checkpoint_ref(experiment, location, trial.checkpoint)
        members = split_members(trial.trial_id, dict(trial.config), trial.last_result or {})
        for index, (trial_id, tconf, result) in enumerate(members):
            if len(members) > 1 and checkpoint is not None:  # a fused trial: the member's model, in member_I/
                checkpoint_of = join(checkpoint, f"member_{index}")
            else:
                checkpoint_of = checkpoint
            rows.append(_row(experiment, location, trial, trial_id, tconf, result, checkpoint_of, finished))
    return rows


def _row(experiment, location: str, trial, trial_id: str, tconf: dict, result: dict, checkpoint: str | None,
         finished: bool) -> dict[str, Any]:
    """trials.csv's row of one trial (a fused trial's member: its own config and result)."""
    config = experiment.config
    train = tconf.get("train") or tconf  # the run's TrainConfig template (flat in runs of earlier releases)
    # the epoch it reached: a trial restored after it had finished reports its last epoch again
    epochs = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
    max_epochs = int(train.get("epochs", config.epochs))
    stale_error = finished and trial.status in ("RUNNING", "PENDING", "PAUSED") and _read_error(location, trial)
    status = outcome("ERROR" if stale_error else trial.status, diverged=bool(result.get("diverged")), epochs=epochs,
                     max_epochs=max_epochs)
    row = {
        "trial_id": trial_id,
        "phase": tconf.get("phase", "search"),
        "stage": tconf.get("stage", tconf.get("phase", "search")),
        "status": status,
        "latent_dim": int(tconf["latent_dim"]),
        "lr": float(tconf["lr"]),
        "beta": float(train.get("beta", config.beta)),
        "seed": int(tconf["seed"]),
        "epochs": epochs,
        "max_epochs": max_epochs,
        "node": result.get("node"),
        "host": result.get("host"),
        "device": result.get("device"),
        "threads": result.get("threads"),
        "train_images": result.get("train_images"),
        "pixel_sum": result.get("pixel_sum"),
        "started_at": result.get("started_at"),
        "finished_at": result.get("finished_at"),
        "time_s": result.get("time_total_s"),
        "train_time_s": result.get("train_time_s"),
        "checkpoint": checkpoint,
        "error": _last_line(stale_error) if stale_error else _error_text(trial, result),
    }
    # a diverged trial shows the PSNR it reported, which is what Optuna was told (0 dB)
    shown = status in (COMPLETED, STOPPED, DIVERGED)
    for key in METRIC_COLUMNS + LIKELIHOOD_COLUMNS + DIGIT_COLUMNS:
        row[key] = result.get(key, math.nan) if shown else math.nan
    return row


def _read_error(location: str, trial) -> str | None:
    """The error.txt in the trial's folder at `location`, or None."""
    from search.store.storage import join, read_bytes

    data = read_bytes(join(join(location, f"trial_{trial.trial_id}"), "error.txt"))
    return None if data is None else data.decode("utf-8", "replace") or "error"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "error"


def _error_text(trial, result: dict) -> str | None:
    if result.get("diverged"):
        return result.get("error")
    if trial.status != "ERROR":
        return None
    text = getattr(trial, "error_message", None)
    if not text and trial.error_file and Path(trial.error_file).exists():
        text = Path(trial.error_file).read_text()
    return _last_line(text or "")


def trials_frame(experiment, *, finished: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(trial_rows(experiment, finished=finished), columns=COLUMNS)
    return frame.sort_values("started_at", kind="stable", na_position="last").reset_index(drop=True)


def history_frame(experiment) -> pd.DataFrame:
    """One row per trial and epoch (each member of a fused trial: its own rows), from each
    trial's progress.csv; from its last checkpoint's history when progress.csv lacks epochs the
    trial reported (Ray Tune copies the driver's logs to the storage path in the background, and
    a driver killed mid-copy leaves them torn)."""
    from search.store.storage import is_dir

    frames = []
    location = experiment.tune_location
    if is_dir(location):
        analysis = _analysis(location)
        logged = analysis.trial_dataframes
        for trial in analysis.trials:
            members = split_members(trial.trial_id, dict(trial.config), trial.last_result or {})
            fused, stored = len(members) > 1, None
            for index, (trial_id, tconf, result) in enumerate(members):
                frame = _logged(logged.get(trial.trial_id), index if fused else None)
                if trial.checkpoint is not None and len(frame) < int(result.get("epoch", 0) or 0):
                    stored = stored or _checkpoint_histories(trial, fused)
                    frame = stored[index]
                if frame.empty:
                    continue
                frame = frame.assign(trial_id=trial_id, phase=tconf.get("phase", "search"),
                                     stage=tconf.get("stage", tconf.get("phase", "search")),
                                     latent_dim=tconf["latent_dim"], lr=tconf["lr"], seed=tconf["seed"])
                frames.append(frame.reindex(columns=HISTORY_COLUMNS))
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _logged(frame: pd.DataFrame | None, member: int | None) -> pd.DataFrame:
    """A trial's rows of progress.csv, one per epoch; a fused trial's `member`: its
    `members/I/...` columns under their own names."""
    if frame is not None and member is not None:
        prefix = f"members/{member}/"
        columns = [c for c in frame.columns if c.startswith(prefix)]
        frame = frame[columns].set_axis([c.removeprefix(prefix) for c in columns], axis=1)
    if frame is None or "epoch" not in frame.columns:
        return pd.DataFrame(columns=["epoch"])
    # Tune logs results at least once: a trial restored from an older checkpoint reports those
    # epochs again (with equal values, training is deterministic)
    return frame[frame["epoch"].notna()].drop_duplicates(subset=["epoch"], keep="last")


def _checkpoint_histories(trial, fused: bool) -> list[pd.DataFrame]:
    """The per-epoch results a trial's last checkpoint holds (`vae.training.TrainState`): one
    frame, or one per member of a fused trial (`vae.fused.FusedState`)."""
    from vae.checkpoint import load_fused, load_state
    from vae.training import EpochResult

    with trial.checkpoint.as_directory() as folder:
        histories = load_fused(folder)["histories"] if fused else [load_state(folder)["history"]]
    return [pd.DataFrame([EpochResult(**r).flat() for r in history]) for history in histories]
