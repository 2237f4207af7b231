"""Where a run's fixed cost goes: two trivial trials (one epoch on 100 digits, the smoke
model), timed piece by piece in one process, for this checkout and (with --baseline DIR) for
another checkout of the project, e.g. `git worktree add /tmp/before REV`.

Pieces: imports (search, ray, torch, optuna), data and Ray start, Tuner set-up to the first trial
starting (actor start, data from the object store), the trials themselves, result polling and
table writing after the last trial, Ray shutdown. Medians of --repeats runs, each in a fresh
process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import ROOT, median, write

WORKER = r'''
import json, sys, time, tempfile
from pathlib import Path
marks = {"start": time.perf_counter()}
import ray, torch, optuna
from search.engine import experiment as exp
from search.store import record
from search.config import resolve
marks["imports"] = time.perf_counter()
config = resolve("smoke", {"latent_dims": (2,), "trials": 1, "seeds": 1, "max_seeds": 1, "epochs": 1, "max_train": 100,
                           "num_cpus": 2})
path = Path(tempfile.mkdtemp()) / "e"
# as `vae-search run` does it: the data loads while Ray starts
from concurrent.futures import ThreadPoolExecutor
from search.engine.data import load_splits
from search.engine.session import driver_session
loading = ThreadPoolExecutor(1).submit(load_splits, config)
session = driver_session(config, None)
running = session.__enter__()
marks["ray_start"] = time.perf_counter()
splits, data = loading.result()
marks["data"] = time.perf_counter()
experiment = record.create(config, path, data=data, address=None)
before_fit = time.time()
marks["create"] = time.perf_counter()
exp.execute(experiment, splits, session=running, log=lambda line: None)
after = time.time()
marks["execute"] = time.perf_counter()
session.__exit__(None, None, None)
marks["shutdown"] = time.perf_counter()
import pandas as pd
table = pd.read_csv(path / "trials.csv")
print(json.dumps({"marks": marks, "first_trial_start": float(table["started_at"].min()) - before_fit,
                  "last_trial_end_to_done": after - float(table["finished_at"].max()),
                  "trials_span": float(table["finished_at"].max() - table["started_at"].min()),
                  "train_s": float(table["train_time_s"].sum()), "trials": len(table)}))
'''


def one(code: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, cwd=code, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(code)}, start_new_session=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    m = data["marks"]
    ready = max(m["data"], m["ray_start"])
    return {
        "imports_s": m["imports"] - m["start"],
        # before: data, then Ray; after: the data loads while Ray starts
        "data_and_ray_start_s": ready - m["imports"],
        "execute_s": m["execute"] - m["create"],  # the Tune experiment(s) and the tables
        "to_first_trial_s": data["first_trial_start"],
        "trials_span_s": data["trials_span"],
        "after_last_trial_s": data["last_trial_end_to_done"],
        "ray_shutdown_s": m["shutdown"] - m["execute"],
        "total_s": m["shutdown"] - m["start"],
        "trials": data["trials"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout of the project (before)")
    args = parser.parse_args()
    runs = {"after": [], "before": []}
    for i in range(args.repeats):
        runs["after"].append(one(ROOT))
        if args.baseline:
            runs["before"].append(one(args.baseline))
        print(f"repeat {i + 1}: after {runs['after'][-1]['total_s']:.1f} s"
              + (f", before {runs['before'][-1]['total_s']:.1f} s" if args.baseline else ""), flush=True)
    medians = {side: {key: median([r[key] for r in rows]) for key in rows[0]} for side, rows in runs.items() if rows}
    write("fixed_cost", {"repeats": args.repeats, "baseline": str(args.baseline) if args.baseline else None,
                         "median": medians, "runs": runs})


if __name__ == "__main__":
    main()
