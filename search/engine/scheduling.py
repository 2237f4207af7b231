"""The trial scheduler: ASHA for the search stage only, or FIFO.

Seeds and racing trials are the evidence the choice rests on: they always train all their
epochs, so ASHA neither stops them nor counts them in its rungs.
"""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search.config import SearchConfig


def _is_search(trial) -> bool:
    return trial.config.get("phase", "search") == "search"


class SearchOnlyASHA(ASHAScheduler):
    def on_trial_result(self, tune_controller, trial, result):
        if not _is_search(trial):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if not _is_search(trial):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)


def scheduler(config: SearchConfig) -> TrialScheduler:
    if config.scheduler == "fifo":
        return FIFOScheduler()
    return SearchOnlyASHA(
        time_attr="training_iteration",
        max_t=config.epochs,
        grace_period=min(config.grace_period, config.epochs),
        reduction_factor=config.reduction_factor,
    )
