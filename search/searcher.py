"""Optuna inside Ray Tune: TPE (seeded) over latent size x learning rate.

Two things on top of Ray's `OptunaSearch`:
- every latent size is enqueued once first (at the geometric middle of the lr range), so
  each size is measured even when TPE would rather skip it;
- a trial that the scheduler (ASHA) stopped early is told to Optuna as PRUNED, with its
  per-epoch values, instead of COMPLETE with a value from an early epoch.
The study lives in a journal file in the experiment folder, so `optuna.load_study` and
`optuna-dashboard` can read it. The journal can be newer than the searcher state Ray Tune
pickled before a driver was killed: on resume, results for an Optuna trial that the journal
already holds as finished are ignored rather than raised.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from ray.tune.search.optuna import OptunaSearch

from search.config import SearchConfig

STUDY_NAME = "vae-search"


def journal_storage(path: str | Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


class PruneAwareOptunaSearch(OptunaSearch):
    def __init__(self, config: SearchConfig, *, storage_path: str | Path) -> None:
        low, high = config.lr_range
        space = {
            "latent_dim": optuna.distributions.CategoricalDistribution(list(config.latent_dims)),
            "lr": optuna.distributions.FloatDistribution(low, high, log=True),
        }
        middle = math.sqrt(low * high)
        super().__init__(
            space=space,
            metric="psnr_mean",
            mode="max",
            points_to_evaluate=[{"latent_dim": d, "lr": middle} for d in config.latent_dims],
            sampler=optuna.samplers.TPESampler(seed=config.seed),
            study_name=STUDY_NAME,
            storage=journal_storage(storage_path),
        )
        self._full_epochs = config.epochs

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # already recorded before the driver restarted

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        try:
            self._complete(trial_id, result, error)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        stopped_early = (
            not error
            and result is not None
            and not result.get("diverged", False)
            and result.get("training_iteration", self._full_epochs) < self._full_epochs
        )
        if stopped_early and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def close_orphans(storage_path: str | Path) -> int:
    """Mark study trials still RUNNING after the search phase as FAIL (asked by a driver that
    was killed before Tune saved them); returns how many."""
    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(storage_path))
    orphans = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for trial in orphans:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)
