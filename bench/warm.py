"""Searches in a row from one Python process (`search.run`), which share the Ray the first one
started, against the same search as a fresh `vae-search run` command (its own Python and Ray).

Each search: 18 one-epoch smoke trials on 500 digits, two at a time (overhead.py's short run),
with its own --seed. Per search: its wall and the seconds from the call to its first trial's
start (trials.csv's started_at). --repeats rounds, each a new process running --searches
searches, then one cold command. Writes bench/results/warm.json.
"""

from __future__ import annotations

import argparse
import json
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


def cold(folder: Path) -> dict:
    import time

    import pandas as pd

    flags = [part for key, value in SHORT.items() for part in
             ("--" + key.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, tuple) else str(value))]
    called = time.time()
    subprocess.run([sys.executable, "-m", "search", "run", "--preset", "smoke", *flags, "--storage", str(folder),
                    "--name", "cold"], cwd=ROOT, capture_output=True, text=True, check=True)
    ended = time.time()
    table = pd.read_csv(folder / "cold" / "trials.csv")
    return {"wall_s": ended - called, "first_trial_s": float(table["started_at"].min()) - called, "trials": len(table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--searches", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            row = {"warm": warm(Path(tmp) / "warm", args.searches), "cold": cold(Path(tmp))}
        rounds.append(row)
        print(f"round {i + 1}: {json.dumps(row)}", flush=True)
    figures = {"run": "smoke preset, " + json.dumps(SHORT), "repeats": args.repeats, "rounds": rounds}
    for k in range(args.searches):
        figures[f"search_{k + 1}"] = {key: median([r["warm"][k][key] for r in rounds])
                                      for key in ("wall_s", "first_trial_s")}
    figures["cold_command"] = {key: median([r["cold"][key] for r in rounds]) for key in ("wall_s", "first_trial_s")}
    write("warm", figures)


if __name__ == "__main__":
    main()
