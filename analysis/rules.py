"""The names of the selection rules and metrics, and their defaults (kept light: the command
line imports it for --help)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    """A selection rule. Each picks the smallest latent size whose mean is good enough; they
    differ in what "good enough" is: within a margin below the best size's mean (a fixed
    tolerance in the metric's unit, or the best size's standard error), or, for the knee, the
    bend of the curve, which has no boundary. Adding a rule is one entry in `RULE`: the choice
    (`analysis.selection`), racing and its confidence (`analysis.racing`), the figures and the
    command line read everything from here."""

    name: str  # the --rule value
    words: str  # the rule in one phrase
    # how far below the best size's mean a size still counts, in the metric's unit, from (the best
    # size's SE, one per row of means; the tolerance): vectorised over rows. None: no boundary
    margin: Callable[[Any, float], Any] | None = None
    within: Callable[[float, str], str] | None = None  # (tolerance, unit) -> "within … of the best"
    uses_tolerance: bool = False  # --tolerance-db / --tolerance-nats set its margin
    shows_se: bool = False  # its words give the best size's SE
    caveat: str = ""  # appended to the words of its choice

    @property
    def has_boundary(self) -> bool:
        """The best size's mean sets a threshold that the choice must clear."""
        return self.margin is not None


def _tolerance(best_se, tolerance: float):
    return tolerance


def _one_se(best_se, tolerance: float):
    import numpy as np

    return np.where(np.isfinite(best_se), best_se, np.nan)  # no SE (one seed): no boundary to draw


RULE = {rule.name: rule for rule in (
    Rule("tolerance", "the smallest size within the tolerance of the best", margin=_tolerance,
         within=lambda tolerance, unit: f"within {tolerance:g} {unit} of the best", uses_tolerance=True),
    Rule("one-se", "the smallest size within one standard error of the best", margin=_one_se,
         within=lambda tolerance, unit: "within one standard error of the best", shows_se=True,
         caveat="; this boundary narrows as seeds are added, so its answer can move toward larger sizes"),
    Rule("knee", "the knee of the metric against latent size"),
)}
RULES = tuple(RULE)  # the --rule choices
DEFAULT_RULE = "tolerance"
# Practical equivalence, in dB of mean PSNR: sizes closer than this to the best count as equally
# good and the smallest is taken. 0.3 dB is the SD of the difference between two trainings of one
# size with different seeds on the quick preset (sqrt(2) x 0.21 dB, bench/seed_spread.py): a gap
# smaller than what retraining alone produces is not a property of the latent size.
DEFAULT_TOLERANCE_DB = 0.3
# The same for nll_iw, in nats per image: sqrt(2) x 1.0 nats, the pooled per-seed SD of nll_iw on
# the quick preset (bench/seed_spread.py: 4 sizes x 4 seeds, the same SD at k = 1, 16 and 64, so it
# is the training's spread, not Monte-Carlo noise).
DEFAULT_TOLERANCE_NATS = 1.4


@dataclass(frozen=True)
class Metric:
    """What the rules, racing and the confidence compare the latent sizes by."""

    name: str  # the --metric value
    column: str  # its trials.csv column
    label: str  # in words
    unit: str
    sign: int  # +1: higher is better; -1: lower is better

    @property
    def best_word(self) -> str:
        return "highest" if self.sign > 0 else "lowest"

    def tolerance(self, tolerance_db: float, tolerance_nats: float) -> float:
        """The practical-equivalence margin in this metric's unit."""
        return tolerance_db if self.unit == "dB" else tolerance_nats


METRICS = {
    "psnr": Metric("psnr", "psnr_mean", "mean PSNR", "dB", +1),
    "nll": Metric("nll", "nll_iw", "nll_iw", "nats", -1),
}
DEFAULT_METRIC = "psnr"
