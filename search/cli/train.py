"""`vae-search train`: one configuration, no Ray. Writes model/ and metrics.json."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from search.cli import args as types
from search.cli.output import default_name
from search.store.folders import new_folder
from vae.config import TrainConfig

HELP = "train one configuration without Ray"
DEFAULT_DATA_DIR = "data"


# `run`'s settings that mean the same for one training (flags, types and help from SearchConfig)
SHARED = ("lr_schedule", "beta", "epochs", "batch_size", "max_train", "seed", "dataset", "data_dir")


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latent-dim", type=types.positive_int, default=15)
    parser.add_argument(
        "--lr", type=types.positive_float, default=None, help=f"peak learning rate (default {TrainConfig.lr:g})"
    )
    parser.add_argument("--threads", type=types.positive_int, default=None, help="torch threads (default: all cores)")
    types.add_settings(parser, SHARED, note="train: vae.TrainConfig's default unless given")
    parser.add_argument("--out", default=None, help="output folder (default: results/train-<time>); must not exist")


def train_config(args: argparse.Namespace):
    """The parsed `train` flags as a validated `TrainConfig` (UsageError when they do not fit)."""
    from vae import DataConfig, ModelConfig, TrainConfig

    given = {key: getattr(args, key) for key in ("lr", "lr_schedule", "beta", "epochs", "batch_size")}
    return TrainConfig(  # flags not given keep TrainConfig's defaults: one recipe, defined once
        model=ModelConfig(latent_dim=args.latent_dim),
        data=DataConfig(
            dataset=args.dataset or "auto", data_dir=args.data_dir or DEFAULT_DATA_DIR, max_train=args.max_train
        ),
        seed=args.seed if args.seed is not None else TrainConfig.seed,
        threads=args.threads or max(1, os.cpu_count() or 1),
        **{key: value for key, value in given.items() if value is not None},
    )


def main(args: argparse.Namespace) -> int:
    from vae import evaluate, load_data, save_model, train

    out = Path(args.out) if args.out else Path("results") / default_name("train")
    config = train_config(args)
    with new_folder(out) as tmp:  # validates `out` before the data is loaded
        splits = load_data(config.data)
        if splits.notice:
            print(f"notice: {splits.notice}")
        print(
            f"data: {splits.source} ({len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} "
            "test)"
        )

        def report(result, _state) -> None:
            print(f"epoch {result.epoch:3d}  train loss {result.train_loss:8.2f}  val loss {result.val_loss:8.2f}  "
                  f"val PSNR {result.psnr_mean:6.2f} dB  ({result.time_s:.1f} s)")

        state = train(config, splits, on_epoch=report)
        _, test = evaluate(state.model, splits.test, beta=config.beta)
        save_model(tmp / "model", state.model, config)
        summary = {
            "source": splits.source,
            "config": config.to_dict(),
            "history": [r.__dict__ for r in state.history],
            "test": test,
        }
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"test: MSE {test['mse_mean']:.4f}  PSNR {test['psnr_mean']:.2f} dB (mean of the ten digits)")
    print(f"results: {out}")
    return 0
