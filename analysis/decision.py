"""The settings of one decision, passed whole: `DecisionSettings`.

A choice of latent size and its confidence depend on six settings: the rule, its tolerance
(in dB for PSNR, in nats for nll_iw), the metric, the run's seed (the posterior's draws) and
the horizon (--seeds, --max-seeds: how many looks racing may take). A run's come from its
config (`search.config.SearchConfig.decision`); `analyze` may change the rule, the metric and
the tolerances (`dataclasses.replace`). The searcher's racing, the run's last lines and
`analyze` all decide through this one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from analysis.answers import both_answers, values_by_latent_dim
from analysis.racing import Limits, NextTrial, Race, assess, handed_out
from analysis.rules import DEFAULT_METRIC, DEFAULT_RULE, DEFAULT_TOLERANCE_DB, DEFAULT_TOLERANCE_NATS, METRICS
from analysis.selection import Selection, select


@dataclass(frozen=True)
class DecisionSettings:
    rule: str = DEFAULT_RULE
    tolerance_db: float = DEFAULT_TOLERANCE_DB
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS
    metric: str = DEFAULT_METRIC
    seed: int = 0
    horizon: tuple[int, int] | None = None  # (--seeds, --max-seeds)

    def assess(self, values: Mapping[int, Sequence[float]]) -> Race:
        """The decision on seeds-trial values per latent size, by this metric (`racing.assess`)."""
        return assess(values, rule=self.rule, tolerance_db=self.tolerance_db, seed=self.seed, horizon=self.horizon,
                      metric=self.metric, tolerance_nats=self.tolerance_nats)

    def both_answers(self, trials: pd.DataFrame) -> dict[str, Race]:
        """The decision by each metric on a trial table, this one's metric first."""
        return both_answers(trials, metric=self.metric, rule=self.rule, tolerance_db=self.tolerance_db,
                            tolerance_nats=self.tolerance_nats, seed=self.seed, horizon=self.horizon)

    def select(self, summary: pd.DataFrame) -> Selection:
        """The choice on a per-size summary (`selection.select`)."""
        return select(summary, rule=self.rule, tolerance_db=self.tolerance_db, metric=self.metric,
                      tolerance_nats=self.tolerance_nats)

    def room(self, trials: pd.DataFrame, *, max_seeds: int) -> dict[int, int]:
        """Per size still in contention, the seeds trials it could still get up to `max_seeds`."""
        race = self.assess(values_by_latent_dim(trials, METRICS[self.metric].column))
        handed = _handed(trials)
        return {d: max(0, max_seeds - handed.get(d, 0)) for d in race.contenders}

    def next_step(self, trials: pd.DataFrame, limits: Limits) -> NextTrial:
        """What racing would do next on a trial table under `limits`: a seed for a size, or why it
        stops (`vae-search resume EXP --max-seeds N` checks there is something to race)."""
        race = self.assess(values_by_latent_dim(trials, METRICS[self.metric].column))
        return limits.next_step(race, _handed(trials), n_trials=len(trials))


def _handed(trials: pd.DataFrame) -> dict[int, int]:
    return handed_out(zip(trials["stage"], trials["latent_dim"], strict=True))
