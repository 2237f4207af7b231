"""Seed-to-seed spread of the validation PSNR, and whether a shared seed pairs the latent sizes.

Trains the trial recipe of a preset (the same Tune constants and `search.engine.trial.build_config`
a run uses) at every latent size with seeds 1..N, two trials at a time, one thread each, and
reports per size the mean and SD of the validation psnr_mean over seeds, the pooled per-seed
SD, and the pairing: seed k shuffles the data and initialises the weights the same way at
every size, so the PSNRs of one seed may move together. Measured as the share of the
variance that a seed effect explains in the two-way model psnr = size + seed + noise, and as
the residual SD with and without the seed effect. These figures feed the scenarios of
`bench/calibration.py` and the default `--tolerance-db`.

The same for the held-out likelihood: after training, each trial computes nll_iw as a seeds trial
does (`search.engine.trial.held_out_likelihood`, on the preset's fixed validation subset) at
every k in `--iw-k`, timed against the trial's training time. Reported per k: each size's mean
and SD over seeds, the pooled per-seed SD, the smallest gap between two sizes' means, and the
cost as a share of training. These set the default `--tolerance-nats` and the presets' k.

    python seed_spread.py --preset quick --seeds 6           # sample digits, as `make run`
    python seed_spread.py --preset paper --full --epochs 15 --latent-dims 15,20 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _common import unpack_full_mnist, write


def _train_one(job: dict) -> dict:
    import dataclasses

    import torch

    from search.engine.trial import build_trial, held_out_likelihood
    from vae import load_data
    from vae.training import train

    torch.set_num_threads(1)
    config, _, likelihood = build_trial(job["trial"])
    splits = load_data(config.data, download=False)
    started = time.perf_counter()
    state = train(config, splits)
    wall = time.perf_counter() - started
    last = state.history[-1]
    train_s = sum(r.time_s for r in state.history)
    iw = {}
    for k in job["iw_k"]:
        measured = held_out_likelihood(state.model, splits, dataclasses.replace(likelihood, samples=k))
        iw[str(k)] = {
            "nll_iw": measured["nll_iw"],
            "seconds": measured["iw_time_s"],
            "share_of_training": measured["iw_time_s"] / train_s,
            "images": measured["iw_images"],
        }
    return {"latent_dim": job["trial"]["latent_dim"], "seed": job["trial"]["seed"], "psnr_mean": last.psnr_mean,
            "val_loss": last.val_loss, "active_units": last.active_units, "train_s": train_s, "iw": iw, "wall_s": wall}


def _likelihood_spread(rows: list[dict], dims: list[int], seeds: int, k: str) -> dict:
    """nll_iw at k samples: per size mean and SD over seeds, the pooled per-seed SD, the smallest
    gap between two sizes' means, and the median cost as a share of the training time."""
    table = np.array([[next(r["iw"][k]["nll_iw"] for r in rows if r["latent_dim"] == d and r["seed"] == s)
                       for s in range(1, seeds + 1)] for d in dims])
    means = table.mean(axis=1)
    pooled = float(np.sqrt(((table - means[:, None]) ** 2).sum() / (len(dims) * (seeds - 1))))
    gaps = np.abs(np.diff(np.sort(means)))
    return {"per_latent_dim": {str(d): {"mean": float(means[i]), "sd": float(table[i].std(ddof=1)),
                                        "values": table[i].round(3).tolist()} for i, d in enumerate(dims)},
            "sd_per_seed": pooled, "smallest_gap_between_sizes": float(gaps.min()) if len(gaps) else None,
            "images": rows[0]["iw"][k]["images"],
            "share_of_training_median": float(np.median([r["iw"][k]["share_of_training"] for r in rows])),
            "seconds_median": float(np.median([r["iw"][k]["seconds"] for r in rows]))}


def two_way(table: np.ndarray) -> dict:
    """table[size, seed] (complete). Residual SD of the additive model with and without a
    seed effect, and the share of the seed-and-noise variance the seed effect explains."""
    n_sizes, n_seeds = table.shape
    size_means = table.mean(axis=1, keepdims=True)
    one_way = table - size_means  # seed effect ignored
    seed_effect = one_way.mean(axis=0, keepdims=True)
    resid = one_way - seed_effect
    sd_unpaired = float(np.sqrt((one_way ** 2).sum() / (n_sizes * (n_seeds - 1))))
    sd_paired = float(np.sqrt((resid ** 2).sum() / ((n_sizes - 1) * (n_seeds - 1))))
    # F test of the seed effect: mean square of seeds over the residual mean square
    ms_seed = float(n_sizes * (seed_effect ** 2).sum() / (n_seeds - 1))
    ms_resid = sd_paired ** 2
    from scipy import stats

    f = ms_seed / ms_resid if ms_resid > 0 else float("inf")
    p = float(stats.f.sf(f, n_seeds - 1, (n_sizes - 1) * (n_seeds - 1)))
    # intraclass correlation of two sizes' PSNRs at one seed (ANOVA estimator, floored at 0)
    var_seed = max(0.0, (ms_seed - ms_resid) / n_sizes)
    icc = var_seed / (var_seed + ms_resid) if var_seed + ms_resid > 0 else 0.0
    return {
        "sd_per_seed_unpaired": sd_unpaired,
        "sd_per_seed_paired": sd_paired,
        "seed_effect_F": f,
        "seed_effect_p": p,
        "pairing_correlation": icc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick", choices=["smoke", "quick", "paper"])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--latent-dims", default=None, help="default: the preset's")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak lr for every trial (the recipe's default)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument(
        "--full", action="store_true", help="the full MNIST from ../shared/mnist (else the sample digits)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default=None, help="results name (default seed_spread_<preset>[_full])")
    parser.add_argument("--iw-k", default="1,16,64", help="importance samples to compute nll_iw with, comma-separated")
    parser.add_argument("--iw-images", type=int, default=None, help="default: the preset's")
    args = parser.parse_args()
    iw_k = [int(k) for k in args.iw_k.split(",")]

    from search.config import resolve
    from search.engine.experiment import trial_template

    config = resolve(args.preset, {"epochs": args.epochs, "iw_images": args.iw_images})
    dims = [int(d) for d in args.latent_dims.split(",")] if args.latent_dims else list(config.latent_dims)
    with tempfile.TemporaryDirectory() as tmp:
        data = {"source": "mnist" if args.full else "sample",
                "data_dir": str(unpack_full_mnist(Path(tmp))) if args.full else "data"}
        constants = trial_template(config, data)
        constants["train"]["threads"] = 1
        constants["train"]["data"]["max_train"] = None if args.full else config.max_train
        jobs = [{"trial": {**constants, "phase": "seeds", "latent_dim": d, "lr": args.lr, "seed": s}, "iw_k": iw_k}
                for s in range(1, args.seeds + 1) for d in dims]
        rows = []
        with ProcessPoolExecutor(args.workers) as pool:
            for row in pool.map(_train_one, jobs):
                print(json.dumps(row), flush=True)
                rows.append(row)
    table = np.array([[next(r["psnr_mean"] for r in rows if r["latent_dim"] == d and r["seed"] == s)
                       for s in range(1, args.seeds + 1)] for d in dims])
    per_size = {
        str(d): {
            "mean": float(table[i].mean()),
            "sd": float(table[i].std(ddof=1)),
            "values": table[i].round(4).tolist(),
        }
        for i, d in enumerate(dims)
    }
    figures = {"preset": args.preset, "data": "full MNIST (48k train)" if args.full else "sample digits",
               "epochs": config.epochs, "lr": args.lr, "seeds": args.seeds, "per_latent_dim": per_size,
               **two_way(table), "median_trial_s": float(np.median([r["wall_s"] for r in rows])),
               "active_units": {str(d): [r["active_units"] for r in rows if r["latent_dim"] == d] for d in dims},
               "nll_iw": {str(k): _likelihood_spread(rows, dims, args.seeds, str(k)) for k in iw_k}}
    write(args.name or f"seed_spread_{args.preset}{'_full' if args.full else ''}", figures)


if __name__ == "__main__":
    main()
