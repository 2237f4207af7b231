"""Racing: what the tool estimates, how sure it is, and which sizes need more seeds. Pure:
numbers in, numbers out. docs/design.md (*Decision confidence*) gives the model in full, and
docs/calibration.md what it was checked against.

- **What it estimates**: the selection rule's answer on the *true* mean of the metric (PSNR, or
  nll_iw negated: one model, one calibration for both) of each latent size, what infinitely many
  seeds would show. More seeds make the tool surer of that answer; they do not change it.
- **The model**: a seeds trial's value is its size's true mean plus normal noise with the size's
  own SD, shrunk toward the pooled SD by `SPREAD_PRIOR_DF` degrees of freedom (seed SDs differ
  3x between sizes; two seeds alone are too few to stand on); no seed effect (none measured).
- **The confidence**: the posterior share of draws of the true means whose answer is the choice
  (`posterior_means`, through the rule `analyze` applies), discounted for racing's repeated
  looks, each wrong answer's on its own (`sequential_confidence`).
- **Contenders**: sizes whose role (the answer, or the best size that sets the boundary) has a
  posterior share of at least `_UNSETTLED`; the next seed goes to the one with the fewest
  (`next_trial`), until the target, `--max-seeds` or `--max-trials` stops it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import Counter
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Iterable, Mapping, Sequence

import numpy as np

from analysis.rules import DEFAULT_METRIC, DEFAULT_RULE, DEFAULT_TOLERANCE_DB, DEFAULT_TOLERANCE_NATS, METRICS, RULE
from analysis.selection import answers, choose

N_DRAWS = 4000  # posterior draws: Monte-Carlo SD of a 0.9 confidence is 0.005
SPREAD_PRIOR_DF = 2.0  # what the pooled seed spread weighs in each size's own, in degrees of freedom (docstring)
_UNSETTLED = 0.01  # a size is a contender while its role has at least this posterior share


class StopReason(str, enum.Enum):
    """Why racing stopped; its value is what race.json, status.json and selection.json hold."""

    CONFIDENCE = "confidence"
    MAX_SEEDS = "max-seeds"
    BUDGET = "budget"
    NO_SEEDS = "no completed seeds trial"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def words(self, confidence: float, target: float | None) -> str:
        """Why racing stopped, in words, with the confidence it stopped at."""
        return {StopReason.CONFIDENCE: f"confidence {confidence:.2f} reached the target {target or 0:.2f}",
                StopReason.MAX_SEEDS: f"every contender has --max-seeds trials (confidence {confidence:.2f})",
                StopReason.BUDGET: f"--max-trials spent (confidence {confidence:.2f})",
                StopReason.NO_SEEDS: "no seeds trial completed"}[self]

    @property
    def why_not(self) -> str:
        """Why a race-on under new limits would stop at once."""
        return {StopReason.CONFIDENCE: "the confidence already reaches the target",
                StopReason.MAX_SEEDS: "every contender already has --max-seeds trials",
                StopReason.BUDGET: "--max-trials is spent", StopReason.NO_SEEDS: "no seeds trial completed"}[self]


@dataclass(frozen=True)
class Race:
    """The decision on the seeds trials so far. Frozen: the searcher, progress, status and the
    report share it; `to_dict`/`from_dict` are its form in race.json."""

    latent_dim: int | None  # the rule's choice on the sample means (None: no completed seeds trial)
    confidence: float  # posterior probability that the true means give the same answer (0-1)
    contenders: tuple[int, ...]  # sizes whose role is still unsettled (see the module docstring)
    n_trials: dict[int, int] = field(default_factory=dict)  # completed seeds trials per size
    best_latent_dim: int | None = None  # highest sample mean
    mean: dict[int, float] = field(default_factory=dict)  # sample mean of the metric per size
    se: dict[int, float | None] = field(default_factory=dict)  # its standard error (its shrunk SD / sqrt(n))
    sd: float | None = None  # pooled per-seed SD (dB or nats); None below one degree of freedom
    df: int = 0  # its degrees of freedom
    p_answer: dict[int, float] = field(default_factory=dict)  # posterior share of each size being the answer
    rule: str = DEFAULT_RULE
    tolerance_db: float = DEFAULT_TOLERANCE_DB
    metric: str = DEFAULT_METRIC
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # in the fields' order
        for name in ("n_trials", "mean", "se", "p_answer"):
            out[name] = {str(k): round(v, 4) if name == "p_answer" else v for k, v in out[name].items()}
        return out | {"confidence": round(self.confidence, 4), "contenders": list(self.contenders)}

    @classmethod
    def from_dict(cls, values: Mapping) -> "Race":
        def keyed(name):
            return {int(k): v for k, v in (values.get(name) or {}).items()}

        return cls(
            latent_dim=values.get("latent_dim"), confidence=float(values.get("confidence") or 0.0),
            contenders=tuple(values.get("contenders") or ()), n_trials=keyed("n_trials"),
            best_latent_dim=values.get("best_latent_dim"), mean=keyed("mean"), se=keyed("se"), sd=values.get("sd"),
            df=int(values.get("df") or 0), p_answer=keyed("p_answer"), rule=values.get("rule", DEFAULT_RULE),
            tolerance_db=float(values.get("tolerance_db", DEFAULT_TOLERANCE_DB)),
            metric=values.get("metric", DEFAULT_METRIC),
            tolerance_nats=float(values.get("tolerance_nats", DEFAULT_TOLERANCE_NATS)),
        )

    @property
    def tolerance(self) -> float:
        """The practical-equivalence margin in the metric's unit."""
        return METRICS[self.metric].tolerance(self.tolerance_db, self.tolerance_nats)

    def close_call(self) -> str | None:
        """One sentence when the choice is not the best size: the sizes are practically
        equivalent and the rule takes the smaller one."""
        if self.latent_dim is None or self.best_latent_dim is None or self.latent_dim == self.best_latent_dim:
            return None
        m = METRICS[self.metric]
        gap = abs(self.mean[self.best_latent_dim] - self.mean[self.latent_dim])
        if RULE[self.rule].uses_tolerance:
            return (
                f"latent sizes {self.latent_dim} and {self.best_latent_dim} are within {self.tolerance:g} {m.unit} of "
                f"each other ({gap:.2f} {m.unit} apart); the rule takes the smaller, {self.latent_dim}"
            )
        better = "above" if m.sign > 0 else "below"
        return (f"latent size {self.best_latent_dim} has the {m.best_word} {m.label}, {gap:.2f} {m.unit} {better} "
                f"{self.latent_dim}; the {self.rule} rule takes {self.latent_dim}")


@dataclass(frozen=True)
class NextTrial:
    """What racing does next: a seed for `latent_dim`, wait for running trials, or stop."""

    latent_dim: int | None = None
    stop_reason: StopReason | None = None


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sample SD with ddof=1 over sqrt(n)); SE is NaN below two values."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return math.nan, math.nan
    if len(array) < 2:
        return float(array.mean()), math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def posterior_means(values: Mapping[int, Sequence[float]], *, n_draws: int = N_DRAWS, seed: int = 0,
                    prior_df: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """Draws of the true means (shape (n_draws, D), sizes sorted) from their posterior, with the
    sample means, each size's per-seed SD (its own spread shrunk toward the pooled one), the pooled
    per-seed SD and its degrees of freedom ν (seeds trials minus sizes). No degree of freedom (one
    seed per size): no draws (shape (0, D)). `prior_df`: the degrees of freedom the pooled spread
    lends each size (default `SPREAD_PRIOR_DF`; infinity: one SD for all sizes)."""
    prior_df = SPREAD_PRIOR_DF if prior_df is None else prior_df
    dims = sorted(d for d, v in values.items() if len(v) > 0)
    samples = [np.asarray(values[d], dtype=float) for d in dims]
    means = np.array([x.mean() for x in samples])
    counts = np.array([len(x) for x in samples])
    sum_sq = np.array([((x - x.mean()) ** 2).sum() for x in samples])
    df = int((counts - 1).sum())
    if df <= 0:
        return np.empty((0, len(dims))), means, np.full(len(dims), math.nan), math.nan, 0
    pooled = float(sum_sq.sum() / df)
    rng = np.random.default_rng(seed)
    shared = (df * pooled / rng.chisquare(df, size=n_draws))[:, None]  # the common spread σ0² | data
    if math.isinf(prior_df):
        variance, sds = shared, np.full(len(dims), math.sqrt(pooled))
    else:  # each size's σ² | σ0², its seeds: scaled inverse χ² with prior_df + n - 1 degrees of freedom
        own_df = prior_df + counts - 1
        variance = (prior_df * shared + sum_sq) / rng.chisquare(own_df, size=(n_draws, len(dims)))
        sds = np.sqrt((prior_df * pooled + sum_sq) / own_df)
    z = rng.standard_normal((n_draws, len(dims)))
    return means + np.sqrt(variance / counts) * z, means, sds, math.sqrt(pooled), df


def assess(
    values: Mapping[int, Sequence[float]],
    *,
    rule: str = DEFAULT_RULE,
    tolerance_db: float = DEFAULT_TOLERANCE_DB,
    seed: int = 0,
    horizon: tuple[int, int] | None = None,
    n_draws: int = N_DRAWS,
    metric: str = DEFAULT_METRIC,
    tolerance_nats: float = DEFAULT_TOLERANCE_NATS,
) -> Race:
    """The rule's choice on `values` (latent size -> the `metric` of each completed seeds trial:
    PSNR, or nll_iw with lower better), the decision confidence and the contenders.
    The tolerance is `tolerance_db` for psnr and `tolerance_nats` for nll. `horizon`: (--seeds,
    --max-seeds), the seeds per size between which racing looks; the confidence is discounted for those looks
    (`sequential_confidence`). None: a single look at fixed seeds, no discount. Deterministic
    for a given `seed`."""
    dims = np.array(sorted(d for d, v in values.items() if len(v) > 0), dtype=int)
    counts = {int(d): len(values[d]) for d in dims}
    settings = dict(rule=rule, tolerance_db=tolerance_db, metric=metric, tolerance_nats=tolerance_nats)
    if len(dims) == 0:
        return Race(None, 0.0, (), counts, **settings)
    tolerance, sign = METRICS[metric].tolerance(tolerance_db, tolerance_nats), METRICS[metric].sign
    # the posterior is drawn for the scores (higher is better: nll negated), so both metrics take
    # the very same draws and rule, and share one calibration
    scores = {int(d): [sign * float(v) for v in values[d]] for d in dims}
    draws, score_means, sds, sd, df = posterior_means(scores, n_draws=n_draws, seed=seed)
    means = sign * score_means
    ses = np.array([s / math.sqrt(counts[int(d)]) for d, s in zip(dims, sds, strict=True)])
    own_ses = np.array([mean_se(values[d])[1] for d in dims])  # what one-se reads: each size's own SE
    choice = choose(dims, means, own_ses, rule=rule, tolerance=tolerance, metric=metric)
    common = dict(n_trials=counts, best_latent_dim=choice.best_latent_dim,
                  mean={int(d): float(m) for d, m in zip(dims, means, strict=True)},
                  se={int(d): (float(s) if math.isfinite(s) else None) for d, s in zip(dims, ses, strict=True)},
                  sd=sd if df > 0 else None, df=df, **settings)
    if len(dims) == 1:
        return Race(choice.latent_dim, 1.0, (), p_answer={int(dims[0]): 1.0}, **common)
    if df == 0:  # one seed per size: no spread measured, nothing is settled
        return Race(choice.latent_dim, 0.0, tuple(int(d) for d in dims), p_answer={}, **common)
    picked = answers(dims, draws, own_ses, rule=rule, tolerance=tolerance)  # on the scores
    best = dims[draws.argmax(axis=1)]
    p_answer = {int(d): float(np.mean(picked == d)) for d in dims}
    p_best = {int(d): float(np.mean(best == d)) for d in dims}
    # the best size's mean sets the boundary of one-se and tolerance (knee has none)
    sets_boundary = RULE[rule].has_boundary
    contenders = tuple(
        int(d) for d in dims if p_answer[int(d)] >= _UNSETTLED or (sets_boundary and p_best[int(d)] >= _UNSETTLED)
    )
    posterior = (
        max(p_answer[choice.latent_dim], 0.5 / n_draws) if p_answer[choice.latent_dim] < 1 else 1 - 0.5 / n_draws
    )
    wrong = [p for d, p in p_answer.items() if d != choice.latent_dim]
    confidence = sequential_confidence(posterior, horizon, wrong)
    return Race(choice.latent_dim, confidence, contenders, p_answer=p_answer, **common)


def sequential_confidence(posterior: float, horizon: tuple[int, int] | None,
                          wrong: Sequence[float] | None = None) -> float:
    """The posterior probability of the choice, discounted for racing's repeated looks.

    Racing looks after every seeds trial and stops at the first look that reaches the target, so
    a wrong choice that wanders over the target by chance stops the race as readily as a right
    one. A wrong answer with posterior share ε corresponds to a one-sided z = Φ⁻¹(1 − ε). A
    standardised random walk crosses z somewhere while its information grows from t0 to t1 with
    probability about ε + ln(t1/t0)/2 · z · φ(z) (the level-crossing rate of the Ornstein-Uhlenbeck
    process W(t)/√t; Siegmund, Sequential Analysis, 1985, ch. 4). Each wrong answer (`wrong`:
    their posterior shares; default one, of 1 − posterior) has its own walk, and the chances add
    up (a union bound: three sizes near the boundary give two ways to be wrong, not one). With
    t1/t0 the planned horizon, --max-seeds / --seeds, the same discount applies at every look (a
    constant boundary, as in Pocock's group-sequential design). No horizon (or no room to race):
    the posterior itself."""
    if horizon is None or horizon[1] <= horizon[0] or posterior <= 0.5:
        return posterior
    shares = [p for p in (wrong or ()) if p > 0] or [1 - posterior]
    if any(p >= 0.5 for p in shares):
        return posterior
    normal, rate = NormalDist(), math.log(horizon[1] / horizon[0]) / 2
    error = sum(p + rate * normal.inv_cdf(1 - p) * normal.pdf(normal.inv_cdf(1 - p)) for p in shares)
    return max(0.0, 1 - error)


def handed_out(trials: Iterable[tuple[str, int]]) -> dict[int, int]:
    """Seeds trials handed out per latent size, of every outcome, from the (stage, latent_dim) of
    each trial: what --max-seeds caps. The searcher and a trial table count them alike."""
    return dict(Counter(int(dim) for stage, dim in trials if stage in ("seeds", "racing")))


@dataclass(frozen=True)
class Limits:
    """What racing may spend: the confidence it aims at (`--confidence`), the seeds trials per
    size (`--max-seeds`) and the trials of the whole run (`--max-trials`, None for no cap)."""

    target: float
    max_seeds: int
    max_trials: int | None = None

    def next_step(self, race: Race, handed: Mapping[int, int], *, n_trials: int) -> NextTrial:
        """`next_trial` under these limits, after `n_trials` trials of the run."""
        budget_left = self.max_trials is None or n_trials < self.max_trials
        return next_trial(race, handed, target=self.target, max_seeds=self.max_seeds, budget_left=budget_left)


def next_trial(race: Race, handed: Mapping[int, int], *, target: float, max_seeds: int, budget_left: bool) -> NextTrial:
    """Racing's next step after `race`: stop (with a reason) or a seed for a contender.
    `handed`: seeds trials handed out per size so far (running ones included)."""
    if race.latent_dim is None:
        return NextTrial(stop_reason=StopReason.NO_SEEDS)
    if race.confidence >= target:
        return NextTrial(stop_reason=StopReason.CONFIDENCE)
    room = [d for d in race.contenders if handed.get(d, 0) < max_seeds]
    if not room:
        return NextTrial(stop_reason=StopReason.MAX_SEEDS)
    if not budget_left:
        return NextTrial(stop_reason=StopReason.BUDGET)
    # fewest seeds first (a comparison's variance falls fastest there), then the least settled role
    settled = {d: abs(race.p_answer.get(d, 0.0) - 0.5) for d in room}
    return NextTrial(latent_dim=min(room, key=lambda d: (handed.get(d, 0), settled[d], d)))
