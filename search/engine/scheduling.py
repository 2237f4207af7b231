"""How trials get resources: the trial scheduler, and the demand an autoscaling cluster sees.

The scheduler is ASHA for the search stage only, or FIFO. Seeds and racing trials are the
evidence the choice rests on: they always train all their epochs, so ASHA neither stops them
nor counts them in its rungs.

`Demand` tells the cluster's autoscaler what the run could use at once: the trials live now
plus those the searcher still owes (`StagedSearcher.owed`), through Ray's
`ray.autoscaler.sdk.request_resources`, updated as the run moves on and withdrawn when it ends.
Ray Tune alone shows the autoscaler only its pending trials, which it caps at the slots
present when the run started (`search.engine.session`): from a head with no worker, two trials'
worth, so workers would boot one after another. On a Ray without an autoscaler (a laptop, a
fixed cluster) nothing reads the request.
"""

from __future__ import annotations

import logging
import time

from ray import tune
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


DEMAND_EVERY_S = 5.0
LIVE = ("RUNNING", "PENDING", "PAUSED")


class Demand(tune.Callback):
    def __init__(self, searcher, config: SearchConfig) -> None:
        self.searcher = searcher  # the StagedSearcher (in one pickle with it, as `Progress`)
        self.bundle = {
            "CPU": config.cpus_per_trial,
            **({"GPU": config.gpus_per_trial} if config.gpus_per_trial else {}),
        }
        self.max_concurrent = config.max_concurrent
        self._reset()

    def _reset(self) -> None:
        self._asked: int | None = None
        self._checked = 0.0

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def wanted(self, trials) -> int:
        """Trials the run could use at once now."""
        wanted = sum(1 for t in trials if t.status in LIVE) + self.searcher.owed()
        return min(wanted, self.max_concurrent) if self.max_concurrent else wanted

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._checked >= DEMAND_EVERY_S:
            self._checked = now
            self._ask(self.wanted(trials))

    def on_experiment_end(self, trials, **info):
        self._ask(0)  # an autoscaler keeps a request's nodes up until it is withdrawn

    def _ask(self, trials: int) -> None:
        if trials == self._asked:
            return
        from ray.autoscaler.sdk import request_resources

        try:
            request_resources(bundles=[dict(self.bundle) for _ in range(trials)])
            self._asked = trials
        except Exception as exc:  # noqa: BLE001 (a Ray that cannot take the request runs the trials anyway)
            logging.getLogger(__name__).warning("could not tell the autoscaler the run's demand: %s", exc)
            self._asked = trials
