"""The driver's session for `run` and `resume`: `driver_session` owns the signal handlers, the
environment variables Ray Tune reads, the filters on Ray's logs, and the Ray session (started or
joined, shut down). It yields a `DriverSession`: how many trials fit at once, the session's
`StopRequest` (`search.engine.stop`: why and how a run stops early) and its `Failures`
(`search.engine.faults`: a trial's own failures told apart from lost nodes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Iterator

from search.config import SearchConfig
from search.engine.faults import CONTROLLER_LOGGER, Failures, quiet_raylet_messages
from search.engine.stop import Stopped, StopRequest
from vae.errors import UsageError

CONNECT_TIMEOUT_S = 5.0
# Ray Tune's experiment-state snapshot and upload period: every step of its loop (0). A trial that
# starts and ends between two snapshots would be unknown to a resumed run, which would train it
# again under a new id; saving every 2 s halved the driver's CPU but let short trials fall into that
# gap (a kill-and-resume test caught it), so the state is saved at every step.
SNAPSHOT_S = 0


class _VanishedTempFile(logging.Filter):
    """Drops Ray Tune's error for an upload of its state that listed one of its own temporary
    files (`.<uuid>-tmp-<name>`) just before renaming it into place: the copy then fails with
    FileNotFoundError, and the next upload carries the renamed file (resume also prefers the
    driver's later local copy, `search.store.tune_files`). Anything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FileNotFoundError) and "-tmp-" in str(error)
                    and record.getMessage().startswith("Saving experiment state to storage"))


VANISHED_TEMP_FILE = _VanishedTempFile()


@dataclasses.dataclass
class DriverSession:
    slots: int  # trials the cluster can run at once (at least 1)
    stop: StopRequest
    failures: Failures
    # The experiment folder this session drives, once it is open (`drive`). What Tuner.restore
    # unpickles (the searcher, the callbacks) reads and writes there, not where the folder was
    # when Ray Tune saved them: a copied, moved or synced-down experiment belongs to its new place.
    experiment: Path | None = None
    storage_uri: str | None = None  # where Ray Tune keeps it, when that is a cloud URI

    def drive(self, experiment) -> None:
        """Bind the session to `experiment` (a `search.store.record.Experiment`)."""
        self.experiment, self.storage_uri = Path(experiment.path), experiment.storage_uri


_running: DriverSession | None = None  # the session in progress, for what Tuner.restore unpickles


def current() -> DriverSession:
    """The running session, for a callback or searcher that Ray Tune unpickled (their pickles
    leave it out); outside a session (a unit test), one that nothing stops."""
    return _running or DriverSession(1, StopRequest(), Failures())


def check_address(address: str) -> None:
    """Fail in seconds, not minutes, when HOST:PORT (or ray://HOST:PORT) does not answer."""
    if address == "auto" or address.startswith("local"):
        return  # ray.init finds (or fails to find) a cluster on this machine by itself
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address must be auto, HOST:PORT or ray://HOST:PORT but got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at --address {address}: {exc.strerror or exc}") from None


def check_local_resources(config: SearchConfig) -> None:
    """A trial that no node of a local Ray could run would wait for ever, and a GPU trial on a
    machine whose torch cannot use CUDA would stop at its first step: refuse both before Ray starts."""
    cpus = config.num_cpus or os.cpu_count() or 1
    if config.cpus_per_trial > cpus:
        raise UsageError(
            f"--cpus-per-trial {config.cpus_per_trial:g} but the local Ray has {cpus} CPU(s); "
            "lower it, or --address a cluster with larger nodes"
        )
    if config.gpus_per_trial > 0:
        from search.engine.trial import cuda_problem

        problem = cuda_problem()
        if problem is not None:
            raise UsageError(f"--gpus-per-trial {config.gpus_per_trial:g} but this machine's GPU cannot be used "
                             f"({problem}); use --gpus-per-trial 0, or --address a cluster with GPUs")


def _environment() -> dict[str, str]:
    """The environment variables the session sets (a user's own value of the first three wins)."""
    return {
        "RAY_AIR_NEW_OUTPUT": os.environ.get("RAY_AIR_NEW_OUTPUT", "0"),  # with verbose=0: no status tables
        # a trial's failure is reported by Ray Tune (the trial line, error.txt); Ray's own copy of the
        # traceback, printed when a failed call's result is dropped unread, would only repeat it
        "RAY_IGNORE_UNHANDLED_ERRORS": os.environ.get("RAY_IGNORE_UNHANDLED_ERRORS", "1"),
        # Ray Tune's experiment-state snapshot: at every step of its loop (its default: every 10 s or more)
        "TUNE_GLOBAL_CHECKPOINT_S": os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", str(SNAPSHOT_S)),
        "TUNE_DISABLE_SIGINT_HANDLER": "1",  # ours records SIGINT and SIGTERM; StopWatch forwards them
        # Ray Tune logs each trial failure with its exception: `search.engine.faults` reads it there
        "TUNE_PRINT_ALL_TRIAL_ERRORS": "1",
    }


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _native_stderr() -> Iterator:
    """Hold what Ray's native code writes to the process's stderr (file descriptor 2) while it
    lasts: a refused connection logs a warning there before Python hears of it. Yields a function
    that returns the text held."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        text = ""
        try:
            yield lambda: text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")


def token_path() -> Path:
    """The file Ray reads its authentication token from when RAY_AUTH_TOKEN is not set."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def private_token() -> Path | None:
    """Make the token file that guards Ray readable by its owner only (0600), and Ray's own
    folder ~/.ray too (0700). Ray 2.60 writes ~/.ray/auth_token with the umask's mode (0644 in a
    0755 folder here): on a machine whose home directories others can enter, any local user
    could read it and run code on this Ray as its owner. A folder named by RAY_AUTH_TOKEN_PATH
    is the user's own choice and is left as it is. Returns the file, or None when there is none."""
    path = token_path()
    if not path.is_file():
        return None  # RAY_AUTH_TOKEN in the environment, or a cluster that holds the token elsewhere
    try:
        path.chmod(0o600)
        if "RAY_AUTH_TOKEN_PATH" not in os.environ:
            path.parent.chmod(0o700)
    except PermissionError:  # another user's file: theirs to protect, and no reason to stop the run
        print(
            f"warning: cannot make {path} private (not yours); anyone who can read it can use this Ray", file=sys.stderr
        )
    return path


def starts_local_ray(address: str | None) -> bool:
    """Whether a search with this `address` starts a Ray of its own here: none named, and this
    process has not joined one already (a notebook's own `ray.init`, or an earlier search)."""
    import ray

    return not address and not ray.is_initialized()


def _start(config: SearchConfig, address: str | None) -> bool:
    """Join `address`, or start a local Ray (explicit CPUs, no dashboard, token auth kept on).

    Returns True when this process started Ray (and so must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    common = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        check_address(address)
        with _native_stderr() as said:
            try:
                ray.init(address=address, **common)
                failure = None
            except Exception as exc:  # ConnectionError, ValueError, TimeoutError, … depending on the scheme
                failure = exc
        if failure is not None:
            refused = ("it refused this client's token (RAY_AUTH_TOKEN, or the file RAY_AUTH_TOKEN_PATH or "
                       "~/.ray/auth_token names): use the cluster's token")
            why = refused if "Unauthenticated" in said() else " ".join(str(failure).split())[:300]
            raise UsageError(f"cannot reach the Ray cluster at --address {address}: {why}") from None
        sys.stderr.write(said())  # joined: what Ray's native code said is the user's to read
        private_token()
        return True
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        # Ray binds a local instance's ports on every interface; without its token anyone on
        # the network could run code on this machine (CVE-2023-48022, "ShadowRay").
        raise UsageError(
            "RAY_AUTH_MODE=disabled would leave the local Ray's ports open without authentication; unset it"
        )
    check_local_resources(config)
    # address="local": a new Ray of our own, even when `ray start` left a cluster (or its address
    # file, /tmp/ray/ray_current_cluster) on this machine; joining one takes --address
    ray.init(address="local", num_cpus=config.num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
    private_token()
    gpus = ray.cluster_resources().get("GPU", 0)
    if config.gpus_per_trial > gpus:
        ray.shutdown()
        raise UsageError(
            f"--gpus-per-trial {config.gpus_per_trial:g} but the local Ray has {gpus:g} GPU(s); "
            "use --gpus-per-trial 0, or --address a cluster with GPUs"
        )
    return True


def trial_slots(config: SearchConfig) -> int:
    """How many trials the cluster can run at once now (at least 1)."""
    import ray

    return slots_for(ray.cluster_resources(), cpus=config.cpus_per_trial, gpus=config.gpus_per_trial,
                     max_concurrent=config.max_concurrent)


def slots_for(resources: dict[str, float], *, cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials of `cpus` and `gpus` each fit in the cluster's `resources` (Ray's totals),
    at most `max_concurrent`; at least 1."""
    slots = int(resources.get("CPU", 0) // cpus)
    if gpus > 0:
        slots = min(slots, int(resources.get("GPU", 0) // gpus))
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return max(1, slots)


@contextlib.contextmanager
def driver_session(config: SearchConfig, address: str | None, *, keep_ray: bool = False) -> Iterator[DriverSession]:
    """Everything process-wide a run changes, for as long as it runs: SIGINT/SIGTERM recorded in
    the session's `StopRequest`, Ray up (started here or joined), Ray's logs watched for a full
    disk and for trial failures, and the environment variables Ray Tune reads. Ray is shut down
    at the end if this process started it, unless `keep_ray` (the next search in the process then
    joins it); handlers, filters and variables are put back."""
    global _running
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    started = False
    stop = StopRequest()
    failures = Failures(stop)
    disk_full_logs = stop.log_filter()
    controller_log = logging.getLogger(CONTROLLER_LOGGER)
    with contextlib.ExitStack() as stack:
        try:
            signal.signal(signal.SIGINT, stop.handle)
            signal.signal(signal.SIGTERM, stop.handle)
            stack.enter_context(_environ(_environment()))
            started = _start(config, address)
            # ray.init installs a SIGTERM handler of its own in the driver: ours again, and a
            # harmless SIGUSR1 until Ray Tune installs its handler for it
            signal.signal(signal.SIGTERM, stop.handle)
            signal.signal(signal.SIGINT, stop.handle)
            signal.signal(signal.SIGUSR1, lambda *_: None)
            slots = trial_slots(config)
            # With a search algorithm Ray Tune keeps one trial pending at a time: a short trial then
            # ends before a second actor is up, and trials run one after another on a 2-CPU machine.
            # Allow as many pending trials as the cluster has slots (at least 2); this caps only
            # trials waiting for resources, not running ones. An autoscaler is told the run's whole
            # demand apart (`search.engine.scheduling.Demand`).
            stack.enter_context(_environ({"TUNE_MAX_PENDING_TRIALS_PG": os.environ.get("TUNE_MAX_PENDING_TRIALS_PG",
                                                                                         str(max(2, slots)))}))
            for handler in _ray_log_handlers():
                handler.addFilter(disk_full_logs)
                handler.addFilter(VANISHED_TEMP_FILE)
            controller_log.addFilter(failures)
            stack.enter_context(quiet_raylet_messages(failures))
            _running = DriverSession(slots, stop, failures)
            yield _running
        except KeyboardInterrupt:  # a second signal, or one before Ray Tune ran
            raise Stopped(None, stop.received or signal.SIGINT) from None
        finally:
            _running = None
            controller_log.removeFilter(failures)
            for handler in _ray_log_handlers():
                handler.removeFilter(disk_full_logs)
                handler.removeFilter(VANISHED_TEMP_FILE)
            if started and not keep_ray:
                import ray

                with contextlib.suppress(KeyboardInterrupt):
                    ray.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _ray_log_handlers() -> list[logging.Handler]:
    return [h for name in ("ray", "ray.tune", "") for h in logging.getLogger(name).handlers]
