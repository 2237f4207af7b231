"""The default `vae-search train` recipe at the original study's budget, on the full MNIST.

Trains 48,000 MNIST training digits (the rest of the official training set is validation) for
15 epochs at latent sizes 5, 10, 15 and 20, and 5 epochs at latent 15, each with the CLI's
defaults, then reads the PSNR on the official 10,000-digit test set from `metrics.json` (mean
of the ten per-digit PSNRs). With --baseline DIR, the same commands run first in another
checkout (e.g. `git worktree add /tmp/before REV`), side by side in this script.

Targets: the study + 1.5 dB at every latent size (>= 17.8 / 20.3 / 22.0 / 20.0 dB), PSNR
non-decreasing in the latent size, and >= 20.5 dB at latent 15 within 5 epochs.

Each trained model is also read on the official test set for what its latent space says: the
active units (Var over the images of the posterior mean > 0.01), the negative ELBO (one draw
per image, analytic KL), and nll_iw, the importance-weighted bound on −log p(x), at k = 1, 16
and 64 (`vae.training.importance_weighted_nll`; at k = 1 it estimates the negative ELBO, and it
must not rise as k grows beyond Monte-Carlo noise). `--only-15-epochs` skips the 5-epoch run.
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


IW_SAMPLES = (1, 16, 64)


def latent_use(model_dir: Path, data_dir: Path) -> dict:
    """Active units, negative ELBO, nll_iw at each k in IW_SAMPLES (mean and its SE over the
    images) and PSNR of a saved model on the official test set."""
    import torch

    from vae import DataConfig, evaluate, load_data, load_model
    from vae.training import importance_weighted_nll

    torch.set_num_threads(2)
    model = load_model(model_dir)
    test = load_data(DataConfig(dataset="mnist", data_dir=str(data_dir)), download=False).test
    neg_elbo, metrics = evaluate(model, test, beta=1.0)
    out = {"test_images": len(test), "active_units": metrics["active_units"], "kl": metrics["kl"],
           "neg_elbo": neg_elbo, "psnr": metrics["psnr_mean"], "mu_var_by_dim": metrics["mu_var_by_dim"],
           "kl_by_dim": metrics["kl_by_dim"], "nll_iw": {}}
    for k in IW_SAMPLES:
        started = time.perf_counter()
        values = importance_weighted_nll(model, test.pixels, k=k)
        out["nll_iw"][str(k)] = {"mean": float(values.mean()), "se": float(values.std() / len(values) ** 0.5),
                                 "seconds": time.perf_counter() - started}
    return out


def train(checkout: Path, data_dir: Path, out: Path, latent_dim: int, epochs: int, threads: int) -> dict:
    wall, _ = cli("train", "--dataset", "mnist", "--data-dir", str(data_dir), "--latent-dim", str(latent_dim),
                  "--epochs", str(epochs), "--threads", str(threads), "--out", str(out), cwd=checkout)
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    return {"latent_dim": latent_dim, "epochs": epochs, "test_psnr": metrics["test"]["psnr_mean"],
            "test_kl": metrics["test"].get("kl"), "wall_s": wall,
            "config": {k: metrics["config"].get(k) for k in ("lr", "lr_schedule", "batch_size")},
            "val_psnr_by_epoch": [round(r["psnr_mean"], 3) for r in history],
            "val_active_units_by_epoch": [r.get("active_units") for r in history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another checkout, run the same way first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only-15-epochs", action="store_true", help="skip the 5-epoch run at latent 15")
    parser.add_argument("--name", default="study_budget", help="results name (bench/results/NAME.json)")
    args = parser.parse_args()
    runs = [r for r in RUNS if r[1] == 15] if args.only_15_epochs else RUNS
    figures: dict = {
        "train_images": 48_000,
        "test": "official MNIST test set (10,000)",
        "study": STUDY,
        "target": TARGET,
    }
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = unpack_full_mnist(Path(tmp))
        for side, checkout in checkouts(args.baseline).items():
            rows = []
            for latent_dim, epochs in runs:
                started = time.perf_counter()
                out = Path(tmp) / f"{side}-{latent_dim}-{epochs}"
                rows.append(train(checkout, data_dir, out, latent_dim, epochs, args.threads))
                if side == "ours":
                    rows[-1]["latent_use"] = latent_use(out / "model", data_dir)
                print(side, json.dumps(rows[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
            at15 = {r["latent_dim"]: r["test_psnr"] for r in rows if r["epochs"] == 15}
            five = next((r["test_psnr"] for r in rows if r["epochs"] == 5), None)
            sizes = sorted(at15)
            figures[side] = {
                "runs": rows,
                "psnr_15_epochs": at15,
                "psnr_latent15_5_epochs": five,
                "s_per_15_epoch_run": sorted(r["wall_s"] for r in rows if r["epochs"] == 15)[len(sizes) // 2],
                "met_plus_1_5_db": all(at15[d] >= TARGET[d] for d in sizes),
                "met_non_decreasing": all(at15[a] <= at15[b] for a, b in zip(sizes, sizes[1:], strict=False)),
                "met_5_epochs": None if five is None else five >= STUDY[15],
            }
    write(args.name, figures)


if __name__ == "__main__":
    main()
