"""What nll_iw costs a seeds trial, against the trial's training time, on the quick and paper presets.

For each preset: the trial's own recipe (its Tune template, `search.engine.trial.build_trial`,
one thread as a trial with one CPU), the time of one training epoch on the preset's data
(median of `--repeats` one-epoch trainings) times the preset's epochs, against the time of
`search.engine.trial.held_out_likelihood` at the preset's k and subset size (median of
`--repeats`), measured in the same process one after the other. Quick trains on the 4,000 sample
digits (what `make run` uses here); paper on the full MNIST from ../shared/mnist (48,000 images).
The cost does not depend on the weights, so the model after its one epoch is timed.

    python likelihood_cost.py                # about 5 minutes here
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from _common import unpack_full_mnist, write


def measure(preset: str, data: dict, repeats: int) -> dict:
    import torch

    from search.config import resolve
    from search.engine.experiment import trial_template
    from search.engine.trial import build_trial, held_out_likelihood
    from vae import load_data
    from vae.training import train

    config = resolve(preset, {})
    template = trial_template(config, data)
    template["train"]["threads"] = 1
    trial = {**template, "phase": "seeds", "latent_dim": 20, "lr": 3e-3, "seed": 1}
    train_config, _, likelihood = build_trial(trial)
    torch.set_num_threads(1)
    splits = load_data(train_config.data, download=False)
    epochs, iw = [], []
    for repeat in range(repeats):
        state = train(dataclasses.replace(train_config, epochs=1, seed=repeat + 1), splits)
        epochs.append(state.history[0].fit_time_s)
        iw.append(held_out_likelihood(state.model, splits, likelihood)["iw_time_s"])
        print(preset, f"epoch {epochs[-1]:.2f} s, nll_iw {iw[-1]:.2f} s", flush=True)
    epoch_s, iw_s = statistics.median(epochs), statistics.median(iw)
    training_s = epoch_s * config.epochs
    return {"train_images": len(splits.train), "epochs": config.epochs, "iw_samples": likelihood.samples,
            "iw_images": min(likelihood.images, len(splits.val)), "epoch_s": epoch_s, "epoch_s_all": epochs,
            "training_s": training_s, "nll_iw_s": iw_s, "nll_iw_s_all": iw, "share_of_training": iw_s / training_s,
            "met_at_most_10_percent": iw_s / training_s <= 0.10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", default="quick,paper")
    args = parser.parse_args()
    figures: dict = {"repeats": args.repeats, "threads": 1}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            data = ({"source": "mnist", "data_dir": str(unpack_full_mnist(Path(tmp)))} if preset == "paper"
                    else {"source": "sample", "data_dir": "data"})
            started = time.perf_counter()
            figures[preset] = measure(preset, data, args.repeats)
            print(
                preset,
                f"{figures[preset]['share_of_training']:.1%} of training ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    write("likelihood_cost", figures)


if __name__ == "__main__":
    main()
