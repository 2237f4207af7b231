"""What a run prints while it works: one line per finished trial, instead of Ray Tune's tables.

The callback is also where a stop signal reaches Ray Tune's loop (`search.session`). It holds
no state: Ray Tune pickles callbacks with the experiment.
"""

from __future__ import annotations

import math

from ray import tune

from analysis.layout import METRIC
from search import session


def trial_line(trial) -> str:
    r = trial.last_result or {}
    stage = trial.config.get("stage", "search")
    head = f"  {stage} trial {trial.trial_id}: latent {r.get('latent_dim')} lr {r.get('lr', math.nan):.2e}"
    if r.get("diverged"):
        return f"{head} diverged"
    return (f"{head} seed {r.get('seed')} epochs {r.get('training_iteration')}/{r.get('max_epochs')} "
            f"val PSNR {r.get(METRIC, math.nan):.2f} dB")


class Progress(tune.Callback):
    def on_step_begin(self, iteration, trials, **info):
        session.SIGNALS.forward_to_tune()

    def on_trial_complete(self, iteration, trials, trial, **info):
        print(trial_line(trial), flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"  {trial.config.get('stage', 'search')} trial {trial.trial_id}: failed ({trial.error_file})", flush=True)
