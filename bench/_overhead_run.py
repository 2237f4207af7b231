"""How overhead.py runs a checkout's `vae-search`: the interpreter and environment of each
checkout, and the driver that records when each phase of a run began (`run_driver`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

# `vae-search ARGS` in this process, with timestamps of its phases and the driver's CPU time
DRIVER = r'''
import json, resource, sys, time
marks = {"start": time.perf_counter()}
import search.cli, search.engine.session as session, search.engine.experiment as engine, search.cli.output as output
marks["cli_imported"] = time.perf_counter()
def mark(module, name, before, after=None):
    original = getattr(module, name)
    def wrapped(*a, **k):
        marks.setdefault(before, time.perf_counter())
        try:
            return original(*a, **k)
        finally:
            if after:
                marks[after] = time.perf_counter()
    setattr(module, name, wrapped)
mark(session, "_start", "ray_start_begin", "ray_started")
mark(engine, "execute", "execute_begin", "execute_end")
mark(engine, "write_tables", "tables_begin", "tables_end")
mark(output, "report", "report_begin", "report_end")
wall0 = time.time()
code = search.cli.main(sys.argv[1:])
marks["end"] = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
print("DRIVER " + json.dumps({"marks": marks, "wall0": wall0, "perf0": marks["start"],
                              "cpu_s": usage.ru_utime + usage.ru_stime}), file=sys.stderr)
if hasattr(search.cli, "exit_now"):  # how the installed command ends, where the checkout has it
    search.cli.exit_now(code)
sys.exit(code)
'''

PYTHON: dict[Path, str] = {}  # the interpreter (virtual environment) each checkout runs with


def _python(code: Path) -> str:
    return PYTHON.get(code, sys.executable)


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code), "PYTHONUNBUFFERED": "1"}


def run_driver(code: Path, args: list[str], *, sample=None) -> dict:
    """`vae-search ARGS` with the checkout `code`; returns its phase marks, driver CPU and wall.
    `sample(proc)`: called in a thread while it runs."""
    started = time.perf_counter()
    proc = subprocess.Popen([_python(code), "-c", DRIVER, *args], cwd=code, env=_env(code), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    stop = threading.Event()
    thread = threading.Thread(target=sample, args=(proc, stop), daemon=True) if sample else None
    if thread:
        thread.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    if thread:
        thread.join()
    if proc.returncode != 0:
        raise RuntimeError(f"vae-search {' '.join(args)} failed in {code}:\n{err[-3000:]}")
    driver = json.loads(next(line for line in err.splitlines() if line.startswith("DRIVER "))[7:])
    return {"wall_s": wall, "stdout": out, **driver}


def trials(storage: Path, name: str):
    import pandas as pd

    return pd.read_csv(storage / name / "trials.csv")
