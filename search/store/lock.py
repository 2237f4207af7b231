"""One driver per experiment, and a journal that survives a torn last line.

A driver (`run`, `resume`) holds an exclusive `flock` on EXPERIMENT/driver.lock for as long as
it works on the experiment, and writes who it is into that file (host, pid, since). The kernel
releases the lock when the process ends however it ends (SIGKILL included), so a dead driver
never blocks `resume`. Where the file system has no working `flock` (some network file
systems), the heartbeat of `status.json` (rewritten every few seconds by a live driver)
decides instead (`search.store.status.live_heartbeat`).

The Optuna journal is appended one JSON line per record. A driver killed (or a disk filled)
mid-append leaves a last line without its newline, and the next append glues a record to that
fragment, which Optuna then cannot read. `repair_journal` moves such a fragment aside before
anything reads or appends; the record was never committed, and the trial it belonged to is
re-run or closed as after any driver crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from search.store.files import LOCK_FILE
from vae.errors import UsageError
from vae.files import atomic_write_bytes


def holder(path: str | Path) -> dict | None:
    """Who works on the experiment at `path` now ({host, pid, since}), or None."""
    path = Path(path)
    lock = path / LOCK_FILE
    if not lock.is_file():
        return None
    with open(lock, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(lock) or {"host": "?", "pid": "?", "since": None}
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            return _heartbeat(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def running_message(path: Path, who: dict) -> str:
    since = who.get("since")
    when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return (f"{path} is running: driver pid {who.get('pid', '?')} on {who.get('host', '?')}{when}; "
            f"watch it with `vae-search status {path}`")


def refuse_if_running(path: str | Path) -> None:
    """UsageError (exit 2) when a live driver works on the experiment at `path`."""
    who = holder(path)
    if who is not None:
        raise UsageError(running_message(Path(path), who))


@contextlib.contextmanager
def hold(path: str | Path) -> Iterator[None]:
    """Hold the experiment's driver lock for the block; UsageError if another driver has it."""
    path = Path(path)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(running_message(path, _read(path / LOCK_FILE) or {})) from None
        except OSError as exc:  # no flock here: the heartbeat decides (see the module docstring)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            refuse_if_running(path)
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def _heartbeat(path: Path) -> dict | None:
    from search.store.status import live_heartbeat

    status = live_heartbeat(path)
    if status is None:
        return None
    return _read(path / LOCK_FILE) or {"host": status.get("host", "?"), "pid": status.get("pid", "?"), "since": None}


def repair_journal(journal: str | Path) -> str | None:
    """Cut an incomplete last record off the Optuna journal (moved aside to JOURNAL.torn-TIME);
    returns a one-line notice, or None when the journal is whole. UsageError when the file is
    not an Optuna journal. Only call it while no driver holds the experiment."""
    journal = Path(journal)
    if not journal.is_file():
        return None
    data = journal.read_bytes()
    cut = data.rfind(b"\n") + 1
    first = data[: data.find(b"\n")] if cut else b""
    if first:
        try:
            record = json.loads(first)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise UsageError(f"{journal} is not an Optuna journal (its first line is not a journal record); "
                             "restore the experiment's own optuna.journal")
    if cut == len(data):
        return None
    aside = journal.with_name(f"{journal.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
    atomic_write_bytes(aside, data[cut:])
    os.truncate(journal, cut)
    kept = data[:cut].count(b"\n")
    return (f"{journal.name}: its last record was cut short by an interrupted write ({len(data) - cut} bytes, never "
            f"committed); moved it to {aside.name} and kept the {kept} complete records")
