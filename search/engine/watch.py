"""The callback that stops a run from inside Ray Tune's loop (see `search.engine.stop`):

- it forwards a SIGINT/SIGTERM the session recorded, so Tune stops gracefully;
- a trial that failed because the disk is full stops the run (`DiskFull`; the trial is not
  at fault and is retried on resume);
- trials that have waited `--pending-timeout` seconds for resources while no trial ran stop
  it too (`PendingTimeout`): on a cluster no node fits them (an autoscaler had that long).
"""

from __future__ import annotations

import time

from ray import tune

from search.engine.progress import error_text
from search.engine.stop import StopRequest, is_disk_full


class StopWatch(tune.Callback):
    def __init__(self, path: str, pending_timeout_s: float, resources: dict[str, float], stop: StopRequest) -> None:
        """`stop`: the driver session's; left out of the pickle (`__setstate__` takes the running one)."""
        self.path = path
        self.pending_timeout_s = pending_timeout_s
        self.resources = resources
        self._stop = stop
        self._since: float | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_since": None, "_stop": None, "path": None}  # the session's folder on unpickling

    def __setstate__(self, state: dict) -> None:
        from search.engine.session import current

        session = current()
        self.__dict__.update(state, _stop=session.stop, path=str(session.experiment) if session.experiment else None)

    def on_step_begin(self, iteration, trials, **info):
        self._stop.forward_to_tune()
        self._check_pending(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = error_text(trial)
        if is_disk_full(error):
            self._stop.disk_full(self.path, error)

    def _check_pending(self, trials) -> None:
        waiting = any(t.status == "PENDING" for t in trials)
        if not waiting or any(t.status == "RUNNING" for t in trials):
            self._since = None
            return
        now = time.monotonic()
        self._since = self._since or now
        if now - self._since > self.pending_timeout_s:
            import ray

            have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
            asked = ", ".join(f"{v:g} {k.upper()}" for k, v in self.resources.items() if v)
            self._stop.cannot_run(
                f"no trial could start within --pending-timeout {self.pending_timeout_s:g} s: each asks for {asked}, "
                f"the cluster has {have or 'no CPUs or GPUs'} and no node fits; resume the experiment once it does"
            )
