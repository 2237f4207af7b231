"""The search stage's Optuna study, kept in the experiment's journal (`optuna.journal`, which
`optuna.load_study` and `optuna-dashboard` read): ask, report, tell, and closing the trials Ray
Tune's last snapshot never saw.

Every latent size is enqueued first at the geometric middle of the lr range, so each size is
measured; TPE proposes from the very next trial on (`n_startup_trials=0`: the enqueued points are
the start-up design, so the search never falls back to random sampling). `constant_liar` keeps
parallel proposals apart. The study is opened lazily and never pickled: it reopens from the journal.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import optuna

from analysis.layout import ERRORED, STOPPED

STUDY_NAME = "vae-search"


def journal_storage(path: str | Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(seed: int) -> optuna.samplers.TPESampler:
    """TPE from the first proposal after the enqueued points (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, multivariate=True, constant_liar=True)


class SearchStudy:
    def __init__(self, journal: str | Path, *, seed: int, latent_dims: tuple[int, ...], lr_range: tuple[float, float],
                 on_created: Callable[[], None] | None = None) -> None:
        """`on_created`: called once when the study is new (its sizes just enqueued)."""
        self.journal = str(journal)
        self.seed, self.latent_dims, self.lr_range = seed, latent_dims, lr_range
        self._on_created = on_created
        self._study: optuna.Study | None = None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(
                study_name=STUDY_NAME,
                storage=journal_storage(self.journal),
                sampler=make_sampler(self.seed),
                direction="maximize",
                load_if_exists=True,
            )
            if not self._study.get_trials(deepcopy=False):
                middle = math.sqrt(self.lr_range[0] * self.lr_range[1])
                for dim in self.latent_dims:
                    self._study.enqueue_trial({"latent_dim": dim, "lr": middle})
                if self._on_created is not None:
                    self._on_created()
        return self._study

    def ask(self) -> tuple[int, int, int, float]:
        """A new trial: (its id in the journal, its number, latent_dim, lr)."""
        low, high = self.lr_range
        space = {"latent_dim": optuna.distributions.CategoricalDistribution(list(self.latent_dims)),
                 "lr": optuna.distributions.FloatDistribution(low, high, log=True)}
        trial = self.study.ask(space)
        return trial._trial_id, trial.number, int(trial.params["latent_dim"]), float(trial.params["lr"])

    def report(self, storage_id: int, value: float, step: int) -> None:
        try:
            optuna.trial.Trial(self.study, storage_id).report(value, step)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            pass  # finished in the journal before the driver restarted

    def tell(self, number: int, outcome: str, psnr: float | None) -> None:
        """An errored trial is FAIL, one ASHA stopped PRUNED, any other its PSNR (0 dB when diverged).
        skip_if_finished: the journal may already hold it, told before the driver restarted."""
        if outcome == ERRORED:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        elif outcome == STOPPED:
            self.study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(number, float(psnr), skip_if_finished=True)

    def close_orphans(self, known: set[int]) -> None:
        """Close the study's running trials whose ids are not `known` (asked after Ray Tune's last
        snapshot: no Tune trial will report them); an enqueued point among them is enqueued again."""
        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial._trial_id in known:
                continue
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            if "fixed_params" in trial.system_attrs:
                self.study.enqueue_trial(trial.system_attrs["fixed_params"])
