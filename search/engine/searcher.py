"""Ray Tune's searcher for the whole run: a thin adapter over the stages' bookkeeping
(`search.engine.stages`), the search stage's Optuna study (`search.engine.study`) and racing
(`analysis.racing`, through the run's `DecisionSettings`), all inside one Tune experiment with no
barrier between the stages.

The racing state is a `RaceState`, read in memory by the progress callback and written to
race.json after every change for other processes. Ray Tune saves this searcher with its
experiment state, so `Tuner.restore` brings the stages back; the journal can be newer than that
snapshot, so study trials asked after it are closed as FAIL. The experiment's folder is never
pickled: a restored searcher works where the running session's experiment is now.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from analysis.layout import METRIC, MODE
from search.config import SearchConfig

# TrialRecord: pickles of earlier releases name it here
from search.engine.stages import Ledger, TrialRecord, decide, upgraded  # noqa: F401
from search.engine.stop import StopRequest, is_disk_full
from search.engine.study import SearchStudy
from search.store.files import JOURNAL_FILE, RACE_FILE
from search.store.race import RaceState


class StagedSearcher(Searcher):
    def __init__(self, config: SearchConfig, *, experiment: str | Path, stop: StopRequest | None = None) -> None:
        """`experiment`: the folder (its journal and race.json). `stop`: the driver session's
        (`search.engine.stop`): a race.json that no longer fits on the disk stops the run."""
        super().__init__(metric=METRIC, mode=MODE)
        self._stop = stop or StopRequest()
        self._config = config
        self._experiment = Path(experiment)
        self._ledger = Ledger()
        self._race = RaceState()
        self._restored = False
        self._study: SearchStudy | None = None

    @property
    def race(self) -> RaceState:
        """The racing state now (race.json is written from it)."""
        return self._race

    @property
    def ledger(self) -> Ledger:  # what it knows of each trial (`search.engine.stages`)
        return self._ledger

    def owed(self) -> int:
        """Trials it would still hand out: with the live ones, the autoscaler's demand (`scheduling.Demand`)."""
        if self._race.done:
            return 0
        racing = self._race.race.contenders if self._race.stage == "racing" and self._race.race is not None else None
        return self._ledger.owed(self._config, racing)

    # -- Ray Tune's Searcher interface ---------------------------------------------------------

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed; param_space holds constants only

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._race.done:
            return Searcher.FINISHED
        action = self._ledger.next_action(self._config)
        if action.kind == "search":
            storage_id, number, dim, lr = self.study.ask()
            entry = self._ledger.record(trial_id, "search", dim, lr, self._config.seed)
            entry.storage_id, entry.number = storage_id, number
            return entry.trial_config()
        if action.kind == "seeds":
            self._set_stage("seeds")
            return self._ledger.hand_out(trial_id, "seeds", action.latent_dim, self._config)
        if action.kind == "wait":
            return None
        return self._race_step(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        entry = self._ledger.trials.get(trial_id)
        if entry is None or entry.stage != "search" or result.get("diverged"):
            return
        step, value = int(result.get("training_iteration", 0)), result.get(METRIC)
        if step > entry.reported and value is not None and math.isfinite(value):
            entry.reported = step
            self.study.report(entry.storage_id, float(value), step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        entry = self._ledger.finish(trial_id, result or {}, error=error, max_epochs=self._config.epochs)
        if entry is None:
            return
        if entry.stage == "search":
            if not error:  # a result on which the scheduler stopped the trial comes here, not to on_trial_result
                self.on_trial_result(trial_id, result or {})
            self.study.tell(entry.number, entry.state, entry.psnr)
        else:
            self._assess()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({**vars(self._ledger), "race": self._race}, handle)  # trials, seeds_lr, groups

    def restore(self, checkpoint_path: str) -> None:
        """Ray Tune's restore. The settings are read again from run.json: a race-on (`resume EXP
        --max-seeds N`) changed the limits there, and a race that stopped short of them reopens."""
        from search.store.record import read_config

        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self._ledger = Ledger(state["trials"], state["seeds_lr"], state.get("groups", {}))
        self._race = state["race"]
        self._restored, self._study = True, None
        self._config = read_config(self._experiment) or self._config
        if self._race.done and self._next_step(self._decide()).latent_dim is not None:
            self._race = self._race.reopened()

    def __getstate__(self) -> dict[str, Any]:
        # the study reopens from the journal; the folder is the running session's (where it is now)
        return {**self.__dict__, "_study": None, "_stop": None, "_experiment": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from search.engine.session import current

        state = upgraded(state)  # a snapshot of an earlier release
        session = current()
        self.__dict__.update(state, _stop=session.stop, _experiment=session.experiment)

    # -- the study and racing -------------------------------------------------------------------

    @property
    def study(self) -> SearchStudy:
        if self._study is None:
            config = self._config
            self._study = SearchStudy(self._experiment / JOURNAL_FILE, seed=config.seed, latent_dims=config.latent_dims,
                                      lr_range=config.lr_range, on_created=self._announce)
            if self._restored:
                self._study.close_orphans({e.storage_id for e in self._ledger.trials.values() if e.stage == "search"})
        return self._study

    def _announce(self) -> None:  # race.json at stage "search", for `vae-search status`
        self._publish(dataclasses.replace(self._race, updated_at=time.time()))

    def _race_step(self, trial_id: str) -> dict[str, Any] | str | None:
        self._set_stage("racing")
        step = self._next_step(self._assess())
        if step.latent_dim is not None:
            return self._ledger.hand_out(trial_id, "racing", step.latent_dim, self._config)
        if self._ledger.running():
            return None  # a result still to come may change the decision
        self._publish(self._race.finished(step.stop_reason))
        return Searcher.FINISHED

    def _next_step(self, race):
        handed = self._ledger.handed(self._config.latent_dims)
        return self._config.limits.next_step(race, handed, n_trials=len(self._ledger.trials))

    def _assess(self):
        race = self._decide()
        self._publish(self._race.assessed(race, self._config.confidence))
        return race

    def _decide(self):  # the decision on the finished seeds trials now (`_assess` also publishes it)
        return decide(self._ledger, self._config, racing=self._race.stage not in ("search", "seeds"))

    def _set_stage(self, stage: str) -> None:
        advanced = self._race.advanced(stage)
        if advanced is not self._race:
            self._publish(advanced)

    def _publish(self, race: RaceState) -> None:  # the new racing state, in memory and in race.json
        self._race = race
        try:
            race.write(self._experiment / RACE_FILE)
        except OSError as exc:  # race.json is for other processes; the state itself is in Tune's snapshot
            if not is_disk_full(exc):
                raise
            self._stop.disk_full(str(self._experiment), exc)
