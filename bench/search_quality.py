"""Targets 4, 5 and 6 from the same runs of the quick preset:

4. ASHA versus FIFO: the same chosen latent size in >= 4 of 5 seeds, ASHA training fewer
   epochs; racing (min 2, max 4 seeds per size) reaching its confidence with fewer seeds
   trials than fixed seeds (4 per size, --fixed-repeats runs) need for the same confidence.
5. Quality on the official MNIST test set (../shared/mnist-test, when present): the chosen
   model beats PCA with as many components, fitted on the same training images, by >= 3 dB
   mean PSNR; the best latent-size-15 model reaches >= 19.5 dB.
6. The wall time of what `make run` runs after install (quick search + analyze) <= 5 min.

Each repetition uses another --seed; figures are medians over repetitions."""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch
from _common import MNIST_TEST, cli, median, write

from vae.data import to_unit


def official_test() -> tuple[torch.Tensor, torch.Tensor] | None:
    if not (MNIST_TEST / "t10k-images-idx3-ubyte.gz").exists():
        return None
    from torchvision.datasets.mnist import read_image_file, read_label_file

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for kind in ("images-idx3", "labels-idx1"):
            target = Path(tmp) / f"t10k-{kind}-ubyte"
            with gzip.open(MNIST_TEST / f"t10k-{kind}-ubyte.gz", "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            paths[kind] = target
        images = read_image_file(str(paths["images-idx3"])).float().div(255).unsqueeze(1)
        labels = read_label_file(str(paths["labels-idx1"])).long()
    return images, labels


def model_psnr(model, images, labels) -> float:
    from vae.metrics import digit_metrics

    with torch.no_grad():
        recon = torch.cat([model.reconstruct(images[i : i + 1000]) for i in range(0, len(images), 1000)])
    return digit_metrics(recon, images, labels)["psnr_mean"]


def pca_psnr(train_images, k, images, labels) -> float:
    from sklearn.decomposition import PCA

    from vae.metrics import digit_metrics

    pca = PCA(n_components=k, random_state=0).fit(train_images.flatten(1).numpy())
    recon = pca.inverse_transform(pca.transform(images.flatten(1).numpy())).clip(0, 1)
    return digit_metrics(torch.from_numpy(recon).float().view_as(images), images, labels)["psnr_mean"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--fixed-repeats", type=int, default=2, help="runs with fixed seeds (4 per size) to compare racing with"
    )
    parser.add_argument(
        "--schedulers", default="asha,fifo", help="asha alone measures quality and time, not ASHA vs FIFO"
    )
    parser.add_argument("--out", default="search_quality", help="results file name (bench/results/OUT.json)")
    args = parser.parse_args()
    from vae import DataConfig, load_data, load_model

    test = official_test()
    runs = []
    with tempfile.TemporaryDirectory() as storage:
        for rep in range(args.repeats):
            record = {"seed": rep}
            for scheduler in args.schedulers.split(","):
                name = f"{scheduler}-{rep}"
                run_wall, _ = cli("run", "--preset", "quick", "--scheduler", scheduler, "--seed", str(rep),
                                  "--storage", storage, "--name", name)
                analyze_wall, _ = cli("analyze", str(Path(storage) / name))
                experiment = Path(storage) / name
                table = pd.read_csv(experiment / "trials.csv")
                selection = json.loads((experiment / "selection.json").read_text())
                search = table[table["phase"] == "search"]
                race = json.loads((experiment / "race.json").read_text())
                record[scheduler] = {
                    "chosen_latent_dim": selection["latent_dim"],
                    "confidence": selection["confidence"], "stop_reason": race.get("stop_reason"),
                    "seeds_trials": int((table["phase"] == "seeds").sum()),
                    "search_epochs": int(search["epochs"].sum()),
                    "total_epochs": int(table["epochs"].sum()),
                    "run_s": run_wall, "analyze_s": analyze_wall,
                }
                if scheduler == "asha" and test is not None:
                    run_json = json.loads((experiment / "run.json").read_text())
                    cfg = run_json["config"]
                    splits = load_data(
                        DataConfig(
                            dataset=run_json["data"]["source"],
                            data_dir=run_json["data"]["data_dir"],
                            max_train=cfg["max_train"],
                        ),
                        download=False,
                    )
                    images, labels = test
                    chosen = selection["latent_dim"]
                    record["quality"] = {
                        "train_source": run_json["data"]["source"], "train_images": len(splits.train),
                        "chosen_latent_dim": chosen,
                        "vae_psnr": model_psnr(load_model(experiment / "best_model"), images, labels),
                        "pca_psnr": pca_psnr(to_unit(splits.train.pixels), chosen, images, labels),
                    }
                    seeds15 = table[
                        (table["phase"] == "seeds") & (table["latent_dim"] == 15) & (table["status"] == "completed")
                    ]
                    if len(seeds15):
                        best15 = seeds15.loc[seeds15["psnr_mean"].idxmax(), "checkpoint"]
                        record["quality"]["latent15_vae_psnr"] = model_psnr(
                            load_model(experiment / best15), images, labels
                        )
                        record["quality"]["latent15_pca_psnr"] = pca_psnr(
                            to_unit(splits.train.pixels), 15, images, labels
                        )
            if rep < args.fixed_repeats:  # the same search, then 4 seeds per size and no racing
                name = f"fixed-{rep}"
                cli("run", "--preset", "quick", "--seed", str(rep), "--seeds", "4", "--max-seeds", "4",
                    "--storage", storage, "--name", name)
                cli("analyze", str(Path(storage) / name))
                table = pd.read_csv(Path(storage) / name / "trials.csv")
                selection = json.loads((Path(storage) / name / "selection.json").read_text())
                record["fixed4"] = {"chosen_latent_dim": selection["latent_dim"], "confidence": selection["confidence"],
                                    "seeds_trials": int((table["phase"] == "seeds").sum())}
            runs.append(record)
            print(json.dumps(record), flush=True)
            write(f"{args.out}_partial", {"runs": runs})

    figures = {
        "repeats": args.repeats, "runs": runs,
        "racing": {
            "asha_confidence": [r["asha"]["confidence"] for r in runs],
            "asha_seeds_trials": [r["asha"]["seeds_trials"] for r in runs],
            "asha_stop_reasons": [r["asha"]["stop_reason"] for r in runs],
            "fixed4": [r.get("fixed4") for r in runs if "fixed4" in r],
        },
        "make_run_s": {
            "target": "<= 300 s (quick search + analyze, after install)",
            "median": median([r["asha"]["run_s"] + r["asha"]["analyze_s"] for r in runs]),
        },
    }
    if "fifo" in args.schedulers.split(","):
        asha_epochs = median([r["asha"]["search_epochs"] for r in runs])
        fifo_epochs = median([r["fifo"]["search_epochs"] for r in runs])
        figures["asha_vs_fifo"] = {
            "target": "same chosen latent size in >= 4 of 5 seeds; ASHA search epochs <= 60% of FIFO's",
            "same_choice": [r["asha"]["chosen_latent_dim"] == r["fifo"]["chosen_latent_dim"] for r in runs],
            "asha_search_epochs_median": asha_epochs, "fifo_search_epochs_median": fifo_epochs,
            "search_epoch_ratio": asha_epochs / fifo_epochs,
            "total_epoch_ratio": median([r["asha"]["total_epochs"] / r["fifo"]["total_epochs"] for r in runs]),
        }
    if test is not None:
        q = [r["quality"] for r in runs]
        figures["quality"] = {
            "test_set": "official MNIST test set, 10,000 images (../shared/mnist-test)",
            "target": "chosen VAE >= PCA(k = chosen latent size) + 3 dB; latent 15 VAE >= 19.5 dB",
            "vae_psnr_median": median([x["vae_psnr"] for x in q]),
            "pca_psnr_median": median([x["pca_psnr"] for x in q]),
            "margin_db_median": median([x["vae_psnr"] - x["pca_psnr"] for x in q]),
            "latent15_vae_psnr_median": median([x["latent15_vae_psnr"] for x in q if "latent15_vae_psnr" in x]),
            "latent15_pca_psnr_median": median([x["latent15_pca_psnr"] for x in q if "latent15_pca_psnr" in x]),
        }
    else:
        figures["quality"] = "skipped: ../shared/mnist-test not present"
    write(args.out, figures)


if __name__ == "__main__":
    main()
