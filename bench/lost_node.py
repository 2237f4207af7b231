"""What a lost node costs: the same run on a two-node cluster, with and without a node lost.

A real cluster on this machine (`ray.cluster_utils.Cluster`): a head that runs only the driver,
a steady worker node and a spot worker node, one CPU each. The run: `--preset smoke --epochs 8
--max-train 1000 --scheduler fifo --max-failures 0`. In the lost runs, the spot node is
SIGKILLed (its raylet, its object store and the trial's worker, as a reclaimed instance goes)
as soon as a trial on it has a checkpoint and 3 or more epochs to go; the run then finishes
on the steady node alone. Measured per lost run:

- the restart delay: from the kill to the lost trial's restart on the steady node (its last
  attempt's first epoch began: `started_at` in trials.csv);
- epochs trained twice: the lost trial's epochs reported before the kill but not in its
  checkpoint (the history keeps one row per epoch; Tune's result.json keeps every attempt);
- the whole run's wall time, against the intact runs (both nodes to the end) and against
  the intact runs' own spread. Part of the difference is the lost node's slot, not the loss.

Alternates intact and lost runs; medians over --repeats. Writes bench/results/lost_node.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, median, write  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.search.helpers import training_on  # noqa: E402  (the test's own way to find a node's trial)

ARGS = ("--preset", "smoke", "--epochs", "8", "--max-train", "1000", "--scheduler", "fifo", "--max-failures", "0")


def one_run(storage: Path, name: str, *, lose: bool) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        spot = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        started = time.time()
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search",
                "run",
                *ARGS,
                "--address",
                cluster.address,
                "--storage",
                str(storage),
                "--name",
                name,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        lost = None
        while lose and lost is None and driver.poll() is None:
            found = training_on(storage / name / "tune", [spot])
            if found:
                cluster.remove_node(spot, allow_graceful=False)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(found[1], 9)
                checkpoints = sorted((storage / name / "tune" / f"trial_{found[0]}").glob("checkpoint_*"))
                lost = (*found, int(checkpoints[-1].name.rsplit("_", 1)[1]) + 1 if checkpoints else 0, time.time())
            time.sleep(0.02)
        output, _ = driver.communicate(timeout=600)
        wall = time.time() - started
        if driver.returncode != 0:
            raise RuntimeError(output[-3000:])
    finally:
        cluster.shutdown()
    table = pd.read_csv(storage / name / "trials.csv").set_index("trial_id")
    figures = {"wall_s": wall, "errored": int((table["status"] == "errored").sum())}
    if lost:
        trial, _, checkpointed, killed_at = lost
        reported = [
            json.loads(line)
            for line in (storage / name / "tune" / f"trial_{trial}" / "result.json").read_text().splitlines()
        ]
        first_attempt = max(r["epoch"] for r in reported if r["timestamp"] <= killed_at + 0.5)
        figures.update(restart_delay_s=float(table.loc[trial, "started_at"]) - killed_at,
                       epochs_trained_twice=max(0, first_attempt - checkpointed),
                       lost_trial_status=table.loc[trial, "status"],
                       console_lines=[line for line in output.splitlines() if " lost (" in line])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    intact, lost = [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeats):
            intact.append(one_run(Path(folder), f"intact-{i}", lose=False))
            lost.append(one_run(Path(folder), f"lost-{i}", lose=True))
            print(f"repeat {i}: intact {intact[-1]['wall_s']:.1f} s; lost {lost[-1]}", flush=True)
    write("lost_node", {
        "command": "python bench/lost_node.py --repeats %d" % args.repeats,
        "run": " ".join(ARGS),
        "intact_wall_s": [r["wall_s"] for r in intact],
        "lost_wall_s": [r["wall_s"] for r in lost],
        "median_intact_wall_s": median([r["wall_s"] for r in intact]),
        "median_lost_wall_s": median([r["wall_s"] for r in lost]),
        "wall_ratio_lost_to_intact": median([r["wall_s"] for r in lost]) / median([r["wall_s"] for r in intact]),
        "median_restart_delay_s": median([r["restart_delay_s"] for r in lost]),
        "restart_delay_s": [r["restart_delay_s"] for r in lost],
        "epochs_trained_twice": [r["epochs_trained_twice"] for r in lost],
        "errored_trials": [r["errored"] for r in intact + lost],
        "lost_trial_status": [r["lost_trial_status"] for r in lost],
        "console_lines": [r["console_lines"] for r in lost],
    })


if __name__ == "__main__":
    main()
