"""One searcher for the whole run: the Optuna search, then the seeds trials, then racing.

Stages, all inside one Ray Tune experiment (no barrier between them):

1. **search**: `--trials` trials proposed by Optuna's TPE sampler (seeded). Every latent size
   is enqueued first at the geometric middle of the lr range, so each size is measured; TPE
   proposes from the very next trial on (`n_startup_trials=0`: the enqueued points are the
   start-up design, so the search never falls back to random sampling). `constant_liar` keeps
   parallel proposals apart. A trial that ASHA stopped is told to Optuna as PRUNED with its
   per-epoch values, a diverged one with the PSNR it reported (0 dB), an errored one as FAIL.
2. **seeds**: once the search budget is handed out, a free slot goes to a latent size whose
   search trials have all finished: its best learning rate (most epochs trained, then highest
   PSNR) retrained with new seeds, `--seeds` times, for all epochs.
3. **racing**: once every seeds trial has finished, the decision is assessed on the completed
   seeds trials' `--metric` (validation PSNR, or nll_iw, which a seeds trial computes after its
   last epoch) with `analysis.racing.assess`, the same code `analyze` uses, and
   `analysis.racing.next_trial` says what comes next: while the decision confidence is below
   `--confidence`, a seed for the contender with the fewest, up to `--max-seeds` per size and
   `--max-trials` in all.

The search stage optimises validation PSNR whatever `--metric` is: nll_iw is computed for seeds
trials only, and the learning rate a size is retrained at is its best by PSNR.

Seeds: search trials train with `--seed`; the k-th seeds trial of every latent size with
`trial_seed(--seed, k)`, so the sizes share seed k within a run (the same shuffles), and
different `--seed` values are independent replicates (no run shares a trial with another).

The study lives in `optuna.journal` in the experiment folder (`optuna.load_study`,
`optuna-dashboard` read it). The racing state is a `RaceState` (`searcher.race`, read in memory
by the progress callback) and is written to `race.json` after every change for other processes.
What the searcher knows of each trial is a `TrialRecord`.
Ray Tune saves this searcher with its experiment state, so `Tuner.restore` brings back the
stages; the journal can be newer than that snapshot, so results for Optuna trials the journal
already holds as finished are ignored, and trials asked after the snapshot are closed as FAIL
(an enqueued point among them is enqueued again).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from ray.tune.search import Searcher

from analysis.layout import METRIC, MODE
from search.config import SearchConfig
from search.engine.stop import StopRequest, is_disk_full
from search.store.race import RaceState

STUDY_NAME = "vae-search"
RUNNING = "running"


@dataclass
class TrialRecord:
    """What the searcher knows of one Tune trial."""

    stage: str  # search | seeds | racing
    latent_dim: int
    lr: float
    seed: int
    state: str = RUNNING  # RUNNING, then its trials.csv status (completed, stopped, diverged, errored)
    epochs: int = 0  # epochs trained when it ended
    psnr: float | None = None  # its last validation PSNR
    nll: float | None = None  # seeds and racing: its nll_iw after the last epoch
    storage_id: int | None = None  # search stage: the Optuna trial's id in the journal ...
    number: int | None = None  # ... and its number in the study
    reported: int = 0  # search stage: the last epoch reported to Optuna

    @property
    def phase(self) -> str:
        """`search` or `seeds` (racing trials are seeds trials too): the trial's phase column."""
        return "search" if self.stage == "search" else "seeds"

    def evidence(self, metric: str) -> float | None:
        """A completed seeds or racing trial's value of `metric` (psnr | nll): evidence for the
        decision; None for any other trial."""
        value = self.psnr if metric == "psnr" else self.nll
        return value if self.stage != "search" and self.state == "completed" else None


def trial_seed(run_seed: int, k: int) -> int:
    """The seed of every size's k-th seeds trial in the run with `--seed run_seed`: a 32-bit
    draw from numpy's SeedSequence of (run_seed, k), so runs with different --seed values
    share no trial (S + k would give --seed 0 and --seed 3 a common seed)."""
    return int(np.random.SeedSequence([run_seed, k]).generate_state(1)[0])


def journal_storage(path: str | Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    """TPE from the first proposal after the enqueued points (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True, constant_liar=True)


class StagedSearcher(Searcher):
    def __init__(self, config: SearchConfig, *, journal: str | Path, race_file: str | Path, stop: StopRequest | None = None) -> None:
        """`stop`: the driver session's (`search.engine.stop`): a race.json that no longer fits on
        the disk stops the run. Left out of the pickle, as the study is."""
        super().__init__(metric=METRIC, mode=MODE)
        self._stop = stop or StopRequest()
        self._config = config
        self._journal = str(journal)
        self._race_file = str(race_file)
        self._trials: dict[str, TrialRecord] = {}  # by Tune trial id
        self._seeds_lr: dict[int, float] = {}  # latent size -> the lr its seeds trials use (fixed once chosen)
        self._race = RaceState()
        self._restored = False
        self._study: optuna.Study | None = None

    @property
    def race(self) -> RaceState:
        """The racing state now (race.json is written from it)."""
        return self._race

    def owed(self) -> int:
        """Trials this searcher would still hand out if Ray Tune asked: the rest of the search
        budget, the seeds trials not handed out yet and, while racing, each contender's room up to
        --max-seeds (capped by --max-trials). With the trials live now, that is what the run could
        use at once: the demand an autoscaling cluster is told (`search.engine.scheduling.Demand`)."""
        config = self._config
        if self._race.done:
            return 0
        owed = max(0, config.trials - self._count("search"))
        owed += sum(max(0, config.seeds - self._count("seeds", d)) for d in config.latent_dims)
        if self._race.stage == "racing" and self._race.race is not None:
            handed = self._handed()
            owed += sum(max(0, config.max_seeds - handed[d]) for d in self._race.race.contenders)
        if config.max_trials is not None:
            owed = min(owed, max(0, config.max_trials - len(self._trials)))
        return owed

    # -- Ray Tune's Searcher interface ---------------------------------------------------------

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed; param_space holds constants only

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = self._config
        if self._race.done:
            return Searcher.FINISHED
        if self._count("search") < config.trials:
            return self._ask_search(trial_id)
        for dim in config.latent_dims:
            if self._running("search", dim):
                continue
            handed = self._count("seeds", dim)
            if handed < config.seeds:
                self._set_stage("seeds")
                return self._hand_out(trial_id, "seeds", dim)
        if self._running("search") or self._running("seeds"):
            return None  # racing needs every seeds trial's result
        return self._race_step(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        entry = self._trials.get(trial_id)
        if entry is None or entry.stage != "search" or result.get("diverged"):
            return
        step, value = int(result.get("training_iteration", 0)), result.get(METRIC)
        if step > entry.reported and value is not None and math.isfinite(value):
            entry.reported = step
            try:
                optuna.trial.Trial(self._open(), entry.storage_id).report(float(value), step)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                pass  # finished in the journal before the driver restarted

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        entry = self._trials.get(trial_id)
        if entry is None:
            return
        result = result or {}
        epochs = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        if error:
            outcome = "errored"
        elif result.get("diverged"):
            outcome = "diverged"
        elif epochs < self._config.epochs:
            outcome = "stopped"
        else:
            outcome = "completed"
        entry.state, entry.epochs, entry.psnr, entry.nll = outcome, epochs, result.get(METRIC), result.get("nll_iw")
        if entry.stage == "search":
            # a result on which the scheduler stopped the trial comes here, not to on_trial_result
            if not error:
                self.on_trial_result(trial_id, result)
            self._tell(entry, outcome)
        else:
            self._assess()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self._state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        """Ray Tune's restore of the searcher's state. Its settings are read again from run.json:
        a race-on (`vae-search resume EXP --max-seeds N`) changed the limits there, and a race
        that stopped short of them is open again."""
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        self._trials, self._seeds_lr, self._race = state["trials"], state["seeds_lr"], state["race"]
        self._restored = True
        self._study = None
        from search.store.record import read_config

        self._config = read_config(Path(self._race_file).parent) or self._config
        if self._race.done and self._next_step(self._decide()).latent_dim is not None:
            self._race = self._race.reopened()

    def __getstate__(self) -> dict[str, Any]:
        # the study reopens from the journal; the folder is the running session's (where it is now)
        return {**self.__dict__, "_study": None, "_stop": None, "_journal": None, "_race_file": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from search.engine.session import current
        from search.store.files import JOURNAL_FILE, RACE_FILE

        session = current()
        self.__dict__.update(state, _stop=session.stop)
        if session.experiment is not None:
            self._journal, self._race_file = str(session.experiment / JOURNAL_FILE), str(session.experiment / RACE_FILE)

    # -- stages ---------------------------------------------------------------------------------

    def _ask_search(self, trial_id: str) -> dict[str, Any]:
        low, high = self._config.lr_range
        space = {
            "latent_dim": optuna.distributions.CategoricalDistribution(list(self._config.latent_dims)),
            "lr": optuna.distributions.FloatDistribution(low, high, log=True),
        }
        trial = self._open().ask(space)
        entry = self._record(trial_id, "search", int(trial.params["latent_dim"]), float(trial.params["lr"]), self._config.seed)
        entry.storage_id, entry.number = trial._trial_id, trial.number
        return self._trial_config(entry)

    def _hand_out(self, trial_id: str, stage: str, dim: int) -> dict[str, Any]:
        if dim not in self._seeds_lr:
            self._seeds_lr[dim] = self._best_lr(dim)
        k = 1 + self._count("seeds", dim) + self._count("racing", dim)
        return self._trial_config(self._record(trial_id, stage, dim, self._seeds_lr[dim], trial_seed(self._config.seed, k)))

    def _race_step(self, trial_id: str) -> dict[str, Any] | str | None:
        self._set_stage("racing")
        race = self._assess()
        step = self._next_step(race)
        if step.latent_dim is not None:
            return self._hand_out(trial_id, "racing", step.latent_dim)
        if self._running():
            return None  # a result still to come may change the decision
        self._publish(self._race.finished(step.stop_reason))
        return Searcher.FINISHED

    def _next_step(self, race):
        from analysis.racing import next_trial

        config = self._config
        handed = self._handed()
        budget_left = config.max_trials is None or len(self._trials) < config.max_trials
        return next_trial(race, handed, target=config.confidence, max_seeds=config.max_seeds, budget_left=budget_left)

    def _assess(self):
        race = self._decide()
        self._publish(self._race.assessed(race, self._config.confidence))
        return race

    def _decide(self):
        """The decision on the finished seeds trials now (`_assess` also publishes it)."""
        config = self._config
        values: dict[int, list[float]] = {}
        for entry in self._trials.values():
            value = entry.evidence(config.metric)
            if value is not None:
                values.setdefault(entry.latent_dim, []).append(float(value))
        race = config.decision.assess(values)
        if self._race.stage in ("search", "seeds") and len(values) < len(config.latent_dims):
            # sizes still to measure: nothing is decided yet (one size alone would read as certain)
            race = dataclasses.replace(race, confidence=0.0)
        return race

    # -- bookkeeping ----------------------------------------------------------------------------

    def _record(self, trial_id: str, stage: str, dim: int, lr: float, seed: int) -> TrialRecord:
        entry = TrialRecord(stage=stage, latent_dim=dim, lr=lr, seed=seed)
        self._trials[trial_id] = entry
        return entry

    @staticmethod
    def _trial_config(entry: TrialRecord) -> dict[str, Any]:
        """What the searcher adds to the trial's config (the rest is the run's template)."""
        return {"phase": entry.phase, "stage": entry.stage, "latent_dim": entry.latent_dim, "lr": entry.lr, "seed": entry.seed}

    def _handed(self) -> dict[int, int]:
        """Seeds trials handed out per latent size so far (seeds and racing stages, every outcome)."""
        return {d: self._count("seeds", d) + self._count("racing", d) for d in self._config.latent_dims}

    def _count(self, stage: str, dim: int | None = None) -> int:
        return sum(1 for e in self._trials.values() if e.stage == stage and (dim is None or e.latent_dim == dim))

    def _running(self, stage: str | None = None, dim: int | None = None) -> bool:
        return any(
            e.state == RUNNING and (stage is None or e.stage == stage) and (dim is None or e.latent_dim == dim)
            for e in self._trials.values()
        )

    def _best_lr(self, dim: int) -> float:
        """The lr of the size's best search trial: most epochs trained first (an early-stopped
        trial is not compared with a finished one), then highest PSNR; else the lr range's middle."""
        usable = [
            e for e in self._trials.values()
            if e.stage == "search" and e.latent_dim == dim and e.state in ("completed", "stopped")
            and e.psnr is not None and math.isfinite(e.psnr)
        ]
        if not usable:
            low, high = self._config.lr_range
            return math.sqrt(low * high)
        return max(usable, key=lambda e: (e.epochs, e.psnr)).lr

    def _set_stage(self, stage: str) -> None:
        advanced = self._race.advanced(stage)
        if advanced is not self._race:
            self._publish(advanced)

    def _publish(self, race: RaceState) -> None:
        """The new racing state, in memory and in race.json."""
        self._race = race
        try:
            race.write(self._race_file)
        except OSError as exc:  # race.json is for other processes; the state itself is in Tune's snapshot
            if not is_disk_full(exc):
                raise
            self._stop.disk_full(str(Path(self._race_file).parent), exc)

    def _state(self) -> dict[str, Any]:
        return {"trials": self._trials, "seeds_lr": self._seeds_lr, "race": self._race}

    # -- the Optuna study -----------------------------------------------------------------------

    def _open(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(
                study_name=STUDY_NAME,
                storage=journal_storage(self._journal),
                sampler=make_sampler(self._config.seed),
                direction="maximize",
                load_if_exists=True,
            )
            if not self._study.get_trials(deepcopy=False):
                middle = math.sqrt(self._config.lr_range[0] * self._config.lr_range[1])
                for dim in self._config.latent_dims:
                    self._study.enqueue_trial({"latent_dim": dim, "lr": middle})
                self._publish(dataclasses.replace(self._race, updated_at=time.time()))  # race.json at stage "search", for `vae-search status`
            if self._restored:
                self._close_orphans()
        return self._study

    def _close_orphans(self) -> None:
        """Study trials asked after Ray Tune's last snapshot: no Tune trial will report them."""
        known = {e.storage_id for e in self._trials.values() if e.stage == "search"}
        for trial in self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial._trial_id in known:
                continue
            self._study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            if "fixed_params" in trial.system_attrs:
                self._study.enqueue_trial(trial.system_attrs["fixed_params"])

    def _tell(self, entry: TrialRecord, outcome: str) -> None:
        study = self._open()
        # skip_if_finished: the journal may already hold it, told before the driver restarted
        if outcome == "errored":
            study.tell(entry.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        elif outcome == "stopped":
            study.tell(entry.number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        else:  # completed, or diverged with the 0 dB it reported
            study.tell(entry.number, float(entry.psnr), skip_if_finished=True)

