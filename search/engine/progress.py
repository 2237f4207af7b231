"""What a run shows while it works.

- one line per finished trial (instead of Ray Tune's tables), one per failure of a trial and one
  per lost node (`search.engine.faults`; what Ray said goes to the experiment's driver.log);
- on a terminal, one live status line (tqdm): trials done out of the minimum the run will
  have, running, best PSNR per latent size, the racing decision and confidence, elapsed, ETA;
- on a non-terminal (a cluster job's log), a heartbeat line at most every 30 s instead;
- `status.json` in the experiment every few seconds, for `vae-search status` (copied to a
  cloud `--storage` with `race.json` at each heartbeat), a copy of Ray Tune's state files
  (`search.store.tune_files.backup_tune_state`), and then the checkpoints no saved state can
  ask for any more are deleted (`prune_superseded`), in a cloud `--storage` too.

The racing state comes from the searcher in memory (`StagedSearcher.race`). Ray Tune pickles
callbacks with the experiment (tuner.pkl, in one pickle with the searcher, so the reference
survives `Tuner.restore`); the rest it holds are plain values. Stopping the run is
`search.engine.watch`'s job, not this display's.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from ray import tune

from analysis.layout import METRIC
from search.engine.stages import split_members
from search.engine.stop import is_disk_full
from search.store.files import DRIVER_LOG, RACE_FILE, STATUS_FILE, TUNE_DIR
from search.store.status import one_line, snapshot
from search.store.status import write as write_status
from search.store.storage import join
from search.store.tune_files import backup_tune_state, prune_superseded, state_backup

STATUS_EVERY_S = 2.0
HEARTBEAT_EVERY_S = 30.0
LOST_NODE_GRACE_S = 1.0  # the trials of one lost node fail within moments: one line for them all


def trial_lines(trial) -> list[str]:
    """The line of each trial a Tune trial stands for: itself, or each member of a fused one."""
    stage = trial.config.get("stage", "search")
    return [trial_line(trial_id, stage, r) for trial_id, _, r in
            split_members(trial.trial_id, dict(trial.config), trial.last_result or {})]


def member_ids(trial) -> list[str]:
    """The ids a user sees of a Tune trial: its own, or a fused one's members' (`ID-0`, `ID-1`, ...)."""
    return [trial_id for trial_id, _, _ in split_members(trial.trial_id, dict(trial.config), {})]


def trial_names(ids: list[str]) -> str:
    """`trial ID`, or `trials ID-0, ID-1`."""
    return f"trial{'s' if len(ids) > 1 else ''} {', '.join(ids)}"


def trial_line(trial_id: str, stage: str, r: dict) -> str:
    head = f"  {stage} trial {trial_id}: latent {r.get('latent_dim')} lr {r.get('lr', math.nan):.2e}"
    if r.get("diverged"):
        return f"{head} diverged"
    tail = " (had finished before the restart; not trained again)" if r.get("restored") else ""
    return (f"{head} seed {r.get('seed')} epochs {r.get('epoch', r.get('training_iteration'))}/{r.get('max_epochs')} "
            f"val PSNR {r.get(METRIC, math.nan):.2f} dB{_latent_words(r)}{tail}")


def _latent_words(r: dict) -> str:
    """Active units and, for a finished seeds trial, nll_iw."""
    words = f" active {r['active_units']:.0f}/{r.get('latent_dim')}" if _finite(r.get("active_units")) else ""
    if _finite(r.get("nll_iw")):
        words += f" nll_iw {r['nll_iw']:.2f}"
    return words


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class Progress(tune.Callback):
    def __init__(self, path: str, searcher, *, storage_uri: str | None, minimum_trials: int, per_trial: dict,
                 epochs: int, session=None) -> None:
        """`per_trial`: what a trial asks for (`cpus`, `gpus`) and `max_concurrent`: the ETA divides
        by the trials the cluster's nodes hold now, as they join and leave. `session`: the
        `DriverSession` (its stop request and failures); left out of the pickle."""
        self.path = path
        self.searcher = searcher  # a StagedSearcher: its `race` is shown
        self.storage_uri = storage_uri
        self.minimum_trials = minimum_trials
        self.per_trial = per_trial
        self.epochs = epochs
        self._reset(session)

    def _reset(self, session=None) -> None:
        from search.engine.session import current

        session = session or current()
        self._stop, self._failures = session.stop, session.failures
        self._started: float | None = None
        self._written = 0.0
        self._heartbeat = 0.0
        self._pruned: dict[str, int] = {}  # trial id -> the checkpoint index pruned up to
        self._bar = None
        self._lost: dict[str, list] = {}  # node -> [first seen, host, [(the ids of a trial, epoch)]]

    def __getstate__(self) -> dict:
        # no folder in the pickle: an unpickled Progress works where the session's experiment is now
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in ("path", "storage_uri")}

    def __setstate__(self, state: dict) -> None:
        from search.engine.session import current

        session = current()
        if "per_trial" not in state:  # saved by an earlier release, which counted the slots once
            state["per_trial"] = {"cpus": 1, "gpus": 0, "max_concurrent": state.pop("slots", None)}
        self.__dict__.update(state, path=str(session.experiment) if session.experiment else None,
                             storage_uri=session.storage_uri)
        self._reset(session)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        self._started = self._started or now
        self._report_failures(now)
        if now - self._written >= STATUS_EVERY_S:
            self._written = now
            self._update(trials, now)

    def on_trial_complete(self, iteration, trials, trial, **info):
        for line in trial_lines(trial):
            self._print(line)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed trial goes back to the queue, to restart from its last checkpoint."""
        stage = trial.config.get("stage", "search")
        epoch = _checkpoint_epoch(trial) + 1
        if trial.trial_id in self._failures.lost:
            node, host = self._failures.lost.pop(trial.trial_id)
            self._lost.setdefault(node, [time.monotonic(), host, []])[2].append((member_ids(trial), epoch))
            return
        words = self._failures.words.pop(trial.trial_id, "no error recorded")
        self._print(f"  {stage} {trial_names(member_ids(trial))}: failed ({words}); "
                    f"retry {trial.num_failures} of --max-failures {trial.max_failures}, from epoch {epoch}")

    def _report_failures(self, now: float, *, all_: bool = False) -> None:
        """One line per lost node once its trials have all failed; Ray's details to driver.log."""
        for node, (seen, host, restarts) in list(self._lost.items()):
            if all_ or now - seen >= LOST_NODE_GRACE_S:
                del self._lost[node]
                trials = ", ".join(f"{', '.join(ids)} (from epoch {e})" for ids, e in restarts)
                one = sum(len(ids) for ids, _ in restarts) == 1
                self._print(f"node {node[:8]} lost ({host}): trial{'' if one else 's'} {trials} "
                            f"{'restarts' if one else 'restart'} on a live node")
        details = self._failures.take_details()
        if details:
            try:
                with open(Path(self.path) / DRIVER_LOG, "a") as log:
                    log.write("".join(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {d.rstrip()}\n" for d in details))
            except OSError:  # a full disk is reported by what stops the run
                pass

    def on_trial_error(self, iteration, trials, trial, **info):
        if is_disk_full(error_text(trial)):  # StopWatch stops the run; the trial is retried on resume
            stage = trial.config.get("stage", "search")
            self._print(f"  {stage} {trial_names(member_ids(trial))}: no space left to save it; stopping")
            return
        lines = error_text(trial).strip().splitlines()
        words = self._failures.words.pop(trial.trial_id, None) or (lines[-1][:160] if lines else "no error recorded")
        self._print(f"  {trial.config.get('stage', 'search')} {trial_names(member_ids(trial))}: failed ({words}); "
                    f"no retry left (--max-failures {trial.max_failures}); details in {DRIVER_LOG}")

    def on_experiment_end(self, trials, **info):
        self._report_failures(time.monotonic(), all_=True)
        if not self._stop.stopping:  # a stopped run's trials now read as ended: keep the last snapshot before the stop
            self._update(trials, time.monotonic())
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _print(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line, flush=True)

    def _slots(self, trials) -> int:
        """Trials the cluster holds at once now (its alive nodes' resources), or those running if more."""
        import ray

        from search.engine.session import slots_for

        running = sum(1 for t in trials if t.status == "RUNNING")
        return max(running, slots_for(ray.cluster_resources() if ray.is_initialized() else {}, **self.per_trial))

    def _update(self, trials, now: float) -> None:
        race = self.searcher.race
        status = snapshot([d for t in trials for d in self._describe(t)], minimum_trials=self.minimum_trials,
                          slots=self._slots(trials), elapsed_s=now - (self._started or now), race=race)
        try:
            write_status(self.path, status)
            if trials:  # Tune writes its state here first, then uploads it to the storage path
                backup = state_backup(self.path, self.storage_uri)
                backup_tune_state(trials[0].storage.experiment_driver_staging_path, backup)
                # as soon as a checkpoint is superseded, in a bucket too (bench/storage.py: pruning
                # there at each 30 s heartbeat let it peak at 3.3-4.0x its final size)
                prune_superseded(join(self.storage_uri or self.path, TUNE_DIR), backup, self._pruned)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._stop.disk_full(self.path, exc)
        if sys.stdout.isatty():
            self._live(status)
        elif now - self._heartbeat >= HEARTBEAT_EVERY_S:
            print(f"status: {one_line(status)}", flush=True)
        if now - self._heartbeat >= HEARTBEAT_EVERY_S:
            self._heartbeat = now
            self._upload()

    def _live(self, status: dict) -> None:
        self._bar = live_bar(self._bar, status)

    def _describe(self, trial) -> list[dict]:  # each trial it stands for (a fused trial: each member)
        return [{"status": trial.status, "latent_dim": trial.config.get("latent_dim"), "psnr": r.get(METRIC),
                 "diverged": bool(r.get("diverged")), "epochs": int(r.get("epoch", 0) or 0), "max_epochs": self.epochs,
                 "seconds": r.get("time_total_s")}
                for _, _, r in split_members(trial.trial_id, dict(trial.config), trial.last_result or {})]

    def _upload(self) -> None:
        if self.storage_uri:
            upload_live_files(Path(self.path), self.storage_uri)


def live_bar(bar, status: dict):
    """The live progress bar on a terminal (tqdm), made on first use: the trials done and the status line."""
    from tqdm import tqdm

    if bar is None:
        bar = tqdm(total=status["minimum_trials"], unit="trial", dynamic_ncols=True, leave=False,
                   bar_format="{n_fmt}/{total_fmt} trials [{elapsed}<{remaining}] {desc}")
    bar.total = status["minimum_trials"]
    bar.n = status["trials"]["done"]
    bar.set_description_str(one_line(status), refresh=True)
    return bar


def upload_live_files(path: Path, storage_uri: str) -> None:
    """status.json and race.json copied to the bucket, for `vae-search status URI`."""
    from search.store.storage import upload_file

    for name in (STATUS_FILE, RACE_FILE):
        if (path / name).is_file():
            try:
                upload_file(path / name, storage_uri)
            except OSError as exc:  # a slow or flaky bucket must not stop the run
                said = " ".join(str(exc).split())[:200]
                print(f"warning: could not copy {name} to {storage_uri}: {said}", flush=True)


def _checkpoint_epoch(trial) -> int:
    """The epoch of the trial's last checkpoint (0: none, it starts over)."""
    result = trial.latest_checkpoint_result
    return int((result.metrics or {}).get("epoch", 0) or 0) if result is not None else 0


def error_text(trial) -> str:
    """What a failed trial raised, as Ray Tune recorded it (empty if it could not be read)."""
    try:
        error = trial.get_error()  # the exception Ray Tune unpickled from the trial
        if error is not None:
            return str(error)
    except Exception:  # noqa: BLE001 (an unreadable pickle must not stop the run)
        pass
    try:
        return Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        return ""
