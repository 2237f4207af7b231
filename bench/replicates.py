"""Real runs with different seeds: does the tool give one answer, and is it as sure as it says?

Runs the quick preset (what `make run` runs) with `--seed 0 … N-1`: independent replicates
(no two runs share a trial seed). Per run: the choice, its confidence, why racing stopped,
the seeds trials per size and the wall time. Across runs: how many agree with the most common
choice; whether every pair of runs that both report confidence >= 0.9 chose the same size;
the choice of `analysis.racing.assess` on all seeds trials of all runs pooled (the best
estimate of the answer on the true means these runs give), and how many of the runs match it.
Also the pairing check of bench/seed_spread.py on the real seeds trials: within a run, seed k
trains every size, so a seed effect would show as a correlation between the sizes.

    python replicates.py --runs 5            # about 25 minutes here
    python replicates.py --runs 4 --metric nll   # racing on nll_iw; each run's PSNR answer too
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import cli, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--keep", type=Path, help="keep the experiments in this folder (default: a temporary one)")
    parser.add_argument("--metric", default="psnr", choices=["psnr", "nll"])
    args = parser.parse_args()
    from analysis.rules import METRICS

    column = METRICS[args.metric].column

    from analysis.answers import both_answers, values_by_latent_dim
    from analysis.racing import assess

    with tempfile.TemporaryDirectory() as tmp:
        storage = args.keep or Path(tmp)
        runs, pooled = [], []
        for seed in range(args.runs):
            name = f"{args.preset}-seed{seed}"
            wall, _ = cli(
                "run",
                "--preset",
                args.preset,
                "--seed",
                str(seed),
                "--metric",
                args.metric,
                "--storage",
                str(storage),
                "--name",
                name,
            )
            race = json.loads((storage / name / "race.json").read_text())
            trials = pd.read_csv(storage / name / "trials.csv")
            seeds = trials[(trials["phase"] == "seeds") & (trials["status"] == "completed")]
            pooled.append(seeds.assign(run=seed))
            runs.append(
                {
                    "seed": seed,
                    "latent_dim": race["latent_dim"],
                    "confidence": race["confidence"],
                    "stop_reason": race["stop_reason"],
                    "seeds_per_size": race["n_trials"],
                    "wall_s": wall,
                    f"mean_{args.metric}": {k: round(v, 3) for k, v in race["mean"].items()},
                    "other_metric": {
                        name: {"latent_dim": r.latent_dim, "confidence": round(r.confidence, 3)}
                        for name, r in both_answers(
                            seeds, metric=args.metric, seed=seed, horizon=_horizon(args.preset)
                        ).items()
                    },
                    "active_units": {
                        str(d): round(float(v), 2)
                        for d, v in seeds.groupby("latent_dim")["active_units"].mean().items()
                    },
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    every = pd.concat(pooled)
    overall = assess(values_by_latent_dim(every, column), metric=args.metric)
    choices = [r["latent_dim"] for r in runs]
    mode = max(set(choices), key=choices.count)
    sure = [r for r in runs if r["confidence"] >= 0.9]
    pairs = list(itertools.combinations(sure, 2))
    figures = {
        "preset": args.preset,
        "metric": args.metric,
        "runs": runs,
        "choices": choices,
        "agree_with_most_common": f"{choices.count(mode)} of {len(runs)} chose {mode}",
        "confident_runs": len(sure),
        "confident_pairs_agreeing": f"{sum(a['latent_dim'] == b['latent_dim'] for a, b in pairs)} of {len(pairs)}",
        "pooled": {"latent_dim": overall.latent_dim, "confidence": overall.confidence, "n_trials": overall.n_trials,
                   "mean": {d: round(m, 3) for d, m in overall.mean.items()}, "sd": overall.sd,
                   "runs_matching": sum(c == overall.latent_dim for c in choices)},
        "pairing": _pairing(every),
        "median_wall_s": float(np.median([r["wall_s"] for r in runs])),
    }
    write(f"replicates_{args.preset}" + ("" if args.metric == "psnr" else f"_{args.metric}"), figures)


def _horizon(preset: str) -> tuple[int, int]:
    from search.config import resolve

    config = resolve(preset, {})
    return config.seeds, config.max_seeds


def _pairing(seeds: pd.DataFrame) -> dict:
    """Within each run, the PSNRs of seed k at every size: the share of the residual variance
    that a per-(run, seed) effect explains, as an intraclass correlation (0: no pairing)."""
    residual = seeds["psnr_mean"] - seeds.groupby(["run", "latent_dim"])["psnr_mean"].transform("mean")
    frame = seeds.assign(residual=residual)
    blocks = frame.groupby(["run", "seed"])["residual"]
    complete = blocks.count() == frame["latent_dim"].nunique()
    means = blocks.mean()[complete]
    if len(means) < 2:
        return {"blocks": int(len(means))}
    within = frame.set_index(["run", "seed"]).loc[means.index]
    sizes = frame["latent_dim"].nunique()
    ms_block = float(sizes * (means ** 2).sum() / (len(means) - 1))
    ms_resid = float(((within["residual"] - means.reindex(within.index).to_numpy()) ** 2).sum()
                     / ((len(means) - 1) * (sizes - 1)))
    block_var = max(0.0, (ms_block - ms_resid) / sizes)
    return {
        "blocks": int(len(means)),
        "pairing_correlation": block_var / (block_var + ms_resid) if ms_resid > 0 else None,
    }


if __name__ == "__main__":
    main()
