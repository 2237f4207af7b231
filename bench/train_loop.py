"""Target 3: images per second per core of our training step versus a bare PyTorch loop of the
same model and batch size, in the same process (one thread). Median of --repeats runs each."""

from __future__ import annotations

import argparse
import time

import torch
from _common import median, write

from vae import DataConfig, ModelConfig, Split, Splits, TrainConfig, load_data, train
from vae.data import to_unit
from vae.metrics import vae_loss
from vae.model import ConvVAE


def bare_loop(config: TrainConfig, images: torch.Tensor) -> float:
    """The textbook loop: shuffle, slice, forward, loss, backward, step. Returns seconds."""
    torch.manual_seed(config.seed)
    model = ConvVAE(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    started = time.perf_counter()
    order = torch.randperm(len(images))
    for start in range(0, len(images), config.batch_size):
        batch = images[order[start : start + config.batch_size]]
        logits, mu, logvar = model(batch)
        loss = vae_loss(logits, batch, mu, logvar, config.beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def ours(config: TrainConfig, splits: Splits) -> float:
    """vae.train for one epoch: its training time (validation is 10 images anyway)."""
    state = train(config, splits)
    return state.history[0].fit_time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_data(DataConfig(dataset="sample"))
    tiny_val = Split(data.val.pixels[:10], data.val.labels[:10])
    splits = Splits(data.train, tiny_val, data.test, data.source)
    config = TrainConfig(model=ModelConfig(latent_dim=15), epochs=1, batch_size=args.batch_size, threads=1, lr=1e-3,
                         lr_schedule="constant")  # the bare loop's recipe
    n = len(data.train)
    images = to_unit(data.train.pixels)  # the bare loop gets float images ready-made
    bare_loop(config, images)  # warm-up (allocator, kernels)
    bare, our = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        bare.append(n / bare_loop(config, images))
        our.append(n / ours(config, splits))
    ratio = median(our) / median(bare)
    write("train_loop", {
        "target": "ours >= 0.9x bare PyTorch images/s per core",
        "images": n, "batch_size": args.batch_size, "threads": 1, "repeats": args.repeats,
        "bare_images_per_s": bare, "ours_images_per_s": our,
        "bare_median": median(bare), "ours_median": median(our), "ratio": ratio, "met": ratio >= 0.9,
    })


if __name__ == "__main__":
    main()
