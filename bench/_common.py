"""Shared by the benchmark scripts: run the CLI, time things, take medians, write JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MNIST_TEST = ROOT.parent / "shared" / "mnist-test"
MNIST_FULL = ROOT.parent / "shared" / "mnist"


def cli(*args: str, cwd: Path | None = None) -> tuple[float, str]:
    """Run `python -m search ARGS`; returns (wall seconds, stdout). Raises on failure."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                            start_new_session=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"vae-search {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return wall, result.stdout


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def run_seconds(stdout: str) -> float:
    """The Tune experiment's wall time, from the `run done in N s` line."""
    for line in stdout.splitlines():
        if line.startswith("run done in"):
            return float(line.split(" in ")[1].split()[0].rstrip(";"))
    raise ValueError("no 'run done in' line in the output")


def write(name: str, figures: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


def unpack_full_mnist(folder: Path) -> Path:
    """The full MNIST unpacked into FOLDER/data/MNIST/raw (torchvision's layout); returns the
    data dir to pass as --data-dir. Exits when the copy in ../shared is not there."""
    if not (MNIST_FULL / "unpack").exists():
        sys.exit(f"the full MNIST is not at {MNIST_FULL}")
    data_dir = folder / "data"
    subprocess.run([str(MNIST_FULL / "unpack"), str(data_dir)], check=True, capture_output=True)
    return data_dir


def checkouts(baseline: Path | None) -> dict[str, Path]:
    """{"baseline": DIR, "ours": this checkout} in the order to run them, or just ours."""
    return {"baseline": baseline, "ours": ROOT} if baseline else {"ours": ROOT}
