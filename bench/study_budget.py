"""The default `vae-search train` recipe at the original study's budget, on the full MNIST.

Trains 48,000 MNIST training digits (the rest of the official training set is validation) for
15 epochs at latent sizes 5, 10, 15 and 20, and 5 epochs at latent 15, each with the CLI's
defaults, then reads the PSNR on the official 10,000-digit test set from `metrics.json` (mean
of the ten per-digit PSNRs). With --baseline DIR, the same commands run first in another
checkout (e.g. `git worktree add /tmp/before REV`), side by side in this script.

Targets: the study + 1.5 dB at every latent size (>= 17.8 / 20.3 / 22.0 / 20.0 dB), PSNR
non-decreasing in the latent size, and >= 20.5 dB at latent 15 within 5 epochs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import checkouts, cli, unpack_full_mnist, write

STUDY = {5: 16.3, 10: 18.8, 15: 20.5, 20: 18.5}
TARGET = {d: round(v + 1.5, 1) for d, v in STUDY.items()}
RUNS = [(5, 15), (10, 15), (15, 15), (20, 15), (15, 5)]  # (latent size, epochs)


def train(checkout: Path, data_dir: Path, out: Path, latent_dim: int, epochs: int, threads: int) -> dict:
    wall, _ = cli("train", "--dataset", "mnist", "--data-dir", str(data_dir), "--latent-dim", str(latent_dim),
                  "--epochs", str(epochs), "--threads", str(threads), "--out", str(out), cwd=checkout)
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    return {"latent_dim": latent_dim, "epochs": epochs, "test_psnr": metrics["test"]["psnr_mean"],
            "test_kl": metrics["test"].get("kl"), "wall_s": wall,
            "config": {k: metrics["config"].get(k) for k in ("lr", "lr_schedule", "batch_size")},
            "val_psnr_by_epoch": [round(r["psnr_mean"], 3) for r in history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another checkout, run the same way first")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    figures: dict = {"train_images": 48_000, "test": "official MNIST test set (10,000)", "study": STUDY, "target": TARGET}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = unpack_full_mnist(Path(tmp))
        for side, checkout in checkouts(args.baseline).items():
            rows = []
            for latent_dim, epochs in RUNS:
                started = time.perf_counter()
                rows.append(train(checkout, data_dir, Path(tmp) / f"{side}-{latent_dim}-{epochs}", latent_dim, epochs, args.threads))
                print(side, json.dumps(rows[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
            at15 = {r["latent_dim"]: r["test_psnr"] for r in rows if r["epochs"] == 15}
            five = next(r["test_psnr"] for r in rows if r["epochs"] == 5)
            sizes = sorted(at15)
            figures[side] = {
                "runs": rows,
                "psnr_15_epochs": at15,
                "psnr_latent15_5_epochs": five,
                "s_per_15_epoch_run": sorted(r["wall_s"] for r in rows if r["epochs"] == 15)[len(sizes) // 2],
                "met_plus_1_5_db": all(at15[d] >= TARGET[d] for d in sizes),
                "met_non_decreasing": all(at15[a] <= at15[b] for a, b in zip(sizes, sizes[1:], strict=False)),
                "met_5_epochs": five >= STUDY[15],
            }
    write("study_budget", figures)


if __name__ == "__main__":
    main()
