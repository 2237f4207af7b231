"""What the searcher knows of each Ray Tune trial, and which stage hands out the next one: pure
bookkeeping, no Ray and no Optuna (`search.engine.searcher` is the Tune adapter over it).

1. **search**: `--trials` trials proposed by Optuna (`search.engine.study`).
2. **seeds**: once the search budget is handed out, a free slot goes to a latent size whose
   search trials have all finished: its best learning rate (most epochs trained, then highest
   PSNR) retrained with new seeds, `--seeds` times, for all epochs.
3. **racing**: once every seeds trial has finished, `analysis.racing` says what comes next (a
   seed for a contender, or stop).

The k-th seeds trial of every size gets `trial_seed(--seed, k)`: the sizes share seed k within a
run (the same shuffles), and runs with different `--seed` values share no trial.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from analysis.layout import COMPLETED, STOPPED, outcome
from analysis.racing import handed_out
from search.config import SearchConfig

RUNNING = "running"


@dataclass
class TrialRecord:
    """What the searcher knows of one Tune trial."""

    stage: str  # search | seeds | racing
    latent_dim: int
    lr: float
    seed: int
    state: str = RUNNING  # RUNNING, then its trials.csv status (`analysis.layout.outcome`)
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
        """A completed seeds or racing trial's value of `metric` (psnr | nll), else None."""
        value = self.psnr if metric == "psnr" else self.nll
        return value if self.stage != "search" and self.state == COMPLETED else None

    def trial_config(self) -> dict:
        """What the searcher adds to the trial's config (the rest is the run's template)."""
        return {
            "phase": self.phase,
            "stage": self.stage,
            "latent_dim": self.latent_dim,
            "lr": self.lr,
            "seed": self.seed,
        }


def member_id(trial_id: str, index: int) -> str:
    """The trial id a fused trial's member `index` has in every table: the Tune trial's, `-index`."""
    return f"{trial_id}-{index}"


# what a fused trial's result holds for all its members alike; the rest is each member's own
SHARED_KEYS = ("phase", "latent_dim", "lr", "beta", "max_epochs", "node", "host", "device", "started_at",
               "train_images", "pixel_sum", "threads", "finished_at", "time_total_s", "training_iteration", "restored")


def split_members(trial_id: str, config: dict, result: dict) -> list[tuple[str, dict, dict]]:
    """(trial id, config, result) of each trial a Tune trial stands for: itself, or each member
    of a fused trial (its seed in the config; the result's shared keys and the member's own part,
    `members[i]`). A member's `time_total_s` is its share of the trial's."""
    seeds = config.get("seeds") or []
    if len(seeds) < 2:
        return [(trial_id, config, result)]
    shared = {k: result[k] for k in SHARED_KEYS if k in result}
    if shared.get("time_total_s") is not None:
        shared["time_total_s"] = shared["time_total_s"] / len(seeds)
    return [(member_id(trial_id, i), {**config, "seed": seed}, {**shared, **member_part(result, i)})
            for i, seed in enumerate(seeds)]


def member_part(result: dict, index: int) -> dict:
    """Member `index`'s own part of a fused trial's result: `members[index]`, or its
    `members/index/...` keys in a result Ray Tune has flattened (what a searcher is given)."""
    nested = (result.get("members") or {}).get(str(index))
    if nested is not None:
        return dict(nested)
    prefix = f"members/{index}/"
    return {k.removeprefix(prefix): v for k, v in result.items() if k.startswith(prefix)}


def group_config(members: list[TrialRecord]) -> dict:
    """A trial's config for `members` (one size's seeds): one solo trial's, or a fused trial's
    with every member's seed (`seeds`; `seed` is the first's)."""
    config = members[0].trial_config()
    return config if len(members) == 1 else {**config, "seeds": [m.seed for m in members]}


def trial_seed(run_seed: int, k: int) -> int:
    """The seed of every size's k-th seeds trial in the run with `--seed run_seed`: a 32-bit draw
    from numpy's SeedSequence of (run_seed, k) (S + k would give --seed 0 and 3 a common seed)."""
    return int(np.random.SeedSequence([run_seed, k]).generate_state(1)[0])


@dataclass(frozen=True)
class Action:
    """What the next free slot gets: `search` (ask Optuna), `seeds` (a seed for `latent_dim`),
    `wait` (a result still to come decides), or `race` (ask racing)."""

    kind: str
    latent_dim: int | None = None


@dataclass
class Ledger:
    trials: dict[str, TrialRecord] = field(default_factory=dict)  # by trial id (a fused trial's: by member id)
    seeds_lr: dict[int, float] = field(default_factory=dict)  # size -> the lr its seeds trials use (fixed once chosen)
    groups: dict[str, list[str]] = field(default_factory=dict)  # a fused Tune trial's id -> its members' ids

    def next_action(self, config: SearchConfig) -> Action:
        if self.count("search") < config.trials:
            return Action("search")
        for dim in config.latent_dims:
            if not self.running("search", dim) and self.count("seeds", dim) < config.seeds:
                return Action("seeds", dim)
        if self.running("search") or self.running("seeds"):
            return Action("wait")  # racing needs every seeds trial's result
        return Action("race")

    def record(self, trial_id: str, stage: str, dim: int, lr: float, seed: int) -> TrialRecord:
        self.trials[trial_id] = TrialRecord(stage=stage, latent_dim=dim, lr=lr, seed=seed)
        return self.trials[trial_id]

    def seed_for(self, trial_id: str, stage: str, dim: int, config: SearchConfig) -> TrialRecord:
        """The size's next seeds (or racing) trial, at the size's best search lr."""
        return self.seeds_for(trial_id, stage, dim, config, 1)[0]

    def hand_out(self, trial_id: str, stage: str, dim: int, config: SearchConfig) -> dict:
        """The config of the size's next seeds (or racing) trial: as many of its seeds as
        `--fuse-seeds` fuses, within what the stage still owes the size (`--seeds`, or
        `--max-seeds` and `--max-trials` while racing)."""
        if stage == "seeds":
            room = [config.seeds - self.count("seeds", dim)]
        else:
            room = [config.max_seeds - self.handed(config.latent_dims)[dim]]
            if config.max_trials is not None:
                room.append(config.max_trials - len(self.trials))
        n = max(1, min(config.members_per_trial, *room))
        return group_config(self.seeds_for(trial_id, stage, dim, config, n))

    def seeds_for(self, trial_id: str, stage: str, dim: int, config: SearchConfig, n: int) -> list[TrialRecord]:
        """The size's next `n` seeds (or racing) trials, at the size's best search lr: one Tune
        trial, fused when n > 1 (its members are trials of their own here, `member_id`)."""
        if dim not in self.seeds_lr:
            self.seeds_lr[dim] = self.best_lr(dim, config.lr_range)
        k = 1 + self.count("seeds", dim) + self.count("racing", dim)
        if n == 1:
            return [self.record(trial_id, stage, dim, self.seeds_lr[dim], trial_seed(config.seed, k))]
        self.groups[trial_id] = [member_id(trial_id, i) for i in range(n)]
        return [self.record(m, stage, dim, self.seeds_lr[dim], trial_seed(config.seed, k + i))
                for i, m in enumerate(self.groups[trial_id])]

    def finish(self, trial_id: str, result: dict, *, error: bool, max_epochs: int) -> TrialRecord | None:
        """Record how the trial ended, each member of a fused one from its own part of the result
        (`members`); the (first) record, None for a trial this ledger never handed out."""
        if trial_id in self.groups:
            done = [self._finish(m, member_part(result, i), error=error, max_epochs=max_epochs)
                    for i, m in enumerate(self.groups[trial_id])]
            return done[0]
        return self._finish(trial_id, result, error=error, max_epochs=max_epochs)

    def _finish(self, trial_id: str, result: dict, *, error: bool, max_epochs: int) -> TrialRecord | None:
        entry = self.trials.get(trial_id)
        if entry is None:
            return None
        epochs = int(result.get("epoch", result.get("training_iteration", 0)) or 0)
        entry.state = outcome("ERROR" if error else "TERMINATED", diverged=bool(result.get("diverged")), epochs=epochs,
                              max_epochs=max_epochs)
        entry.epochs, entry.psnr, entry.nll = epochs, result.get("psnr_mean"), result.get("nll_iw")
        return entry

    def count(self, stage: str, dim: int | None = None) -> int:
        return sum(1 for e in self.trials.values() if e.stage == stage and (dim is None or e.latent_dim == dim))

    def running(self, stage: str | None = None, dim: int | None = None) -> bool:
        return any(e.state == RUNNING and (stage is None or e.stage == stage) and (dim is None or e.latent_dim == dim)
                   for e in self.trials.values())

    def handed(self, latent_dims) -> dict[int, int]:
        """Seeds trials handed out per latent size so far (seeds and racing stages, every outcome)."""
        handed = handed_out((e.stage, e.latent_dim) for e in self.trials.values())
        return {d: handed.get(d, 0) for d in latent_dims}

    def evidence(self, metric: str) -> dict[int, list[float]]:
        """The finished seeds trials' values of `metric`, per size: what the decision sees."""
        values: dict[int, list[float]] = {}
        for entry in self.trials.values():
            value = entry.evidence(metric)
            if value is not None:
                values.setdefault(entry.latent_dim, []).append(float(value))
        return values

    def best_lr(self, dim: int, lr_range: tuple[float, float]) -> float:
        """The lr of the size's best search trial: most epochs trained first (an early-stopped
        trial is not compared with a finished one), then highest PSNR; else the range's middle."""
        usable = [e for e in self.trials.values() if e.stage == "search" and e.latent_dim == dim
                  and e.state in (COMPLETED, STOPPED) and e.psnr is not None and math.isfinite(e.psnr)]
        if not usable:
            return math.sqrt(lr_range[0] * lr_range[1])
        return max(usable, key=lambda e: (e.epochs, e.psnr)).lr

    def owed(self, config: SearchConfig, racing_contenders: tuple[int, ...] | None) -> int:
        """Trials still to hand out: the rest of the search, the seeds trials not handed out yet
        and, while racing, each contender's room up to --max-seeds; capped by --max-trials."""
        owed = max(0, config.trials - self.count("search"))
        owed += sum(max(0, config.seeds - self.count("seeds", d)) for d in config.latent_dims)
        if racing_contenders is not None:
            handed = self.handed(config.latent_dims)
            owed += sum(max(0, config.max_seeds - handed[d]) for d in racing_contenders)
        if config.max_trials is not None:
            owed = min(owed, max(0, config.max_trials - len(self.trials)))
        return owed


def upgraded(state: dict) -> dict:
    """A searcher's pickled `__dict__` from an earlier release in today's shape: no folder paths,
    the ledger as its own class, with fused groups."""
    state = {k: v for k, v in state.items() if k not in ("_journal", "_race_file")}
    if "_ledger" not in state:  # before the ledger had its own class
        state["_ledger"] = Ledger(state.pop("_trials", {}), state.pop("_seeds_lr", {}))
    if not hasattr(state["_ledger"], "groups"):  # before fused trials
        state["_ledger"].groups = {}
    return state


def decide(ledger: Ledger, config: SearchConfig, *, racing: bool):
    """The run's decision (`analysis.racing.Race`) on the finished seeds trials in `ledger`. Before
    racing, while some size has none, nothing is decided (one size alone would read as certain)."""
    values = ledger.evidence(config.metric)
    race = config.decision.assess(values)
    if not racing and len(values) < len(config.latent_dims):
        race = dataclasses.replace(race, confidence=0.0)
    return race
