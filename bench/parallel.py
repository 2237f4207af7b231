"""Target 2: eight equal trials (same model, data and epochs) at concurrency 2 versus 1,
torch threads pinned to each trial's one CPU. Speed-up = search-phase wall time at 1 / at 2.
Median of --repeats runs."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import cli, median, phase_seconds, write

ARGS = ["--preset", "smoke", "--latent-dims", "8", "--epochs", "3", "--max-train", "2000", "--trials", "8",
        "--seeds", "1", "--scheduler", "fifo", "--num-cpus", "2", "--cpus-per-trial", "1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    serial, parallel = [], []
    with tempfile.TemporaryDirectory() as storage:
        for i in range(args.repeats):
            for concurrency, bucket in ((1, serial), (2, parallel)):
                _, out = cli("run", *ARGS, "--max-concurrent", str(concurrency), "--storage", storage,
                             "--name", f"par{concurrency}-{i}-{int(time.time())}")
                bucket.append(phase_seconds(out, "search"))
            print(f"repeat {i + 1}: concurrency 1 {serial[-1]:.1f} s, concurrency 2 {parallel[-1]:.1f} s", flush=True)
    speedup = median(serial) / median(parallel)
    write("parallel", {
        "target": "speed-up >= 1.8 (ideal 2.0)", "trials": 8, "repeats": args.repeats,
        "concurrency_1_s": serial, "concurrency_2_s": parallel,
        "concurrency_1_median": median(serial), "concurrency_2_median": median(parallel),
        "speedup": speedup, "met": speedup >= 1.8,
    })


if __name__ == "__main__":
    main()
