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

from analysis.rules import RULES
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


def select(summary: pd.DataFrame, *, rule: str = "one-se", tolerance_db: float = 0.5) -> Selection:
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


def choose(dims: np.ndarray, means: np.ndarray, ses: np.ndarray, *, rule: str = "one-se", tolerance_db: float = 0.5) -> Choice:
    """The rule itself, on arrays sorted by latent size (each size with at least one trial).

    Pure and cheap: `select` calls it once, `analysis.racing` once per bootstrap resample."""
    notes: list[str] = []
    # ties in the mean go to the smaller size: argmax returns the first, and sizes are sorted
    index = int(np.argmax(means))
    best_dim, best_mean, best_se = int(dims[index]), float(means[index]), float(ses[index])
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
            f"{best_dim} at {best_mean:.2f} ± {best_se:.2f} dB (mean ± SE over seeds), threshold {threshold:.2f} dB"
        )
    elif rule == "tolerance":
        threshold = best_mean - tolerance_db
        words = (
            f"smallest latent size whose mean PSNR is within {tolerance_db:g} dB of the best: best is latent size "
            f"{best_dim} at {best_mean:.2f} dB, threshold {threshold:.2f} dB"
        )
    else:
        chosen, words = _knee(dims, means, best_dim, best_mean, notes)
        return Choice(chosen, best_dim, words, None, tuple(notes))
    chosen = int(dims[means >= threshold].min())
    return Choice(chosen, best_dim, words, threshold)


def _knee(dims: np.ndarray, means: np.ndarray, best_dim: int, best_mean: float, notes: list[str]) -> tuple[int, str]:
    x = np.asarray(dims, dtype=float)
    y = np.asarray(means, dtype=float)
    if len(x) < 3 or y.max() == y.min():
        notes.append("knee needs at least three latent sizes with different mean PSNR; fell back to the highest mean")
        return best_dim, f"no knee to find; highest mean PSNR ({best_mean:.2f} dB at latent size {best_dim})"
    xn = (x - x.min()) / (x.max() - x.min())
    yn = (y - y.min()) / (y.max() - y.min())
    gap = yn - xn  # height above the chord from the first to the last point
    index = int(gap.argmax())  # first maximum: ties go to the smaller size
    chosen = int(x[index])
    return chosen, (
        f"knee of mean PSNR versus latent size (largest gain over the straight line from size {int(x[0])} to "
        f"{int(x[-1])}, both axes scaled to [0, 1]: {gap[index]:.2f})"
    )


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
