"""Why a run stops early, and how: one `StopRequest` per driver session.

The driver session creates it and hands it to what can ask for a stop or must know of one (the
signal handlers, the `StopWatch` and `Progress` callbacks, the searcher, the filter on Ray's
logs); left out of their pickles, it is taken again from the running session on `Tuner.restore`.
A first SIGINT or SIGTERM (`handle`), a full disk (`disk_full`) or trials that cannot run
(`cannot_run`: no node fits them, or CUDA is unusable) all ask Ray Tune for its graceful stop
(SIGUSR1 to the driver, from `_ask_tune`, forwarded from inside its loop by `StopWatch`): the
state is saved once more and running trials stay resumable. The run then raises `Stopped` (exit
128 + the signal: 130, 143), `DiskFull`, `PendingTimeout` or `DeviceUnusable` (exit 2). A
second signal stops at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Iterator


class Stopped(Exception):
    """A signal stopped the run; what was saved can be resumed. `experiment_path` is None when
    the signal came before the experiment folder was created; `address` the cluster it joined."""

    def __init__(self, experiment_path: Path | None, signum: int, address: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.experiment_path = experiment_path
        self.signum = signum
        self.address = address

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class CannotRun(Exception):
    """The cluster cannot run the trials as asked (exit code 2); the run resumes once it can.
    `experiment_path` and `address` (the cluster it joined): set once the experiment is known."""

    experiment_path: Path | None = None
    address: str | None = None


class PendingTimeout(CannotRun):
    """Trials waited `--pending-timeout` seconds for resources while none ran: no node fits them."""


class DeviceUnusable(CannotRun):
    """A trial asked for a GPU and torch cannot use CUDA on its node (`search.engine.trial.require_cuda`)."""


class DiskFull(Exception):
    """The disk under the experiment filled up: the run stopped as a signal stops it.

    `folder`: the folder the user gave; `detail`: what first said so. What the user needs to go
    on, known once the experiment exists (`search.cli.run`): `experiment_path`, `address` (the
    cluster it joined), `log` (where the details were written), `free` and `needed` (bytes)."""

    def __init__(self, folder: str, detail: BaseException | str | None = None, *, experiment_path: Path | None = None,
                 address: str | None = None, log: Path | None = None, free: int = 0, needed: int = 0) -> None:
        super().__init__(f"no space left on device in {folder}")
        self.folder = folder
        self.detail = detail
        self.experiment_path = experiment_path
        self.address = address
        self.log = log
        self.free = free
        self.needed = needed


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


class StopRequest:
    """Why the run is stopping, if it is: a signal, a full disk, or trials no node can run."""

    def __init__(self) -> None:
        self.received: int | None = None  # the signal
        self.forwarded = False
        self.in_tune = False  # inside Tuner.fit, where Ray Tune stops gracefully on SIGUSR1
        self.failure: str | None = None  # why the run gave up (no node can run a trial, or use its GPU)
        self.failure_kind: type[CannotRun] = PendingTimeout
        self.full: str | None = None  # the folder whose disk filled up
        self.full_detail: BaseException | str | None = None  # what first said so
        self.full_logs: list[str] = []  # what Ray logged about it (`log_filter`), for the details log

    def handle(self, signum: int, frame) -> None:
        """The SIGINT and SIGTERM handler while the session lasts."""
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

    def cannot_run(self, message: str, kind: type[CannotRun] = PendingTimeout) -> None:
        """Stop Ray Tune gracefully, then raise kind(message) (exit code 2)."""
        if self.failure is None:
            self.failure, self.failure_kind = message, kind
            self._ask_tune()

    def disk_full(self, folder: str, detail: BaseException | str | None = None) -> None:
        """Stop Ray Tune gracefully (its state is saved where it still fits), then raise DiskFull.
        A trial whose checkpoint did not fit is then waiting for its retry: resume runs it."""
        if self.full is None:
            self.full, self.full_detail = str(folder), detail
            self._ask_tune()

    def forward_to_tune(self) -> None:
        """Called from inside Ray Tune's loop: pass a recorded signal on to it."""
        if self.received is not None and not self.forwarded:
            self.forwarded = True
            self._ask_tune()

    @staticmethod
    def _ask_tune() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # Ray Tune's handler: save the state and stop

    @contextlib.contextmanager
    def running_tune(self) -> Iterator[None]:
        """Around Tuner.fit: after a stop request, the exception that says why (`Stopped` without
        the experiment's path, which the caller knows; `DiskFull`; `PendingTimeout`)."""
        if self.received is not None:
            raise Stopped(None, self.received)
        self.in_tune = True
        try:
            yield
        except Exception as exc:
            # a full disk also breaks what Ray Tune reads back afterwards (an empty error pickle)
            if self.full is not None or is_disk_full(exc):
                raise DiskFull(self.full or "the experiment's folder", exc) from None
            raise
        finally:
            self.in_tune = False
        if self.received is not None:
            raise Stopped(None, self.received)
        if self.full is not None:
            raise DiskFull(self.full, self.full_detail)
        if self.failure is not None:
            raise self.failure_kind(self.failure)

    def log_filter(self) -> logging.Filter:
        """For Ray's log handlers while the session lasts: a record about a full disk (Ray Tune logs
        a trial's failure and a failed state save with their tracebacks) stops the run instead of
        filling the console; its text is kept in `full_logs`."""
        return _DiskFullLogs(self)


class _DiskFullLogs(logging.Filter):
    def __init__(self, stop: StopRequest) -> None:
        super().__init__()
        self.stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if self.stop.full is None and not is_disk_full(text):
            return True  # once the disk is full, what Ray Tune logs next follows from it: to the log too
        self.stop.full_logs.append(text)
        self.stop.disk_full(self.stop.full or "the experiment's folder", text)
        return False
