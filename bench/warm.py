"""Searches in a row from one Python process (`search.run`), which share the Ray the first one
started, and fresh `vae-search run --address` commands on a running Ray (`ray start --head`,
2 CPUs, started here once), against the same search as a fresh `vae-search run` command that
starts and stops a Ray of its own, and against plain Optuna (`scheduling.py`'s script).

Each search: 14 one-epoch smoke trials on 500 digits, two at a time (overhead.py's short run),
with its own --seed. Per search: its wall and the seconds from the call to its first trial's
start (trials.csv's started_at). For the searches from one process also where their seconds went,
piece by piece: set-up to Tuner.fit (checks, folder, data, searcher), Tune to the first trial
process, that process's start to Ray having it ready (a worker set-up hook, bench/_warm_probe.py,
notes both), Ray ready to the first trial (the trainable's imports, the actor, the data), the
trials' span, the last trial to Tune's end and the end to the call's return; how many worker
processes each search started; a trial's time beyond its training, the first two (each in a fresh
process) against the rest; and a fresh process's first torch.optim.Adam against its second.
--repeats rounds, each a new process running --searches searches, then one cold command, one
joined command and plain Optuna. Writes bench/results/warm.json.
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
from scheduling import run_optuna  # the same trials through plain Optuna

SHORT = {"latent_dims": (2, 8), "epochs": 1, "max_train": 500, "trials": 12, "seeds": 1, "max_seeds": 1,
         "scheduler": "fifo", "num_cpus": 2}

CHILD = r"""
import json, os, sys, time
import ray
from ray import tune
import search
folder, searches, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
# every worker process notes when it started and when Ray had it ready (bench/_warm_probe.py)
start_ray = ray.init
ray.init = lambda *a, **k: start_ray(*a, **k, runtime_env={"worker_process_setup_hook": "_warm_probe.started"})
fit, marks = tune.Tuner.fit, {}
def timed_fit(self):
    marks["fit"] = time.time()
    try:
        return fit(self)
    finally:
        marks["fit_end"] = time.time()
tune.Tuner.fit = timed_fit
rows = []
for i in range(searches):
    called = time.time()
    experiment = search.run(search.resolve("smoke", {**settings, "seed": i}), storage=folder, name=f"warm-{i}")
    ended = time.time()
    table = experiment.trials
    rows.append({"called": called, "ended": ended, **marks, "started_at": table["started_at"].tolist(),
                 "finished_at": table["finished_at"].tolist(), "train_time_s": table["train_time_s"].tolist()})
print("ROWS " + json.dumps(rows))
"""


def warm(folder: Path, searches: int) -> list[dict]:
    """`searches` searches in one new process; per search its wall, first trial and pieces."""
    folder.mkdir(parents=True)
    probe = folder / "workers.jsonl"
    env = {**os.environ, "WARM_PROBE_LOG": str(probe),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(searches), json.dumps(SHORT)], cwd=ROOT,
                         capture_output=True, text=True, check=True, env=env).stdout
    rows = json.loads(next(line for line in out.splitlines() if line.startswith("ROWS "))[5:])
    workers = [json.loads(line) for line in probe.read_text().splitlines()]
    return [pieces(row, workers) for row in rows]


def pieces(row: dict, workers: list[dict]) -> dict:
    """Where one search's seconds went, from the call to its return (each piece ends where the
    next begins; the worker pieces are those of the process that ran the first trial's slot, the
    earliest to be ready)."""
    called, first = row["called"], min(row["started_at"])
    mine = sorted((w for w in workers if row["called"] <= w["process_start"] <= row["ended"]),
                  key=lambda w: w["ready"])
    spans = sorted(zip(row["started_at"], row["finished_at"], row["train_time_s"], strict=True))
    # a trial's time beyond its training: the first in a fresh process against the later ones
    extra = [end - start - train for start, end, train in spans]
    return {"wall_s": row["ended"] - called, "first_trial_s": first - called, "trials": len(spans),
           "worker_processes": len(mine),
           "pieces": {
               "set_up_to_tuner_fit_s": row["fit"] - called,  # checks, folder, data, searcher
               "tune_to_worker_process_s": mine[0]["process_start"] - row["fit"] if mine else None,
               "worker_process_to_ray_ready_s": mine[0]["ready"] - mine[0]["process_start"] if mine else None,
               # the trainable's imports (ray.tune, torch, the project), the actor, the data
               "ray_ready_to_first_trial_s": first - mine[0]["ready"] if mine else None,
               "trials_span_s": max(row["finished_at"]) - first,
               "last_trial_to_fit_end_s": row["fit_end"] - max(row["finished_at"]),
               "fit_end_to_return_s": row["ended"] - row["fit_end"],  # tables, run.json
           },
           "first_trials_beyond_training_s": median(extra[:2]),
           "later_trials_beyond_training_s": median(extra[2:])}


FIRST_OPTIMIZER = r"""
import json, time, torch
times = []
for _ in range(2):
    started = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def first_optimizer() -> list[float]:
    """A fresh process's first and second torch.optim.Adam: the first imports torch._dynamo
    (torch.optim's methods are wrapped to keep the compiler out, and the wrapper loads it)."""
    out = subprocess.run([sys.executable, "-c", FIRST_OPTIMIZER], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
                row["optuna"] = run_optuna(row["joined"]["trials"])
            rounds.append(row)
            print(f"round {i + 1}: {json.dumps(row)}", flush=True)
    figures = {"run": "smoke preset, " + json.dumps(SHORT), "repeats": args.repeats, "rounds": rounds}
    for k in range(args.searches):
        searches = [r["warm"][k] for r in rounds]
        figures[f"search_{k + 1}"] = {
            **{key: median([s[key] for s in searches]) for key in
               ("wall_s", "first_trial_s", "worker_processes", "first_trials_beyond_training_s",
                "later_trials_beyond_training_s")},
            "pieces": {piece: median([s["pieces"][piece] for s in searches])
                       for piece in searches[0]["pieces"] if all(s["pieces"][piece] is not None for s in searches)}}
    times = [first_optimizer() for _ in range(args.repeats)]
    figures["fresh_process_adam_s"] = {"first": median([t[0] for t in times]), "second": median([t[1] for t in times])}
    for side in ("cold", "joined"):
        figures[f"{side}_command"] = {key: median([r[side][key] for r in rounds])
                                      for key in ("wall_s", "first_trial_s")}
    figures["joined_over_cold"] = figures["joined_command"]["wall_s"] / figures["cold_command"]["wall_s"]
    # plain Optuna: its whole script (imports of optuna and torch included) and its optimize call alone
    figures["optuna"] = {key: median([r["optuna"][key] for r in rounds]) for key in ("wall", "optimize")}
    figures["over_optuna"] = {
        "joined_command": median([r["joined"]["wall_s"] / r["optuna"]["wall"] for r in rounds]),
        **{f"search_{k + 1}": median([r["warm"][k]["wall_s"] / r["optuna"]["wall"] for r in rounds])
           for k in range(args.searches)}}
    write("warm", figures)


if __name__ == "__main__":
    main()
