"""The driver's session for `run` and `resume`: `driver_session` owns the signal handlers, the
environment variables Ray Tune reads, and the Ray session (started or joined, shut down).

How a run stops early, all through `STOPS` (process-wide, as signals are):
- the first SIGINT (Ctrl-C) or SIGTERM (a job scheduler, `timeout`, a spot-instance
  preemption) is recorded by the handler and forwarded to Ray Tune by the `StopWatch`
  callback (`search.engine.watch`) from inside Tune's loop; Tune stops as on its own Ctrl-C: it
  saves the experiment state one last time, and running trials stay resumable from their
  latest checkpoint. `tune_running` then raises `Stopped`; the command exits with 128 + the
  signal's number (130, 143) and says how to resume. A second signal stops at once.
- a full disk (`STOPS.disk_full`) stops Tune the same way, then `DiskFull` is raised;
- trials that no node can run (`STOPS.give_up`) stop it the same way, then `PendingTimeout`.
A trial's failures are told apart from lost nodes by `search.engine.faults` (a filter on Ray
Tune's log, attached here). Forwarding is Ray Tune's documented graceful stop: SIGUSR1 to the driver. Ray's own SIGTERM
handler in the driver (a C++ stack dump) is replaced while the session lasts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Iterator

from search.config import SearchConfig
from search.engine.faults import CONTROLLER_LOGGER, FAILURES, quiet_raylet_messages
from vae.errors import UsageError

CONNECT_TIMEOUT_S = 5.0
# Ray Tune's experiment-state snapshot and upload period: every step of its loop (0). A trial that
# starts and ends between two snapshots would be unknown to a resumed run, which would train it
# again under a new id; saving every 2 s halved the driver's CPU but let short trials fall into that
# gap (a kill-and-resume test caught it), so the state is saved at every step.
SNAPSHOT_S = 0


class Stopped(Exception):
    """A signal stopped the run; what was saved can be resumed. `experiment_path` is None when
    the signal came before the experiment folder was created."""

    def __init__(self, experiment_path: Path | None, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.experiment_path = experiment_path
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class PendingTimeout(Exception):
    """Trials waited `--pending-timeout` seconds for resources while none ran: no node fits them."""


class DiskFull(Exception):
    """The disk under the experiment filled up: the run stopped as a signal stops it.

    `folder`: the folder the user gave; `detail`: what first said so. The command that ran the
    experiment adds what the user needs to go on (`search.cli.run`): `experiment_path`, `log`
    (where the details were written), `free` and `needed` (bytes)."""

    def __init__(self, folder: str, detail: BaseException | str | None = None) -> None:
        super().__init__(f"no space left on device in {folder}")
        self.folder = folder
        self.detail = detail
        self.experiment_path: Path | None = None
        self.log: Path | None = None
        self.free = 0
        self.needed = 0


def is_disk_full(exc: BaseException | str | None) -> bool:
    """ENOSPC anywhere in an exception's chain, or in a (remote) error's text."""
    seen = set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return isinstance(exc, str) and "No space left on device" in exc


class _DiskFullLogs(logging.Filter):
    """On Ray's log handlers while a session lasts: a record about a full disk (Ray Tune logs a
    trial's failure and a failed state save with their tracebacks) stops the run instead of
    filling the console; its text is kept for the details log (`DiskFull.detail`)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if STOPS.full is None and not is_disk_full(text):
            return True  # once the disk is full, what Ray Tune logs next follows from it: to the log too
        self.texts.append(text)
        STOPS.disk_full(STOPS.full or "the experiment's folder", text)
        return False


DISK_FULL_LOGS = _DiskFullLogs()


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


class _Stops:
    """Why the run is stopping, if it is: a signal, a full disk, or trials no node can run."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.forwarded = False
        self.in_tune = False  # inside Tuner.fit, where Ray Tune stops gracefully on SIGUSR1
        self.failure: str | None = None  # why the run gave up (no node can run a trial)
        self.full: str | None = None  # the folder whose disk filled up
        self.full_detail: BaseException | str | None = None  # what first said so

    def handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # the second signal: stop at once
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: stopping after saving the experiment state "
              "(send it again to stop at once)", file=sys.stderr, flush=True)
        if not self.in_tune:
            raise KeyboardInterrupt

    @property
    def stopping(self) -> bool:
        """A signal, a full disk or a pending timeout has asked the run to stop."""
        return self.received is not None or self.full is not None or self.failure is not None

    def give_up(self, message: str) -> None:
        """Stop Ray Tune gracefully, then raise PendingTimeout(message) (exit code 2)."""
        if self.failure is None:
            self.failure = message
            os.kill(os.getpid(), signal.SIGUSR1)

    def disk_full(self, folder: str, detail: BaseException | str | None = None) -> None:
        """Stop Ray Tune gracefully (its state is saved where it still fits), then raise DiskFull.
        A trial whose checkpoint did not fit is then waiting for its retry: resume runs it."""
        if self.full is None:
            self.full, self.full_detail = str(folder), detail
            os.kill(os.getpid(), signal.SIGUSR1)

    def forward_to_tune(self) -> None:
        """Called from inside Ray Tune's loop: ask it to stop gracefully (its SIGUSR1 handler)."""
        if self.received is not None and not self.forwarded:
            self.forwarded = True
            os.kill(os.getpid(), signal.SIGUSR1)


STOPS = _Stops()


@contextlib.contextmanager
def tune_running() -> Iterator[None]:
    """Around Tuner.fit: after a stop request, the exception that says why (`Stopped` without
    the experiment's path, which the caller knows; `DiskFull`; `PendingTimeout`)."""
    if STOPS.received is not None:
        raise Stopped(None, STOPS.received)
    STOPS.in_tune = True
    try:
        yield
    except Exception as exc:
        # a full disk also breaks what Ray Tune reads back afterwards (an empty error pickle)
        if STOPS.full is not None or is_disk_full(exc):
            raise DiskFull(STOPS.full or "the experiment's folder", exc) from None
        raise
    finally:
        STOPS.in_tune = False
    if STOPS.received is not None:
        raise Stopped(None, STOPS.received)
    if STOPS.full is not None:
        raise DiskFull(STOPS.full, STOPS.full_detail)
    if STOPS.failure is not None:
        raise PendingTimeout(STOPS.failure)


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
    """A trial that no node of a local Ray could run would wait for ever: refuse it up front."""
    cpus = config.num_cpus or os.cpu_count() or 1
    if config.cpus_per_trial > cpus:
        raise UsageError(
            f"--cpus-per-trial {config.cpus_per_trial:g} but the local Ray has {cpus} CPU(s); "
            "lower it, or --address a cluster with larger nodes"
        )


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
        print(f"warning: cannot make {path} private (not yours); anyone who can read it can use this Ray", file=sys.stderr)
    return path


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
        try:
            ray.init(address=address, **common)
        except Exception as exc:  # ConnectionError, ValueError, TimeoutError, … depending on the scheme
            raise UsageError(f"cannot reach the Ray cluster at --address {address}: {' '.join(str(exc).split())[:300]}") from None
        private_token()
        return True
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        # Ray binds a local instance's ports on every interface; without its token anyone on
        # the network could run code on this machine (CVE-2023-48022, "ShadowRay").
        raise UsageError("RAY_AUTH_MODE=disabled would leave the local Ray's ports open without authentication; unset it")
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
    """How many trials the cluster can run at once (at least 1)."""
    import ray

    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // config.cpus_per_trial)
    if config.gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // config.gpus_per_trial))
    if config.max_concurrent:
        slots = min(slots, config.max_concurrent)
    return max(1, slots)


@contextlib.contextmanager
def driver_session(config: SearchConfig, address: str | None) -> Iterator[int]:
    """Everything process-wide a run changes, for as long as it runs: SIGINT/SIGTERM recorded in
    `STOPS`, Ray up (started here or joined), Ray's log handlers watched for a full disk, and
    the environment variables Ray Tune reads. Yields how many trials can run at once. Ray is
    shut down at the end if this process started it; handlers and variables are put back."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    started = False
    STOPS.__init__()  # nothing asked to stop this run yet
    DISK_FULL_LOGS.texts.clear()
    FAILURES.reset()
    controller_log = logging.getLogger(CONTROLLER_LOGGER)
    with contextlib.ExitStack() as stack:
        try:
            signal.signal(signal.SIGINT, STOPS.handle)
            signal.signal(signal.SIGTERM, STOPS.handle)
            stack.enter_context(_environ(_environment()))
            started = _start(config, address)
            # ray.init installs a SIGTERM handler of its own in the driver: ours again, and a
            # harmless SIGUSR1 until Ray Tune installs its handler for it
            signal.signal(signal.SIGTERM, STOPS.handle)
            signal.signal(signal.SIGINT, STOPS.handle)
            signal.signal(signal.SIGUSR1, lambda *_: None)
            slots = trial_slots(config)
            # With a search algorithm Ray Tune keeps one trial pending at a time: a short trial then
            # ends before a second actor is up, and trials run one after another on a 2-CPU machine.
            # Allow as many pending trials as the cluster has slots (at least 2); this caps only
            # trials waiting for resources, not running ones, so an autoscaler still sees demand.
            stack.enter_context(_environ({"TUNE_MAX_PENDING_TRIALS_PG": os.environ.get("TUNE_MAX_PENDING_TRIALS_PG",
                                                                                         str(max(2, slots)))}))
            for handler in _ray_log_handlers():
                handler.addFilter(DISK_FULL_LOGS)
                handler.addFilter(VANISHED_TEMP_FILE)
            controller_log.addFilter(FAILURES)
            stack.enter_context(quiet_raylet_messages())
            yield slots
        finally:
            controller_log.removeFilter(FAILURES)
            for handler in _ray_log_handlers():
                handler.removeFilter(DISK_FULL_LOGS)
                handler.removeFilter(VANISHED_TEMP_FILE)
            if started:
                import ray

                with contextlib.suppress(KeyboardInterrupt):
                    ray.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _ray_log_handlers() -> list[logging.Handler]:
    return [h for name in ("ray", "ray.tune", "") for h in logging.getLogger(name).handlers]
