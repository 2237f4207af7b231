"""What would close the quality gap (target 5)? Latent size 15, trained as one quick-preset
trial (8 epochs, batch 32, lr 5.5e-4, up to 4,000 sample digits), at several KL weights β
and with more epochs, evaluated on the official MNIST test set against PCA(15) fitted on the
same training images. One seeded run per setting (a probe, not a target)."""

from __future__ import annotations

import argparse

from _common import write
from search_quality import model_psnr, official_test, pca_psnr

from vae import DataConfig, ModelConfig, TrainConfig, load_data, train
from vae.data import to_unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settings", default="1:8,0.25:8,0.1:8,1:24", help="beta:epochs,…")
    args = parser.parse_args()
    test = official_test()
    if test is None:
        raise SystemExit("../shared/mnist-test not present")
    images, labels = test
    splits = load_data(DataConfig(dataset="sample", max_train=4000))
    rows = []
    for item in args.settings.split(","):
        beta, epochs = float(item.split(":")[0]), int(item.split(":")[1])
        config = TrainConfig(
            model=ModelConfig(latent_dim=15), beta=beta, epochs=epochs, batch_size=32, lr=5.5e-4, threads=2
        )
        model = train(config, splits).model
        rows.append({"beta": beta, "epochs": epochs, "vae_psnr": model_psnr(model, images, labels)})
        print(rows[-1], flush=True)
    write("beta_quality", {"latent_dim": 15, "train_images": len(splits.train),
                           "pca15_psnr": pca_psnr(to_unit(splits.train.pixels), 15, images, labels), "runs": rows})


if __name__ == "__main__":
    main()
