"""Memory and time of the paper preset on the full MNIST, at reduced epochs and trials.

Runs `vae-search run --preset paper` on the 70,000 digits of ../shared/mnist (unpacked to a
temporary folder) with this checkout and, with --baseline DIR, with another checkout of the
project in the same script (e.g. `git worktree add /tmp/before REV`). While a run works, every
process it started is sampled every 0.5 s: RSS, and PSS, the proportional set size that splits
pages shared between processes (the object store's, the libraries') among those that map them.

Reports per checkout: wall time, seconds per trial, the driver's peak RSS and PSS, each trial
worker's peak RSS and PSS (a trial worker is a Ray worker that ran a trial), and the size of
what the trials are shipped through the object store (pickled, protocol 5).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import checkouts, median, unpack_full_mnist, write

GB = 1024**3

SHIPPED = r'''
import json, pickle, sys
from search.engine.data import load_splits
from search.config import resolve
config = resolve("paper", {"data_dir": sys.argv[1]})
splits = load_splits(config)
splits = splits[0] if isinstance(splits, tuple) else splits
shipped = splits.for_training() if hasattr(splits, "for_training") else splits  # what _trainable binds
print(json.dumps({"shipped_bytes": len(pickle.dumps(shipped, protocol=5))}))
'''


def sample_tree(root: psutil.Process, peaks: dict[int, dict], stop: threading.Event) -> None:
    """Peak RSS / PSS of `root` and every descendant, keyed by pid, until `stop`."""
    while not stop.is_set():
        for proc in [root, *root.children(recursive=True)]:
            try:
                info = proc.memory_full_info()
                name = " ".join(proc.cmdline())[:80]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            peak = peaks.setdefault(proc.pid, {"rss": 0, "pss": 0, "names": set()})
            peak["rss"], peak["pss"] = max(peak["rss"], info.rss), max(peak["pss"], info.pss)
            peak["names"].add(name)
        stop.wait(0.5)


def measure(checkout: Path, data_dir: Path, run_args: list[str], storage: Path) -> dict:
    shipped = json.loads(subprocess.run([sys.executable, "-c", SHIPPED, str(data_dir)], cwd=checkout, check=True,
                                        capture_output=True, text=True).stdout.strip().splitlines()[-1])
    command = [sys.executable, "-m", "search", "run", "--preset", "paper", "--data-dir", str(data_dir),
               "--storage", str(storage), "--name", "paper", *run_args]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    peaks: dict[int, dict] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_tree, args=(psutil.Process(proc.pid), peaks, stop), daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    trials = sum(1 for line in out.splitlines() if line.startswith("trial ") and " done" in line) or None
    import pandas as pd

    table = pd.read_csv(storage / "paper" / "trials.csv")
    driver = peaks.pop(proc.pid)
    # a trial worker: a Ray worker process that ran the trainable (its title names the trial function)
    workers = [p for p in peaks.values() if any("ImplicitFunc" in n or "run_trial" in n for n in p["names"])]
    return {
        "wall_s": wall,
        "trials": len(table),
        "s_per_trial": wall / len(table),
        "trial_lines": trials,
        "driver_peak_rss_gb": driver["rss"] / GB,
        "driver_peak_pss_gb": driver["pss"] / GB,
        "worker_peak_rss_gb": sorted(p["rss"] / GB for p in workers),
        "worker_peak_pss_gb": sorted(p["pss"] / GB for p in workers),
        "shipped_mb": shipped["shipped_bytes"] / 1e6,
        "psnr_by_latent_dim": table.groupby("latent_dim")["psnr_mean"].max().round(2).to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, measured the same way first")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--run-args", default="--epochs 2 --trials 4 --seeds 1 --max-seeds 1 --latent-dims 5,15 "
                        "--gpus-per-trial 0 --num-cpus 2")
    args = parser.parse_args()
    run_args = args.run_args.split()
    figures: dict = {
        "command": f"vae-search run --preset paper --data-dir MNIST {args.run_args}",
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = unpack_full_mnist(Path(tmp))
        for side, checkout in checkouts(args.baseline).items():
            runs = []
            for repeat in range(args.repeats):
                runs.append(measure(checkout, data_dir, run_args, Path(tmp) / f"{side}{repeat}"))
                print(side, json.dumps(runs[-1]), flush=True)
            figures[side] = {
                "runs": runs,
                "wall_s": median([r["wall_s"] for r in runs]),
                "s_per_trial": median([r["s_per_trial"] for r in runs]),
                "driver_peak_rss_gb": median([r["driver_peak_rss_gb"] for r in runs]),
                "driver_peak_pss_gb": median([r["driver_peak_pss_gb"] for r in runs]),
                "worker_peak_pss_gb_max": median([max(r["worker_peak_pss_gb"]) for r in runs]),
                "worker_peak_rss_gb_max": median([max(r["worker_peak_rss_gb"]) for r in runs]),
                "shipped_mb": runs[0]["shipped_mb"],
            }
    figures["target"] = "a trial worker's peak PSS <= 0.6 GB on the full MNIST"
    figures["met"] = figures["ours"]["worker_peak_pss_gb_max"] <= 0.6
    write("paper_memory", figures)


if __name__ == "__main__":
    main()
