"""Run the CLI as users do: a subprocess in its own session, so that every Ray process it
starts is killed at the end, even when a test fails or kills the driver on purpose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager

TIMEOUT_S = 300


@contextmanager
def cli_process(*args, cwd=None, stdout=None):
    process = subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and whatever Ray left in its group
        except ProcessLookupError:
            pass
        process.wait()


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    with cli_process(*args, cwd=cwd) as process:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
