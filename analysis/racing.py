"""Racing: how sure is the choice of latent size, and which sizes need more seeds to make it surer.

Decision confidence: the share of bootstrap resamples in which the selection rule (the same
`analysis.selection.choose` that `analyze` uses) picks the same latent size as on the data
itself. One resample draws, for every latent size independently, as many seeds-trial PSNRs
as it has, with replacement, and recomputes each size's mean and standard error.

Contenders: the latent sizes whose mean ± SE overlaps the rule's decision boundary (one-se:
best mean − best SE; tolerance: best mean − tolerance), plus the best size itself, whose mean
and SE place that boundary. A size with a single seed has no SE and is always a contender.
For `knee`, which has no single boundary, the contenders are the sizes the rule picks in at
least 1% of the resamples. More seeds for a contender narrow its SE, which is what moves the
confidence.

Everything here is pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.selection import choose
from analysis.summary import seeds_trials

N_RESAMPLES = 1000
_KNEE_SHARE = 0.01


@dataclass(frozen=True)
class Race:
    latent_dim: int | None  # the rule's choice on the data (None: no completed seeds trial yet)
    confidence: float  # share of bootstrap resamples that choose `latent_dim` (0-1)
    contenders: tuple[int, ...]  # sizes whose mean ± SE overlaps the decision boundary
    n_trials: dict[int, int] = field(default_factory=dict)  # completed seeds trials per size

    def to_dict(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "confidence": round(self.confidence, 4),
            "contenders": list(self.contenders),
            "n_trials": {str(k): v for k, v in self.n_trials.items()},
        }


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sample SD with ddof=1 over sqrt(n)); SE is NaN below two values."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return math.nan, math.nan
    if len(array) < 2:
        return float(array.mean()), math.nan
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


def values_by_latent_dim(trials: pd.DataFrame) -> dict[int, list[float]]:
    """The validation psnr_mean of every completed seeds trial, per latent size."""
    usable = seeds_trials(trials)
    return {int(dim): group["psnr_mean"].astype(float).tolist() for dim, group in usable.groupby("latent_dim")}


def assess(
    values: Mapping[int, Sequence[float]],
    *,
    rule: str = "one-se",
    tolerance_db: float = 0.5,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> Race:
    """The rule's choice on `values` (latent size -> PSNR of each completed seeds trial), its
    decision confidence and the contenders."""
    dims = np.array(sorted(d for d, v in values.items() if len(v) > 0), dtype=int)
    counts = {int(d): len(values[d]) for d in dims}
    if len(dims) == 0:
        return Race(None, 0.0, (), counts)
    stats = [mean_se(values[d]) for d in dims]
    means = np.array([m for m, _ in stats])
    ses = np.array([s for _, s in stats])
    choice = choose(dims, means, ses, rule=rule, tolerance_db=tolerance_db)
    if len(dims) == 1:
        return Race(choice.latent_dim, 1.0, (), counts)

    picks = _bootstrap_picks(dims, [np.asarray(values[d], dtype=float) for d in dims], rule, tolerance_db, n_resamples, seed)
    confidence = float(np.mean(picks == choice.latent_dim))
    if choice.threshold is None:
        shares = {int(d): float(np.mean(picks == d)) for d in dims}
        contenders = {d for d, share in shares.items() if share >= _KNEE_SHARE} | {choice.latent_dim}
    else:
        low, high = means - np.nan_to_num(ses, nan=np.inf), means + np.nan_to_num(ses, nan=np.inf)
        overlaps = (low <= choice.threshold) & (choice.threshold <= high)
        contenders = {int(d) for d in dims[overlaps]} | {choice.best_latent_dim}
    return Race(choice.latent_dim, confidence, tuple(sorted(contenders)), counts)


def _bootstrap_picks(dims, samples, rule, tolerance_db, n_resamples, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.empty((n_resamples, len(dims)))
    ses = np.full((n_resamples, len(dims)), np.nan)
    for j, sample in enumerate(samples):
        draws = sample[rng.integers(0, len(sample), size=(n_resamples, len(sample)))]
        means[:, j] = draws.mean(axis=1)
        if len(sample) >= 2:
            ses[:, j] = draws.std(axis=1, ddof=1) / math.sqrt(len(sample))
    return np.array([choose(dims, means[b], ses[b], rule=rule, tolerance_db=tolerance_db).latent_dim for b in range(n_resamples)])


def race_history(trials: pd.DataFrame) -> pd.DataFrame:
    """Each latent size's mean ± SE after every completed seeds trial, in the order they finished.

    Columns: step (completed seeds trials so far), latent_dim, n_trials, psnr_mean, psnr_se."""
    usable = seeds_trials(trials)
    order = usable.sort_values("finished_at" if "finished_at" in usable.columns else "trial_id", kind="stable")
    seen: dict[int, list[float]] = {}
    rows = []
    for step, row in enumerate(order.itertuples(), start=1):
        seen.setdefault(int(row.latent_dim), []).append(float(row.psnr_mean))
        for dim, values in sorted(seen.items()):
            mean, se = mean_se(values)
            rows.append({"step": step, "latent_dim": dim, "n_trials": len(values), "psnr_mean": mean, "psnr_se": se})
    return pd.DataFrame(rows, columns=["step", "latent_dim", "n_trials", "psnr_mean", "psnr_se"])
