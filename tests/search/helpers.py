"""Run the CLI as users do: a subprocess in its own session, so that every Ray process it
starts is killed at the end, even when a test fails or kills the driver on purpose."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import psutil

TIMEOUT_S = 300
# what a command joining the suite's running Ray (tests/conftest.py `ray_head`) adds to its environment
JOINING = {"RAY_AUTH_MODE": "token"}
# moto's fake AWS credentials: the S3 tests' drivers have them, and so do the Ray nodes the suite
# starts, as a cloud node has its role's (the trials write their checkpoints to the bucket)
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1"}


@contextmanager
def cli_process(*args, cwd=None, stdout=None, env=None):
    """`vae-search ARGS` as a subprocess; `env`: variables added to this process's environment."""
    process = subprocess.Popen(
        [sys.executable, "-m", "search", *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        kill_session(process.pid)  # the driver and every Ray process it started
        process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_processes(sid: int) -> list[int]:
    """PIDs in session `sid` (Ray's workers get their own process group, not their own session)."""
    pids = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and pid != os.getpid():
                pids.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return pids


def kill_session(sid: int) -> None:
    for pid in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    with cli_process(*args, cwd=cwd, env=env) as process:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def main_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """`vae-search ARGS` in this process (`search.cli.main`), for commands that fail or finish
    before Ray starts: the exit code and what it printed, without a new Python and torch."""
    import contextlib
    import io

    from search.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["vae-search", *args], code, out.getvalue(), err.getvalue())


LEFT_ON = r"""
import json, sys, ray
from ray._private import state  # the GCS's actor table: no public call lists actors without the dashboard
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
total, free = ray.cluster_resources(), ray.available_resources()
print(json.dumps({
    "actors": sum(a["State"] != "DEAD" for a in state.actors().values()),
    "placement_groups": sum(p["state"] != "REMOVED" for p in ray.util.placement_group_table().values()),
    "cpus_in_use": total["CPU"] - free.get("CPU", 0),
    "object_store_bytes_in_use": total["object_store_memory"] - free.get("object_store_memory", 0),
}))
"""


def left_on(address: str) -> dict:
    """What is left on the Ray cluster at `address` (actors alive, placement groups, CPUs and
    object store held), asked by a driver of its own that is not counted."""
    import json

    out = subprocess.run([sys.executable, "-c", LEFT_ON, address], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **JOINING})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def training_on(tune_dir, nodes, *, fused: bool = False) -> tuple[str, int] | None:
    """(trial id, pid of its worker) of a trial training now on one of `nodes` (of a
    `ray.cluster_utils.Cluster`), with a checkpoint and at least 3 of 8 epochs to go. Its worker
    is a child of the node's raylet that Ray Tune moved into the trial's folder; the trial's
    newest checkpoint is fresh (a worker kept for reuse stays in the folder of the trial it
    finished). `fused`: only a trial of several seeds (its params.json lists them)."""
    import contextlib
    import time

    for node in nodes:
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        for child in raylet.children(recursive=True):
            try:
                if not child.cmdline()[0].startswith("ray::ImplicitFunc") or "trial_" not in child.cwd():
                    continue
                trial = child.cwd().rsplit("trial_", 1)[1]
            except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                continue
            if fused and len(_seeds_of(tune_dir / f"trial_{trial}")) < 2:
                continue
            checkpoints = sorted((tune_dir / f"trial_{trial}").glob("checkpoint_*"))
            if checkpoints and int(checkpoints[-1].name.rsplit("_", 1)[1]) < 5:
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - checkpoints[-1].stat().st_mtime < 1.0:
                        return trial, child.pid
    return None


def _seeds_of(trial_dir) -> list:
    """The seeds a Tune trial trains (its params.json), [] for a solo trial or one not written yet."""
    import json

    try:
        return json.loads((trial_dir / "params.json").read_text()).get("seeds") or []
    except (OSError, ValueError):
        return []
