"""Choosing the latent size from the per-latent-size summary, by a stated rule.

Rules, on the chosen metric (`analysis.rules.METRICS`: mean PSNR, higher is better, or
nll_iw, lower is better):
- `tolerance` (default): the smallest latent size within `tolerance` (dB or nats) of the best.
- `one-se`: the smallest latent size within one standard error of the best size's mean
  (parsimony with a margin the data justifies).
- `knee`: the knee of the metric versus latent size (Kneedle: the size furthest above the
  straight line from the smallest to the largest size, both axes scaled to [0, 1]).
Ties go to the smaller latent size. Sizes without a usable trial are left out and named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.rules import DEFAULT_METRIC, DEFAULT_RULE, DEFAULT_TOLERANCE_DB, DEFAULT_TOLERANCE_NATS, METRICS, RULE
from analysis.summary import se_column
from vae.errors import UsageError


@dataclass(frozen=True)
class Selection:
    latent_dim: int
    rule: str  # the rule in words, with the numbers it used
    best_latent_dim: int  # best mean of the metric
    best_trial_id: str | None  # the chosen size's best seeds trial (its model is exported)
    notes: tuple[str, ...] = field(default_factory=tuple)
    per_latent_dim: tuple[dict, ...] = field(default_factory=tuple)
    # the rule's boundary in the metric's unit (sizes on its good side count as equally good);
    # None where the rule has none (knee, a single size, one-se without a standard error)
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "rule": self.rule,
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "best_latent_dim": self.best_latent_dim,
            "best_trial_id": self.best_trial_id,
            "notes": list(self.notes),
            "per_latent_dim": list(self.per_latent_dim),
        }


# selection.json's per_latent_dim: each of these summary columns with its standard error
_PER_DIM = tuple(
    c for column in ("psnr_mean", "mse_mean", "nll_iw", "active_units") for c in (column, se_column(column))
)


def select(summary: pd.DataFrame, *, rule: str = DEFAULT_RULE, tolerance_db: float = DEFAULT_TOLERANCE_DB,
           metric: str = DEFAULT_METRIC, tolerance_nats: float = DEFAULT_TOLERANCE_NATS) -> Selection:
    """Pick a latent size from `analysis.summary.summarize` output by `metric` (psnr | nll);
    the tolerance is `tolerance_db` for psnr and `tolerance_nats` for nll."""
    if rule not in RULE:
        raise UsageError(f"rule must be one of {', '.join(RULE)} but got {rule!r}")
    if metric not in METRICS:
        raise UsageError(f"metric must be one of {', '.join(METRICS)} but got {metric!r}")
    for name, value in (("tolerance_db", tolerance_db), ("tolerance_nats", tolerance_nats)):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a number >= 0 but got {value!r}")
    m = METRICS[metric]
    per_dim = tuple(
        {"latent_dim": int(r["latent_dim"]), "n_trials": int(r["n_trials"])}
        | {k: _num(r[k]) for k in _PER_DIM}
        for _, r in summary.sort_values("latent_dim").iterrows()
    )
    notes: list[str] = []
    has_value = summary[m.column].notna()  # summarize fills a column an earlier release's table lacks with NaN
    candidates = summary[(summary["n_trials"] > 0) & has_value].sort_values("latent_dim")
    missing = sorted(int(d) for d in summary.loc[(summary["n_trials"] == 0) | ~has_value, "latent_dim"])
    if missing:
        notes.append(f"latent size(s) {', '.join(map(str, missing))} have no completed seeds trial with {m.column} "
                     "and were not considered")
    if candidates.empty:
        raise UsageError(
            f"no latent size has a completed seeds trial with {m.column}; nothing to select from"
            + ("" if metric == "psnr" else " (runs of releases before nll_iw have none: use --metric psnr)")
        )
    choice = choose(
        candidates["latent_dim"].to_numpy(dtype=int),
        candidates[m.column].to_numpy(dtype=float),
        candidates[se_column(m.column)].to_numpy(dtype=float),
        rule=rule,
        tolerance=m.tolerance(tolerance_db, tolerance_nats),
        metric=metric,
    )
    row = candidates[candidates["latent_dim"] == choice.latent_dim].iloc[0]
    return Selection(
        latent_dim=choice.latent_dim,
        rule=f"{rule}: {choice.words}; chosen latent size {choice.latent_dim}",
        best_latent_dim=choice.best_latent_dim,
        best_trial_id=row.best_trial_id,
        notes=tuple(notes + list(choice.notes)),
        per_latent_dim=per_dim,
        threshold=choice.threshold,
    )


@dataclass(frozen=True)
class Choice:
    latent_dim: int
    best_latent_dim: int
    words: str  # the rule in words, with the numbers it used
    threshold: float | None  # the decision boundary in the metric's unit (one-se, tolerance), None for knee / one size
    notes: tuple[str, ...] = ()


def answers(dims: np.ndarray, means: np.ndarray, ses: np.ndarray | None = None, *, rule: str = DEFAULT_RULE,
            tolerance: float = DEFAULT_TOLERANCE_DB, metric: str = DEFAULT_METRIC) -> np.ndarray:
    """The rule's answer for each row of `means` (shape (B, D), columns sorted like `dims`), in
    the metric's own unit (for nll, lower is better; `tolerance` is in that unit too).

    Vectorised so that `analysis.racing` applies the very same rule to thousands of posterior
    draws of the true means at once; `choose` applies it to the observed means. `ses` (shape
    (D,)) is read by one-se only: that rule's boundary is an estimate's SE, not a property of
    the true means, which is why its answer drifts as seeds are added."""
    dims = np.asarray(dims)
    scores = METRICS[metric].sign * np.atleast_2d(np.asarray(means, dtype=float))  # higher is better
    best = scores.argmax(axis=1)  # ties go to the smaller size: argmax returns the first
    rows = np.arange(len(scores))
    if len(dims) == 1:
        return np.full(len(scores), dims[0])
    rule_ = RULE[rule]
    if rule_.margin is None:  # the knee
        return dims[_knee_index(dims, scores)]
    best_se = np.asarray(ses, dtype=float)[best] if ses is not None else np.full(len(scores), np.nan)
    margin = np.broadcast_to(np.asarray(rule_.margin(best_se, float(tolerance)), dtype=float), (len(scores),))
    margin = np.where(np.isfinite(margin), margin, 0.0)  # no margin (one-se with one seed): the best itself
    within = scores >= (scores[rows, best] - margin)[:, None]
    return dims[within.argmax(axis=1)]  # the first (smallest) size within the margin


def choose(dims: np.ndarray, means: np.ndarray, ses: np.ndarray, *, rule: str = DEFAULT_RULE,
           tolerance: float = DEFAULT_TOLERANCE_DB, metric: str = DEFAULT_METRIC) -> Choice:
    """The rule on the observed means (arrays sorted by latent size, each size with a trial),
    with its words and boundary. `select` calls it; the answer is `answers`' on one row."""
    m = METRICS[metric]
    means = np.asarray(means, dtype=float)
    index = int(np.argmax(m.sign * means))
    best_dim, best_mean, best_se = int(dims[index]), float(means[index]), float(ses[index])
    chosen = int(answers(dims, means, ses, rule=rule, tolerance=tolerance, metric=metric)[0])
    best = f"{m.best_word} {m.label} ({best_mean:.2f} {m.unit} at latent size {best_dim})"
    if len(dims) == 1:
        words = (
            f"only latent size {best_dim} has completed trials, so it is chosen ({m.label} {best_mean:.2f} {m.unit})"
        )
        return Choice(best_dim, best_dim, words, None)
    rule_ = RULE[rule]
    if rule_.margin is not None:
        margin = float(np.asarray(rule_.margin(np.array([best_se]), float(tolerance))).reshape(-1)[0])
        if not math.isfinite(margin):
            words = (
                f"{rule_.name} rule not applicable: latent size {best_dim} has fewer than two seeds, so no "
                f"standard error; fell back to the {best}"
            )
            return Choice(best_dim, best_dim, words, None, ("run with --seeds 2 or more for a standard error",))
        threshold = best_mean - m.sign * margin
        at = (
            f"{best_mean:.2f} ± {best_se:.2f} {m.unit} (mean ± SE over seeds)"
            if rule_.shows_se
            else f"{best_mean:.2f} {m.unit}"
        )
        words = (
            f"smallest latent size whose {m.label} is {rule_.within(tolerance, m.unit)}: best is latent size "
            f"{best_dim} at {at}, threshold {threshold:.2f} {m.unit}{rule_.caveat}"
        )
    else:
        notes: list[str] = []
        if len(dims) < 3 or means.max() == means.min():
            notes.append(
                f"knee needs at least three latent sizes with different {m.label}; fell back to the {m.best_word}"
            )
            return Choice(chosen, best_dim, f"no knee to find; {best}", None, tuple(notes))
        x = np.asarray(dims, dtype=float)
        gap = _knee_gaps(x, m.sign * means[None, :])[0]
        words = (
            f"knee of {m.label} versus latent size (largest gain over the straight line from size {int(x[0])} to "
            f"{int(x[-1])}, both axes scaled to [0, 1]: {gap.max():.2f})"
        )
        return Choice(chosen, best_dim, words, None)
    return Choice(chosen, best_dim, words, threshold)


def _knee_gaps(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Height of each point above the chord from the first to the last, both axes scaled to [0, 1]."""
    xn = (x - x.min()) / (x.max() - x.min())
    low, high = means.min(axis=1, keepdims=True), means.max(axis=1, keepdims=True)
    yn = (means - low) / np.where(high > low, high - low, 1.0)
    return yn - xn


def _knee_index(dims: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Kneedle per row (first maximum: ties go to the smaller size); the best size where no knee
    can be found (fewer than three sizes, or a flat row)."""
    best = means.argmax(axis=1)
    if len(dims) < 3:
        return best
    flat = means.max(axis=1) == means.min(axis=1)
    knee = _knee_gaps(np.asarray(dims, dtype=float), means).argmax(axis=1)
    return np.where(flat, best, knee)


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
