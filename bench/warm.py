"""Searches in a row from one Python process (`search.run`), which share the Ray the first one
started, and fresh `vae-search run --address` commands on a running Ray (`ray start --head`,
2 CPUs, started here once), against the same search as a fresh `vae-search run` command that
starts and stops a Ray of its own.

Each search: 18 one-epoch smoke trials on 500 digits, two at a time (overhead.py's short run),
with its own --seed. Per search: its wall and the seconds from the call to its first trial's
start (trials.csv's started_at). --repeats rounds, each a new process running --searches
searches, then one cold command, then one joined command. Writes bench/results/warm.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, median, write

SHORT = {"latent_dims": (2, 8), "epochs": 1, "max_train": 500, "trials": 12, "seeds": 1, "max_seeds": 1,
         "scheduler": "fifo", "num_cpus": 2}

CHILD = r"""
import json, sys, time
import search
folder, searches, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
rows = []
for i in range(searches):
    called = time.time()
    experiment = search.run(search.resolve("smoke", {**settings, "seed": i}), storage=folder, name=f"warm-{i}")
    ended = time.time()
    table = experiment.trials
    rows.append({"wall_s": ended - called, "first_trial_s": float(table["started_at"].min()) - called,
                 "trials": len(table)})
print("ROWS " + json.dumps(rows))
"""


def warm(folder: Path, searches: int) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(searches), json.dumps(SHORT)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("ROWS "))[5:])


def command(folder: Path, name: str, address: str | None = None) -> dict:
    """One `vae-search run` command: its own Ray, or joining the one at `address`."""
    import time

    import pandas as pd

    settings = {key: value for key, value in SHORT.items() if not (address and key == "num_cpus")}
    flags = [part for key, value in settings.items() for part in
             ("--" + key.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, tuple) else str(value))]
    flags += ["--address", address] if address else []
    called = time.time()
    subprocess.run([sys.executable, "-m", "search", "run", "--preset", "smoke", *flags, "--storage", str(folder),
                    "--name", name], cwd=ROOT, capture_output=True, text=True, check=True)
    ended = time.time()
    table = pd.read_csv(folder / name / "trials.csv")
    return {"wall_s": ended - called, "first_trial_s": float(table["started_at"].min()) - called, "trials": len(table)}


@contextlib.contextmanager
def ray_head(folder: Path):
    """`ray start --head` with 2 CPUs on a free port (token authentication), killed at the end."""
    import os
    import signal
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = folder / "ray-start.log"
    with open(log, "w") as out:
        process = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                                    "--num-cpus=2", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                                    "--disable-usage-stats", f"--temp-dir={folder / 'ray'}", "--block"], stdout=out,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--searches", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    os.environ["RAY_AUTH_MODE"] = "token"  # a client sends the head's token only with it
    with tempfile.TemporaryDirectory() as head_folder, ray_head(Path(head_folder)) as address:
        command(Path(head_folder), "first", address)  # the head's first driver: not measured
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                row = {"warm": warm(Path(tmp) / "warm", args.searches), "cold": command(Path(tmp), "cold"),
                       "joined": command(Path(tmp), "joined", address)}
            rounds.append(row)
            print(f"round {i + 1}: {json.dumps(row)}", flush=True)
    figures = {"run": "smoke preset, " + json.dumps(SHORT), "repeats": args.repeats, "rounds": rounds}
    for k in range(args.searches):
        figures[f"search_{k + 1}"] = {key: median([r["warm"][k][key] for r in rounds])
                                      for key in ("wall_s", "first_trial_s")}
    for side in ("cold", "joined"):
        figures[f"{side}_command"] = {key: median([r[side][key] for r in rounds])
                                      for key in ("wall_s", "first_trial_s")}
    figures["joined_over_cold"] = figures["joined_command"]["wall_s"] / figures["cold_command"]["wall_s"]
    write("warm", figures)


if __name__ == "__main__":
    main()
