"""Target 2: twelve equal trials (same model, data and epochs; 11 search + 1 seeds trial, no
racing) at concurrency 2 versus 1, torch threads pinned to each trial's one CPU. Speed-up =
wall time of the whole command at 1 / at 2 (the target), and also over the trials' span
(first trial start to last trial end). Median of --repeats runs."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import cli, median, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=2000, help="training images per trial")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="quick", help="model size: smoke (small) or quick (32/64 channels)")
    parser.add_argument("--tag", default="", help="suffix of the result file")
    args = parser.parse_args()
    common = [
        "--preset",
        args.preset,
        "--latent-dims",
        "8",
        "--epochs",
        str(args.epochs),
        "--max-train",
        str(args.max_train),
        "--trials",
        "11",
        "--seeds",
        "1",
        "--max-seeds",
        "1",
        "--scheduler",
        "fifo",
        "--num-cpus",
        "2",
        "--cpus-per-trial",
        "1",
        "--dataset",
        "sample",
    ]
    walls = {1: [], 2: []}
    spans = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as storage:
        for i in range(args.repeats):
            for concurrency in (1, 2):
                name = f"par{concurrency}-{i}-{int(time.time())}"
                wall, _ = cli(
                    "run", *common, "--max-concurrent", str(concurrency), "--storage", storage, "--name", name
                )
                walls[concurrency].append(wall)
                table = pd.read_csv(Path(storage) / name / "trials.csv")
                spans[concurrency].append(float(table["finished_at"].max() - table["started_at"].min()))
            print(f"repeat {i + 1}: command wall {walls[1][-1]:.1f} s vs {walls[2][-1]:.1f} s; "
                  f"trial span {spans[1][-1]:.1f} s vs {spans[2][-1]:.1f} s", flush=True)
    speedup = median(walls[1]) / median(walls[2])
    write("parallel" + (f"_{args.tag}" if args.tag else ""), {
        "target": "whole-command speed-up >= 1.8 (ideal 2.0)", "trials": 12, "repeats": args.repeats,
        "preset_model": args.preset, "max_train": args.max_train, "epochs": args.epochs,
        "command_wall_s": {"concurrency_1": walls[1], "concurrency_2": walls[2]},
        "trial_span_s": {"concurrency_1": spans[1], "concurrency_2": spans[2]},
        "speedup_command_wall": speedup,
        "speedup_trial_span": median(spans[1]) / median(spans[2]),
        "met": speedup >= 1.8,
    })


if __name__ == "__main__":
    main()
