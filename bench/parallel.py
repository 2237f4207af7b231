"""Target 2: eight equal trials (same model, data and epochs) at concurrency 2 versus 1,
torch threads pinned to each trial's one CPU. Speed-up = search-phase wall time at 1 / at 2
(the target), and also over the trials' span (first trial start to last trial end), which
leaves out the Tuner's fixed start and stop. Median of --repeats runs."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import cli, median, phase_seconds, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=2000, help="training images per trial")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--preset", default="smoke", help="model size: smoke (small) or quick (32/64 channels)")
    parser.add_argument("--tag", default="", help="suffix of the result file")
    args = parser.parse_args()
    common = ["--preset", args.preset, "--latent-dims", "8", "--epochs", str(args.epochs), "--max-train", str(args.max_train),
              "--trials", "8", "--seeds", "1", "--scheduler", "fifo", "--num-cpus", "2", "--cpus-per-trial", "1"]
    walls = {1: [], 2: []}
    spans = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as storage:
        for i in range(args.repeats):
            for concurrency in (1, 2):
                name = f"par{concurrency}-{i}-{int(time.time())}"
                _, out = cli("run", *common, "--max-concurrent", str(concurrency), "--storage", storage, "--name", name)
                walls[concurrency].append(phase_seconds(out, "search"))
                table = pd.read_csv(Path(storage) / name / "trials.csv")
                search = table[table["phase"] == "search"]
                spans[concurrency].append(float(search["finished_at"].max() - search["started_at"].min()))
            print(f"repeat {i + 1}: phase wall {walls[1][-1]:.1f} s vs {walls[2][-1]:.1f} s; "
                  f"trial span {spans[1][-1]:.1f} s vs {spans[2][-1]:.1f} s", flush=True)
    speedup = median(walls[1]) / median(walls[2])
    write("parallel" + (f"_{args.tag}" if args.tag else ""), {
        "target": "speed-up >= 1.8 (ideal 2.0)", "trials": 8, "repeats": args.repeats,
        "preset_model": args.preset, "max_train": args.max_train, "epochs": args.epochs,
        "phase_wall_s": {"concurrency_1": walls[1], "concurrency_2": walls[2]},
        "trial_span_s": {"concurrency_1": spans[1], "concurrency_2": spans[2]},
        "speedup_phase_wall": speedup,
        "speedup_trial_span": median(spans[1]) / median(spans[2]),
        "met": speedup >= 1.8,
    })


if __name__ == "__main__":
    main()
