"""Choosing the latent size from the per-latent-size summary, by a stated rule.

Rules:
- `one-se` (default): the smallest latent size whose mean PSNR is within one standard error
  of the best size's mean PSNR (parsimony with a margin the data justifies).
- `tolerance`: the smallest latent size whose mean PSNR is within `tolerance_db` dB of the best.
- `knee`: the knee of mean PSNR versus latent size (Kneedle: the size furthest above the
  straight line from the smallest to the largest size, both axes scaled to [0, 1]).
Ties go to the smaller latent size. Sizes without a usable trial are left out and named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.rules import DEFAULT_RULE, DEFAULT_TOLERANCE_DB, RULES
from vae.errors import UsageError


@dataclass(frozen=True)
class Selection:
    latent_dim: int
    rule: str  # the rule in words, with the numbers it used
    best_latent_dim: int  # highest mean PSNR
    best_trial_id: str | None  # the chosen size's best seeds trial (its model is exported)
    notes: tuple[str, ...] = field(default_factory=tuple)
    per_latent_dim: tuple[dict, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "rule": self.rule,
            "best_latent_dim": self.best_latent_dim,
            "best_trial_id": self.best_trial_id,
            "notes": list(self.notes),
            "per_latent_dim": list(self.per_latent_dim),
        }


def select(summary: pd.DataFrame, *, rule: str = DEFAULT_RULE, tolerance_db: float = DEFAULT_TOLERANCE_DB) -> Selection:
    """Pick a latent size from `analysis.summary.summarize` output."""
    if rule not in RULES:
        raise UsageError(f"rule must be one of {', '.join(RULES)} but got {rule!r}")
    if not (math.isfinite(tolerance_db) and tolerance_db >= 0):
        raise UsageError(f"tolerance_db must be a number >= 0 but got {tolerance_db!r}")
    per_dim = tuple(
        {
            "latent_dim": int(r.latent_dim),
            "n_trials": int(r.n_trials),
            "psnr_mean": _num(r.psnr_mean),
            "psnr_se": _num(r.psnr_se),
            "mse_mean": _num(r.mse_mean),
            "mse_se": _num(r.mse_se),
        }
        for r in summary.sort_values("latent_dim").itertuples()
    )
    notes: list[str] = []
    candidates = summary[summary["n_trials"] > 0].sort_values("latent_dim")
    missing = sorted(int(d) for d in summary.loc[summary["n_trials"] == 0, "latent_dim"])
    if missing:
        notes.append(f"latent size(s) {', '.join(map(str, missing))} have no completed seeds trial and were not considered")
    if candidates.empty:
        raise UsageError("no latent size has a completed seeds trial; nothing to select from")
    choice = choose(
        candidates["latent_dim"].to_numpy(dtype=int),
        candidates["psnr_mean"].to_numpy(dtype=float),
        candidates["psnr_se"].to_numpy(dtype=float),
        rule=rule,
        tolerance_db=tolerance_db,
    )
    row = candidates[candidates["latent_dim"] == choice.latent_dim].iloc[0]
    return Selection(
        latent_dim=choice.latent_dim,
        rule=f"{rule}: {choice.words}; chosen latent size {choice.latent_dim}",
        best_latent_dim=choice.best_latent_dim,
        best_trial_id=row.best_trial_id,
        notes=tuple(notes + list(choice.notes)),
        per_latent_dim=per_dim,
    )


@dataclass(frozen=True)
class Choice:
    latent_dim: int
    best_latent_dim: int
    words: str  # the rule in words, with the numbers it used
    threshold: float | None  # the decision boundary in dB (one-se, tolerance), None for knee / one size
    notes: tuple[str, ...] = ()


def answers(dims: np.ndarray, means: np.ndarray, ses: np.ndarray | None = None, *, rule: str = DEFAULT_RULE,
            tolerance_db: float = DEFAULT_TOLERANCE_DB) -> np.ndarray:
    """The rule's answer for each row of `means` (shape (B, D), columns sorted like `dims`).

    Vectorised so that `analysis.racing` applies the very same rule to thousands of posterior
    draws of the true means at once; `choose` applies it to the observed means. `ses` (shape
    (D,)) is read by one-se only: that rule's boundary is an estimate's SE, not a property of
    the true means, which is why its answer drifts as seeds are added."""
    dims = np.asarray(dims)
    means = np.atleast_2d(np.asarray(means, dtype=float))
    best = means.argmax(axis=1)  # ties in the mean go to the smaller size: argmax returns the first
    rows = np.arange(len(means))
    if len(dims) == 1:
        return np.full(len(means), dims[0])
    if rule == "knee":
        return dims[_knee_index(dims, means)]
    if rule == "one-se":
        best_se = np.asarray(ses, dtype=float)[best]
        margin = np.where(np.isfinite(best_se), best_se, 0.0)  # no SE: the best itself
    else:
        margin = np.full(len(means), float(tolerance_db))
    within = means >= (means[rows, best] - margin)[:, None]
    return dims[within.argmax(axis=1)]  # the first (smallest) size within the margin


def choose(dims: np.ndarray, means: np.ndarray, ses: np.ndarray, *, rule: str = DEFAULT_RULE,
           tolerance_db: float = DEFAULT_TOLERANCE_DB) -> Choice:
    """The rule on the observed means (arrays sorted by latent size, each size with a trial),
    with its words and boundary. `select` calls it; the answer is `answers`' on one row."""
    means = np.asarray(means, dtype=float)
    index = int(np.argmax(means))
    best_dim, best_mean, best_se = int(dims[index]), float(means[index]), float(ses[index])
    chosen = int(answers(dims, means, ses, rule=rule, tolerance_db=tolerance_db)[0])
    if len(dims) == 1:
        words = f"only latent size {best_dim} has completed trials, so it is chosen (mean PSNR {best_mean:.2f} dB)"
        return Choice(best_dim, best_dim, words, None)
    if rule == "one-se":
        if not math.isfinite(best_se):
            words = (
                f"one-standard-error rule not applicable: latent size {best_dim} has fewer than two seeds, so no "
                f"standard error; fell back to the highest mean PSNR ({best_mean:.2f} dB at latent size {best_dim})"
            )
            return Choice(best_dim, best_dim, words, None, ("run with --seeds 2 or more for a standard error",))
        threshold = best_mean - best_se
        words = (
            f"smallest latent size whose mean PSNR is within one standard error of the best: best is latent size "
            f"{best_dim} at {best_mean:.2f} ± {best_se:.2f} dB (mean ± SE over seeds), threshold {threshold:.2f} dB; "
            f"this boundary narrows as seeds are added, so its answer can move toward larger sizes"
        )
    elif rule == "tolerance":
        threshold = best_mean - tolerance_db
        words = (
            f"smallest latent size whose mean PSNR is within {tolerance_db:g} dB of the best: best is latent size "
            f"{best_dim} at {best_mean:.2f} dB, threshold {threshold:.2f} dB"
        )
    else:
        notes: list[str] = []
        if len(dims) < 3 or means.max() == means.min():
            notes.append("knee needs at least three latent sizes with different mean PSNR; fell back to the highest mean")
            return Choice(chosen, best_dim, f"no knee to find; highest mean PSNR ({best_mean:.2f} dB at latent size {best_dim})",
                          None, tuple(notes))
        x = np.asarray(dims, dtype=float)
        gap = _knee_gaps(x, means[None, :])[0]
        words = (
            f"knee of mean PSNR versus latent size (largest gain over the straight line from size {int(x[0])} to "
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
